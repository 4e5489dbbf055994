"""SSD augmentation with ``torchvision.transforms.v2`` on uint8 images and ``tv_tensors.BoundingBoxes``.

Training: SSD random crop -> horizontal flip -> resize -> colour jitter + ImageNet normalisation
(the reference's order). Evaluation: resize -> normalisation. The crop runs on the decoded image
before the resize, so an 8 MP frame is cropped once and resized once.

Colour jitter and normalisation are one affine map per pixel (:class:`ColorNormalize`): brightness,
contrast, saturation and hue are each linear in RGB (hue as a rotation of the RGB cube about its
grey diagonal, which moves HSV hue by the factor within ~0.004), so their composition, in a random
order as ``v2.ColorJitter`` does, is a 3x3 matrix plus an offset applied in one pass over the
pixels, where ``v2.ColorJitter`` makes a pass per factor and an HSV round trip for hue (timings in
docs/performance.md). It differs from ``v2.ColorJitter`` in clamping once at the end instead of
after each step, and in the hue step changing HSV saturation and value slightly where torchvision's
keeps them.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.ops import box_iou
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The reference's crop options: no crop, a minimum IoU of every box with the crop, or a crop with no
# IoU constraint (-inf, as the reference's strict `iou > min_iou` test needs).
CROP_MIN_IOUS: tuple[float | None, ...] = (None, 0.1, 0.3, 0.5, 0.7, 0.9, -math.inf)
# option draws before giving up and leaving the image whole (the reference loops until one fits)
CROP_MAX_DRAWS = 50

# ITU-R BT.601 luma weights, as torchvision's grayscale / saturation / contrast use
_GRAY = torch.tensor([0.2989, 0.587, 0.114], dtype=torch.float64)
# unit grey axis and its cross-product matrix, for hue rotations (Rodrigues' formula)
_AXIS = torch.full((3, 1), 1 / math.sqrt(3), dtype=torch.float64)
_AXIS_CROSS = torch.tensor([[0, -1, 1], [1, 0, -1], [-1, 1, 0]], dtype=torch.float64) / math.sqrt(3)
# columns per chunk of the fused colour map: each chunk's float copy stays in cache
_COLOR_CHUNK = 1 << 16
# at most this many pixels are averaged for the contrast mean (a strided sample of larger images)
_MEAN_SAMPLES = 1 << 18


def _find(flat_inputs: list[Any], kind: type) -> Any:
    return next((item for item in flat_inputs if isinstance(item, kind)), None)


class SSDRandomCrop(v2.Transform):
    """The SSD crop of the reference, on an image and its ``BoundingBoxes`` (use before resizing).

    Draw an option from :data:`CROP_MIN_IOUS`; for a crop option draw width and height fractions in
    [0.3, 1] with w/h in [0.5, 2] and a position, and accept when every box has IoU > the option's
    minimum with the crop and at least one box centre lies strictly inside; otherwise draw again.
    Boxes whose centres fall outside are zeroed, for a following ``v2.SanitizeBoundingBoxes`` to
    drop with their labels. Images without boxes are left whole, as in the reference.
    """

    def __init__(self, min_scale: float = 0.3, max_scale: float = 1.0, min_aspect: float = 0.5, max_aspect: float = 2.0):
        super().__init__()
        self.min_scale, self.max_scale = min_scale, max_scale
        self.min_aspect, self.max_aspect = min_aspect, max_aspect

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        boxes = _find(flat_inputs, tv_tensors.BoundingBoxes)
        if boxes is None or boxes.shape[0] == 0:
            return {}
        height, width = boxes.canvas_size
        xyxy = F.convert_bounding_box_format(boxes.as_subclass(Tensor), boxes.format, tv_tensors.BoundingBoxFormat.XYXY)
        norm = xyxy.to(torch.float32) / torch.tensor([width, height, width, height], dtype=torch.float32)
        centre_x = (norm[:, 0] + norm[:, 2]) / 2
        centre_y = (norm[:, 1] + norm[:, 3]) / 2
        for _ in range(CROP_MAX_DRAWS):
            min_iou = CROP_MIN_IOUS[int(torch.randint(len(CROP_MIN_IOUS), ()))]
            if min_iou is None:
                return {}
            w, h = torch.empty(2).uniform_(self.min_scale, self.max_scale).tolist()
            if not self.min_aspect <= w / h <= self.max_aspect:
                continue
            left = float(torch.empty(()).uniform_(0.0, 1.0 - w))
            top = float(torch.empty(()).uniform_(0.0, 1.0 - h))
            right, bottom = left + w, top + h
            ious = box_iou(norm, torch.tensor([[left, top, right, bottom]]))
            if not bool((ious > min_iou).all()):
                continue
            inside = (centre_x > left) & (centre_x < right) & (centre_y > top) & (centre_y < bottom)
            if not bool(inside.any()):
                continue
            left_px, top_px = int(left * width), int(top * height)
            right_px, bottom_px = int(right * width), int(bottom * height)
            return {"top": top_px, "left": left_px, "height": bottom_px - top_px, "width": right_px - left_px, "keep": inside}
        return {}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not params:
            return inpt
        output = self._call_kernel(F.crop, inpt, top=params["top"], left=params["left"], height=params["height"], width=params["width"])
        if isinstance(output, tv_tensors.BoundingBoxes):
            output[~params["keep"]] = 0
        return output


def _jitter_matrix(factors: dict[str, float], order: list[str], mean_rgb: Tensor) -> tuple[Tensor, Tensor]:
    """Affine colour map (matrix ``[3, 3]``, offset ``[3]``, on [0, 1] RGB) of the jitter steps in order."""
    matrix = torch.eye(3, dtype=torch.float64)
    offset = torch.zeros(3, dtype=torch.float64)
    for name in order:
        factor = factors[name]
        if name == "brightness":
            step, shift = factor * torch.eye(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
        elif name == "contrast":  # blend with the mean grey level of the image as it is at this step
            grey = float(_GRAY @ (matrix @ mean_rgb + offset))
            step, shift = factor * torch.eye(3, dtype=torch.float64), torch.full((3,), (1 - factor) * grey, dtype=torch.float64)
        elif name == "saturation":  # blend with the pixel's own grey level
            step = factor * torch.eye(3, dtype=torch.float64) + (1 - factor) * torch.ones(3, 1, dtype=torch.float64) * _GRAY
            shift = torch.zeros(3, dtype=torch.float64)
        else:  # hue: rotate about the grey axis by the hue turn (1/3 takes red to green, as in HSV)
            angle = 2 * math.pi * factor
            step = math.cos(angle) * torch.eye(3, dtype=torch.float64) + math.sin(angle) * _AXIS_CROSS
            step += (1 - math.cos(angle)) * (_AXIS @ _AXIS.T)
            shift = torch.zeros(3, dtype=torch.float64)
        matrix, offset = step @ matrix, step @ offset + shift
    return matrix, offset


class ColorNormalize(v2.Transform):
    """Optional colour jitter, then ``(x - mean) / std``, as one affine map: uint8 (or [0, 1]) in, float32 out.

    Jitter ranges follow ``v2.ColorJitter``: factors drawn from [1 - b, 1 + b], [1 - c, 1 + c],
    [1 - s, 1 + s] and [-hue, hue], applied in a random order; all zero (the default) means
    normalisation only. Boxes and other inputs pass through.
    """

    def __init__(
        self,
        brightness: float = 0.0,
        contrast: float = 0.0,
        saturation: float = 0.0,
        hue: float = 0.0,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
    ):
        super().__init__()
        self.ranges = {"brightness": brightness, "contrast": contrast, "saturation": saturation, "hue": hue}
        self.mean = torch.tensor(mean, dtype=torch.float64)
        self.std = torch.tensor(std, dtype=torch.float64)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        factors = {}
        for name, spread in self.ranges.items():
            if spread > 0:
                low, high = (-spread, spread) if name == "hue" else (max(0.0, 1 - spread), 1 + spread)
                factors[name] = float(torch.empty(()).uniform_(low, high))
        order = [list(factors)[i] for i in torch.randperm(len(factors)).tolist()]
        return {"factors": factors, "order": order}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, tv_tensors.Image) and not (type(inpt) is Tensor and inpt.ndim == 3):
            return inpt
        image = inpt.as_subclass(Tensor)
        channels, height, width = image.shape
        flat = image.reshape(channels, -1)
        scale = 1 / 255 if image.dtype == torch.uint8 else 1.0
        matrix, offset = torch.eye(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
        if params["order"]:
            mean_rgb = torch.zeros(3, dtype=torch.float64)
            if "contrast" in params["factors"]:
                stride = max(1, int(math.sqrt(height * width / _MEAN_SAMPLES)))
                mean_rgb = image[:, ::stride, ::stride].to(torch.float64).mean(dim=(1, 2)) * scale
            matrix, offset = _jitter_matrix(params["factors"], params["order"], mean_rgb)
        # fold the [0, 1] scaling in front and the normalisation behind: one matrix, one offset
        fused = (matrix * scale / self.std[:, None]).to(torch.float32)
        shift = ((offset - self.mean) / self.std).to(torch.float32)[:, None]
        bounds = list(zip((-self.mean / self.std).tolist(), ((1 - self.mean) / self.std).tolist()))
        out = torch.empty(channels, height * width, dtype=torch.float32)
        for start in range(0, height * width, _COLOR_CHUNK):
            chunk = out[:, start : start + _COLOR_CHUNK]
            torch.addmm(shift, fused, flat[:, start : start + _COLOR_CHUNK].to(torch.float32), out=chunk)
            if params["order"]:  # plain normalisation of in-range input cannot leave the range
                for channel, (low, high) in enumerate(bounds):
                    chunk[channel].clamp_(low, high)
        return tv_tensors.Image(out.view(channels, height, width))


def train_transform(image_size: tuple[int, int]) -> v2.Compose:
    """SSD training augmentation to ``image_size`` (H, W), section 7 of the spec."""
    return v2.Compose(
        [
            SSDRandomCrop(),
            v2.SanitizeBoundingBoxes(min_size=1),
            v2.RandomHorizontalFlip(0.5),
            v2.Resize(image_size, antialias=True),
            ColorNormalize(brightness=0.125, contrast=0.5, saturation=0.5, hue=0.05),
        ]
    )


def eval_transform(image_size: tuple[int, int]) -> v2.Compose:
    """Resize to ``image_size`` (H, W) and normalise."""
    return v2.Compose([v2.Resize(image_size, antialias=True), ColorNormalize()])


def flip_transform(image_size: tuple[int, int]) -> v2.Compose:
    """Light training augmentation: horizontal flip, resize to ``image_size`` (H, W), normalise.

    For training from scratch on easy data (the demo's synthetic shapes), where the SSD crop and
    colour jitter slow convergence more than they help.
    """
    return v2.Compose([v2.RandomHorizontalFlip(0.5), v2.Resize(image_size, antialias=True), ColorNormalize()])
