import math

import pytest
import torch

from ssd.anchors import default_boxes
from ssd.config import load_config
from ssd.loss import LossTargets, MultiBoxLoss
from ssd.matching import TargetEncoder
from reference_impl import reference_encode, reference_loss, reference_loss_parts


def _batch(seed, num_images=3, num_classes=5):
    generator = torch.Generator().manual_seed(seed)
    anchors = default_boxes(load_config("coco_300x300"))
    encoder = TargetEncoder(anchors)
    all_boxes, all_labels = [], []
    for n in range(num_images):
        count = n * 2  # the first image has no boxes
        low = torch.rand(count, 2, generator=generator) * 0.6
        boxes = torch.cat((low, low + 0.05 + torch.rand(count, 2, generator=generator) * 0.3), 1)
        all_boxes.append(boxes)
        all_labels.append(torch.randint(1, num_classes, (count,), generator=generator))
    targets = encoder.encode_batch(all_boxes, all_labels)
    offsets, labels = targets.offsets, targets.labels
    locs = torch.randn(num_images, 4, anchors.shape[0], generator=generator)
    confs = torch.randn(num_images, num_classes, anchors.shape[0], generator=generator)
    return anchors, all_boxes, all_labels, offsets, labels, locs, confs


@pytest.mark.parametrize("seed", range(3))
def test_equal_to_reference_loss_and_gradients(seed):
    anchors, boxes, labels, offsets, anchor_labels, locs, confs = _batch(seed)
    gloc = []
    for b, l in zip(boxes, labels):
        matched = reference_encode(anchors, b, l)[0] if b.numel() else anchors.clone()
        gloc.append(matched.t())
    ref_locs, ref_confs = locs.clone().requires_grad_(), confs.clone().requires_grad_()
    expected = reference_loss(anchors, ref_locs, ref_confs, torch.stack(gloc), anchor_labels)
    expected.backward()
    locs.requires_grad_(), confs.requires_grad_()
    got = MultiBoxLoss()(locs, confs, LossTargets(offsets, anchor_labels))
    got.total.backward()
    assert got.total.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(locs.grad, ref_locs.grad, atol=1e-6)
    assert torch.allclose(confs.grad, ref_confs.grad, atol=1e-6)
    with torch.no_grad():
        localisation, classification = reference_loss_parts(anchors, locs, confs, torch.stack(gloc), anchor_labels)
    assert got.localisation.item() == pytest.approx(localisation.item(), rel=1e-5)
    assert got.classification.item() == pytest.approx(classification.item(), rel=1e-5)


def test_zero_positives_gives_zero_loss():
    num_anchors, num_classes = 100, 4
    locs = torch.randn(2, 4, num_anchors, requires_grad=True)
    confs = torch.randn(2, num_classes, num_anchors, requires_grad=True)
    parts = MultiBoxLoss()(locs, confs, LossTargets(torch.zeros(2, num_anchors, 4), torch.zeros(2, num_anchors, dtype=torch.long)))
    assert parts.total.item() == 0.0
    parts.total.backward()
    assert confs.grad.abs().sum() == 0


def test_negatives_capped_at_anchor_count():
    # 3 of 4 anchors positive: 9 negatives wanted, only 4 anchors exist
    labels = torch.tensor([[1, 1, 1, 0]])
    confs = torch.zeros(1, 2, 4)
    parts = MultiBoxLoss()(torch.zeros(1, 4, 4), confs, LossTargets(torch.zeros(1, 4, 4), labels))
    expected = reference_loss(torch.full((4, 4), 0.5), torch.zeros(1, 4, 4), confs, torch.full((1, 4, 4), 0.5), labels)
    assert parts.total.item() == pytest.approx(expected.item())


def test_loss_targets_size_the_gathers_with_negatives_capped_at_the_anchor_count():
    # image 0: 1 positive of 4 anchors -> 3 negatives; image 1: 3 positives -> 9 wanted, 4 anchors
    labels = torch.tensor([[0, 2, 0, 0], [1, 1, 1, 0]])
    assert LossTargets(torch.zeros(2, 4, 4), labels).sizes.get() == [3, 4]
    assert LossTargets(torch.zeros(1, 4, 4), labels[:1]).sizes.get() == [1, 3]


def test_mining_takes_negatives_only_while_there_are_enough_even_when_all_are_confidently_right():
    """Negatives with cross-entropy far below 1 (confident background): the 3 mined per positive are still
    negatives, never the positive, whatever its own cross-entropy; equal to the reference's mining."""
    num_anchors = 40
    labels = torch.zeros(1, num_anchors, dtype=torch.long)
    labels[0, 5] = 2
    confs = torch.zeros(1, 3, num_anchors)
    confs[0, 0] = 6.0  # background right with high confidence: CE ~ 0.005
    confs[0, 0, 10:13] = 3.0  # three less confident negatives: the hardest ones
    confs[0, 1, 5] = 2.0  # the positive (class 2) is wrong: CE ~ 6
    offsets = torch.zeros(1, num_anchors, 4)
    parts = MultiBoxLoss()(torch.zeros(1, 4, num_anchors), confs, LossTargets(offsets, labels))
    cross_entropy = torch.nn.functional.cross_entropy(confs, labels, reduction="none")[0]
    assert parts.classification.item() == pytest.approx((cross_entropy[5] + cross_entropy[10:13].sum()).item(), rel=1e-6)
    anchors = torch.full((num_anchors, 4), 0.5)
    _, reference = reference_loss_parts(anchors, torch.zeros(1, 4, num_anchors), confs, anchors.t()[None], labels)
    assert parts.classification.item() == pytest.approx(reference.item(), rel=1e-6)


def test_one_positive_by_hand():
    """One positive and three mined negatives, all logits 0: conf = 4 log 3 over 1 positive; the
    positive's offsets (1, -1, 0.5, 2) give Smooth-L1 0.5 + 0.5 + 0.125 + 1.5 = 2.625; an image
    without positives adds 0 to the batch mean."""
    labels = torch.zeros(2, 10, dtype=torch.long)
    labels[0, 4] = 1
    offsets = torch.zeros(2, 10, 4)
    offsets[0, 4] = torch.tensor([1.0, -1.0, 0.5, 2.0])
    parts = MultiBoxLoss()(torch.zeros(2, 4, 10), torch.zeros(2, 3, 10), LossTargets(offsets, labels))
    assert parts.localisation.item() == pytest.approx(2.625 / 2, rel=1e-7)
    assert parts.classification.item() == pytest.approx(4 * math.log(3) / 2, rel=1e-7)
