"""Inference on the CPU: 8 MP single-image latency and peak memory, and a 300x300 batch of 8, ours vs plain eager.

The MLPerf config ``baseline_8MP_ss_scales_fm1_5x5_all`` with 15 classes and random weights (seed 0),
a synthetic 2160x3840 PNG on disk, MLPerf decoding (score > 0.05, NMS 0.5, 500 detections). Each
path runs in a process of its own, so its peak RSS is its own, and is timed from the PNG on disk to
detections in original-image pixels:

- ours: :class:`ssd.Detector` -- torchvision PNG decode, resize (a no-op at 8 MP) and one fused
  normalisation pass, channels-last forward with BatchNorm folded into the convolutions, batched
  decoding (one ``batched_nms``);
- reference-style: PIL decode, PIL Resize + ToTensor + Normalize, NCHW forward, and the reference's
  per-class Python NMS loop (``reference_decode`` of tests/reference_impl.py).

Ours runs with huge pages for large tensors, as ``ssd`` does (``ssd.huge_pages``); the reference-style
and plain eager paths with PyTorch's default allocator, as they run without ``ssd``. Then the
forward pass alone of SSD-ResNet50 ``coco_300x300`` (81 classes) on a batch of 8: the
plain eager module (NCHW, ``torch.no_grad``) against the one :class:`ssd.Detector` runs.

Both use the same weights; the 8 MP forward dominates (12-30 s per image on two idle cores), so
each path runs ``--repeats`` times (default 1) and the best run counts; the three stages (PNG to
network input, forward, decoding) are reported too. The forward rows also give the model's GFLOP/s
and its share of this CPU's fp32 peak, measured in the same run (``roofline.py``).

    .venv/bin/python benchmarks/bench_inference.py [--repeats 1]
"""
from __future__ import annotations

from common import peak_rss_gib, report, run_side  # first: it turns huge pages on before torch loads
import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

CONFIG = "baseline_8MP_ss_scales_fm1_5x5_all"
NUM_CLASSES = 15
MAX_DETECTIONS = 500
MEMORY_LIMIT_GIB = 12.0
STAGES = ("load", "forward", "decode")
SMALL_CONFIG, SMALL_CLASSES, SMALL_BATCH = "coco_300x300", 81, 8
TARGET = 1.3


def write_image(path: Path, size: tuple[int, int]) -> None:
    """A synthetic street-like frame of ``size`` (H, W) with coloured objects, as PNG."""
    from PIL import Image

    from ssd.data.synth import COGNATA_CLASSES, draw_frame

    image, _ = draw_frame(np.random.default_rng(0), *size, COGNATA_CLASSES, (20, 40))
    Image.fromarray(image).save(path, compress_level=1)


def ours(config, model, image: Path):
    """The :class:`ssd.Detector` path as stages (load, forward, decode): the calls ``detector([image])`` makes."""
    from ssd.data.labels import default_class_names
    from ssd.inference import Detector
    from ssd.decoding import DecodeSettings

    detector = Detector(model, config, default_class_names(NUM_CLASSES), settings=DecodeSettings.mlperf(), batch_size=1)

    def load():
        tensor, size = detector.preprocess(image)
        return tensor.unsqueeze(0), size

    @torch.inference_mode()
    def forward(batch):
        return detector.network(batch.contiguous(memory_format=detector.memory_format))

    def decode(outputs, size) -> int:
        return len(detector.settings.decode(*outputs, detector.anchors, [size])[0]["boxes"])

    return load, forward, decode


