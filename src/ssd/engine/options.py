"""What a training run is configured by, with the defaults in one place (the CLI's flags take them from here).

This module imports nothing heavy: ``ssd train --help`` reads it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_CONFIG = "baseline_8MP_ss_scales_fm1_5x5_all"  # the MLPerf Automotive model
REFERENCE_LR = 2.6e-3  # for a world size x per-process batch of 32 (ssd.engine.schedule scales it)
OPTIMIZERS = ("sgd", "adamw")
# the reference's SSD augmentation, or flips only (fast from-scratch training on easy data, the demo)
AUGMENTATIONS = ("ssd", "flip")


@dataclass
class TrainOptions:
    """Everything a training run is configured by (the CLI's flags, as values).

    ``log_path`` None: ``save_folder/tensorboard``. ``resume`` None: ``save_folder/last.pth`` when
    it exists. ``model`` (an architecture name) is checked against the config's.
    """

    config: str = DEFAULT_CONFIG
    data_path: Path = Path("/cognata")
    dataset: str = "cognata"
    model: str | None = None
    epochs: int = 65
    batch_size: int = 32
    lr: float = REFERENCE_LR
    momentum: float = 0.9
    weight_decay: float = 5e-4
    multistep: list[int] = field(default_factory=lambda: [43, 54])
    optimizer: str = "sgd"
    augment: str = "ssd"
    warmup: int = 0
    no_decay_bn: bool = False
    precision: str = "fp32"  # a name of ssd.choices.PRECISION_NAMES ("amp": fp16 on CUDA, bf16 on the CPU)
    activation_checkpointing: str = "off"
    channels_last: bool = True
    cudnn_benchmark: bool = True
    compile: bool = False
    num_workers: int = 4
    save_folder: Path = Path("trained_models")
    save_name: str = "SSD"
    log_path: Path | None = None
    checkpoint_freq: int = 1
    pretrained_model: Path | None = None
    resume: Path | None = None
    backbone_weights: str | None = None
    seed: int = 0
    device: str | None = None
    local_rank: int | None = None
    nms_threshold: float = 0.5
    strict: bool = False
    show_progress: bool = True

    @property
    def tensorboard_dir(self) -> Path:
        return self.log_path if self.log_path is not None else self.save_folder / "tensorboard"


DEFAULTS = TrainOptions()
