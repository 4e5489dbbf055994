"""``ssd train`` and the seed's ``train.py``: the reference's flags and spellings, plus ours.

Defaults come from :class:`ssd.engine.options.TrainOptions`; ``--model`` choices from the
architecture table and ``--dataset`` from the dataset kinds. Only light modules are imported here.
"""
from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from ssd.architectures import architecture_names
from ssd.choices import ACTIVATION_CHECKPOINTING
from ssd.cli.flags import add_config, add_cudnn_benchmark, add_data, add_device, add_precision
from ssd.cli.ranges import COUNT, EPOCH, IOU, LEARNING_RATE, MOMENTUM, RANK, SEED, WEIGHT_DECAY, WORKERS
from ssd.engine.options import AUGMENTATIONS, DEFAULTS, OPTIMIZERS, TrainOptions


def save_name(value: str) -> str:
    """``--save-path test_8mp.pth`` (seed README) and ``--save-name test_8mp`` name the same files."""
    return Path(value).stem if value.endswith(".pth") else value


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by training and evaluation (the reference's evaluate.py takes train.py's)."""
    add_data(parser, path_default=DEFAULTS.data_path, kind_default=DEFAULTS.dataset, selects=False)
    add_config(parser, DEFAULTS.config)
    parser.add_argument("--model", choices=architecture_names(), default=DEFAULTS.model, help="checked against the config's arch")
    parser.add_argument("--batch-size", "--batch_size", type=COUNT, default=DEFAULTS.batch_size, help="images per process")
    parser.add_argument("--num-workers", "--num_workers", type=WORKERS, default=DEFAULTS.num_workers, help="data loader workers per process")
    parser.add_argument("--nms-threshold", "--nms_threshold", type=IOU, default=DEFAULTS.nms_threshold)
    add_precision(parser)
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=DEFAULTS.channels_last,
                        help="channels-last memory format (default: on; faster convolutions)")
    add_device(parser, DEFAULTS.device)
    add_cudnn_benchmark(parser, DEFAULTS.cudnn_benchmark)
    parser.add_argument("--local-rank", "--local_rank", type=RANK, default=DEFAULTS.local_rank, help="set by torch.distributed.launch")
    parser.add_argument("--save-folder", "--save_folder", type=Path, default=DEFAULTS.save_folder)
    parser.add_argument("--save-name", "--save-path", "--save_name", "--save_path", dest="save_name", type=save_name,
                        default=DEFAULTS.save_name, help="checkpoint base name: {save-folder}/{name}_ep{N}.pth")
    parser.add_argument("--pretrained-model", "--pretrained_model", type=Path, default=DEFAULTS.pretrained_model,
                        help="model weights to start from")
    parser.add_argument("--strict", action="store_true", help="stop on the first bad file or annotation")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--epochs", "--epoch", type=COUNT, default=DEFAULTS.epochs, help=f"total epochs (default {DEFAULTS.epochs})")
    parser.add_argument("--lr", type=LEARNING_RATE, default=DEFAULTS.lr, help="base lr, scaled by world size x batch / 32")
    parser.add_argument("--momentum", type=MOMENTUM, default=DEFAULTS.momentum)
    parser.add_argument("--weight-decay", "--weight_decay", type=WEIGHT_DECAY, default=DEFAULTS.weight_decay)
    parser.add_argument("--multistep", nargs="*", type=COUNT, default=DEFAULTS.multistep, help="epochs where lr is multiplied by 0.1")
    parser.add_argument("--warmup", type=EPOCH, default=DEFAULTS.warmup, help="linear lr warm-up iterations")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default=DEFAULTS.optimizer, help="sgd (the reference's, default) or adamw")
    parser.add_argument("--augment", choices=AUGMENTATIONS, default=DEFAULTS.augment,
                        help="ssd: the reference's crop/flip/colour jitter (default); flip: flips only")
    parser.add_argument("--no-decay-bn", action="store_true", help="no weight decay on BatchNorm weights and biases")
    parser.add_argument("--log-path", "--log_path", type=Path, default=DEFAULTS.log_path, help="TensorBoard folder (default SAVE_FOLDER/tensorboard)")
    parser.add_argument("--checkpoint-freq", "--checkpoint_freq", type=COUNT, default=DEFAULTS.checkpoint_freq, help="write {name}_epN.pth every N epochs")
    parser.add_argument("--resume", type=Path, default=DEFAULTS.resume, help="resume from this checkpoint (default: SAVE_FOLDER/last.pth if present)")
    parser.add_argument("--backbone-weights", default=DEFAULTS.backbone_weights,
                        help="ImageNet backbone weights: a path, or 'imagenet' for torchvision's cache")
    parser.add_argument("--seed", type=SEED, default=DEFAULTS.seed)
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the model (compiling takes a while before the first step; see docs/performance.md)")
    parser.add_argument("--activation-checkpointing", choices=ACTIVATION_CHECKPOINTING, default=DEFAULTS.activation_checkpointing,
                        help="recompute activations in the backward pass to save memory: the backbone, or all blocks "
                             "(default: off)")
    parser.add_argument("--no-progress", dest="show_progress", action="store_false", help="no progress bar")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a detector (one process, or many under torchrun)")
    add_arguments(parser)
    parser.set_defaults(run=run)


def train_options(args: argparse.Namespace) -> TrainOptions:
    """The parsed flags as :class:`TrainOptions` (every flag has the field's name)."""
    return TrainOptions(**{field.name: getattr(args, field.name) for field in fields(TrainOptions)})


def run(args: argparse.Namespace) -> int:
    from ssd.engine.fit import fit

    from ssd.heap_retention import heap_retention_for

    options = train_options(args)
    result = fit(options, after_step_for=heap_retention_for)
    if result.is_main and result.last_map is not None:
        print(f"mAP@[.5:.95] = {result.last_map:.3f} (best {result.best_map:.3f}); checkpoints in {options.save_folder}")
    return 0
