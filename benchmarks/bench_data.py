"""Training data throughput at 8 MP: decode + augment + encode, ours against the reference's way.

Run: .venv/bin/python benchmarks/bench_data.py [--frames 8] [--samples 10]   (about 3 minutes on 2 cores)

Writes ``--frames`` synthetic Cognata frames of 2160x3840 with about 40 boxes each (PNG), then
measures training samples per second through a DataLoader with one and with two workers:

- ours: ``torchvision.io.decode_image``, SSD crop on the uint8 tensor, flip, resize, fused colour
  jitter + normalisation, anchor encoding in the worker (``ssd.matching.TargetEncoder``) -- and the
  same with encoding left to the training device after collate;
- reference: PIL decode, the reference's crop / flip on PIL images, ``transforms.Resize``,
  ``ColorJitter``, ``ToTensor``, ``Normalize``, then its Encoder.encode (unchunked ``box_iou`` on
  all anchors) inside ``__getitem__``.

Then the time per stage (one thread; the decode includes the PNG check that keeps torchvision's
decoder from crashing on a hostile PNG, also timed alone), and the encoding cost per image in a worker (one thread)
and batched after collate on the training device (CUDA when present, else this process's CPU
threads). Timings on a shared machine are noisy: compare figures from the same run.
"""
from __future__ import annotations

from common import report  # first: it turns huge pages on before torch loads
import argparse
import ast
import csv
import tempfile
import time
from pathlib import Path
from random import choice, uniform
from unittest.mock import patch

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T
from torchvision.ops import box_iou

from reference_impl import reference_encode
from ssd.anchors import default_boxes
from ssd.config import load_config
from ssd.data import build_loader, collate
from ssd.data.cognata import CognataDataset
from ssd.data import dataset as dataset_module
from ssd.data.image_files import header_problem, png_problem
from ssd.data.synth import COGNATA_CAMERA, COGNATA_SCENARIO, synth_cognata
from ssd.data.transforms import train_transform
from ssd.matching import TargetEncoder

CONFIG = "baseline_8MP_ss_scales_fm1_5x5_all"
BOXES = 40
TARGET = 3.0


class ReferenceCrop:
    """The reference's SSD crop on a PIL image with normalised boxes (one trial per drawn option)."""

    options = (None, (0.1, None), (0.3, None), (0.5, None), (0.7, None), (0.9, None), (None, None))

    def __call__(self, img, img_size, bboxes, labels):
        if len(bboxes) == 0:
            return img, img_size, bboxes, labels
        while True:
            mode = choice(self.options)
            if mode is None:
                return img, img_size, bboxes, labels
            htot, wtot = img_size
            min_iou = float("-inf") if mode[0] is None else mode[0]
            w, h = uniform(0.3, 1.0), uniform(0.3, 1.0)
            if w / h < 0.5 or w / h > 2:
                continue
            left, top = uniform(0, 1.0 - w), uniform(0, 1.0 - h)
            right, bottom = left + w, top + h
            ious = box_iou(bboxes, torch.tensor([[left, top, right, bottom]]))
            if not (ious > min_iou).all():
                continue
            xc, yc = 0.5 * (bboxes[:, 0] + bboxes[:, 2]), 0.5 * (bboxes[:, 1] + bboxes[:, 3])
            masks = (xc > left) & (xc < right) & (yc > top) & (yc < bottom)
            if not masks.any():
                continue
            bboxes = bboxes.clone()
            bboxes[bboxes[:, 0] < left, 0] = left
            bboxes[bboxes[:, 1] < top, 1] = top
            bboxes[bboxes[:, 2] > right, 2] = right
            bboxes[bboxes[:, 3] > bottom, 3] = bottom
            bboxes, labels = bboxes[masks, :], labels[masks]
            left_idx, top_idx = int(left * wtot), int(top * htot)
            right_idx, bottom_idx = int(right * wtot), int(bottom * htot)
            img = img.crop((left_idx, top_idx, right_idx, bottom_idx))
            bboxes[:, 0] = (bboxes[:, 0] - left) / w
            bboxes[:, 1] = (bboxes[:, 1] - top) / h
            bboxes[:, 2] = (bboxes[:, 2] - left) / w
            bboxes[:, 3] = (bboxes[:, 3] - top) / h
            return img, (bottom_idx - top_idx, right_idx - left_idx), bboxes, labels


