"""Precision-recall curves and a per-class AP chart from an :class:`EvalResult` (no second evaluation)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ssd.atomic_file import atomic_write
from ssd.evaluation.coco_eval import IOU_THRESHOLDS, RECALL_THRESHOLDS, EvalResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_precision_recall(result: EvalResult, out_dir: str | Path) -> list[Path]:
    """Write PNG charts under ``out_dir`` (created if needed) and return their paths.

    One ``pr_<k>_<class>.png`` per class with ground truth: precision against recall at IoU 0.50
    and averaged over IoU 0.50:0.95 (area all, largest maxDets), from ``result.precision``; and
    ``ap_per_class.png``, a bar chart of AP @[.5:.95] per class (classes without ground truth left out).
    """
    from matplotlib.figure import Figure  # the object API renders with Agg and leaves pyplot's state alone

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    measured = [(k, name, ap) for k, (name, ap) in enumerate(result.per_class.items()) if ap >= 0]
    paths = []
    for k, name, ap in measured:
        curves = result.precision[:, :, k, 0, -1]  # [T, R]: every entry defined for a class with ground truth
        fig = Figure(figsize=(5, 4), layout="constrained")
        ax = fig.add_subplot()
        ax.plot(RECALL_THRESHOLDS, curves[0], label=f"IoU {IOU_THRESHOLDS[0]:.2f} (AP {curves[0].mean():.3f})")
        ax.plot(RECALL_THRESHOLDS, curves.mean(axis=0), label=f"IoU 0.50:0.95 mean (AP {ap:.3f})")
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title=f"{name}: precision-recall")
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
        paths.append(out / f"pr_{k:02d}_{_slug(name)}.png")
        _save(fig, paths[-1])

    fig = Figure(figsize=(7, 1.5 + 0.25 * max(len(measured), 1)), layout="constrained")
    ax = fig.add_subplot()
    positions = np.arange(len(measured))
    ax.bar_label(ax.barh(positions, [ap for _, _, ap in measured]), fmt="%.3f", padding=2)
    ax.set_yticks(positions, [name for _, name, _ in measured])
    ax.invert_yaxis()  # first class on top
    ax.set(xlim=(0, 1), xlabel="AP @[.5:.95]", title=f"AP per class (mAP {result.map:.4f})")
    ax.grid(axis="x", alpha=0.3)
    paths.append(out / "ap_per_class.png")
    _save(fig, paths[-1])
    return paths


def _save(fig: Figure, path: Path) -> None:
    """A figure as a PNG file, written whole or not at all."""
    with atomic_write(path) as handle:
        fig.savefig(handle, dpi=100, format="png")


def _slug(name: str) -> str:
    """A class name made safe for a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "class"
