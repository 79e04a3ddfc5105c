"""The training loop: one epoch of optimisation, evaluation, and the epoch commit.

One call of :func:`train` runs (or resumes) a run described by a :class:`TrainConfig` in
its run directory (:mod:`preattn.train.rundir`). Under ``torchrun`` it runs DDP: a
``DistributedSampler`` shards the training set, the test set is split into disjoint
strided shards, metrics are summed across ranks, and only rank 0 writes files.

Learning rate: ``lr(t) = lr · f(t; T, W)`` at optimiser step ``t`` of ``T = epochs ·
steps_per_epoch`` with ``W = warmup_epochs · steps_per_epoch`` (linear warm-up, then
cosine to 0; :class:`~preattn.train.optim.WarmupCosine`). Resuming with more epochs
re-plans ``T`` and continues from the saved ``t``.

Reproducibility: the model is initialised from ``seed``; each epoch's shuffling and
augmentation are seeded from ``(seed, epoch, rank)``, so an interrupted run resumed from its
last checkpoint ends with the same metrics as an uninterrupted one (on CPU).

What a run says as it goes (the run's sizes, progress lines, one line per epoch) is logged
at INFO on this module's logger, ``preattn.train.loop``, from the main process only; the
``preattn`` command shows these records as plain lines on stdout
(:func:`preattn._console.console_lines`), a Python caller sees them once it configures
:mod:`logging`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Subset
from tqdm import tqdm

from ..data.device_batches import DeviceImages
from ..data.registry import DataSplits, first_images
from ..maps import attention_maps
from ..mixing import lambdas
from .build import build_data, build_model, corrupted_test_sets
from .config import TrainConfig
from .distributed import DistContext, all_reduce_sum, barrier, init_distributed, shutdown
from .epoch_record import EpochRecord
from .evaluate import evaluate, write_test_correct
from .kernels import kernel_settings
from .load import check_same_data
from .optim import WarmupCosine, build_optimizer
from .plots import plot_confusion, plot_history
from .precision import amp_dtype as autocast_dtype
from .precision import make_scaler
from .rundir import (
    METRICS_FILE,
    RESUMABLE_OPTIONS,
    RunDir,
    RunError,
    default_run_dir,
    fixed_changes,
)

__all__ = [
    "EpochCallback",
    "TrainingDiverged",
    "format_duration",
    "train",
    "train_one_epoch",
]

EpochCallback = Callable[[EpochRecord], None]

_logger = logging.getLogger(__name__)

# the fixed batch of held-out images (the validation set's with holdout, else the test set's)
# the modulation of each block is measured on, every epoch
MODULATION_IMAGES = 64


class TrainingDiverged(RunError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


def _test_shard(dataset: Any, ctx: DistContext) -> Any:
    """This process's disjoint strided share of a test set."""
    if not ctx.distributed:
        return dataset
    return Subset(dataset, range(ctx.rank, len(dataset), ctx.world_size))


def _epoch_generator(config: TrainConfig, epoch: int) -> torch.Generator:
    """The generator of an epoch's order (and, on the device path, its augmentation):
    seeded from ``(seed, epoch)`` alone, the same on every process."""
    return torch.Generator().manual_seed(config.seed * 100_003 + epoch)


def _train_loader(
    splits: DataSplits, config: TrainConfig, ctx: DistContext, epoch: int
) -> DataLoader:
    """The data loader of one epoch. It is built per epoch on purpose: its order and its
    workers' seeds come from the epoch's generator, so a resumed run repeats an
    uninterrupted one (persistent workers would carry their state across epochs)."""
    generator = _epoch_generator(config, epoch)
    sampler: Any
    if ctx.distributed:
        sampler = DistributedSampler(
            splits.train,
            num_replicas=ctx.world_size,
            rank=ctx.rank,
            shuffle=True,
            seed=config.seed,
            drop_last=True,
        )
        sampler.set_epoch(epoch)
    else:
        sampler = RandomSampler(splits.train, generator=generator)
    return DataLoader(
        splits.train,
        batch_size=config.batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=config.workers,
        generator=generator,
        pin_memory=ctx.device.type == "cuda",
        persistent_workers=False,
    )


