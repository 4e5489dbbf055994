import inspect
import math

import pytest
import torch
from torchvision.ops import box_iou

from ssd.anchors import default_boxes
from ssd.box_ops import decode_offsets, encode_offsets, xyxy_to_cxcywh
from ssd.config import load_config
from ssd.decoding import PER_GROUP_FROM, DecodeSettings, nms_per_group, postprocess
from reference_impl import reference_decode


def _anchors():
    return default_boxes(load_config("coco_300x300"))


def test_all_background_gives_no_detections():
    anchors = _anchors()
    confs = torch.zeros(2, 5, anchors.shape[0])
    confs[:, 0] = 20.0
    results = postprocess(torch.zeros(2, 4, anchors.shape[0]), confs, anchors)
    assert len(results) == 2
    assert all(r["boxes"].shape == (0, 4) and r["scores"].numel() == 0 and r["labels"].numel() == 0 for r in results)


def test_round_trip_and_pixel_boxes():
    anchors = _anchors()
    box = torch.tensor([[0.2, 0.3, 0.5, 0.7]])
    index = 4000
    locs = torch.zeros(1, 4, anchors.shape[0])
    locs[0, :, index] = encode_offsets(xyxy_to_cxcywh(box), anchors[index : index + 1])[0]
    confs = torch.zeros(1, 3, anchors.shape[0])
    confs[0, 0] = 10.0
    confs[0, 2, index] = 20.0
    (result,) = postprocess(locs, confs, anchors, image_sizes=[(200, 400)])
    assert result["labels"].tolist() == [2]
    assert torch.allclose(result["boxes"], torch.tensor([[80.0, 60.0, 200.0, 140.0]]), atol=1e-3)
    (normalised,) = postprocess(locs, confs, anchors)
    assert torch.allclose(normalised["boxes"], box, atol=1e-5)


def _sorted_detections(boxes, scores, labels):
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), int(labels[i])))
    return boxes[order], scores[order], labels[order]


@pytest.mark.parametrize("seed", range(3))
def test_equal_to_reference_decode(seed):
    generator = torch.Generator().manual_seed(seed)
    anchors = _anchors()
    locs = torch.randn(2, 4, anchors.shape[0], generator=generator) * 0.5
    confs = torch.randn(2, 6, anchors.shape[0], generator=generator) * 3
    expected = reference_decode(anchors, locs, confs, nms_threshold=0.5, max_output=100)
    results = postprocess(locs, confs, anchors, nms_threshold=0.5, max_detections=100)
    for got, (ref_boxes, ref_scores, ref_labels) in zip(results, expected):
        assert got["scores"].shape == ref_scores.shape
        boxes, scores, labels = _sorted_detections(ref_boxes, ref_scores, ref_labels)
        assert torch.allclose(got["scores"], scores, atol=1e-6)
        assert torch.equal(got["labels"], labels)
        assert torch.allclose(got["boxes"], boxes, atol=1e-5)


def test_limits_are_parameters():
    anchors = _anchors()
    generator = torch.Generator().manual_seed(0)
    locs = torch.randn(1, 4, anchors.shape[0], generator=generator)
    confs = torch.randn(1, 4, anchors.shape[0], generator=generator)
    (few,) = postprocess(locs, confs, anchors, max_detections=7)
    assert few["scores"].numel() == 7
    (strict,) = postprocess(locs, confs, anchors, score_threshold=0.99)
    assert strict["scores"].numel() == 0
    (per_class,) = postprocess(locs, confs, anchors, max_per_class=3, nms_threshold=1.0, max_detections=500)
    assert per_class["scores"].numel() == 9  # 3 classes x 3, nothing suppressed
    assert torch.all(per_class["scores"][:-1] >= per_class["scores"][1:])


def test_overflowing_boxes_are_dropped():
    anchors = _anchors()
    locs = torch.zeros(1, 4, anchors.shape[0])
    locs[0, 2:, 10] = 1000.0  # exp(200) overflows float32
    confs = torch.zeros(1, 2, anchors.shape[0])
    confs[0, 1, 10] = 30.0
    confs[0, 1, 20] = 20.0
    (result,) = postprocess(locs, confs, anchors, max_per_class=2)
    assert torch.isfinite(result["boxes"]).all() and result["scores"].numel() == 1


