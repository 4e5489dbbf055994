"""MLPerf Automotive's preprocessed Cognata frames (``preprocess_2d`` / ``val_2d``): read, written, refused when hostile.

MLCommons gives submitters the validation and calibration frames already preprocessed, one Python
pickle per frame, ``{prefix}_{i}.pkl`` with ``prefix`` ``val`` or ``calib`` and ``i`` the frame's row
in the file list (``val_set.csv``), which is LoadGen's sample index. Each holds a dict:

- ``img``: float32 ``[1, 3, H, W]``, the frame resized to the model's size and normalised as the
  reference's validation transform does (here :func:`ssd.data.transforms.eval_transform`);
- ``gt_boxes``: ``[G, 7]`` rows ``[x1, y1, x2, y2, label, 0, 0]``, boxes in the original frame's
  pixels, labels in the fixed 15-class map. The harness writes ``torch.tensor(rows).numpy()`` of the
  CSV's values, so the dtype follows the data (int64 for whole-number boxes, float32 otherwise);
  every real numeric dtype is read and converted to float32 once, in :func:`load_frame`.

The format keeps no original size, so frames are taken to be at the model's size (the benchmark's
are 2160x3840 for a 2160x3840 model) and :func:`write_preprocessed` refuses any other. A pickle can
run code when loaded: :func:`load_frame` unpickles with an allow-list of numpy's array
reconstruction and plain containers, and refuses anything else naming the file and what it asked for.
"""
from __future__ import annotations

import logging
import pickle
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from ssd.atomic_file import write_atomically
from ssd.data.dataset import Annotations, DetectionDataset
from ssd.data.index_cache import IndexCache, fingerprint
from ssd.data.labels import LabelMap, cognata_fixed
from ssd.data.problems import CorruptImageError, DataError, ProblemLog
from ssd.errors import parameter

log = logging.getLogger(__name__)

PREFIXES = ("val", "calib")  # the split names of this format
GT_WIDTH = 7  # x1, y1, x2, y2, label, 0, 0
_REAL_KINDS = "iuf"  # numpy dtype kinds of 'gt_boxes' taken: signed and unsigned integers, floats (not bool, complex, objects, text)
_FILE = re.compile(r"^(val|calib)_(\d+)\.pkl$")
# what numpy arrays (and scalars, dtypes) need to be rebuilt, in NumPy 1 and 2 module names
_ALLOWED = {
    (module, name)
    for package in ("numpy.core", "numpy._core")
    for module, name in ((f"{package}.multiarray", "_reconstruct"), (f"{package}.multiarray", "scalar"), (f"{package}.numeric", "_frombuffer"))
} | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}  # protocol 2 writes bytes as _codecs.encode(str, "latin1")


class UnsafePickleError(DataError):
    """A pickle that asks for something other than numpy arrays and plain containers."""


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise UnsafePickleError(f"refused to load: the pickle asks for {module}.{name} (only numpy arrays and plain containers are allowed)")