# without a terminal (a log file, ablate's train.log), a progress line this often
LOG_EVERY_S = 30.0


def format_duration(seconds: float) -> str:
    """``75.4`` -> ``"1 min 15 s"``, ``42`` -> ``"42 s"``, ``3700`` -> ``"1 h 2 min"``."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, rest = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _progress(iterable: Any, ctx: DistContext, *, desc: str) -> Iterator[Any]:
    """``iterable`` with progress on the main process: a tqdm bar on a terminal, else a
    line every :data:`LOG_EVERY_S` seconds with the time left at the pace so far
    (``epoch 2/10: batch 120/469 (26 %), 41 s, about 1 min 59 s left``)."""
    if not ctx.is_main:
        return iter(iterable)
    if sys.stderr.isatty():
        return iter(tqdm(iterable, leave=False, dynamic_ncols=True, desc=desc))
    return _logged(iterable, desc)


def _logged(iterable: Any, desc: str) -> Iterator[Any]:
    total = len(iterable) if hasattr(iterable, "__len__") else None
    started = last = time.perf_counter()
    for index, item in enumerate(iterable, start=1):
        yield item
        now = time.perf_counter()
        if now - last >= LOG_EVERY_S:
            last = now
            of = f"/{total} ({100 * index / total:.0f} %)" if total else ""
            spent = now - started
            left = (
                f", about {format_duration(spent / index * (total - index))} left" if total else ""
            )
            _logger.info(f"  {desc}: batch {index}{of}, {spent:.0f} s{left}")


def _log(ctx: DistContext, message: str) -> None:
    if ctx.is_main:
        _logger.info(message)


@dataclass
class StepContext:
    """What one optimisation step needs besides the batch."""

    net: nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: nn.Module
    scaler: torch.amp.GradScaler
    lr_at: Callable[[int], float]
    device: torch.device
    memory_format: torch.memory_format
    amp_dtype: torch.dtype | None


# the step losses are read on the host (one synchronisation with the device) this often
# and at the end of an epoch; a non-finite loss stops training at that read
SYNC_EVERY = 50


def train_one_epoch(
    ctx: StepContext, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], step: int, epoch: int
) -> tuple[dict[str, Any], int]:
    """One pass over ``batches`` from optimiser step ``step``.

    Returns the sums ``{"loss", "correct", "seen"}`` over all processes, the last ``lr``,
    ``seconds``, and ``steps``: this process's per-step records ``{"step", "epoch", "loss",
    "lr"}``; and the next step. Losses stay on the device and are read every
    :data:`SYNC_EVERY` steps, so the host never waits for the device within a step. A loss
    that is not finite raises :class:`TrainingDiverged` at that read, naming the epoch
    (1-based), the batch and the step where it first appeared; nothing of the epoch is
    committed then, so the last good checkpoint is kept.
    """
    device = ctx.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.float64, device=device)
    seen = torch.zeros((), dtype=torch.float64, device=device)
    lr = ctx.lr_at(step)
    started = time.perf_counter()
    per_step: list[dict[str, Any]] = []
    unread: list[tuple[int, int, float, torch.Tensor]] = []  # (batch, step, lr, loss)

    def read_losses() -> None:
        if not unread:
            return
        values = torch.stack([loss for *_, loss in unread]).tolist()
        for (index, at, rate, _), value in zip(unread, values, strict=True):
            if not math.isfinite(value):
                raise TrainingDiverged(
                    f"training loss became {value} at epoch {epoch}, batch {index + 1} "
                    f"(optimiser step {at}); stopped, the last good checkpoint is kept"
                )
            per_step.append({"step": at, "epoch": epoch, "loss": value, "lr": rate})
        unread.clear()

    ctx.net.train()
    for index, (images, labels) in enumerate(batches):
        images = images.to(device, non_blocking=True).contiguous(memory_format=ctx.memory_format)
        labels = labels.to(device, non_blocking=True)
        lr = ctx.lr_at(step)
        for group in ctx.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        with torch.autocast(
            device.type, dtype=ctx.amp_dtype or torch.float32, enabled=ctx.amp_dtype is not None
        ):
            logits = ctx.net(images)
            loss = ctx.loss_fn(logits.float(), labels)
        ctx.optimizer.zero_grad(set_to_none=True)
        ctx.scaler.scale(loss).backward()
        ctx.scaler.step(ctx.optimizer)
        ctx.scaler.update()
        step += 1
        loss = loss.detach()
        unread.append((index, step, lr, loss))
        loss_sum += loss * labels.numel()
        correct += (logits.argmax(1) == labels).sum()
        seen += labels.numel()
        if len(unread) >= SYNC_EVERY:
            read_losses()
    read_losses()
    stats = {"loss": loss_sum, "correct": correct, "seen": seen}
    for total in stats.values():
        all_reduce_sum(total)
    out: dict[str, Any] = {k: v.item() for k, v in stats.items()}
    out["lr"] = lr
    out["seconds"] = time.perf_counter() - started
    out["steps"] = per_step
    return out, step


def _check_resume(config: TrainConfig, saved: TrainConfig) -> dict[str, list[Any]]:
    """The options of ``config`` that differ from the ``saved`` run's: those in
    :data:`RESUMABLE_OPTIONS` are returned, any other raises :class:`RunError` naming it."""
    now, before = config.to_dict(), saved.to_dict()
    changed = {k: [before[k], now[k]] for k in now if k != "out" and now[k] != before[k]}
    fixed = fixed_changes(config, saved)
    if fixed:
        listing = ", ".join(f"{k} ({a!r} -> {b!r})" for k, (a, b) in fixed.items())
        raise RunError(
            f"cannot change on resume: {listing}; only {list(RESUMABLE_OPTIONS)} may change "
            "(start a new run for the others)"
        )
    return changed


def _read_checkpoint(run: RunDir, epoch: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The committed weights and training state of ``epoch``; :class:`RunError` when either
    is unreadable or from another epoch."""
    weights, weights_epoch = run.load_weights()
    state = run.load_state()
    if not weights_epoch == state.get("epoch") == epoch:
        raise RunError(
            f"{run.path}: the committed checkpoint is epoch {epoch}, but its weights "
            f"are from epoch {weights_epoch} and its training state from epoch "
            f"{state.get('epoch')}"
        )
    return weights, state


