"""Which model a command runs and how, as a plain value (:class:`DetectorSpec`), and the one place
that turns it into a :class:`ssd.inference.Detector`: a checkpoint run by PyTorch, or an export run
by ONNX Runtime or OpenVINO."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssd.errors import SSDError, parameter

if TYPE_CHECKING:
    import torch

    from ssd.config import Config
    from ssd.heap_retention import StepHook
    from ssd.inference import Detector

ENGINES = ("auto", "torch", "onnxruntime", "openvino")


@dataclass(frozen=True)
class DetectorSpec:
    """A model and how to run it.

    ``pretrained_model``: a checkpoint, run by PyTorch; ``onnx``: an ``ssd export`` file, run by
    ``backend`` (``auto``: :func:`ssd.inference.fastest_engine`). ``precision``: a name of
    :data:`ssd.choices.PRECISION_NAMES`, or ``auto`` (:meth:`with_chosen_precision` picks one before
    the model loads). ``num_classes`` only where a checkpoint cannot tell;
    ``allow_other_config`` for a checkpoint that records another config.
    """

    config: str | Path
    pretrained_model: Path | None = None
    onnx: Path | None = None
    backend: str = "auto"
    precision: str = "fp32"
    device: str | None = None
    batch_size: int = 4
    num_classes: int | None = None
    allow_other_config: bool = False
    cudnn_benchmark: bool = True

    @property
    def exported(self) -> bool:
        """Whether the model is an export (else a checkpoint); checked by :meth:`check`."""
        return self.backend in ("onnxruntime", "openvino") or (self.backend == "auto" and self.onnx is not None)

    @property
    def model_file(self) -> Path:
        """The file of the weights: the export or the checkpoint."""
        self.check()
        return self.onnx if self.exported else self.pretrained_model

    def check(self) -> None:
        """Raise :class:`SSDError` unless the fields name one model the backend can run (before anything loads)."""
        if self.backend not in ENGINES:
            raise SSDError(f"{parameter('backend')} {self.backend}: expected one of {', '.join(ENGINES)}")
        if self.backend == "auto" and self.onnx is not None and self.pretrained_model is not None:
            raise SSDError(f"give {parameter('pretrained_model')} (PyTorch) or {parameter('onnx')} (an export), not both")
        if self.exported:
            if self.onnx is None:
                raise SSDError(f"{parameter('backend')} {self.backend} needs {parameter('onnx')}")
            if self.pretrained_model is not None or self.num_classes is not None:
                raise SSDError(f"{parameter('backend')} {self.backend} takes the weights and class names from {parameter('onnx')}: "
                               f"drop {parameter('pretrained_model')} / {parameter('num_classes')}")
        elif self.onnx is not None:
            raise SSDError(f"the torch {parameter('backend')} runs {parameter('pretrained_model')}: drop {parameter('onnx')} "
                           "(or choose auto, onnxruntime or openvino)")
        elif self.pretrained_model is None:
            raise SSDError(f"{parameter('pretrained_model')} (PyTorch) or {parameter('onnx')} (an export) is required")

    def with_chosen_precision(self, native_bf16: bool | None = None) -> tuple[DetectorSpec, str]:
        """This spec with ``auto`` replaced by :func:`ssd.choices.choose_precision`'s precision for its
        engine, device and file, and why; another precision stays, and the reason says it was given.
        ``native_bf16``: whether the CPU runs bfloat16 natively (default: :func:`ssd.device.native_bf16`)."""
        from ssd.choices import AUTO, choose_precision
        from ssd.device import native_bf16 as cpu_runs_bf16

        self.check()
        if self.precision != AUTO:
            return self, "given"
        if self.exported:
            from ssd.inference import fastest_engine

            engine = self.backend if self.backend != "auto" else fastest_engine(self.device)
            device_type = "cuda" if engine == "onnxruntime" and str(self.device or "").startswith("cuda") else "cpu"
            int8_file = _is_int8_file(self.onnx)
        else:
            from ssd.distributed import select_device

            engine, device_type, int8_file = "torch", select_device(self.device, 0).type, False
        precision, why = choose_precision(engine, device_type, cpu_runs_bf16() if native_bf16 is None else native_bf16, int8_file)
        return replace(self, precision=precision), why

    def build(
        self, decode: Mapping[str, Any], *, config: Config | None = None,
        after_batch_for: Callable[[torch.device], StepHook] | None = None,
    ) -> Detector:
        """The detector, decoding with ``decode`` (:class:`ssd.decoding.DecodeSettings` fields).

        ``config``: the loaded :attr:`config` when the caller has it already. ``after_batch_for``: the
        hook run after each batch on the detector's device (the caller's memory policy, e.g.
        :func:`ssd.heap_retention.heap_retention_for`; default none).
        """
        from ssd.config import load_config
        from ssd.device import configure_cudnn
        from ssd.distributed import select_device
        from ssd.inference import Detector

        self.check()
        if self.precision == "auto":
            raise SSDError(f"{parameter('precision')} auto: choose it first (DetectorSpec.with_chosen_precision)")
        config = config if config is not None else load_config(self.config)
        if self.exported:
            detector = Detector.from_onnx(self.onnx, config, batch_size=self.batch_size, device=self.device, engine=self.backend,
                                          precision=self.precision, **decode)
        else:
            device = select_device(self.device, 0)
            configure_cudnn(device, self.cudnn_benchmark)
            detector = Detector.from_checkpoint(
                self.pretrained_model, config, self.num_classes, device, batch_size=self.batch_size,
                allow_other_config=self.allow_other_config, precision=self.precision, **decode,
            )
        if after_batch_for is not None:
            detector.after_batch = after_batch_for(detector.device)
        return detector



def _is_int8_file(path: Path) -> bool:
    """Whether an export is ``ssd export --int8``'s file; False for an unreadable one, which the engine names when it loads it."""
    from ssd.onnx_export import is_int8, read_metadata

    try:
        return is_int8(read_metadata(path))
    except Exception:  # onnx raises its own types, OSError and protobuf's DecodeError for a file it cannot read
        return False
