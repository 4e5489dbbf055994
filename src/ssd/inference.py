"""Inference on arbitrary images: model loading, preprocessing, and the :class:`Detector` API.

::

    detector = Detector.from_checkpoint("ssd_resnet50.pth", "baseline_8MP_ss_scales_fm1_5x5_all")
    results = detector(["frame.png", array_hwc_uint8, tensor_chw])
    # -> [{"boxes": [K, 4] xyxy pixels of that image, "scores": [K], "labels": [K], "names": [K]}, ...]

Any image size is accepted: each image is resized to the config's size and normalised (the data
package's :func:`ssd.data.eval_transform`), and boxes come back in the pixels of the image given,
via :func:`ssd.postprocess.postprocess`'s ``image_sizes``. The predict, export, loadgen and evaluate
commands load their models through :func:`load_model`, name classes with :func:`class_names_for`,
and score runs over part of a dataset with :func:`ssd.evaluation.score_detections`.
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision import tv_tensors
from torchvision.models.resnet import Bottleneck

from ssd.anchors import default_boxes
from ssd.checkpoint import CheckpointError, check_state_dict, extract_state_dict, read_checkpoint
from ssd.config import Config, load_config
from ssd.data import eval_transform
from ssd.data.dataset import DetectionDataset, read_image
from ssd.data.labels import BACKGROUND, cognata_fixed
from ssd.data.problems import CorruptImageError
from ssd.engine.evaluate import DecodeSettings
from ssd.errors import SSDError
from ssd.models import build_model

logger = logging.getLogger(__name__)

ImageInput = Union[np.ndarray, Tensor, str, Path]
# ``network(images [N, 3, H, W]) -> (locs [N, 4, A], confs [N, C, A])``: a model or an ONNX session
Network = Callable[[Tensor], tuple[Tensor, Tensor]]
# checkpoint entries describing the model (the rest is weights and optimiser state)
METADATA_KEYS = ("epoch", "arch", "num_classes", "class_names", "label_map", "config", "map")
COCO_NUM_CLASSES = 81


class InferenceError(SSDError):
    """An input the detector cannot use (unreadable file, wrong array shape or type)."""


def coco_class_names() -> tuple[str, ...]:
    """``background`` and COCO's 80 category names in category-id order (labels 0..80)."""
    from torchvision.models.detection import SSD300_VGG16_Weights

    names = SSD300_VGG16_Weights.COCO_V1.meta["categories"]  # 91 ids with N/A gaps, __background__ first
    return (BACKGROUND, *(name for name in names[1:] if name != "N/A"))


def default_class_names(num_classes: int) -> tuple[str, ...]:
    """Names for a model without saved names: COCO's for 81 classes, Cognata's map for 15, else numbers."""
    if num_classes == COCO_NUM_CLASSES:
        return coco_class_names()
    cognata = cognata_fixed()
    if num_classes == cognata.num_classes:
        return cognata.class_names
    return (BACKGROUND, *(str(label) for label in range(1, num_classes)))


def class_names_for(checkpoint: Mapping[str, Any], num_classes: int) -> tuple[str, ...]:
    """The checkpoint's ``class_names`` when it has them for ``num_classes``, else :func:`default_class_names`."""
    names = checkpoint.get("class_names")
    if isinstance(names, (list, tuple)) and len(names) == num_classes:
        return tuple(str(name) for name in names)
    return default_class_names(num_classes)


