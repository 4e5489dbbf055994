"""Flag groups declared once, each flag with one spelling set, one range and one help text: every
command that takes a flag takes it from here. Only light modules are imported (``ssd --help``)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ssd.choices import AMP, AUTO, PRECISIONS
from ssd.cli.ranges import CLASSES, COUNT
from ssd.data.kinds import DATASET_KINDS, UnknownDatasetError, dataset_kind
from ssd.detector_spec import ENGINES
from ssd.engine.options import DEFAULT_CONFIG
DATASET_HELP = " or ".join(kind.title for kind in DATASET_KINDS.values()) + " (any case)"


def dataset_name(value: str) -> str:
    """``--dataset``: a dataset kind, case-insensitive (the reference writes Cognata and Coco)."""
    try:
        return dataset_kind(value).name
    except UnknownDatasetError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_config(parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: str | None = DEFAULT_CONFIG) -> None:
    """``--config``: a config name or path; required when ``default`` is None."""
    shown = f" (default {default})" if default is not None else ""
    parser.add_argument("--config", default=default, required=default is None, help=f"config name in configs/ or path (.yaml or reference .py){shown}")


def add_data(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, path_default: Path | None = None, path_required: bool = False,
    kind_default: str | None = "cognata", split: str | None = "val", what: str = "images", selects: bool = True,
    split_default_help: str | None = None,
) -> None:
    """``--data-path``, ``--dataset`` and, where a command selects images (``selects``), ``--split``
    (default ``split``, described by ``split_default_help`` where the command decides) and ``--file-list``.
    ``what`` names what the selected images are for."""
    parser.add_argument("--data-path", "--data_path", type=Path, default=path_default, required=path_required, help="dataset root")
    shown = f"; default {dataset_kind(kind_default).title}" if kind_default is not None else ""
    parser.add_argument("--dataset", type=dataset_name, default=kind_default, help=f"{DATASET_HELP}{shown}")
    if selects:
        parser.add_argument("--split", default=split, help=f"dataset split of the {what} (default {split_default_help or split})")
        parser.add_argument("--file-list", "--file_list", type=Path,
                            help=f"Cognata: CSV of the {what} (e.g. MLPerf's val_set.csv), in its order, instead of --split")


def add_device(parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: str | None = None) -> None:
    parser.add_argument("--device", default=default, help="cpu, cuda or cuda:N (default: CUDA when available)")


def add_precision(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, auto: bool = False) -> None:
    """``--precision`` (one vocabulary for every command, :mod:`ssd.choices`) and the seed's ``--amp``;
    ``auto`` (the default) where a command runs a trained model (predict, loadgen)."""
    default = AUTO if auto else "fp32"
    parser.add_argument("--precision", choices=(*PRECISIONS, AUTO) if auto else PRECISIONS, default=default,
                        help=("auto (default): bf16 where the CPU runs it natively and the engine's bf16 kept a trained model's mAP "
                              "within MLPerf's 99.9 %% (none has yet), else fp32, said in one line; " if auto else "fp32 (default); ")
                        + "bf16 or fp16: PyTorch autocast (fp16 training through the gradient scaler); "
                        "bf16 also OpenVINO on a CPU with native bfloat16. INT8 is a file: ssd export --int8")
    parser.add_argument("--amp", dest="precision", action="store_const", const=AMP,
                        help="the seed's mixed precision: --precision fp16 on CUDA, bf16 elsewhere")


def add_cudnn_benchmark(parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: bool = True) -> None:
    """cuDNN's algorithm search for the fixed input size (commands that run a model on CUDA)."""
    parser.add_argument("--cudnn-benchmark", action=argparse.BooleanOptionalAction, default=default,
                        help="on CUDA, time cuDNN's convolution algorithms once and keep the fastest (default: on)")


def add_allow_other_config(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The override for a checkpoint that records another config (commands that load a trained model)."""
    parser.add_argument("--allow-other-config", action="store_true",
                        help="use a checkpoint trained with another config whose weights have the same shapes (default: an error)")


def add_detector(parser: argparse.ArgumentParser, *, config_default: str | None, batch_size: int, batch_help: str) -> None:
    """The model a command runs and how (``ssd predict``, ``ssd loadgen``): :class:`ssd.detector_spec.DetectorSpec`'s fields."""
    model = parser.add_argument_group("model")
    add_config(model, config_default)
    model.add_argument("--pretrained-model", "--pretrained_model", type=Path, help="checkpoint (run by PyTorch)")
    model.add_argument("--num-classes", "--num_classes", type=CLASSES, help="classes incl. background, when the checkpoint cannot tell (torch)")
    model.add_argument("--backend", choices=ENGINES, default="auto",
                       help="run the network with PyTorch, ONNX Runtime or OpenVINO (CPU); auto (default): PyTorch for --pretrained-model, "
                       "for --onnx OpenVINO on the CPU when installed (the fastest there), else ONNX Runtime")
    model.add_argument("--onnx", type=Path, help="model exported by `ssd export`, float32 or INT8 (run by OpenVINO or ONNX Runtime)")
    add_precision(model, auto=True)
    model.add_argument("--device", default=None,
                       help="cpu, cuda or cuda:N (default: CUDA when available; with --backend onnxruntime, its CUDA provider)")
    model.add_argument("--batch-size", "--batch_size", type=COUNT, default=batch_size, help=f"{batch_help} (default {batch_size})")
    add_allow_other_config(model)
    add_cudnn_benchmark(model)
