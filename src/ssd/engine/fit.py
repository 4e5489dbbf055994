"""A whole training run: data, model, recipe, resume, per-epoch evaluation, checkpoints, logs.

The loop reads the same with one process or many: every rank trains on its shard, all ranks'
detections are gathered for evaluation (:class:`ssd.engine.evaluate.Evaluator`), and rank 0 alone
writes checkpoints (:mod:`ssd.checkpoint`) and logs.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from ssd.amp import MixedPrecision
from ssd.atomic_file import remove_stale_temporaries
from ssd.anchors import default_boxes
from ssd.checkpoint import (
    BEST, LAST, CheckpointError, atomic_save, check_config_matches, epoch_checkpoint_name, load_checkpoint, load_model_state,
    serialized, training_checkpoint,
)
from ssd.config import load_config
from ssd.data.kinds import dataset_kind
from ssd.data.loader import build_loader
from ssd.data.transforms import flip_transform, train_transform
from ssd.distributed import DistributedContext, all_gather_objects, barrier, cleanup_distributed, mean_over_ranks, setup_distributed
from ssd.device import configure_cudnn
from ssd.engine.evaluate import Evaluation, Evaluator
from ssd.engine.options import TrainOptions
from ssd.engine.resume import ResumePoint, find_resume_point
from ssd.engine.rng import rng_state, seed_everything, set_rng_state
from ssd.engine.run_lock import RunLock
from ssd.engine.run_log import RunLog
from ssd.engine.schedule import WarmupMultiStep, build_optimizer, build_scheduler, load_optimizer_state, scaled_learning_rate
from ssd.engine.train import EpochStats, TrainingStep, train_one_epoch
from ssd.errors import SSDError, parameter
from ssd.heap_retention import StepHook, no_step_hook
from ssd.matching import TargetEncoder
from ssd.models import build_model
from ssd.models.checkpointing import set_activation_checkpointing
from ssd.predictor import build_predictor
from ssd.visualize import denormalize, draw_detections

logger = logging.getLogger(__name__)
NUM_LOGGED_IMAGES = 4
TRAIN_AUGMENTATIONS = {"ssd": train_transform, "flip": flip_transform}  # the names of options.AUGMENTATIONS


@dataclass
class FitResult:
    """How a run ended: epochs done, the last and best mAP, and where the checkpoints are."""

    epochs_completed: int
    last_map: float | None
    best_map: float | None
    last_checkpoint: Path
    best_checkpoint: Path | None
    images_evaluated: int
    is_main: bool


class Trainer:
    """Holds a run's objects; :meth:`run` trains and evaluates epoch by epoch.

    ``after_step``: run after every training step and evaluation batch (the caller's memory policy,
    e.g. :func:`ssd.heap_retention.heap_retention_for` of the device; default none).
    """

    def __init__(self, options: TrainOptions, context: DistributedContext, after_step: StepHook = no_step_hook):
        self.options = options
        self.context = context
        self.device = context.device
        configure_cudnn(self.device, options.cudnn_benchmark)
        self.config = load_config(options.config)
        self.config.check_arch(options.model)
        if context.is_main and options.save_folder.is_dir():
            for stale in remove_stale_temporaries(options.save_folder, "*.pth"):
                logger.info("removed %s, left by a run that was killed while writing it", stale.name)
        resume_point = find_resume_point(options.resume, options.save_folder, context)
        resumed = resume_point.checkpoint if resume_point is not None else None
        kind = dataset_kind(options.dataset)
        data_options = {"strict": options.strict, "cache_dir": options.save_folder}
        saved_labels = resumed.get("label_map") if resumed is not None else None
        augmentation = TRAIN_AUGMENTATIONS[options.augment](self.config.model.image_size)
        self.train_set = kind.build(options.data_path, "train", self.config, label_map=saved_labels, transform=augmentation, **data_options)
        # validation uses the training label map: a first-appearance map must not differ between splits
        self.val_set = kind.build(options.data_path, "val", self.config, label_map=self.train_set.label_map, **data_options)
        self.train_loader = build_loader(
            self.train_set, options.batch_size, train=True, num_workers=options.num_workers,
            distributed=context.is_distributed, seed=options.seed,
        )
        self.val_loader = build_loader(
            self.val_set, options.batch_size, train=False, num_workers=options.num_workers, distributed=context.is_distributed,
        )
        self.num_classes = self.train_set.num_classes
        self.anchors = default_boxes(self.config).to(self.device)
        self.encoder = TargetEncoder(self.anchors)
        self.model = build_model(self.config, self.num_classes, options.backbone_weights).to(self.device)
        set_activation_checkpointing(self.model, options.activation_checkpointing)
        if options.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if options.pretrained_model is not None:
            load_checkpoint(self.model, options.pretrained_model, map_location=self.device)
            logger.info("initialised from %s", options.pretrained_model)
        lr = scaled_learning_rate(options.lr, options.batch_size, context.world_size)
        self.optimizer = build_optimizer(
            self.model, lr, options.momentum, options.weight_decay, options.no_decay_bn, options.optimizer, fused=self.device.type == "cuda"
        )
        schedule = WarmupMultiStep(options.multistep, len(self.train_loader), options.warmup)
        self.scheduler = build_scheduler(self.optimizer, schedule)
        self.precision = MixedPrecision(self.device, options.precision)
        self.after_step = after_step  # one hook for the training and evaluation loops: one decision
        self.predictor = build_predictor(
            self.model, self.config, kind.decode_settings(options.nms_threshold), self.device,
            precision=options.precision, channels_last=options.channels_last,
        )
        self.evaluator = Evaluator(
            self.predictor, self.val_loader, self.val_set, after_step=self.after_step,
            show_progress=options.show_progress and context.is_main,
        )
        self.start_epoch = 0
        self.best_map: float | None = None
        self.last_map: float | None = None  # of the last finished epoch
        if resume_point is not None:
            self._resume(resume_point)
        self.network = (
            DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if context.is_distributed else self.model
        )
        if options.compile:
            self.network = torch.compile(self.network)
        self.step = TrainingStep(
            self.network, self.encoder, self.optimizer, self.precision, self.device, self.scheduler, channels_last=options.channels_last,
        )
        options.save_folder.mkdir(parents=True, exist_ok=True)
        self.log = RunLog(options.save_folder / "metrics.csv", options.tensorboard_dir, enabled=context.is_main)
        if resumed is not None:
            self.log.restore(self.start_epoch, resumed.get("metrics_row"))

    # -- checkpoints --------------------------------------------------------------------------
    def _resume(self, point: ResumePoint) -> None:
        path, checkpoint = point.path, point.checkpoint
        if checkpoint.get("num_classes", self.num_classes) != self.num_classes:
            raise CheckpointError(f"{path}: trained for {checkpoint['num_classes']} classes, this dataset has {self.num_classes}")
        load_model_state(self.model, checkpoint, str(path))  # other shapes: the more telling error
        check_config_matches(checkpoint, self.config, str(path), hint=f"resume with that config, or train into another {parameter('save_folder')}")
        self._check_optimizer_matches(checkpoint, path)
        load_optimizer_state(self.optimizer, checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.precision.load_scaler_state(checkpoint.get("scaler") or {})
        states = checkpoint.get("rng", [])
        if self.context.rank < len(states):
            set_rng_state(states[self.context.rank])
        self.start_epoch = int(checkpoint["epoch"]) + 1
        self.best_map = checkpoint.get("best_map")
        self.last_map = checkpoint.get("map")
        where = f" (read by rank {point.rank})" if self.context.is_distributed else ""
        logger.info("resumed from %s%s at epoch %d", path, where, self.start_epoch)

    def _check_optimizer_matches(self, checkpoint: dict[str, Any], path: Path) -> None:
        """The saved optimizer state fits only the optimizer it was saved from: the same kind and parameter groups."""
        saved = checkpoint.get("options") or {}

        def flags(optimizer: str, no_decay_bn: bool) -> str:
            return f"{parameter('optimizer')} {optimizer}" + (f" {parameter('no_decay_bn')}" if no_decay_bn else "")

        recorded = (saved.get("optimizer", self.options.optimizer), bool(saved.get("no_decay_bn", self.options.no_decay_bn)))
        if recorded != (self.options.optimizer, self.options.no_decay_bn):
            raise CheckpointError(f"{path}: trained with {flags(*recorded)}, this run has {flags(self.options.optimizer, self.options.no_decay_bn)}; "
                                  f"resume with the checkpoint's optimizer settings, or train into another {parameter('save_folder')}")

    def _checkpoint(self, epoch: int, mean_ap: float | None, row: dict[str, Any]) -> dict[str, Any]:
        training_state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.precision.scaler.state_dict(),
            "rng": all_gather_objects(rng_state()),
        }
        return training_checkpoint(
            epoch=epoch, model=self.model, training_state=training_state, config=self.config, class_names=self.train_set.class_names,
            label_map=self.train_set.label_map.to_dict(), mean_ap=mean_ap, best_map=self.best_map,
            options={k: str(v) if isinstance(v, Path) else v for k, v in asdict(self.options).items()}, metrics_row=row,
        )

    def _save(self, epoch: int, mean_ap: float | None, improved: bool, row: dict[str, Any]) -> None:
        checkpoint = self._checkpoint(epoch, mean_ap, row)  # collective (RNG states): every rank takes part
        if not self.context.is_main:
            return
        checkpoint = serialized(checkpoint)  # once for every file below
        folder = self.options.save_folder
        names = []
        if (epoch + 1) % self.options.checkpoint_freq == 0 or epoch + 1 == self.options.epochs:
            names.append(epoch_checkpoint_name(self.options.save_name, epoch))
        if improved:
            names.append(BEST)
        failed: OSError | None = None
        for name in names:
            try:
                atomic_save(checkpoint, folder / name)
            except OSError as exc:  # a full disk: the run still tries to keep its resume point
                failed = failed or exc
        # last, so a resume never skips the other writes; written even when one failed (the resume
        # point matters most), and a failed write leaves the previous last.pth in place
        atomic_save(checkpoint, folder / LAST)
        if failed is not None:
            raise failed

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> FitResult:
        """Train and evaluate the remaining epochs; the loaders' workers stop when it ends, however it ends."""
        try:
            return self._epochs()
        finally:
            self.train_loader.close()
            self.val_loader.close()

    def _epochs(self) -> FitResult:
        options, context = self.options, self.context
        last_map, images_evaluated = self.last_map, 0
        for epoch in range(self.start_epoch, options.epochs):
            self.train_loader.set_epoch(epoch)  # a new order every epoch, the same on every rank
            epoch_lr = self.optimizer.param_groups[0]["lr"]
            stats = train_one_epoch(
                self.step, self.train_loader, epoch, show_progress=options.show_progress and context.is_main, after_step=self.after_step,
            )
            losses = mean_over_ranks(torch.tensor([stats.loss, stats.localisation, stats.classification], device=self.device)).tolist()
            evaluation = self.evaluator.evaluate()
            last_map, images_evaluated = evaluation.result.map, evaluation.images
            improved = self.best_map is None or last_map > self.best_map
            if improved:
                self.best_map = last_map
            scalars = self._scalars(epoch_lr, stats, losses, evaluation)
            row = {"epoch": epoch, **{k.split("/", 1)[1]: float(f"{v:.6g}") for k, v in scalars.items()}, "images_evaluated": evaluation.images}
            self._save(epoch, last_map, improved, row)
            self._record(epoch, scalars, row, evaluation)
            barrier()
        self.log.close()
        folder = options.save_folder
        return FitResult(
            epochs_completed=options.epochs, last_map=last_map, best_map=self.best_map, last_checkpoint=folder / LAST,
            best_checkpoint=folder / BEST if (folder / BEST).is_file() else None, images_evaluated=images_evaluated, is_main=context.is_main,
        )

    def _scalars(self, lr: float, stats: EpochStats, losses: list[float], evaluation: Evaluation) -> dict[str, float]:
        """An epoch's TensorBoard scalars (its metrics.csv row holds the same, by short name)."""
        metrics = evaluation.result.metrics
        scalars = {
            "train/loss": losses[0], "train/loss_localisation": losses[1], "train/loss_classification": losses[2],
            "train/lr": lr, "train/images_per_second": stats.images_per_second * self.context.world_size,
            **{f"val/{name}": metrics[name] for name in ("mAP", "AP50", "AP75")},
        }
        scalars.update({f"val/AP/{name}": ap for name, ap in evaluation.result.per_class.items()})
        return scalars

    def _record(self, epoch: int, scalars: dict[str, float], row: dict[str, Any], evaluation: Evaluation) -> None:
        """TensorBoard scalars and images, the metrics.csv row and a log line (rank 0). After the
        checkpoints, which hold the row too: a kill in between loses no training, and the resumed run
        restores the row (:meth:`RunLog.restore`)."""
        if not self.context.is_main:
            return
        self.log.scalars(epoch, scalars)
        drawn = self._prediction_images()
        if drawn is not None:
            self.log.images("val/predictions", drawn, epoch)
        self.log.epoch_row(row)
        logger.info(
            "epoch %d: loss %.4f, mAP %.4f, %.1f images/s", epoch, scalars["train/loss"], evaluation.result.map, scalars["train/images_per_second"]
        )
        if evaluation.unreadable:
            logger.warning("epoch %d: %d unreadable validation images left out of the mAP (%s ...)", epoch, len(evaluation.unreadable), evaluation.unreadable[0])

    @torch.inference_mode()
    def _prediction_images(self) -> torch.Tensor | None:
        """The first readable validation images with their detections drawn (None if none is readable)."""
        self.model.eval()
        readable = (image for image, _ in (self.val_set[i] for i in range(min(2 * NUM_LOGGED_IMAGES, len(self.val_set)))) if image is not None)
        chosen = list(itertools.islice(readable, NUM_LOGGED_IMAGES))
        if not chosen:
            return None
        images, count = torch.stack(chosen), len(chosen)
        height, width = images.shape[-2:]
        outputs = self.predictor(images, [(height, width)] * count)
        drawn = [
            draw_detections(denormalize(image), out["boxes"][:20], out["labels"][:20], out["scores"][:20], self.train_set.class_names)
            for image, out in zip(images, outputs)
        ]
        return torch.stack(drawn)


def fit(options: TrainOptions, after_step_for: Callable[[torch.device], StepHook] | None = None) -> FitResult:
    """Set up the process group, train (rank 0 holding the save folder's :class:`RunLock`), and tear it down again.

    ``after_step_for(device)``: the hook every loop of the run calls after a step (the caller's memory
    policy, e.g. :func:`ssd.heap_retention.heap_retention_for`; default none)."""
    if options.save_folder.exists() and not options.save_folder.is_dir():
        raise SSDError(f"{parameter('save_folder')} {options.save_folder}: exists and is not a folder")
    context = setup_distributed(options.device, options.local_rank)
    try:
        seed_everything(options.seed + context.rank)
        with RunLock(options.save_folder) if context.is_main else contextlib.nullcontext():
            after_step = after_step_for(context.device) if after_step_for is not None else no_step_hook
            return Trainer(options, context, after_step).run()
    finally:
        cleanup_distributed()