def test_boxes_that_would_overflow_in_pixels_are_dropped():
    anchors = _anchors()
    locs = torch.zeros(1, 4, anchors.shape[0])
    locs[0, 2:, 10] = 435.0  # exp(87) ~ 6e37: finite, but not once scaled to pixels
    confs = torch.zeros(1, 2, anchors.shape[0])
    confs[0, 1, 10] = 30.0
    confs[0, 1, 20] = 20.0
    (result,) = postprocess(locs, confs, anchors, max_per_class=2, image_sizes=[(2160, 3840)])
    assert result["scores"].numel() == 1
    widths = result["boxes"][:, 2:] - result["boxes"][:, :2]
    assert torch.isfinite(result["boxes"]).all() and torch.isfinite(widths).all()


def test_nms_per_group_stays_exact_with_a_far_out_box_where_float32_offsets_do_not():
    """Groups of nearly equal boxes 1/1000 apart, and one untrained model's box 50,000 image sizes away:
    torchvision's per-group offsets (its path for up to 1,000 CPU boxes) then exceed float32's precision."""
    from torchvision.ops import batched_nms, nms

    generator = torch.Generator().manual_seed(0)
    boxes, groups = [], []
    for group in range(10):
        shift = torch.arange(90, dtype=torch.float64)[:, None] * 1e-3
        boxes.append(torch.tensor([[0.40, 0.40, 0.50, 0.50]], dtype=torch.float64) + torch.cat((shift, shift * 0, shift, shift * 0), 1))
        groups.append(torch.full((90,), group))
    boxes, groups = torch.cat(boxes), torch.cat(groups)
    boxes[0] = torch.tensor([5e4, 5e4, 5e4 + 0.1, 5e4 + 0.1])  # the wild box
    scores = torch.rand(len(boxes), generator=generator)
    exact = torch.cat([torch.nonzero(groups == g).flatten()[nms(boxes[groups == g], scores[groups == g].double(), 0.5)] for g in range(10)])
    exact = exact[scores[exact].argsort(descending=True)]
    assert len(boxes) < PER_GROUP_FROM[0]  # nms_per_group's shifted groups, and torchvision's on the CPU
    assert not torch.equal(batched_nms(boxes.float(), scores, groups, 0.5), exact)  # the hazard is real
    assert torch.equal(nms_per_group(boxes.float(), scores, groups, 0.5), exact)
    # the same groups among enough boxes to be taken group by group (far off, in groups of their own)
    crowd = PER_GROUP_FROM[0]
    filler = torch.tensor([[7.0, 7.0, 7.5, 7.5]], dtype=torch.float64).repeat(crowd, 1) + torch.arange(crowd)[:, None] * 0.01
    many = nms_per_group(torch.cat((boxes, filler)).float(), torch.cat((scores, torch.full((crowd,), -1.0))), torch.cat((groups, 10 + torch.arange(crowd))), 0.5)
    assert torch.equal(many[: len(exact)], exact) and len(many) == len(exact) + crowd


def test_nms_per_group_takes_groups_one_by_one_from_per_group_from_boxes(monkeypatch):
    """The dispatch at its boundary on the CPU: PER_GROUP_FROM[0] - 1 boxes are shifted, PER_GROUP_FROM[0] taken
    group by group; ties in score keep the boxes' order (three scores among thousands of separate boxes)."""
    import ssd.decoding as decoding

    calls = []
    for name in ("_nms_shifted_groups", "_nms_each_group"):
        monkeypatch.setattr(decoding, name, lambda *args, name=name, kernel=getattr(decoding, name): calls.append(name) or kernel(*args))
    for count, kernel in ((PER_GROUP_FROM[0] - 1, "_nms_shifted_groups"), (PER_GROUP_FROM[0], "_nms_each_group")):
        boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0]]).repeat(count, 1) + torch.arange(count)[:, None] * 2.0  # none overlaps
        scores = torch.arange(count).remainder(3).float()
        kept = nms_per_group(boxes, scores, torch.arange(count).remainder(5), 0.5)
        assert calls.pop() == kernel and not calls
        assert kept.tolist() == scores.sort(descending=True, stable=True).indices.tolist()


