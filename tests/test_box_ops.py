"""Box conversions and offset coding, by hand-computed values, on single boxes and batches of any rank."""
from __future__ import annotations

import torch

from ssd.box_ops import cxcywh_to_xyxy, decode_offsets, encode_offsets, xyxy_to_cxcywh


def test_conversions_by_hand_on_batches_of_any_rank():
    xyxy = torch.tensor([[0.25, 0.5, 0.75, 1.0], [0.0, 0.0, 0.5, 0.25]])
    cxcywh = torch.tensor([[0.5, 0.75, 0.5, 0.5], [0.25, 0.125, 0.5, 0.25]])
    for shape in ((2, 4), (1, 2, 4), (2, 1, 1, 4)):  # a conversion acts on the last dimension only
        assert torch.equal(xyxy_to_cxcywh(xyxy.reshape(shape)), cxcywh.reshape(shape))
        assert torch.equal(cxcywh_to_xyxy(cxcywh.reshape(shape)), xyxy.reshape(shape))


def test_offset_coding_by_hand_with_the_variances():
    anchor = torch.tensor([[0.5, 0.5, 0.25, 0.5]])
    box = torch.tensor([[0.525, 0.45, 0.25 * torch.e, 0.5 / torch.e]])
    expected = torch.tensor([[0.025 / 0.25 / 0.1, -0.05 / 0.5 / 0.1, 1 / 0.2, -1 / 0.2]])  # (1, -1, 5, -5)
    for shape in ((1, 4), (1, 1, 4)):
        offsets = encode_offsets(box.reshape(shape), anchor.reshape(shape))
        torch.testing.assert_close(offsets, expected.reshape(shape))
        torch.testing.assert_close(decode_offsets(offsets, anchor.reshape(shape)), cxcywh_to_xyxy(box).reshape(shape))
    torch.testing.assert_close(encode_offsets(box, anchor, variances=(0.2, 0.5)), torch.tensor([[0.5, -0.5, 2.0, -2.0]]))
