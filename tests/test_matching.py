import pytest
import torch
from torchvision.ops import box_iou

from ssd.anchors import default_boxes
from ssd.box_ops import cxcywh_to_xyxy, decode_offsets, encode_offsets, xyxy_to_cxcywh
from ssd.config import load_config
from ssd.matching import TargetEncoder, anchor_columns, iou_with_anchors, match_anchors
from reference_impl import reference_encode


def _anchors():
    return default_boxes(load_config("coco_300x300"))


def _random_boxes(generator, count):
    low = torch.rand(count, 2, generator=generator) * 0.7
    size = torch.rand(count, 2, generator=generator) * 0.3 + 0.02
    return torch.cat((low, low + size), dim=1)


def test_iou_matches_torchvision():
    generator = torch.Generator().manual_seed(0)
    boxes, anchors = _random_boxes(generator, 7), cxcywh_to_xyxy(_anchors())
    coords = anchor_columns(anchors)
    areas = (coords[2] - coords[0]) * (coords[3] - coords[1])
    assert torch.allclose(iou_with_anchors(boxes, coords, areas), box_iou(boxes, anchors), atol=1e-6)


def test_no_boxes_gives_all_background():
    encoder = TargetEncoder(_anchors())
    offsets, labels = encoder(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert labels.shape == (8732,) and not labels.any() and not offsets.any()


def test_box_equal_to_an_anchor_is_matched_with_zero_offsets():
    anchors = _anchors()
    box = cxcywh_to_xyxy(anchors[1000:1001])
    offsets, labels = TargetEncoder(anchors)(box, torch.tensor([7]))
    assert labels[1000] == 7
    assert offsets[1000].abs().max() < 1e-5


def test_two_boxes_wanting_one_anchor_the_later_wins():
    anchors = _anchors()
    box = cxcywh_to_xyxy(anchors[500:501])
    boxes = torch.cat((box, box))
    matched, positive = match_anchors(boxes, anchor_columns(cxcywh_to_xyxy(anchors)))
    assert positive[500] and matched[500] == 1
    _, labels = TargetEncoder(anchors)(boxes, torch.tensor([3, 5]))
    assert labels[500] == 5


def test_an_anchor_is_positive_only_above_iou_one_half():
    """Dyadic coordinates make every IoU exact: 0.5 is negative, 0.5 + 2^-9 positive, 0.5 - 2^-9
    negative (the reference's ``IoU > 0.5``); the box's own best anchor is positive whatever its IoU."""
    box = torch.tensor([[0.0, 0.0, 0.5, 0.5]])
    anchors = torch.tensor([
        [0.0, 0.0, 0.5, 0.5],  # the box itself: its best anchor, forced
        [0.0, 0.0, 0.5, 0.25],  # IoU 0.5 exactly
        [0.0, 0.0, 0.5, 0.25 + 2**-10],  # IoU 0.5 + 2^-9
        [0.0, 0.0, 0.5, 0.25 - 2**-10],  # IoU 0.5 - 2^-9
        [0.0, 0.25, 0.5, 0.75],  # IoU 1/3
    ])
    coords = anchor_columns(anchors)
    areas = (coords[2] - coords[0]) * (coords[3] - coords[1])
    iou = iou_with_anchors(box, coords, areas)[0]
    assert iou[:4].tolist() == [1.0, 0.5, 0.5 + 2**-9, 0.5 - 2**-9] and iou[4] == pytest.approx(1 / 3)
    matched, positive = match_anchors(box, coords)
    assert positive.tolist() == [True, False, True, False, False] and matched.tolist() == [0] * 5
    _, labels = TargetEncoder(xyxy_to_cxcywh(anchors))(box, torch.tensor([4]))
    assert labels.tolist() == [4, 0, 4, 0, 0]
    reference_labels = reference_encode(xyxy_to_cxcywh(anchors), box, torch.tensor([4]))[1]
    assert reference_labels.tolist() == labels.tolist()
    _, weaker = match_anchors(box, coords, iou_threshold=0.5 - 2**-8)  # the threshold is a parameter
    assert weaker.tolist() == [True, True, True, True, False]


def test_tiny_box_is_forced_onto_its_best_anchor():
    anchors = _anchors()
    box = torch.tensor([[0.50, 0.50, 0.51, 0.51]])  # IoU far below 0.5 with every anchor
    _, labels = TargetEncoder(anchors)(box, torch.tensor([2]))
    assert (labels == 2).sum() == 1


@pytest.mark.parametrize("seed", range(4))
def test_equal_to_reference_encode(seed):
    generator = torch.Generator().manual_seed(seed)
    anchors = _anchors()
    boxes = _random_boxes(generator, 1 + seed * 5)
    labels = torch.randint(1, 81, (boxes.shape[0],), generator=generator)
    ref_boxes, ref_labels = reference_encode(anchors, boxes, labels)
    offsets, got_labels = TargetEncoder(anchors)(boxes, labels)
    assert torch.equal(got_labels, ref_labels)
    positive = ref_labels > 0
    decoded = decode_offsets(offsets[positive], anchors[positive])
    assert torch.allclose(decoded, cxcywh_to_xyxy(ref_boxes[positive]), atol=1e-5)


def test_chunked_matching_equals_one_chunk():
    generator = torch.Generator().manual_seed(3)
    boxes = _random_boxes(generator, 30)
    coords = anchor_columns(cxcywh_to_xyxy(_anchors()))
    whole = match_anchors(boxes, coords, chunk_elements=10**9)
    chunked = match_anchors(boxes, coords, chunk_elements=1)  # 1024-anchor chunks
    assert torch.equal(whole[0][whole[1]], chunked[0][chunked[1]]) and torch.equal(whole[1], chunked[1])


def test_round_trip_encode_decode():
    anchors = _anchors()
    generator = torch.Generator().manual_seed(1)
    boxes = _random_boxes(generator, 5)
    offsets, labels = TargetEncoder(anchors)(boxes, torch.arange(1, 6))
    positive = labels > 0
    decoded = decode_offsets(offsets[positive], anchors[positive])
    assert torch.allclose(decoded, boxes[labels[positive] - 1], atol=1e-5)
    assert torch.allclose(xyxy_to_cxcywh(cxcywh_to_xyxy(anchors)), anchors, atol=1e-6)


def test_encode_batch_stacks_images():
    encoder = TargetEncoder(_anchors())
    generator = torch.Generator().manual_seed(2)
    boxes = [_random_boxes(generator, 3), torch.zeros(0, 4)]
    labels = [torch.tensor([1, 2, 3]), torch.zeros(0, dtype=torch.long)]
    targets = encoder.encode_batch(boxes, labels)
    offsets, anchor_labels = targets.offsets, targets.labels
    assert offsets.shape == (2, 8732, 4) and anchor_labels.shape == (2, 8732)
    assert anchor_labels[0].any() and not anchor_labels[1].any()
    # the sizes the loss gathers: the most positives of any image, and three negatives per positive
    positives = int((anchor_labels[0] > 0).sum())
    assert targets.sizes.get() == [positives, 3 * positives]


def test_the_cuda_chunking_gives_the_cpu_chunkings_targets_bitwise():
    """On CUDA an 8 MP image is matched in one or a few large chunks instead of ~1,300 cache-sized
    ones (kernel launches); the encoder's targets must not change."""
    from types import SimpleNamespace

    from ssd.matching import CHUNK_ELEMENTS, CUDA_CHUNK_ELEMENTS, chunk_elements_for

    assert chunk_elements_for(SimpleNamespace(type="cuda")) == CUDA_CHUNK_ELEMENTS >= 40 * 776_740
    assert chunk_elements_for(torch.device("cpu")) == CHUNK_ELEMENTS == TargetEncoder(_anchors()).chunk_elements
    generator = torch.Generator().manual_seed(3)
    boxes = [_random_boxes(generator, count) for count in (1, 40, 300)]
    labels = [torch.randint(1, 5, (len(b),), generator=generator) for b in boxes]
    cache_sized, small = TargetEncoder(_anchors()), TargetEncoder(_anchors(), chunk_elements=1)  # 1,024-anchor chunks
    large = TargetEncoder(_anchors(), chunk_elements=CUDA_CHUNK_ELEMENTS)
    for b, l in zip(boxes, labels):
        want = large(b, l)
        for encoder in (cache_sized, small):
            got = encoder(b, l)
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_no_ground_truth_matches_nothing_and_gives_typed_empty_targets():
    coords = anchor_columns(cxcywh_to_xyxy(_anchors()[:10]))
    matched, positive = match_anchors(torch.zeros(0, 4), coords)
    assert matched.dtype == torch.long and positive.dtype == torch.bool
    assert matched.tolist() == [0] * 10 and positive.tolist() == [False] * 10


def test_matching_keeps_the_boxes_precision_at_the_threshold():
    """float64 boxes are matched in float64: an IoU of 0.5 + 2^-40 is above 0.5, which float32 would lose."""
    box = torch.tensor([[0.0, 0.0, 0.5, 0.5]], dtype=torch.float64)
    anchors = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.25 + 2**-38]], dtype=torch.float64)
    _, positive = match_anchors(box, anchor_columns(anchors))
    assert positive.tolist() == [True, True]


