"""The reference's learning-rate recipe: x0.1 at milestone epochs, plus optional linear warm-up."""
from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LambdaLR

from ssd.engine.options import OPTIMIZERS

REFERENCE_BATCH = 32


def scaled_learning_rate(base_lr: float, batch_size: int, world_size: int) -> float:
    """lr = base * world_size * per-process batch / 32, as the reference scales it."""
    return base_lr * world_size * batch_size / REFERENCE_BATCH


class WarmupMultiStep:
    """lr factor for an iteration: linear warm-up over ``warmup`` iterations, x``gamma`` per milestone.

    A callable object rather than a closure so ``LambdaLR.state_dict`` saves its settings.
    """

    def __init__(self, milestones: list[int], iterations_per_epoch: int, warmup: int = 0, gamma: float = 0.1):
        self.milestones = sorted(milestones)
        self.iterations_per_epoch = max(1, iterations_per_epoch)
        self.warmup = warmup
        self.gamma = gamma

    def __call__(self, iteration: int) -> float:
        epoch = iteration // self.iterations_per_epoch
        factor = self.gamma ** sum(1 for milestone in self.milestones if epoch >= milestone)
        if iteration < self.warmup:
            factor *= (iteration + 1) / (self.warmup + 1)
        return factor




def build_optimizer(
    model: torch.nn.Module, lr: float, momentum: float, weight_decay: float, no_decay_bn: bool, name: str = "sgd", fused: bool = False
) -> torch.optim.Optimizer:
    """The reference's SGD with Nesterov momentum, or AdamW (fast from-scratch training, e.g. the demo).

    ``no_decay_bn`` exempts BatchNorm weights and all biases from weight decay. ``fused``: one kernel
    for the whole update, which also takes the fp16 gradient scaler's overflow flag on the device (an
    unfused step reads it on the host, waiting for the whole backward pass); the trainer fuses on CUDA.
    """
    if no_decay_bn:
        decay, no_decay = [], []
        for module in model.modules():
            for param_name, param in module.named_parameters(recurse=False):
                exempt = isinstance(module, torch.nn.modules.batchnorm._BatchNorm) or param_name == "bias"
                (no_decay if exempt else decay).append(param)
        params: list = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    else:
        params = [{"params": list(model.parameters()), "weight_decay": weight_decay}]
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, fused=fused)
    if name != "sgd":
        raise ValueError(f"unknown optimizer {name!r}: expected one of {OPTIMIZERS}")
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=True, fused=fused)


IMPLEMENTATION_FLAGS = ("fused", "foreach", "capturable", "differentiable")  # how a step computes, not what it has learnt


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load a saved optimizer ``state``, keeping how this run's ``optimizer`` computes its steps.

    ``Optimizer.load_state_dict`` takes every group setting from the file, ``fused`` included, so a
    checkpoint of a CPU run (unfused) resumed on CUDA (fused) ran unfused steps on an optimizer the
    fp16 scaler hands its scale to, and the first step failed an assertion. The flags are set
    before loading so that PyTorch places the loaded state (Adam's step counts) as they require.
    """
    saved_groups = state["param_groups"]
    if len(saved_groups) == len(optimizer.param_groups):  # otherwise PyTorch's own error names the mismatch
        saved_groups = [{**saved, **{flag: group[flag] for flag in IMPLEMENTATION_FLAGS if flag in group}}
                        for saved, group in zip(saved_groups, optimizer.param_groups)]
    optimizer.load_state_dict({**state, "param_groups": saved_groups})


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: WarmupMultiStep) -> LambdaLR:
    """A per-iteration scheduler following ``schedule``."""
    return LambdaLR(optimizer, schedule)
