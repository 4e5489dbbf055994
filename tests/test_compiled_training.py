"""``--compile``: the compiled training step (its own module, so that a parallel run starts its compile first)."""
from __future__ import annotations

import pytest
import torch

from support import ONE_BOX, train_epoch

from ssd.models import build_model
from ssd.models.checkpointing import set_activation_checkpointing


@pytest.mark.slow
def test_compiled_checkpointed_training_step_equals_the_eager_plain_one(tiny_config):
    """``--compile`` with ``--activation-checkpointing all`` and channels-last, through the training loop's own
    step, on SSD-ResNet50 (the 8 MP network): the eager model without checkpointing's loss, gradients, BatchNorm
    statistics (moved once, not twice) and updated weights. One compile (most of a minute) checks all of it, in
    float64: BatchNorm over the tiny config's 2x2 maps amplifies the summation order of compiled kernels (a few
    percent of some float32 gradients), not the rounding of float64."""
    images = torch.randn(2, 3, 64, 128, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    models, losses = [], []
    for mode, compiled in (("off", False), ("all", True)):
        torch.manual_seed(0)
        model = build_model(tiny_config, 3).double().to(memory_format=torch.channels_last)
        set_activation_checkpointing(model, mode)
        losses.append(train_epoch(torch.compile(model) if compiled else model, tiny_config, [(images, ONE_BOX)], channels_last=True).loss)
        models.append(model)
    plain, compiled_model = models
    assert losses[0] > 0 and losses[1] == pytest.approx(losses[0], rel=1e-12)
    for got, expected in zip(compiled_model.parameters(), plain.parameters()):
        torch.testing.assert_close(got.grad, expected.grad, rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)  # updated by the same step
    for got, expected in zip(compiled_model.buffers(), plain.buffers()):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)  # moved once, not twice
    assert int(compiled_model.feature_extractor.feature_extractor[1].num_batches_tracked) == 1