def _prepare_run_dir(
    run: RunDir, config: TrainConfig, splits: DataSplits, resume: bool, overwrite: bool
) -> tuple[int, list[EpochRecord]]:
    """Check and set up ``run`` for a new or resumed run (rank 0, lock held).

    Everything is decided first (the options, the data, a complete and readable committed
    checkpoint); nothing is deleted or written before. Returns the
    committed epoch to start after and the metrics history up to it.
    """
    if not resume:
        if run.holds_run():
            if not overwrite:
                raise RunError(
                    f"{run.path} already holds a run; use --resume {run.path} to continue it "
                    "or --overwrite to replace it"
                )
            run.clear()
        run.write_config(config, [], splits.info)
        return 0, []
    saved, history = run.read_config()
    changed = _check_resume(config, saved)
    diverged = run.divergence()  # readable before anything changes
    trained_on = run.read_data_info()
    if trained_on is not None:
        check_same_data(run, trained_on, splits.info)
    start = run.check_checkpoints()
    if config.epochs < start:
        raise RunError(
            f"epochs={config.epochs} is fewer than the {start} epochs {run.path} has completed"
        )
    if start:
        _read_checkpoint(run, start)  # readable before anything changes
    where = str(run.path / METRICS_FILE)
    rows = run.read_metrics(upto_epoch=start)
    records = [  # readable before anything changes
        EpochRecord.from_json(row, f"{where}: record {number}")
        for number, row in enumerate(rows, 1)
    ]
    run.clean_stale()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    entry: dict[str, Any] = {"resumed_after_epoch": start, "time": stamp}
    if changed:
        entry["changed"] = changed
    if diverged is not None:
        entry["after_divergence"] = diverged["message"]
        run.clear_divergence()
    run.write_config(config, [*history, entry])
    run.write_metrics(rows)  # as written, less the records after the checkpoint
    run.write_steps(run.read_steps(upto_epoch=start))
    return start, records


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: list[EpochCallback] | None = None,
) -> EpochRecord:
    """Run (or, with ``resume=True``, continue) the run in ``config.out``.

    A new run refuses a directory that already holds one unless ``overwrite``; a resumed
    run may change only :data:`RESUMABLE_OPTIONS` (``epochs`` re-plans the LR schedule).
    When the loss turns non-finite the run stops with :class:`TrainingDiverged` and records
    it in ``diverged.json`` (:meth:`RunDir.divergence`) beside its last good checkpoint; a
    resume trains from that checkpoint again and forgets the record.
    ``config.out=None`` picks a new ``runs/<date>-<time>-<model>``. Returns the last epoch's
    :class:`~preattn.train.epoch_record.EpochRecord`. Each callback receives every epoch's
    record on every rank.
    """
    if config.out is None:
        config = config.replace(out=str(default_run_dir(config.model)))
    if config.data_dir:
        config = config.replace(data_dir=str(Path(config.data_dir).resolve()))
    config.validate()
    ctx = init_distributed(config.device)
    run = RunDir(config.out)
    try:
        with (
            run.lock() if ctx.is_main else contextlib.nullcontext(),
            kernel_settings(ctx.device, config.deterministic),
        ):
            try:
                return _train(config, ctx, run, resume, overwrite, callbacks or [])
            except TrainingDiverged as exc:
                if ctx.is_main:  # kept beside the last good checkpoint: ablate reports it
                    with contextlib.suppress(RunError, OSError):  # the divergence is the error
                        run.mark_diverged(str(exc))
                raise
    finally:
        shutdown()