def load_frame(path: str | Path) -> dict[str, np.ndarray]:
    """One preprocessed frame's ``img`` and ``gt_boxes``, checked; raises :class:`DataError` naming ``path``."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            frame = _ArraysOnly(handle).load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{path}: {exc}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except Exception as exc:  # truncated or not a pickle: UnpicklingError, EOFError, ValueError...
        raise DataError(f"{path}: not a readable pickle: {type(exc).__name__}: {exc}") from exc
    if not isinstance(frame, dict) or not {"img", "gt_boxes"} <= frame.keys():
        raise DataError(f"{path}: expected a dict with 'img' and 'gt_boxes', got {type(frame).__name__}"
                        + (f" with {sorted(map(str, frame))}" if isinstance(frame, dict) else ""))
    image = _network_input(path, frame["img"])
    boxes = _ground_truth_rows(path, frame["gt_boxes"])
    if not np.isfinite(boxes).all() or not np.isfinite(image).all():
        raise DataError(f"{path}: 'img' or 'gt_boxes' holds a value that is not finite")
    return {"img": image, "gt_boxes": boxes}


def _network_input(path: Path, image: Any) -> np.ndarray:
    """``img`` as float32 ``[1, 3, H, W]``: the harness writes float32, its fp16 conversion float16;
    any floating dtype is taken (an integer array would not be a normalised image)."""
    if not isinstance(image, np.ndarray) or image.dtype.kind != "f" or image.ndim != 4 or image.shape[:2] != (1, 3):
        raise DataError(f"{path}: 'img' must be a floating-point array [1, 3, H, W], got {_describe(image)}")
    return image.astype(np.float32, copy=False)


def _ground_truth_rows(path: Path, boxes: Any) -> np.ndarray:
    """``gt_boxes`` as float32 ``[G, 7]``, converted once from whatever real numeric dtype it was written in.

    The harness writes ``torch.tensor(rows).numpy()`` of the values parsed from the Cognata CSV, so
    the dtype follows the data: int64 when every value is a whole number, float32 when any is
    fractional, and a float32 ``[0]`` for a frame that kept no object. Integers are taken only where
    float32 holds them exactly (a box coordinate beyond 2^24 would otherwise change silently).
    """
    if isinstance(boxes, np.ndarray) and boxes.shape == (0,) and boxes.dtype.kind in _REAL_KINDS:
        return np.zeros((0, GT_WIDTH), np.float32)
    if not isinstance(boxes, np.ndarray) or boxes.ndim != 2 or boxes.shape[1] != GT_WIDTH or boxes.dtype.kind not in _REAL_KINDS:
        raise DataError(f"{path}: 'gt_boxes' must be a real numeric array [G, {GT_WIDTH}] of [x1, y1, x2, y2, label, 0, 0] "
                        f"(int or float), got {_describe(boxes)}")
    converted = boxes.astype(np.float32)
    if boxes.dtype.kind in "iu":
        inexact = np.flatnonzero(converted.astype(np.float64) != boxes)
        if len(inexact):
            raise DataError(f"{path}: 'gt_boxes' value {boxes.flat[inexact[0]]} is too large to be a pixel coordinate or label")
    return converted


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array {list(value.shape)}"
    return type(value).__name__


def frame_files(root: Path, prefix: str) -> list[Path]:
    """``{prefix}_0.pkl .. {prefix}_{N-1}.pkl`` under ``root``, in index order; a gap is an error
    (every later sample would shift against the file list)."""
    if prefix not in PREFIXES:
        raise DataError(f"preprocessed Cognata has the splits {' and '.join(PREFIXES)} (its files' prefixes), not {prefix!r}")
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder does not exist")
    numbered = {}
    for path in root.iterdir():
        match = _FILE.match(path.name)
        if match and match.group(1) == prefix:
            numbered[int(match.group(2))] = path
    if not numbered:
        raise DataError(f"{root}: no {prefix}_<i>.pkl files (MLPerf Automotive's preprocessed frames)")
    missing = next((i for i in range(len(numbered)) if i not in numbered), None)
    if missing is not None:
        raise DataError(f"{root}: {prefix}_{missing}.pkl is missing (the files are numbered up to {max(numbered)}); sample indices follow the numbers")
    return [numbered[i] for i in range(len(numbered))]


class PreprocessedCognata(DetectionDataset):
    """The frames of one split (``val`` or ``calib``) of a preprocessed folder, for evaluation.

    Items are the stored network inputs as they are (no transform); :meth:`network_input` gives
    LoadGen's SUT the same. Ground truth is read once from every file and cached beside them (or in
    ``cache_dir``), keyed on the files' names, sizes and times.
    """

    def __init__(self, root: str | Path, split: str = "val", *, label_map: LabelMap | None = None,
                 strict: bool = False, cache_dir: str | Path | None = None):
        root = Path(root)
        label_map = label_map if label_map is not None else cognata_fixed()  # the benchmark's labels
        files = frame_files(root, split)
        sizes, offsets, gt = _ground_truth(root, split, files, cache_dir)
        empty = np.flatnonzero((gt[:, 2] <= gt[:, 0]) | (gt[:, 3] <= gt[:, 1]))
        if len(empty):
            frame = int(np.searchsorted(offsets, empty[0], side="right")) - 1
            x1, y1, x2, y2 = gt[empty[0], :4]
            raise DataError(f"{files[frame]}: ground-truth box {empty[0] - offsets[frame]} [{x1:g}, {y1:g}, {x2:g}, {y2:g}] is not "
                            "[x1, y1, x2, y2] with x2 > x1 and y2 > y1 (swapped corners?)")
        labels = np.rint(gt[:, 4]).astype(np.int64)
        bad = np.flatnonzero((labels < 1) | (labels >= label_map.num_classes) | (labels != gt[:, 4]))
        if len(bad):
            frame = int(np.searchsorted(offsets, bad[0], side="right")) - 1
            raise DataError(f"{files[frame]}: ground-truth label {gt[bad[0], 4]:g} is not one of the {label_map.num_classes - 1} "
                            f"classes of the label map (1 to {label_map.num_classes - 1})")
        annotations = Annotations.from_lists(
            paths=[f.name for f in files], sizes=[tuple(s) for s in sizes.tolist()], image_ids=range(len(files)),
            boxes=[gt[offsets[i] : offsets[i + 1], :4] for i in range(len(files))],
            labels=[labels[offsets[i] : offsets[i + 1]] for i in range(len(files))],
        )
        super().__init__(root, annotations, label_map, range(label_map.num_classes), _as_stored, ProblemLog(strict), Counter())
        log.info("preprocessed cognata %s at %s: %d frames, %d objects", split, root, len(self), len(labels))

    def load_image(self, index: int) -> Tensor:
        """The stored network input ``[3, H, W]`` float32; raises :class:`CorruptImageError`."""
        try:
            image = load_frame(self.image_path(index))["img"][0]
        except DataError as exc:
            raise CorruptImageError(str(exc).removeprefix(f"{self.image_path(index)}: ")) from exc
        if tuple(image.shape[1:]) != self.orig_size(index):
            raise CorruptImageError(f"image {image.shape[1]}x{image.shape[2]} differs from the indexed {self.orig_size(index)}")
        return torch.from_numpy(np.ascontiguousarray(image))

    def network_input(self, index: int, preprocess: Callable[[Path], tuple[Tensor, tuple[int, int]]]) -> tuple[Tensor, tuple[int, int]]:
        """The stored input as it is (``preprocess`` is not needed), and the size boxes are reported in."""
        return self.load_image(index), self.orig_size(index)

    def check_image_size(self, image_size: Sequence[int]) -> None:
        """Raise :class:`DataError` unless every frame is at the model's ``image_size`` (H, W)."""
        wrong = np.flatnonzero((self.annotations.sizes != np.asarray(image_size)).any(axis=1))
        if len(wrong):
            height, width = self.orig_size(int(wrong[0]))
            raise DataError(f"{self.image_path(int(wrong[0]))}: preprocessed at {height}x{width}; the config's model takes "
                            f"{image_size[0]}x{image_size[1]}")