class ReferenceDataset(Dataset):
    """The reference's training item: PIL everything, CSV parsed per item, matching in ``__getitem__``."""

    def __init__(self, images: list[Path], annotations: list[Path], anchors: torch.Tensor, size: tuple[int, int]):
        self.images, self.annotations, self.anchors = images, annotations, anchors
        self.crop = ReferenceCrop()
        self.img_trans = T.Compose([
            T.Resize(size),
            T.ColorJitter(brightness=0.125, contrast=0.5, saturation=0.5, hue=0.05),
            T.ToTensor(),
            T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx: int):
        img = Image.open(self.images[idx]).convert("RGB")
        width, height = img.size
        boxes, labels = [], []
        with open(self.annotations[idx]) as handle:
            rows = list(csv.reader(handle))
        header = rows[0]
        bi, ci, di = header.index("bounding_box_2D"), header.index("object_class"), header.index("center_distance")
        for row in rows[1:]:
            x1, y1, x2, y2 = ast.literal_eval(row[bi])
            w, h = x2 - x1, y2 - y1
            if w * h < 50 or int(row[ci]) in (2, 25, 31) or h < 8 or w < 8 or ast.literal_eval(row[di]) > 300:
                continue
            boxes.append([x1 / width, y1 / height, x2 / width, y2 / height])
            labels.append(1)
        boxes, labels = torch.tensor(boxes), torch.tensor(labels)
        img, _, boxes, labels = self.crop(img, (height, width), boxes, labels)
        if torch.rand(()) < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
            boxes[:, 0], boxes[:, 2] = 1.0 - boxes[:, 2], 1.0 - boxes[:, 0]
        image = self.img_trans(img).contiguous()
        matched, anchor_labels = reference_encode(self.anchors, boxes, labels)
        return image, matched, anchor_labels


def samples_per_second(loader, samples: int) -> float:
    """Steady-state rate: the first batch (worker start-up) is not timed."""
    done, start = 0, None
    while done < samples:
        for batch in loader:
            if start is None:
                start = time.perf_counter()
                continue
            done += batch[0].shape[0]
            if done >= samples:
                break
    return done / (time.perf_counter() - start)


def print_stages(dataset, reference: ReferenceDataset, encoder: TargetEncoder) -> None:
    """Mean time per stage in this process with one thread, as in a loader worker."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    count = len(dataset)
    stages = {"decode": 0.0, "of which the PNG check": 0.0, "augment": 0.0, "encode": 0.0}
    for index in range(count):
        data = dataset.image_path(index).read_bytes()
        start = time.perf_counter()
        header_problem(data) or png_problem(data)  # what read_image runs before the decoder (ssd.data.image_files)
        stages["of which the PNG check"] += time.perf_counter() - start
        start = time.perf_counter()
        dataset.load_image(index)
        decode = time.perf_counter() - start
        start = time.perf_counter()
        _, target = dataset[index]  # decode again, then augment
        stages["decode"] += decode
        stages["augment"] += time.perf_counter() - start - decode
        start = time.perf_counter()
        encoder(target["boxes"], target["labels"])
        stages["encode"] += time.perf_counter() - start
    ref = {"decode": 0.0}
    for path in reference.images:
        start = time.perf_counter()
        Image.open(path).convert("RGB")
        ref["decode"] += time.perf_counter() - start
    torch.set_num_threads(threads)
    print("per image, one thread: ours " + ", ".join(f"{k} {v / count * 1000:.0f} ms" for k, v in stages.items())
          + f"; reference PIL decode {ref['decode'] / count * 1000:.0f} ms", flush=True)


def worker_encoding_loader(dataset: Dataset, encoder: TargetEncoder, workers: int) -> DataLoader:
    """The alternative ``ssd train`` does not take: targets encoded in the loader workers, on the CPU."""

    def collate_and_encode(batch):
        images, targets = collate(batch)
        return images, targets, encoder.encode_batch([t["boxes"] for t in targets], [t["labels"] for t in targets])

    return DataLoader(dataset, batch_size=1, shuffle=True, num_workers=workers, collate_fn=collate_and_encode, persistent_workers=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--samples", type=int, default=10, help="timed samples per figure")
    args = parser.parse_args()
    config = load_config(CONFIG)
    anchors = default_boxes(config)
    encoder = TargetEncoder(anchors)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        synth_cognata(tmp, args.frames, size=config.model.image_size, seed=0, objects=(BOXES, BOXES))
        dataset = CognataDataset(
            tmp, "all", folders=[COGNATA_SCENARIO], cameras=[COGNATA_CAMERA], transform=train_transform(config.model.image_size)
        )
        boxes_per_frame = len(dataset.annotations.labels) / len(dataset)
        print(f"{len(dataset)} frames {config.model.image_size[0]}x{config.model.image_size[1]} PNG, {boxes_per_frame:.1f} boxes each, "
              f"{encoder.num_anchors:,} anchors; written in {time.perf_counter() - start:.1f} s", flush=True)
        reference = ReferenceDataset(
            [dataset.image_path(i) for i in range(len(dataset))],
            [dataset.root / p.replace("_png/", "_ann/").replace(".png", ".csv") for p in dataset.annotations.paths],
            anchors, config.model.image_size,
        )
        rates = {}
        for workers in (1, 2):
            ref_loader = DataLoader(reference, batch_size=1, shuffle=True, num_workers=workers, persistent_workers=True)
            rates["reference", workers] = samples_per_second(ref_loader, args.samples)
            print(f"reference  {workers} worker(s): {rates['reference', workers]:6.2f} samples/s", flush=True)
            for label in ("encode in worker", "encode on device"):
                if label == "encode in worker":
                    loader = worker_encoding_loader(dataset, encoder, workers)
                else:
                    loader = build_loader(dataset, 1, train=True, num_workers=workers, pin_memory=False)
                rates[label, workers] = samples_per_second(loader, args.samples)
                print(f"ours       {workers} worker(s), {label}: {rates[label, workers]:6.2f} samples/s", flush=True)
        with patch.object(dataset_module, "png_problem", lambda data: None):  # the same loader without the check (forked workers inherit it)
            unchecked = samples_per_second(build_loader(dataset, 1, train=True, num_workers=1, pin_memory=False), args.samples)
        print(f"ours       1 worker(s), encode on device, PNG check off: {unchecked:6.2f} samples/s "
              f"(with the check {rates['encode on device', 1] / unchecked:.2f}x of that)", flush=True)
        baseline = "PIL + v1 transforms, encode in __getitem__ (reference)"
        for workers in (1, 2):
            for label in ("encode on device", "encode in worker"):
                report(f"data 8 MP, {workers} worker(s), {label}", rates[label, workers], rates["reference", workers],
                       f"{baseline}, {workers} worker(s)", unit="samples/s", target=TARGET if workers == 1 else None)

        print_stages(dataset, reference, encoder)
        targets = [dataset.target_pixels(i) for i in range(len(dataset))]
        scale = torch.tensor([3840, 2160, 3840, 2160], dtype=torch.float32)
        boxes = [b / scale for b, _ in targets]
        labels = [l for _, l in targets]
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as in a loader worker
        start = time.perf_counter()
        for b, l in zip(boxes, labels):
            encoder(b, l)
        in_worker = (time.perf_counter() - start) / len(boxes)
        start = time.perf_counter()
        for b, l in zip(boxes, labels):
            reference_encode(anchors, b, l)
        ref_encode = (time.perf_counter() - start) / len(boxes)
        torch.set_num_threads(threads)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        on_device = encoder.to(device)
        batch_boxes, batch_labels = [b.to(device) for b in boxes], [l.to(device) for l in labels]
        on_device.encode_batch(batch_boxes, batch_labels)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        on_device.encode_batch(batch_boxes, batch_labels)
        if device.type == "cuda":
            torch.cuda.synchronize()
        batched = (time.perf_counter() - start) / len(boxes)
        print(f"encoding per image: in worker (1 thread) {in_worker * 1000:7.1f} ms; reference unchunked box_iou {ref_encode * 1000:7.1f} ms; "
              f"batched after collate on {device.type} ({threads if device.type == 'cpu' else 'GPU'} threads) {batched * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