def _train(
    config: TrainConfig,
    ctx: DistContext,
    run: RunDir,
    resume: bool,
    overwrite: bool,
    callbacks: list[EpochCallback],
) -> EpochRecord:
    training, start_epoch = _start(config, ctx, run, resume, overwrite)
    for epoch in range(start_epoch, config.epochs):
        record = training.run_epoch(epoch)
        for callback in callbacks:
            callback(record)
    if ctx.is_main and training.history and config.plots:
        training.draw_figures()
    return training.history[-1]


def _training_data(config: TrainConfig, ctx: DistContext) -> DataSplits:
    """The run's data; ValueError when one optimiser step needs more images than it has."""
    splits = build_data(config)
    if len(splits.train) < config.batch_size * ctx.world_size:
        raise ValueError(
            f"batch_size={config.batch_size} x {ctx.world_size} process(es) exceeds the "
            f"{len(splits.train)} training samples"
        )
    return splits


def _placed_model(config: TrainConfig, splits: DataSplits, ctx: DistContext) -> nn.Module:
    """The initialised network on the device in the run's memory format (SyncBatchNorm
    under CUDA DDP when ``sync_bn`` asks)."""
    model = build_model(config, splits.info, initialise=True)
    if config.sync_bn:
        if ctx.device.type == "cuda" and ctx.distributed:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            warnings.warn(
                "--sync-bn ignored: PyTorch's SyncBatchNorm runs only on CUDA under DDP; "
                "each process normalises with its own batch statistics",
                stacklevel=4,  # the warning points at train()
            )
    return model.to(ctx.device, memory_format=_memory_format(config))


def _memory_format(config: TrainConfig) -> torch.memory_format:
    return torch.channels_last if config.channels_last else torch.contiguous_format


def _restore(
    run: RunDir,
    ctx: DistContext,
    start_epoch: int,
    resume: bool,
    parts: tuple[nn.Module, torch.optim.Optimizer, torch.amp.GradScaler],
) -> int:
    """Load the committed ``start_epoch`` (if any) into the model, optimiser and scaler
    (``parts``) and the random state; return the optimiser step to continue from."""
    if not start_epoch:
        if resume:
            _log(ctx, f"resuming {run.path}: no committed epoch yet, starting at epoch 1")
        return 0
    model, optimizer, scaler = parts
    weights, state = _read_checkpoint(run, start_epoch)
    model.load_state_dict(weights)
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"])
    step = int(state.get("step", state.get("scheduler", {}).get("last_epoch", 0)))
    _log(ctx, f"resuming {run.path} after epoch {start_epoch} (optimiser step {step})")
    return step