# -- the decoding rules at their limits -------------------------------------------------------------
def _exact_outputs(anchors_xyxy: torch.Tensor, class_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Anchors, zero offsets (so each decoded box is its anchor, exactly for dyadic coordinates) and
    confidences with background logit 0 and ``class_logits [C-1, A]``: locs ``[1, 4, A]``, confs ``[1, C, A]``."""
    anchors = xyxy_to_cxcywh(anchors_xyxy)
    confs = torch.cat((torch.zeros(1, anchors.shape[0]), class_logits))[None]
    return anchors, torch.zeros(1, 4, anchors.shape[0]), confs


def test_nms_suppresses_at_the_threshold_as_the_reference():
    """The reference keeps ``IoU < 0.5``: a box at IoU exactly 0.5 with a better one goes, one a float32
    step below stays, on its own and through postprocess, as in the reference's decoding."""
    best = [0.0, 0.0, 0.5, 0.5]
    step = 2.0**-25  # float32's spacing just below 0.5
    others = {  # box -> its IoU with ``best`` (exact)
        (0.0, 0.0, 0.5, 0.25): 0.5,
        (0.0, 0.0, 0.5, 0.25 + 2**-10): 0.5 + 2**-9,
        (0.0, 0.0, 0.5, 0.25 - 2 * step): 0.5 - 4 * step,  # a few float32 steps below
        (0.0, 0.0, 0.5, 0.25 - step / 2): 0.5 - step,  # one float32 step below
    }
    kept_expected = [False, False, True, True]
    # both ways of nms_per_group: a pair alone (groups shifted, float64), and among PER_GROUP_FROM other
    # boxes (group by group, float32): far off in groups of their own, scoring below the pair
    crowd = PER_GROUP_FROM[0]
    filler = torch.tensor([[5.0, 5.0, 5.5, 5.5]]).repeat(crowd, 1) + torch.arange(crowd)[:, None] * 0.001
    for (box, iou), kept in zip(others.items(), kept_expected):
        boxes = torch.tensor([best, box], dtype=torch.float64)
        assert float(box_iou(boxes[:1], boxes[1:])) == iou
        for extra in (0, crowd):
            many = torch.cat((boxes.float(), filler[:extra]))
            scores = torch.cat((torch.tensor([0.9, 0.8]), torch.full((extra,), 0.1)))
            for groups, expected in ((torch.tensor([0, 0]), [0, 1] if kept else [0]), (torch.tensor([0, 1]), [0, 1])):  # other class
                survivors = nms_per_group(many, scores, torch.cat((groups, 2 + torch.arange(extra))), 0.5)
                assert survivors[:len(expected)].tolist() == expected and len(survivors) == len(expected) + extra, (box, extra)
    anchors, locs, confs = _exact_outputs(torch.tensor([best, [0.0, 0.0, 0.5, 0.25], [0.0, 0.0, 0.5, 0.25 - 2**-10]]), torch.tensor([[3.0, 2.0, 1.0]]))
    (result,) = postprocess(locs, confs, anchors)
    assert result["boxes"].tolist() == [best, [0.0, 0.0, 0.5, 0.25 - 2**-10]]
    ((ref_boxes, ref_scores, _),) = reference_decode(anchors, locs, confs)
    assert torch.equal(result["boxes"], ref_boxes[ref_scores.argsort(descending=True)])


def test_score_threshold_is_strict_and_0_05_by_default():
    anchors, locs, confs = _exact_outputs(
        torch.tensor([[0.0, 0.0, 0.25, 0.25], [0.5, 0.5, 0.75, 0.75], [0.0, 0.5, 0.25, 0.75]]),
        torch.tensor([[math.log(0.0501 / 0.9499), math.log(0.05 / 0.95), math.log(0.0499 / 0.9501)]]),
    )
    scores = torch.softmax(confs, dim=1)[0, 1]
    (default,) = postprocess(locs, confs, anchors)
    assert default["scores"].tolist() == [float(scores[0])] and float(scores[2]) < 0.05 < float(scores[0])
    at_score = float(scores[1])  # the threshold equal to a score leaves that score out
    (strict,) = postprocess(locs, confs, anchors, score_threshold=at_score)
    assert strict["scores"].tolist() == [float(scores[0])]
    (below,) = postprocess(locs, confs, anchors, score_threshold=float(torch.nextafter(scores[1], torch.tensor(0.0))))
    assert below["scores"].tolist() == [float(scores[0]), at_score]


def _grid(cells: int) -> torch.Tensor:
    """``cells x cells`` disjoint boxes, none overlapping another (NMS keeps them all)."""
    corner = torch.stack(torch.meshgrid(torch.arange(cells), torch.arange(cells), indexing="ij"), -1).reshape(-1, 2) / cells
    return torch.cat((corner, corner + 0.5 / cells), dim=1)


def test_default_limits_200_per_class_and_200_or_500_per_image():
    """256 disjoint candidates in each of 3 classes: the best 200 per class survive, then the best 200 (the
    reference's COCO evaluation) or 500 (MLPerf) of the image; one more or one less would show."""
    boxes = _grid(16).repeat(3, 1)  # 256 anchors per class
    logits = torch.full((3, 3 * 256), -30.0)
    for c in range(3):  # class c scores on its own 256 anchors, distinct scores in (0.2, 0.95)
        logits[c, c * 256 : (c + 1) * 256] = torch.linspace(-1.4, 3.0, 3 * 256)[c::3]
    anchors, locs, confs = _exact_outputs(boxes, logits)
    ranked = torch.softmax(confs[0], dim=0)[1:]  # [3, 256]
    top200 = ranked.topk(200, dim=1).values
    for settings, limit in ((DecodeSettings(), 200), (DecodeSettings.reference(), 200), (DecodeSettings.mlperf(), 500)):
        (result,) = settings.decode(locs, confs, anchors, None)
        expected = top200.flatten().sort(descending=True).values[:limit]
        assert result["scores"].numel() == limit and torch.equal(result["scores"], expected)
    (per_class,) = postprocess(locs, confs, anchors, max_detections=1000)
    assert torch.bincount(per_class["labels"]).tolist() == [0, 200, 200, 200]
    assert (DecodeSettings().score_threshold, DecodeSettings().nms_threshold) == (0.05, 0.5)
    defaults = inspect.signature(postprocess).parameters
    assert [defaults[k].default for k in ("score_threshold", "nms_threshold", "max_per_class", "max_detections")] == [0.05, 0.5, 200, 200]


def test_postprocess_defaults_keep_200_per_image():
    boxes = _grid(16).repeat(2, 1)  # 512 anchors: 256 for each of two classes
    logits = torch.full((2, 512), -30.0)
    logits[0, :256], logits[1, 256:] = torch.linspace(-1.0, 2.0, 256), torch.linspace(-1.1, 1.9, 256)
    anchors, locs, confs = _exact_outputs(boxes, logits)
    (result,) = postprocess(locs, confs, anchors)
    assert result["scores"].numel() == 200 and torch.bincount(result["labels"]).tolist()[1:] == [104, 96]


def test_images_of_a_batch_are_decoded_independently_whatever_the_batch_and_class_counts():
    """Five images (more than the three classes) with the same outputs: each gets the same detections,
    so no group of one image's class is merged with another image's in NMS."""
    anchors, locs, confs = _exact_outputs(torch.tensor([[0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.55]]), torch.tensor([[2.0, 1.0], [1.5, 0.5]]))
    single = postprocess(locs, confs, anchors)[0]
    batch = postprocess(locs.expand(5, -1, -1), confs.expand(5, -1, -1), anchors)
    assert single["labels"].tolist() == [1, 2]  # one box per class after NMS
    for result in batch:
        assert all(torch.equal(result[key], single[key]) for key in ("boxes", "scores", "labels"))


def test_a_box_less_than_max_coordinate_away_is_kept_one_at_it_dropped(monkeypatch):
    from ssd import decoding

    anchors, locs, confs = _exact_outputs(torch.tensor([[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.7, 0.7]]), torch.tensor([[3.0, 2.0]]))
    for edge, kept in ((2.0**19, 2), (2.0**20, 1)):  # 524,288 < 1e6 < 1,048,576 normalised units
        locs[0, 0, 0] = (edge - 0.2) / (0.1 * 0.2)  # moves box 0's centre near ``edge``
        (result,) = postprocess(locs, confs, anchors)
        assert result["scores"].numel() == kept, edge
    far = float(decode_offsets(locs.transpose(1, 2), anchors)[0, 0].abs().max())  # box 0's farthest coordinate
    for limit, kept in ((far, 1), (float(torch.tensor(far).nextafter(torch.tensor(math.inf))), 2)):
        monkeypatch.setattr(decoding, "MAX_COORDINATE", limit)
        (result,) = postprocess(locs, confs, anchors)
        assert result["scores"].numel() == kept, limit


def test_settings_reach_postprocess_and_presets_take_their_nms_threshold():
    generator = torch.Generator().manual_seed(4)
    anchors = _anchors()
    locs, confs = torch.randn(2, 4, anchors.shape[0], generator=generator), torch.randn(2, 5, anchors.shape[0], generator=generator) * 3
    settings = DecodeSettings(score_threshold=0.3, nms_threshold=0.3, max_per_class=6, max_detections=9)
    sizes = [(50, 70), (30, 90)]
    explicit = postprocess(locs, confs, anchors, score_threshold=0.3, nms_threshold=0.3, max_per_class=6, max_detections=9, image_sizes=sizes)
    for got, expected in zip(settings.decode(locs, confs, anchors, sizes), explicit):
        assert all(torch.equal(got[key], expected[key]) for key in ("boxes", "scores", "labels"))
    assert DecodeSettings.mlperf(0.45) == DecodeSettings(nms_threshold=0.45, max_detections=500)
    assert DecodeSettings.reference() == DecodeSettings()
    assert DecodeSettings.reference(0.6) == DecodeSettings(nms_threshold=0.6)
    assert DecodeSettings.mlperf() == DecodeSettings(0.05, 0.5, 200, 500)


def test_each_setting_decides_on_its_own():
    """Boxes 0 and 1 overlap at IoU 0.4 (class 1); box 2 scores 0.2 (class 2); box 3 (class 1) is apart."""
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.2], [0.6, 0.6, 0.8, 0.8], [0.6, 0.0, 0.9, 0.3]])
    logits = torch.tensor([[3.0, 2.5, -9.0, 1.0], [-9.0, -9.0, math.log(0.2 / 0.8), -9.0]])
    anchors, locs, confs = _exact_outputs(boxes, logits)

    def labels_of(settings: DecodeSettings, sizes=None):
        (result,) = settings.decode(locs, confs, anchors, sizes)
        return result

    assert len(labels_of(DecodeSettings())["scores"]) == 4  # IoU 0.4 < 0.5, score 0.2 > 0.05
    assert len(labels_of(DecodeSettings(nms_threshold=0.4))["scores"]) == 3  # at IoU 0.4: suppressed
    assert len(labels_of(DecodeSettings(score_threshold=0.2))["scores"]) == 3  # box 2 scores 0.19998
    assert len(labels_of(DecodeSettings(max_per_class=1))["scores"]) == 2
    assert len(labels_of(DecodeSettings(max_detections=2))["scores"]) == 2
    assert labels_of(DecodeSettings(), [(10, 20)])["boxes"][0].tolist() == [0.0, 0.0, 10.0, 5.0]


def test_variances_are_the_decoders():
    anchors, locs, confs = _exact_outputs(torch.tensor([[0.25, 0.25, 0.75, 0.75]]), torch.tensor([[3.0]]))
    locs[0, :, 0] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    (default,) = postprocess(locs, confs, anchors)
    (other,) = postprocess(locs, confs, anchors, variances=(0.2, 0.2))
    assert default["boxes"].tolist() == [[0.30000001192092896, 0.25, 0.800000011920929, 0.75]]  # 0.1 x 0.5 = 0.05 right
    torch.testing.assert_close(other["boxes"], torch.tensor([[0.35, 0.25, 0.85, 0.75]]))
