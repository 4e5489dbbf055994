"""A trained model scored on a dataset split: the split, its loader and the model set up once from a
plain value (:class:`EvaluationSpec`), then :meth:`ModelEvaluation.evaluate` per checkpoint."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ssd.checkpoint import CheckpointError, check_dataset_fits, load_checkpoint, load_model
from ssd.config import load_config
from ssd.data.kinds import dataset_kind
from ssd.data.loader import build_loader
from ssd.decoding import DecodeSettings
from ssd.device import configure_cudnn
from ssd.distributed import DistributedContext
from ssd.engine.evaluate import Evaluation, Evaluator
from ssd.heap_retention import StepHook, no_step_hook
from ssd.predictor import build_predictor


@dataclass(frozen=True)
class EvaluationSpec:
    """What to evaluate on and how: the config (``model``: its architecture, checked), the split of
    ``dataset`` under ``data_path`` (or a Cognata ``file_list``), the loader, precision and memory
    format, and the scoring: ``mlperf`` (MLPerf's decoding and torchmetrics' thresholds) or the
    dataset kind's decoding at ``nms_threshold`` with ``thresholds``. ``cache_dir``: where an index
    cache goes when the dataset folder is read-only."""

    config: str | Path
    data_path: Path
    dataset: str = "cognata"
    model: str | None = None
    file_list: Path | None = None
    batch_size: int = 32
    num_workers: int = 4
    precision: str = "fp32"
    channels_last: bool = True
    cudnn_benchmark: bool = True
    nms_threshold: float = 0.5
    thresholds: str = "coco"
    mlperf: bool = False
    strict: bool = False
    allow_other_config: bool = False
    cache_dir: Path | None = None


class ModelEvaluation:
    """The validation split, its loader and a model, set up once; :meth:`evaluate` scores the loaded weights.

    The split is built with the label map saved in the first checkpoint (the fixed Cognata map for
    the reference's checkpoints); :meth:`load` swaps in another checkpoint of the same run. Every
    rank predicts its shard; rank 0 scores all of them (:class:`ssd.engine.evaluate.Evaluator`).
    ``after_step``: the caller's hook after each batch (its memory policy). The loader's workers persist
    across :meth:`evaluate` calls until :meth:`close`; as a context manager it closes when the block ends.
    """

    def __init__(self, spec: EvaluationSpec, context: DistributedContext, checkpoint_path: Path, after_step: StepHook = no_step_hook):
        self.spec, self.context = spec, context
        configure_cudnn(context.device, spec.cudnn_benchmark)
        self.config = load_config(spec.config)
        self.config.check_arch(spec.model)
        self.model, checkpoint = load_model(checkpoint_path, self.config, device=context.device, allow_other_config=spec.allow_other_config)
        if spec.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        kind = dataset_kind(spec.dataset)
        self.dataset = kind.build(
            spec.data_path, "val", self.config, label_map=checkpoint.get("label_map"), strict=spec.strict,
            file_list=spec.file_list, cache_dir=spec.cache_dir,
        )
        check_dataset_fits(checkpoint, self.model.num_classes, self.dataset, str(checkpoint_path))
        self.dataset.require_ground_truth()  # before the model runs: no objects, no mAP
        self.label_map = checkpoint.get("label_map")
        loader = build_loader(self.dataset, spec.batch_size, train=False, num_workers=spec.num_workers, distributed=context.is_distributed)
        if spec.mlperf:
            self.settings, self.thresholds = DecodeSettings.mlperf(), "torchmetrics"
        else:
            self.settings, self.thresholds = kind.decode_settings(spec.nms_threshold), spec.thresholds
        predictor = build_predictor(
            self.model, self.config, self.settings, context.device, precision=spec.precision, channels_last=spec.channels_last,
        )
        self.evaluator = Evaluator(
            predictor, loader, self.dataset, thresholds=self.thresholds, after_step=after_step, show_progress=context.is_main,
        )

    def load(self, checkpoint_path: Path) -> None:
        """Load another checkpoint of the same run (same label map) into the model."""
        checkpoint = load_checkpoint(self.model, checkpoint_path, map_location=self.context.device)
        if checkpoint.get("label_map") != self.label_map:
            raise CheckpointError(f"{checkpoint_path}: its label map differs from the first checkpoint's")

    def evaluate(self) -> Evaluation:
        """Predict on every rank; the score everywhere, every rank's detections on rank 0."""
        return self.evaluator.evaluate()

    def close(self) -> None:
        """Stop the loader's workers now (a later :meth:`evaluate` starts new ones)."""
        self.evaluator.loader.close()

    def __enter__(self) -> ModelEvaluation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        """What was evaluated and how, for ``metrics.json``."""
        spec = self.spec
        return {
            "config": self.config.name, "config_file": str(Path(spec.config).resolve()) if Path(spec.config).is_file() else str(spec.config), "dataset": spec.dataset, "data_path": str(spec.data_path),
            "file_list": None if spec.file_list is None else str(spec.file_list),
            "decode": asdict(self.settings), "thresholds": self.thresholds,
        }