def test_matching_and_encoding_stay_on_the_anchors_device():
    """On the meta device (shapes only), as a stand-in for a GPU: nothing is created on the CPU."""
    anchors = _anchors()[:50].to("meta")
    boxes, labels = torch.rand(3, 4, device="meta"), torch.ones(3, dtype=torch.long, device="meta")
    matched, positive = match_anchors(boxes, anchor_columns(cxcywh_to_xyxy(anchors)))
    assert matched.device.type == positive.device.type == "meta"
    offsets, anchor_labels = TargetEncoder(anchors)(boxes, labels)
    assert offsets.device.type == anchor_labels.device.type == "meta" and offsets.shape == (50, 4)
    empty = TargetEncoder(anchors)(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert all(t.device.type == "meta" for t in empty)
    unmatched = match_anchors(torch.zeros(0, 4, device="meta"), anchor_columns(cxcywh_to_xyxy(anchors)))
    assert all(t.device.type == "meta" for t in unmatched)


def test_targets_are_float32_offsets_zero_off_the_positives_and_long_labels_whatever_the_input_types():
    anchors = _anchors()
    box = cxcywh_to_xyxy(anchors[1000:1001]).double() + 0.003  # near an anchor, not on it
    offsets, labels = TargetEncoder(anchors)(box, torch.tensor([7], dtype=torch.int32))
    assert offsets.dtype == torch.float32 and labels.dtype == torch.long
    positive = labels > 0
    assert positive.sum() == 3 and (offsets[~positive] == 0).all()
    expected = encode_offsets(xyxy_to_cxcywh(box.float()).expand(int(positive.sum()), 4), anchors[positive])
    torch.testing.assert_close(offsets[positive], expected, rtol=1e-5, atol=1e-5)
    moved = TargetEncoder(anchors, iou_threshold=0.4, variances=(0.2, 0.1)).to("cpu")
    assert (moved.iou_threshold, moved.variances) == (0.4, (0.2, 0.1))