def _num_classes(checkpoint: Mapping[str, Any], state: Mapping[str, Tensor], config: Config, requested: int | None, source: str) -> int:
    """Classes of a checkpoint: as requested, as recorded, or read off the first conf head's output channels."""
    recorded = checkpoint.get("num_classes")
    if requested is not None:
        if recorded is not None and int(recorded) != requested:
            raise CheckpointError(f"{source}: trained for {recorded} classes, --num-classes says {requested}")
        return requested
    if recorded is not None:
        return int(recorded)
    # reference checkpoints and bare state dicts: the last bias of conf.0 is the output conv's,
    # with num_defaults[0] x classes channels
    biases = [tensor for key, tensor in state.items() if key.startswith("conf.0.") and key.endswith("bias")]
    if not biases:
        raise CheckpointError(f"{source}: no conf.0 head to read the number of classes from; give --num-classes")
    channels, per_location = biases[-1].shape[0], config.model.head.num_defaults[0]
    if channels % per_location or channels // per_location < 2:
        raise CheckpointError(
            f"{source}: the first conf head has {channels} outputs, not a multiple of the {per_location} default boxes "
            f"of config {config.name!r} (another config?)"
        )
    return channels // per_location


def load_model(
    path: str | Path, config: Config | str | Path, num_classes: int | None = None, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """The network of ``config`` with a checkpoint's weights, in eval mode on ``device``, and the checkpoint.

    The number of classes is ``num_classes``, else the checkpoint's record, else read off the
    weights (reference checkpoints and bare state dicts). Raises :class:`CheckpointError` when the
    weights do not fit the config.
    """
    config = config if isinstance(config, Config) else load_config(config)
    checkpoint = read_checkpoint(path, map_location="cpu")
    state = extract_state_dict(checkpoint)
    classes = _num_classes(checkpoint, state, config, num_classes, str(path))
    recorded = checkpoint.get("config")
    if isinstance(recorded, Mapping) and recorded.get("name") not in (None, config.name):
        logger.warning("%s was trained with config %r, used here with %r", path, recorded["name"], config.name)
    model = build_model(config, classes)
    check_state_dict(model, state, str(path))
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), checkpoint


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with every BatchNorm that follows a convolution folded into its weights.

    Covers the layouts of both networks: conv -> BN pairs inside ``nn.Sequential`` containers (the
    stem, extra blocks, downsample branches, MobileNetV2 and SSDLite heads) and torchvision's ResNet
    ``Bottleneck`` (``conv1``/``bn1`` ... ``conv3``/``bn3``). Outputs equal the original's to float32
    rounding, and a forward pass skips a full pass over the feature maps per BatchNorm (about 12 % of
    the CPU time of the 8 MP model). The copy has another state-dict layout: keep the original for saving.
    """
    model = copy.deepcopy(model).eval()
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            for index in range(len(module) - 1):
                if isinstance(module[index], nn.Conv2d) and isinstance(module[index + 1], nn.BatchNorm2d):
                    module[index] = fuse_conv_bn_eval(module[index], module[index + 1])
                    module[index + 1] = nn.Identity()
        elif isinstance(module, Bottleneck):
            for k in (1, 2, 3):
                setattr(module, f"conv{k}", fuse_conv_bn_eval(getattr(module, f"conv{k}"), getattr(module, f"bn{k}")))
                setattr(module, f"bn{k}", nn.Identity())
    return model


def check_dataset_fits(metadata: Mapping[str, Any], num_classes: int, dataset: DetectionDataset, source: str) -> None:
    """Raise :class:`CheckpointError` unless a model's classes are the dataset's labels.

    ``metadata``: the checkpoint (or :attr:`Detector.metadata`); its saved ``label_map``, when
    there is one, must be the dataset's.
    """
    if num_classes != dataset.num_classes:
        raise CheckpointError(f"{source}: the model has {num_classes} classes, the dataset {dataset.num_classes}")
    saved = metadata.get("label_map")
    if saved is not None and dict(saved) != dataset.label_spec.to_dict():
        raise CheckpointError(f"{source}: the checkpoint's label map differs from the dataset's ({dataset.class_names})")


def to_image_tensor(image: ImageInput) -> Tensor:
    """An image as ``[3, H, W]``: uint8 from files and arrays, float tensors (values in [0, 1]) as given.

    Accepts a path (decoded RGB), a numpy ``[H, W, 3]`` uint8 array (RGB), or a ``[3, H, W]`` tensor.
    """
    if isinstance(image, (str, Path)):
        try:
            return read_image(image)
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
            CPU convolutions (and cuDNN's) run faster (1.3-2x for the 8 MP model on two CPU cores).
        fold_bn: run an ``nn.Module`` network as a :func:`fold_batchnorm` copy (else the module
            given is used, put in eval mode and converted to ``channels_last`` in place).
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
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        is_module = isinstance(network, nn.Module)
        self.memory_format = torch.channels_last if channels_last and is_module else torch.contiguous_format
        if is_module:
            network = (fold_batchnorm(network) if fold_bn else network.eval()).to(memory_format=self.memory_format)
        self.network = network
        self.config = config
        self.class_names = tuple(class_names)
        self.settings = settings
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.metadata = dict(metadata or {})
        self.anchors = default_boxes(config).to(self.device)
        self.transform = eval_transform(config.model.image_size)

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
        **decode_settings: Any,
    ) -> "Detector":
        """A detector from a checkpoint (ours, the reference's, or a bare state dict).

        ``num_classes`` is needed only when neither the checkpoint nor its weights tell it (see
        :func:`load_model`); ``decode_settings`` are :class:`DecodeSettings` fields, e.g.
        ``score_threshold=0.3, max_detections=100``. Other arguments as for the constructor.
        """
        config = config if isinstance(config, Config) else load_config(config)
        model, checkpoint = load_model(path, config, num_classes, device)
        metadata = {key: checkpoint[key] for key in METADATA_KEYS if key in checkpoint}
        return cls(
            model, config, class_names_for(checkpoint, model.num_classes), settings=DecodeSettings(**decode_settings),
            device=device, batch_size=batch_size, metadata=metadata, channels_last=channels_last, fold_bn=fold_bn,
        )

    @classmethod
    def from_onnx(
        cls, path: str | Path, config: Config | str | Path, class_names: Sequence[str] | None = None, *, batch_size: int = 4, **decode_settings: Any
    ) -> "Detector":
        """A detector running a model exported by ``ssd export`` with ONNX Runtime (CUDA when it has it, else CPU).

        Class names: ``class_names``, else those saved in the model by ``ssd export``, else
        :func:`default_class_names` for the model's number of classes.
        """
        from ssd.onnx_export import OnnxNetwork

        config = config if isinstance(config, Config) else load_config(config)
        network = OnnxNetwork(path)
        network.check_input_size(config.model.image_size)
        names = class_names or network.class_names or default_class_names(network.num_classes)
        if len(names) != network.num_classes:
            raise InferenceError(f"{path}: the model has {network.num_classes} classes, {len(names)} class names given")
        return cls(network, config, names, settings=DecodeSettings(**decode_settings), batch_size=batch_size, metadata=network.metadata)

    def preprocess(self, image: ImageInput) -> tuple[Tensor, tuple[int, int]]:
        """One image -> (network input ``[3, H, W]`` float32 at the config's size, original (height, width))."""
        tensor = to_image_tensor(image)
        size = (int(tensor.shape[1]), int(tensor.shape[2]))
        return self.transform(tv_tensors.Image(tensor)).as_subclass(Tensor), size

    @torch.inference_mode()
    def detect(self, batch: Tensor, image_sizes: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
        """Forward a preprocessed ``batch [N, 3, H, W]`` and decode; boxes in pixels of ``image_sizes``."""
        locs, confs = self.network(batch.to(self.device).contiguous(memory_format=self.memory_format))
        outputs = self.settings.decode(locs, confs, self.anchors, image_sizes)
        return [self._result(output) for output in outputs]

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


def detection_records(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A :class:`Detector` result as JSON-ready ``[{"box": [x1, y1, x2, y2], "score", "label", "name"}, ...]``."""
    return [
        {"box": [round(v, 2) for v in box], "score": round(score, 5), "label": label, "name": name}
        for box, score, label, name in zip(result["boxes"].tolist(), result["scores"].tolist(), result["labels"].tolist(), result["names"])
    ]
