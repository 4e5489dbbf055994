"""``ssd train`` and the seed's ``train.py``: the reference's flags and spellings, plus ours."""
from __future__ import annotations

import argparse
from pathlib import Path

from ssd.engine.schedule import OPTIMIZERS, REFERENCE_LR
from ssd.errors import SSDError

DATASETS = {"cognata": "cognata", "coco": "coco"}


def dataset_kind(value: str) -> str:
    """``--dataset`` is case-insensitive (the reference writes Cognata and Coco)."""
    kind = DATASETS.get(value.lower())
    if kind is None:
        raise argparse.ArgumentTypeError(f"expected Cognata or Coco, got {value!r}")
    return kind


def save_name(value: str) -> str:
    """``--save-path test_8mp.pth`` (seed README) and ``--save-name test_8mp`` name the same files."""
    return Path(value).stem if value.endswith(".pth") else value


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by training and evaluation (the reference's evaluate.py takes train.py's)."""
    parser.add_argument("--data-path", "--data_path", type=Path, default=Path("/cognata"), help="dataset root")
    parser.add_argument("--dataset", type=dataset_kind, default="cognata", help="Cognata or Coco (any case)")
    parser.add_argument("--config", default="baseline_8MP_ss_scales_fm1_5x5_all", help="config name or path")
    parser.add_argument("--model", choices=("ssd", "ssdlite"), default=None, help="checked against the config's arch")
    parser.add_argument("--batch-size", "--batch_size", type=int, default=32, help="images per process")
    parser.add_argument("--num-workers", "--num_workers", type=int, default=4, help="data loader workers per process")
    parser.add_argument("--nms-threshold", "--nms_threshold", type=float, default=0.5)
    parser.add_argument("--amp", action="store_true", help="mixed precision (fp16 on CUDA, bf16 on CPU)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                        help="channels-last memory format (default: on; faster convolutions)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when available)")
    parser.add_argument("--local-rank", "--local_rank", type=int, default=None, help="set by torch.distributed.launch")
    parser.add_argument("--save-folder", "--save_folder", type=Path, default=Path("trained_models"))
    parser.add_argument("--save-name", "--save-path", "--save_name", "--save_path", dest="save_name", type=save_name,
                        default="SSD", help="checkpoint base name: {save-folder}/{name}_ep{N}.pth")
    parser.add_argument("--pretrained-model", "--pretrained_model", type=Path, default=None, help="model weights to start from")
    parser.add_argument("--strict", action="store_true", help="stop on the first bad file or annotation")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--epochs", "--epoch", type=int, default=65, help="total epochs (default 65)")
    parser.add_argument("--lr", type=float, default=REFERENCE_LR, help="base lr, scaled by world size x batch / 32")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", "--weight_decay", type=float, default=5e-4)
    parser.add_argument("--multistep", nargs="*", type=int, default=[43, 54], help="epochs where lr is multiplied by 0.1")
    parser.add_argument("--warmup", type=int, default=0, help="linear lr warm-up iterations")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd", help="sgd (the reference's, default) or adamw")
    parser.add_argument("--augment", choices=("ssd", "flip"), default="ssd",
                        help="ssd: the reference's crop/flip/colour jitter (default); flip: flips only")
    parser.add_argument("--no-decay-bn", action="store_true", help="no weight decay on BatchNorm weights and biases")
    parser.add_argument("--log-path", "--log_path", type=Path, default=None, help="TensorBoard folder (default SAVE_FOLDER/tensorboard)")
    parser.add_argument("--checkpoint-freq", "--checkpoint_freq", type=int, default=1, help="write {name}_epN.pth every N epochs")
    parser.add_argument("--resume", type=Path, default=None, help="resume from this checkpoint (default: SAVE_FOLDER/last.pth if present)")
    parser.add_argument("--backbone-weights", default=None, help="ImageNet backbone weights: a path, or 'imagenet' for torchvision's cache")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (a minute or more to compile; then 1.03-1.15x faster CPU steps)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a detector (one process, or many under torchrun)")
    add_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ssd.engine.fit import TrainOptions, fit

    if args.epochs < 1 or args.batch_size < 1 or args.checkpoint_freq < 1:
        raise SSDError("--epochs, --batch-size and --checkpoint-freq must be at least 1")
    options = TrainOptions(
        config=args.config, data_path=args.data_path, dataset=args.dataset, model=args.model, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
        multistep=args.multistep, warmup=args.warmup, optimizer=args.optimizer, augment=args.augment, no_decay_bn=args.no_decay_bn, amp=args.amp,
        channels_last=args.channels_last, compile=args.compile, num_workers=args.num_workers, save_folder=args.save_folder,
        save_name=args.save_name, log_path=args.log_path or args.save_folder / "tensorboard",
        checkpoint_freq=args.checkpoint_freq, pretrained_model=args.pretrained_model, resume=args.resume,
        backbone_weights=args.backbone_weights, seed=args.seed, device=args.device, local_rank=args.local_rank,
        nms_threshold=args.nms_threshold, strict=args.strict, show_progress=not args.no_progress,
    )
    result = fit(options)
    if result.is_main and result.last_map is not None:
        print(f"mAP@[.5:.95] = {result.last_map:.3f} (best {result.best_map:.3f}); checkpoints in {options.save_folder}")
    return 0