def _training_net(model: nn.Module, config: TrainConfig, ctx: DistContext) -> nn.Module:
    """What the optimisation steps call: ``model`` under DDP on several processes, compiled
    when ``compile`` asks (evaluation runs the same weights eagerly)."""
    net: nn.Module = model
    if ctx.distributed:
        device = ctx.device
        net = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.compile:
        net = torch.compile(net)
    return net


def _start(
    config: TrainConfig, ctx: DistContext, run: RunDir, resume: bool, overwrite: bool
) -> tuple[_Training, int]:
    """Everything an epoch needs, built in a fixed order (the random draws of a run depend
    on it): the data and the network from ``seed``, the optimiser, the run directory checked
    and prepared (or resumed), the device data and the probe batch. Returns the training
    and the number of committed epochs it starts after."""
    torch.manual_seed(config.seed)
    splits = _training_data(config, ctx)
    model = _placed_model(config, splits, ctx)
    optimizer = build_optimizer(
        model,
        config.optimizer,
        config.lr,
        config.weight_decay,
        config.momentum,
        config.lam_lr_scale,
    )
    steps_per_epoch = len(splits.train) // (config.batch_size * ctx.world_size)
    schedule = WarmupCosine(
        config.epochs * steps_per_epoch, round(config.warmup_epochs * steps_per_epoch)
    )
    amp_dtype = autocast_dtype(config.amp, ctx.device)
    scaler = make_scaler(amp_dtype, ctx.device)
    start_epoch, history = 0, []
    if ctx.is_main:
        start_epoch, history = _prepare_run_dir(run, config, splits, resume, overwrite)
    if ctx.distributed:
        start_epoch = _broadcast_int(start_epoch, ctx.device)
    step = _restore(run, ctx, start_epoch, resume, (model, optimizer, scaler))
    step_ctx = StepContext(
        net=_training_net(model, config, ctx),
        optimizer=optimizer,
        loss_fn=nn.CrossEntropyLoss(label_smoothing=config.label_smoothing),
        scaler=scaler,
        lr_at=lambda t: config.lr * schedule(t),
        device=ctx.device,
        memory_format=_memory_format(config),
        amp_dtype=amp_dtype,
    )
    on_device = _device_images(splits, config, ctx)
    _log(
        ctx,
        f"training {config.model} ({config.spec.describe()}) on {config.dataset} "
        f"[{splits.source}]: {len(splits.train)} train"
        f"{f' / {len(splits.val)} validation' if splits.val is not None else ''}"  # type: ignore[arg-type]
        f" / {len(splits.test)} test images"
        f"{' (--limit-test evaluates fewer)' if len(splits.test) > len(splits.train) else ''}, "
        f"{ctx.world_size} process(es) on {ctx.device}; run directory {run.path}",
    )
    # measured on held-out images: the validation set's where the run has one
    probe_images = splits.val if splits.val is not None else splits.test
    probe = first_images(probe_images, MODULATION_IMAGES).to(ctx.device)
    probe = probe.contiguous(memory_format=_memory_format(config))
    training = _Training(
        config, ctx, run, splits, model, step_ctx, on_device, probe, step=step, history=history
    )
    return training, start_epoch


@dataclass
class _Evaluation:
    """An epoch's evaluations: the test result (None: the epoch did not evaluate the test
    set and no earlier epoch of this call did), the corrupted test sets' results (last
    epoch), the right/wrong flags to keep per test set, the seconds of the clean
    evaluations, and the validation result (None: no validation set, or not evaluated)."""

    result: Any
    corrupt: dict[str, Any]
    correct: dict[str, Any]
    seconds: float
    val: Any = None


