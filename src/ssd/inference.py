"""Inference on arbitrary images: the :class:`Detector` API.

::

    detector = Detector.from_checkpoint("ssd_resnet50.pth", "baseline_8MP_ss_scales_fm1_5x5_all")
    results = detector(["frame.png", array_hwc_uint8, tensor_chw])
    # -> [{"boxes": [K, 4] xyxy pixels of that image, "scores": [K], "labels": [K], "names": [K]}, ...]

Any image size is accepted: each image is resized to the config's size and normalised (the data
package's :func:`ssd.data.transforms.eval_transform`), and boxes come back in the pixels of the
image given. The forward pass and decoding are :class:`ssd.predictor.Predictor`'s, the same as
evaluation's; models are loaded by :func:`ssd.checkpoint.load_model`.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from torch import Tensor, nn
from torchvision import tv_tensors

from ssd.checkpoint import METADATA_KEYS, load_model
from ssd.choices import resolve_precision
from ssd.config import Config, load_config
from ssd.data.dataset import read_image
from ssd.data.labels import class_names_for, default_class_names
from ssd.data.problems import CorruptImageError
from ssd.data.transforms import eval_transform
from ssd.errors import SSDError, parameter
from ssd.heap_retention import StepHook, no_step_hook
from ssd.models.fold import fold_batchnorm
from ssd.decoding import DecodeSettings
from ssd.predictor import Network, build_predictor

logger = logging.getLogger(__name__)

ImageInput = Union[np.ndarray, Tensor, str, Path]


class InferenceError(SSDError):
    """An input the detector cannot use (unreadable file, wrong array shape or type)."""


def to_image_tensor(image: ImageInput, orient: bool = True) -> Tensor:
    """An image as ``[3, H, W]``: uint8 from files and arrays, float tensors (values in [0, 1]) as given.

    Accepts a path (decoded RGB and, with ``orient``, turned as its EXIF orientation says, so boxes
    refer to the image as displayed; a dataset's image is read as stored, as its annotations are), a
    numpy ``[H, W, 3]`` uint8 array (RGB), or a ``[3, H, W]`` tensor.
    """
    if isinstance(image, (str, Path)):
        try:
            return read_image(image, orient=orient)
        except CorruptImageError as exc:
            raise InferenceError(f"{image}: {exc}") from exc
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InferenceError(f"expected an [H, W, 3] uint8 array, got {image.dtype} {list(image.shape)}")
        return torch.from_numpy(image).permute(2, 0, 1)
    if isinstance(image, Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise InferenceError(f"expected a [3, H, W] tensor, got {list(image.shape)}")
        if image.dtype != torch.uint8 and not image.is_floating_point():
            raise InferenceError(f"expected a uint8 or float tensor, got {image.dtype}")
        return image.cpu()
    raise InferenceError(f"expected a path, numpy array or tensor, got {type(image).__name__}")


def prepare(image: Tensor, transform: Any) -> tuple[Tensor, tuple[int, int]]:
    """``image [3, H, W]`` -> (``transform``'s network input, its original (height, width))."""
    return transform(tv_tensors.Image(image)).as_subclass(Tensor), (int(image.shape[1]), int(image.shape[2]))


def fastest_engine(device: str | None = None) -> str:
    """The engine ``engine="auto"`` (``--backend auto``) runs an exported model with: OpenVINO on the
    CPU when it is installed (the fastest CPU engine in docs/performance.md, its float32 detections
    equal to PyTorch's), else ONNX Runtime, which also runs CUDA (``device`` cuda, or None with a
    GPU and ONNX Runtime's CUDA provider)."""
    if device is not None and not str(device).startswith("cpu"):
        return "onnxruntime"
    if device is None:
        import onnxruntime

        if torch.cuda.is_available() and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            return "onnxruntime"
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "onnxruntime"
    return "openvino"


class Detector:
    """Images of any size in, detections in their pixels out.

    Args:
        network: ``images [N, 3, H, W] -> (locs [N, 4, A], confs [N, C, A])``, an ``nn.Module`` in
            eval mode or an ONNX Runtime session (:class:`ssd.onnx_export.OnnxNetwork`).
        config: the config the network was built for (input size and default boxes).
        class_names: a name per label, ``class_names[0]`` the background.
        settings: decoding (score and NMS thresholds, detections kept per class and per image).
        device: where the input batches and default boxes go (the network's device).
        batch_size: images per forward pass (a 2160x3840 image needs a few GB on its own).
        metadata: what the checkpoint says about the model (epoch, label map, config record...).
        channels_last: run an ``nn.Module`` network in channels-last memory format, which oneDNN's
            CPU convolutions (and cuDNN's) run faster.
        fold_bn: run an ``nn.Module`` network as a :func:`ssd.models.fold.fold_batchnorm` copy (else
            the module given is used, put in eval mode and converted to ``channels_last`` in place).
        after_batch: called after each forward pass (the caller's memory policy; the CLI passes
            :func:`ssd.heap_retention.heap_retention_for`'s hook).
        precision: a name of :data:`ssd.choices.PRECISION_NAMES`: ``fp32``, or ``bf16`` / ``fp16`` /
            ``amp``: an ``nn.Module`` network under that autocast (an exported network runs at the
            precision :meth:`from_onnx` compiled it for); :attr:`precision` is the name it resolved to.
    """

    def __init__(
        self,
        network: Network,
        config: Config,
        class_names: Sequence[str],
        *,
        settings: DecodeSettings = DecodeSettings(),
        device: str | torch.device = "cpu",
        batch_size: int = 4,
        metadata: Mapping[str, Any] | None = None,
        channels_last: bool = True,
        fold_bn: bool = True,
        after_batch: StepHook = no_step_hook,
        precision: str = "fp32",
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        is_module = isinstance(network, nn.Module)
        self.device = torch.device(device)
        resolved = resolve_precision(precision, self.device.type)
        if resolved != "fp32" and not is_module:
            raise InferenceError(f"{parameter('precision')} {precision} is an autocast of a PyTorch network; an export runs at "
                                 "the precision its engine compiled it for")
        self.memory_format = torch.channels_last if channels_last and is_module else torch.contiguous_format
        if is_module:
            network = (fold_batchnorm(network) if fold_bn else network.eval()).to(memory_format=self.memory_format)
        self.config = config
        self.class_names = tuple(class_names)
        self.predictor = build_predictor(
            network, config, settings, self.device, precision=resolved, channels_last=self.memory_format == torch.channels_last,
        )
        self.precision = resolved if is_module else getattr(network, "precision", "fp32")
        self.batch_size = batch_size
        self.metadata = dict(metadata or {})
        self.transform = eval_transform(config.model.image_size)
        self.after_batch = after_batch

    @property
    def network(self) -> Network:
        return self.predictor.network

    @property
    def settings(self) -> DecodeSettings:
        return self.predictor.settings

    @property
    def engine(self) -> str:
        """What runs the network: ``torch``, ``openvino`` or ``onnxruntime``."""
        return {"ssd.openvino_network": "openvino", "ssd.onnx_export": "onnxruntime"}.get(type(self.network).__module__, "torch")

    @property
    def anchors(self) -> Tensor:
        """``[A, 4]`` default boxes (cx, cy, w, h, normalised) on :attr:`device`."""
        return self.predictor.anchors

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        config: Config | str | Path,
        num_classes: int | None = None,
        device: str | torch.device = "cpu",
        *,
        batch_size: int = 4,
        channels_last: bool = True,
        fold_bn: bool = True,
        after_batch: StepHook = no_step_hook,
        allow_other_config: bool = False,
        precision: str = "fp32",
        **decode_settings: Any,
    ) -> "Detector":
        """A detector from a checkpoint (ours, the reference's, or a bare state dict).

        ``num_classes`` is needed only when neither the checkpoint nor its weights tell it, and
        ``allow_other_config`` when it records another config (see :func:`ssd.checkpoint.load_model`);
        ``decode_settings`` are :class:`DecodeSettings` fields, e.g. ``score_threshold=0.3,
        max_detections=100``. Other arguments as for the constructor.
        """
        config = config if isinstance(config, Config) else load_config(config)
        model, checkpoint = load_model(path, config, num_classes, device, allow_other_config=allow_other_config)
        metadata = {key: checkpoint[key] for key in METADATA_KEYS if key in checkpoint}
        return cls(
            model, config, class_names_for(checkpoint, model.num_classes), settings=DecodeSettings(**decode_settings),
            device=device, batch_size=batch_size, metadata=metadata, channels_last=channels_last, fold_bn=fold_bn,
            after_batch=after_batch, precision=precision,
        )

    @classmethod
    def from_onnx(
        cls,
        path: str | Path,
        config: Config | str | Path,
        class_names: Sequence[str] | None = None,
        *,
        batch_size: int = 4,
        device: str | None = None,
        after_batch: StepHook = no_step_hook,
        engine: str = "auto",
        precision: str = "fp32",
        **decode_settings: Any,
    ) -> "Detector":
        """A detector running a model exported by ``ssd export`` (float32 or INT8) with ONNX Runtime
        (``engine="onnxruntime"``) or OpenVINO (``"openvino"``, on the CPU); ``"auto"``:
        :func:`fastest_engine` for ``device``. ``precision``: ``fp32``, or ``bf16`` with OpenVINO on a
        CPU that runs bfloat16 natively (the INT8 file's quantized layers stay INT8 either way).

        ``device``: ``cpu``, ``cuda`` (ONNX Runtime's CUDA provider must load) or None (CUDA when it
        loads, else the CPU); :attr:`device` is where it runs. Class names: ``class_names``, else
        those saved in the model by ``ssd export``, else :func:`default_class_names` for the model's
        number of classes.
        """
        config = config if isinstance(config, Config) else load_config(config)
        precision = resolve_precision(precision, "cuda" if str(device or "").startswith("cuda") else "cpu")
        if engine == "auto":
            engine = fastest_engine(device)
        if engine == "openvino":
            from ssd.openvino_network import OpenVinoNetwork as Engine
        elif engine == "onnxruntime":
            from ssd.onnx_export import OnnxNetwork as Engine
        else:
            raise InferenceError(f"unknown inference engine {engine!r}: auto, onnxruntime or openvino")
        network = Engine(path, device, precision)
        network.check_input_size(config.model.image_size)
        names = class_names or network.class_names or default_class_names(network.num_classes)
        if len(names) != network.num_classes:
            raise InferenceError(f"{path}: the model has {network.num_classes} classes, {len(names)} class names given")
        return cls(
            network, config, names, settings=DecodeSettings(**decode_settings), device=network.device, batch_size=batch_size,
            metadata=network.metadata, after_batch=after_batch,
        )

    def preprocess(self, image: ImageInput) -> tuple[Tensor, tuple[int, int]]:
        """One image -> (network input ``[3, H, W]`` float32 at the config's size, original (height, width))."""
        return prepare(to_image_tensor(image), self.transform)

    def detect(self, batch: Tensor, image_sizes: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
        """Forward a preprocessed ``batch [N, 3, H, W]`` and decode; boxes in pixels of ``image_sizes``."""
        outputs = self.predictor(batch, image_sizes)
        results = [self._result(output) for output in outputs]
        self.after_batch()
        return results

    def __call__(self, images: Sequence[ImageInput]) -> list[dict[str, Any]]:
        """Detections for a list of images (paths, ``[H, W, 3]`` uint8 arrays, ``[3, H, W]`` tensors), in order.

        Each result has ``boxes [K, 4]`` (x1, y1, x2, y2 in pixels of that image, not clipped, as
        the reference), ``scores [K]`` (descending), ``labels [K]`` and ``names`` (K strings), on the CPU.
        """
        if isinstance(images, (np.ndarray, Tensor, str, Path)):
            raise TypeError("Detector expects a list of images; wrap a single image in a list")
        results: list[dict[str, Any]] = []
        for start in range(0, len(images), self.batch_size):
            prepared = [self.preprocess(image) for image in images[start : start + self.batch_size]]
            results += self.detect(torch.stack([p[0] for p in prepared]), [p[1] for p in prepared])
        return results

    def _result(self, output: Mapping[str, Tensor]) -> dict[str, Any]:
        labels = output["labels"].cpu()
        names = [self.class_names[label] if label < len(self.class_names) else str(label) for label in labels.tolist()]
        return {"boxes": output["boxes"].cpu(), "scores": output["scores"].cpu(), "labels": labels, "names": names}


def detections_of_records(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The boxes, scores, labels and names that :func:`detection_records` wrote (an interrupted run's, reused)."""
    return {
        "boxes": torch.tensor([record["box"] for record in records], dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor([record["score"] for record in records], dtype=torch.float32),
        "labels": torch.tensor([record["label"] for record in records], dtype=torch.int64),
        "names": [record["name"] for record in records],
    }


def detection_records(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A :class:`Detector` result as JSON-ready ``[{"box": [x1, y1, x2, y2], "score", "label", "name"}, ...]``."""
    return [
        {"box": [round(v, 2) for v in box], "score": round(score, 5), "label": label, "name": name}
        for box, score, label, name in zip(result["boxes"].tolist(), result["scores"].tolist(), result["labels"].tolist(), result["names"])
    ]