def reference_style(config, model, image: Path):
    """PIL + torchvision v1 transforms, NCHW forward, the reference's per-class Python NMS, as stages."""
    from PIL import Image
    from reference_impl import reference_decode
    from torchvision import transforms

    from ssd.anchors import default_boxes
    from ssd.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    anchors = default_boxes(config)
    transform = transforms.Compose(
        [transforms.Resize(config.model.image_size), transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )

    def load():
        picture = Image.open(image).convert("RGB")
        return transform(picture).unsqueeze(0), picture.size[::-1]

    @torch.no_grad()
    def forward(batch):
        return model(batch)

    def decode(outputs, size) -> int:
        boxes, _, _ = reference_decode(anchors, *outputs, nms_threshold=0.5, max_output=MAX_DETECTIONS)[0]
        height, width = size
        return len(boxes * torch.tensor([width, height, width, height]))

    return load, forward, decode


def batch_forward(variant: str, repeats: int = 3) -> dict:
    """Best seconds of the 300x300 batch-8 forward: ``ours`` (:class:`ssd.Detector`'s network, with
    its largest output difference from the plain module) or ``plain`` (eager NCHW under no_grad)."""
    from common import best_time

    from ssd.config import load_config
    from ssd.data.labels import default_class_names
    from ssd.inference import Detector
    from ssd.models import build_model

    config = load_config(SMALL_CONFIG)
    torch.manual_seed(0)
    model = build_model(config, SMALL_CLASSES).eval()
    images = torch.randn(SMALL_BATCH, 3, *config.model.image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain_outputs = model(images)
    if variant == "plain":
        return {"seconds": best_time(torch.no_grad()(lambda: model(images)), repeats)}
    detector = Detector(model, config, default_class_names(SMALL_CLASSES), fold_bn=True, channels_last=True)
    fast_input = images.contiguous(memory_format=detector.memory_format)
    forward = torch.inference_mode()(lambda: detector.network(fast_input))
    difference = max((a - b).abs().max().item() for a, b in zip(forward(), plain_outputs))
    return {"seconds": best_time(forward, repeats), "difference": difference}


def child(path: str, image: Path, repeats: int) -> None:
    """Run one path ``repeats`` times in this process; print its best stage times, detections and peak RSS as JSON."""
    from ssd.config import load_config
    from ssd.models import build_model

    config = load_config(CONFIG)
    torch.manual_seed(0)
    model = build_model(config, NUM_CLASSES).eval()
    load, forward, decode = ours(config, model, image) if path == "ours" else reference_style(config, model, image)
    best, detections = None, 0
    for _ in range(repeats):
        marks = [time.perf_counter()]
        batch, size = load()
        marks.append(time.perf_counter())
        outputs = forward(batch)
        marks.append(time.perf_counter())
        detections = decode(outputs, size)
        marks.append(time.perf_counter())
        stages = np.diff(marks)
        best = stages if best is None or stages.sum() < best.sum() else best
    peak_gib = peak_rss_gib()
    print(json.dumps({**dict(zip(STAGES, best.tolist())), "detections": detections, "peak_rss_gib": peak_gib}))


def measure(path: str, image: Path | None = None, repeats: int = 1, huge_pages: bool | None = None) -> dict:
    """Run :func:`child` (or :func:`batch_forward`) for ``path`` in a fresh interpreter and return what it printed.

    Ours runs with huge pages, as ``ssd`` does; the reference's and plain eager paths with PyTorch's
    default allocator, unless ``huge_pages`` says otherwise.
    """
    arguments = ["--child", path, "--repeats", str(repeats)] + (["--image", str(image)] if image else [])
    return run_side(__file__, arguments, huge_pages=path in ("ours", "batch-ours") if huge_pages is None else huge_pages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="runs per path; the best counts (default 1)")
    parser.add_argument("--child", choices=("ours", "reference", "batch-ours", "batch-plain"), help=argparse.SUPPRESS)
    parser.add_argument("--image", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child in ("batch-ours", "batch-plain"):
        print(json.dumps(batch_forward(args.child.removeprefix("batch-"))))
        return
    if args.child:
        child(args.child, args.image, args.repeats)
        return

    from roofline import cpu_capabilities, model_flops, peaks

    from ssd.config import load_config

    size = load_config(CONFIG).model.image_size
    print(f"CPU: {cpu_capabilities()}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        image = Path(folder) / "frame.png"
        write_image(image, size)
        print(f"{CONFIG}, {NUM_CLASSES} classes, random weights; {size[0]}x{size[1]} PNG "
              f"({image.stat().st_size / 2**20:.1f} MiB); {torch.get_num_threads()} threads", flush=True)
        fast = measure("ours", image, args.repeats)
        slow = measure("reference", image, args.repeats)
    baselines = (
        "PIL + Resize/ToTensor/Normalize", "plain eager forward: NCHW fp32, no_grad", "per-class Python NMS (reference decode_batch)"
    )
    report("8 MP b1 latency, PNG -> detections", sum(fast[s] for s in STAGES), sum(slow[s] for s in STAGES),
           "reference-style: the three below")
    peak = peaks(CONFIG, NUM_CLASSES, ["torch-fp32"])["torch-fp32"]
    forward_gflops = model_flops(CONFIG, NUM_CLASSES) / fast["forward"] / 1e9
    for stage, label, baseline in zip(STAGES, ("PNG -> normalised input", "forward", "decoding (500 dets)"), baselines):
        report(f"  8 MP b1 {label}", fast[stage], slow[stage], baseline, target=TARGET if stage == "forward" else None,
               roofline=(forward_gflops, peak) if stage == "forward" else None)
    print(f"8 MP peak memory (RSS), ours                 {fast['peak_rss_gib']:.2f} GiB (limit {MEMORY_LIMIT_GIB:g} GiB)")
    print(f"8 MP peak memory (RSS), reference-style      {slow['peak_rss_gib']:.2f} GiB")
    print(f"detections per image: ours {fast['detections']}, reference-style {slow['detections']}")
    fast_batch, plain_batch = measure("batch-ours"), measure("batch-plain")
    small_peak = peaks(SMALL_CONFIG, SMALL_CLASSES, ["torch-fp32"], gemm=False)["torch-fp32"]
    report(f"forward 300x300 b{SMALL_BATCH} (SSD-ResNet50)", fast_batch["seconds"], plain_batch["seconds"],
           "plain eager forward: NCHW fp32, no_grad", target=TARGET,
           roofline=(model_flops(SMALL_CONFIG, SMALL_CLASSES, SMALL_BATCH) / fast_batch["seconds"] / 1e9, small_peak))
    plain_huge_pages = measure("batch-plain", huge_pages=True)["seconds"]
    print(f"    plain eager with huge pages: {plain_huge_pages:.4g} s; largest difference of our outputs from "
          f"plain eager: {fast_batch['difference']:.1e}")
    assert fast["peak_rss_gib"] < MEMORY_LIMIT_GIB, f"peak memory {fast['peak_rss_gib']:.2f} GiB is over {MEMORY_LIMIT_GIB} GiB"


if __name__ == "__main__":
    main()