@dataclass
class _Training:
    """One call of :func:`train` between its epochs: what :func:`_start` built, the
    optimiser ``step`` and the ``history`` of epoch records so far, and the last evaluation
    (whose confusion the final figures draw)."""

    config: TrainConfig
    ctx: DistContext
    run: RunDir
    splits: DataSplits
    model: nn.Module
    step_ctx: StepContext
    on_device: _OnDevice | None
    probe: torch.Tensor
    step: int = 0
    history: list[EpochRecord] = field(default_factory=list)
    result: Any = None

    def evaluate_set(
        self, dataset: Any, images: DeviceImages | None = None, keep: bool = False
    ) -> Any:
        """``dataset`` (or its device copy ``images``) evaluated by this process (its shard
        under DDP); ``keep``: the right/wrong flag of each image, in order (one process)."""
        config, ctx = self.config, self.ctx
        batches: Any
        if images is not None:
            batches = images.epoch(
                config.batch_size, rank=ctx.rank, world_size=ctx.world_size, drop_last=False
            )
            count = len(batches.order)
        else:
            shard = _test_shard(dataset, ctx)
            count = len(shard)
            batches = DataLoader(
                shard,
                batch_size=config.batch_size,
                num_workers=config.workers,
                pin_memory=ctx.device.type == "cuda",
            )
        return evaluate(
            self.model,
            _progress(batches, ctx, desc=f"evaluating {count} images"),
            self.splits.num_classes,
            ctx.device,
            channels_last=config.channels_last,
            amp_dtype=self.step_ctx.amp_dtype,
            keep_correct=keep and ctx.world_size == 1,  # one process: the images in order
            flip=config.test_flip,
        )

    def epoch_batches(self, epoch: int) -> Iterable[Any]:
        """The training batches of ``epoch`` (0-based), in the epoch's seeded order."""
        config, ctx = self.config, self.ctx
        loader: Iterable[Any]
        if self.on_device is not None:
            loader = self.on_device.train.epoch(
                config.batch_size,
                generator=_epoch_generator(config, epoch),
                drop_last=True,
                rank=ctx.rank,
                world_size=ctx.world_size,
            )
        else:
            loader = _train_loader(self.splits, config, ctx, epoch)
        return _progress(loader, ctx, desc=f"epoch {epoch + 1}/{config.epochs}")

    def test(self, epoch: int) -> _Evaluation:
        """The evaluations after ``epoch`` (1-based), in the epochs that evaluate
        (:func:`_evaluates`): the validation set where the run holds one out (``holdout``),
        the clean test set — after the last epoch only when a validation set serves the
        others — and the corrupted copies after the last epoch."""
        config, last = self.config, epoch == self.config.epochs
        on_device = self.on_device
        started = time.perf_counter()
        val = None
        if _evaluates(config, epoch):
            if self.splits.val is not None:
                val = self.evaluate_set(self.splits.val, on_device.val if on_device else None)
            if self.splits.val is None or last:
                test = on_device.test if on_device else None
                self.result = self.evaluate_set(self.splits.test, test, keep=last)
        result = self.result
        correct = {"test_acc": result.correct} if last and result is not None else {}
        seconds = time.perf_counter() - started
        corrupt = {}
        if last and config.eval_corrupt:
            corrupt = {
                name: self.evaluate_set(dataset, keep=True)
                for name, dataset in corrupted_test_sets(config, self.splits).items()
            }
            correct.update({name: r.correct for name, r in corrupt.items()})
        return _Evaluation(result, corrupt, correct, seconds, val)

    def modulation(self) -> dict[str, float]:
        """Each attended block's modulation on the probe batch (:mod:`preattn.modulation`)."""
        maps = attention_maps(self.model, self.probe)
        return {name: block.modulation for name, block in maps.items()}

    def run_epoch(self, epoch: int) -> EpochRecord:
        """Train epoch ``epoch`` (0-based), evaluate it as due, commit it; its record."""
        config, ctx = self.config, self.ctx
        torch.manual_seed(config.seed * 100_003 + epoch * 1_009 + ctx.rank)
        batches = self.epoch_batches(epoch)
        lambda_start = lambdas(self.model)
        wall_start = time.time()
        stats, self.step = train_one_epoch(self.step_ctx, batches, self.step, epoch + 1)
        tested = self.test(epoch + 1)
        evaluated = _evaluates(config, epoch + 1) and tested.result is not None
        elapsed = (self.history[-1].elapsed_s or 0.0) if self.history else 0.0
        record = EpochRecord(
            epoch=epoch + 1,
            train_loss=stats["loss"] / stats["seen"],
            train_acc=stats["correct"] / stats["seen"],
            lr=stats["lr"],
            lam=lambdas(self.model),
            lam_start=lambda_start,
            modulation=self.modulation(),
            images_per_s=stats["seen"] / stats["seconds"],
            epoch_time_s=stats["seconds"],
            eval_time_s=tested.seconds,
            elapsed_s=elapsed + (stats["seconds"] + tested.seconds),
            wall_start=wall_start,
            wall_end=time.time(),
            step=self.step,
            test_loss=tested.result.loss if evaluated else None,
            test_acc=tested.result.accuracy if evaluated else None,
            test_acc_corrupt={name: r.accuracy for name, r in tested.corrupt.items()},
            val_loss=tested.val.loss if tested.val is not None else None,
            val_acc=tested.val.accuracy if tested.val is not None else None,
        )
        for name in ("val_loss", "test_loss"):
            loss = getattr(record, name)
            if loss is not None and not math.isfinite(loss):
                raise TrainingDiverged(
                    f"{name.replace('_', ' ')} became {loss} after epoch {epoch + 1}; "
                    "stopped, the last good checkpoint is kept"
                )
        self.history.append(record)
        if ctx.is_main:
            self.commit(record, stats["steps"], tested.correct)
        barrier()
        return record

    def commit(
        self, record: EpochRecord, steps: list[dict[str, Any]], correct: dict[str, Any]
    ) -> None:
        """Write the epoch's right/wrong flags and step records, then commit the epoch."""
        run = self.run
        write_test_correct(run, {k: v for k, v in correct.items() if v is not None})
        run.append_steps(steps)
        _commit_epoch(
            run,
            self.model,
            self.step_ctx.optimizer,
            self.step_ctx.scaler,
            record,
            self.step,
            self.config,
        )

    def draw_figures(self) -> None:
        """The run's curves and, when this call evaluated, the confusion of its last
        evaluation, recorded in the run directory."""
        run, history = self.run, self.history
        rows = [r.to_json() for r in history]
        run.record(*plot_history(rows, run.path, run.read_steps(), name=str(run.path)))
        if self.result is not None:
            title = (
                f"{run.path}: epoch {history[-1].epoch}, test accuracy "
                f"{100 * self.result.accuracy:.2f} %"
            )
            confusion_png = run.path / "confusion.png"
            run.record(
                plot_confusion(self.result.confusion, self.splits.classes, confusion_png, title)
            )