def _ground_truth(root: Path, split: str, files: list[Path], cache_dir: str | Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every frame's (H, W) ``[N, 2]``, object offsets ``[N + 1]`` and ``gt_boxes`` rows ``[O, 7]``,
    read from the files once and then from the index cache."""
    cache = IndexCache(cache_dir)
    key = fingerprint([(f.name, f.stat()) for f in files])
    entry = cache.load(root, f"preprocessed_{split}", key)
    if entry is not None:
        arrays = entry[1]
        return arrays["sizes"], arrays["offsets"], arrays["gt"]
    sizes, per_frame = [], []
    for path in files:
        frame = load_frame(path)
        sizes.append(frame["img"].shape[2:])
        per_frame.append(frame["gt_boxes"])
    arrays = {
        "sizes": np.asarray(sizes, np.int64).reshape(-1, 2),
        "offsets": np.concatenate(([0], np.cumsum([len(b) for b in per_frame]))).astype(np.int64),
        "gt": np.concatenate(per_frame).astype(np.float32),
    }
    cache.save(root, f"preprocessed_{split}", key, {"frames": len(files)}, arrays)
    return arrays["sizes"], arrays["offsets"], arrays["gt"]


def _as_stored(image: Tensor, target: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
    """The transform of preprocessed frames: none (they were resized and normalised when written)."""
    return image, target


def write_preprocessed(dataset: DetectionDataset, out: str | Path, prefix: str, image_size: Sequence[int], show_progress: bool = False) -> int:
    """Write ``dataset`` (built with ``train=False``: the validation transform to ``image_size``) as ``{prefix}_{i}.pkl``
    under ``out``; returns the number of frames. Each file is written atomically, so a killed run
    leaves only whole files. Raises :class:`DataError` for a frame not at ``image_size`` (the format
    keeps no original size), an unreadable image, or an ``out`` holding more such files than these."""
    if prefix not in PREFIXES:
        raise DataError(f"the preprocessed format's prefixes are {' and '.join(PREFIXES)}, not {prefix!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder (the preprocessed frames are written into a folder)")
    out.mkdir(parents=True, exist_ok=True)
    extra = sorted(p.name for p in out.iterdir() if (m := _FILE.match(p.name)) and m.group(1) == prefix and int(m.group(2)) >= len(dataset))
    if extra:
        raise DataError(f"{out}: already holds {extra[0]} and others beyond the {len(dataset)} frames to write; use an empty folder")
    if dataset.substitute_unreadable:
        raise ValueError("the dataset substitutes unreadable images (a training split's behaviour); build it with train=False")
    for index in tqdm(range(len(dataset)), desc="preprocessing", unit="frame", disable=not show_progress, dynamic_ncols=True):
        if dataset.orig_size(index) != tuple(image_size):
            height, width = dataset.orig_size(index)
            raise DataError(f"{dataset.image_path(index)}: {height}x{width}, but the format keeps no original size: "
                            f"frames must be at the model's {image_size[0]}x{image_size[1]}")
        image, target = dataset[index]
        if image is None:
            raise DataError(f"{target['unreadable'].path}: {target['unreadable'].reason}")
        boxes, labels = dataset.target_pixels(index)
        write_atomically(out / f"{prefix}_{index}.pkl", dumps(frame_payload(image, boxes, labels)))
    return len(dataset)


def frame_payload(image: Tensor, boxes: Tensor, labels: Tensor) -> dict[str, np.ndarray]:
    """One frame in the format: ``img [1, 3, H, W]`` float32 and ``gt_boxes [G, 7]`` float32."""
    gt = np.zeros((len(labels), GT_WIDTH), np.float32)
    gt[:, :4] = boxes.numpy()
    gt[:, 4] = labels.numpy()
    return {"img": image.unsqueeze(0).numpy().astype(np.float32, copy=False), "gt_boxes": gt}


def dumps(payload: dict[str, np.ndarray]) -> bytes:
    """A frame pickled as the benchmark's files are (protocol 4)."""
    return pickle.dumps(payload, protocol=4)


def build_preprocessed(data_path: str | Path, split: str, config: Any, options: Any) -> PreprocessedCognata:
    """The builder of :mod:`ssd.data.kinds`: evaluation only (the frames are already transformed)."""
    if options.train:
        raise DataError(f"{data_path}: preprocessed frames are for evaluation and LoadGen; train on the raw Cognata dataset")
    if options.file_list is not None:
        raise DataError(f"{parameter('file_list')} {options.file_list}: preprocessed frames are numbered in their list's order already")
    label_map = options.label_map
    if label_map is not None and not isinstance(label_map, LabelMap):
        label_map = LabelMap.from_dict(label_map)
    dataset = PreprocessedCognata(data_path, split, label_map=label_map, strict=options.strict, cache_dir=options.cache_dir)
    dataset.check_image_size(config.model.image_size)
    return dataset


def preprocessed_stats(root: str | Path, config: Any = None, *, cache_dir: str | Path | None = None, strict: bool = False,
                       verify_images: bool = False, split: str = "val") -> Any:
    """``ssd data stats`` for a preprocessed folder: frames and ground-truth objects per class and size
    (``verify_images`` reads every frame's array)."""
    from ssd.data.stats import DatasetStats, per_class_counts, summarise_sizes

    dataset = PreprocessedCognata(root, split, strict=strict, cache_dir=cache_dir)
    stats = DatasetStats("cognata-preprocessed", str(dataset.root), images=len(dataset), objects=len(dataset.annotations.labels))
    stats.per_class = per_class_counts(dataset.annotations.labels, dataset.class_names)
    summarise_sizes(stats, dataset.annotations.boxes)
    if verify_images:
        for index in range(len(dataset)):
            try:
                dataset.load_image(index)
            except CorruptImageError as exc:
                stats.skipped.append({"path": str(dataset.image_path(index)), "reason": str(exc)})
    return stats


def synth_preprocessed(out: str | Path, images: int, *, size: tuple[int, int] = (300, 300), seed: int = 0, prefix: str = "val") -> Any:
    """Synthetic Cognata frames of ``size`` written in the preprocessed format (the raw frames are
    generated in ``out/raw`` first)."""
    from ssd.data.cognata import CognataDataset
    from ssd.data.synth import SynthResult, synth_cognata
    from ssd.data.transforms import eval_transform

    out = Path(out)
    raw = synth_cognata(out / "raw", images, size=size, seed=seed)
    dataset = CognataDataset(raw.root, "all", transform=eval_transform(size))
    dataset.substitute_unreadable = False
    frames = write_preprocessed(dataset, out, prefix, size)
    return SynthResult(out, frames, len(dataset.annotations.labels))