def _evaluates(config: TrainConfig, epoch: int) -> bool:
    """Whether ``epoch`` (1-based) is evaluated on the test set: the last one always, and
    every ``eval_every``-th (``eval_every=0``: only the last)."""
    every = config.eval_every
    return epoch == config.epochs or (every > 0 and epoch % every == 0)


class _OnDevice(NamedTuple):
    """The run's images held on the device (``val``: None without a validation set)."""

    train: DeviceImages
    test: DeviceImages
    val: DeviceImages | None


def _device_images(splits: DataSplits, config: TrainConfig, ctx: DistContext) -> _OnDevice | None:
    """The training, test and validation sets on the device when ``config.device_data``
    asks and the set allows it (in-memory images, no training corruptions); else None,
    with a line saying the data loader is used."""
    if not config.device_data:
        return None
    train = DeviceImages.of(splits.train, ctx.device)
    test = DeviceImages.of(splits.test, ctx.device) if train is not None else None
    val = None
    if splits.val is not None and test is not None:
        val = DeviceImages.of(splits.val, ctx.device)
    if train is None or test is None or (splits.val is not None and val is None):
        _log(
            ctx,
            f"--device-data: {config.dataset}"
            f"{' with train_corrupt' if config.train_corrupt else ''} is not an in-memory "
            "image set; using the data loader",
        )
        return None
    return _OnDevice(train, test, val)


def _commit_epoch(
    run: RunDir,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    record: EpochRecord,
    step: int,
    config: TrainConfig,
) -> None:
    """Append the epoch's metrics, then commit its checkpoint as one unit."""
    run.append_metrics(record.to_json())
    state = {
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": torch.get_rng_state(),
        "step": step,
        "config": config.to_dict(),
    }
    run.commit(model, state, record.epoch)
    _logger.info(record.console_line(config.epochs))


def _broadcast_int(value: int, device: torch.device) -> int:
    import torch.distributed as dist

    tensor = torch.tensor([value], device=device)
    dist.broadcast(tensor, src=0)
    return int(tensor.item())
