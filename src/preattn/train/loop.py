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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

# the fixed batch of test images the modulation of each block is measured on, every epoch
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
            return _train(config, ctx, run, resume, overwrite, callbacks or [])
    finally:
        shutdown()


def _train(
    config: TrainConfig,
    ctx: DistContext,
    run: RunDir,
    resume: bool,
    overwrite: bool,
    callbacks: list[EpochCallback],
) -> dict[str, Any]:
    device = ctx.device
    torch.manual_seed(config.seed)
    splits = build_data(config)
    if len(splits.train) < config.batch_size * ctx.world_size:
        raise ValueError(
            f"batch_size={config.batch_size} x {ctx.world_size} process(es) exceeds the "
            f"{len(splits.train)} training samples"
        )
    model = build_model(config, splits.info, initialise=True)
    if config.sync_bn:
        if device.type == "cuda" and ctx.distributed:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            warnings.warn(
                "--sync-bn ignored: PyTorch's SyncBatchNorm runs only on CUDA under DDP; "
                "each process normalises with its own batch statistics",
                stacklevel=2,
            )
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
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
    amp_dtype = autocast_dtype(config.amp, device)
    scaler = make_scaler(amp_dtype, device)

    start_epoch, step, history = 0, 0, []
    if ctx.is_main:
        start_epoch, history = _prepare_run_dir(run, config, splits, resume, overwrite)
    if ctx.distributed:
        start_epoch = _broadcast_int(start_epoch, device)
    if start_epoch:
        weights, state = _read_checkpoint(run, start_epoch)
        model.load_state_dict(weights)
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        step = int(state.get("step", state.get("scheduler", {}).get("last_epoch", 0)))
        _log(ctx, f"resuming {run.path} after epoch {start_epoch} (optimiser step {step})")
    elif resume:
        _log(ctx, f"resuming {run.path}: no committed epoch yet, starting at epoch 1")

    net: nn.Module = model
    if ctx.distributed:
        net = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if config.compile:
        # the training forward and backward; evaluation runs the same weights eagerly
        net = torch.compile(net)
    step_ctx = StepContext(
        net=net,
        optimizer=optimizer,
        loss_fn=nn.CrossEntropyLoss(label_smoothing=config.label_smoothing),
        scaler=scaler,
        lr_at=lambda t: config.lr * schedule(t),
        device=device,
        memory_format=memory_format,
        amp_dtype=amp_dtype,
    )

    on_device = _device_images(splits, config, ctx)

    def run_eval(dataset: Any, images: DeviceImages | None = None, keep: bool = False) -> Any:
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
                pin_memory=device.type == "cuda",
            )
        return evaluate(
            model,
            _progress(batches, ctx, desc=f"evaluating {count} images"),
            splits.num_classes,
            device,
            channels_last=config.channels_last,
            amp_dtype=amp_dtype,
            keep_correct=keep and ctx.world_size == 1,  # one process: the images in order
        )

    _log(
        ctx,
        f"training {config.model} ({config.spec.describe()}) on {config.dataset} "
        f"[{splits.source}]: {len(splits.train)} train / {len(splits.test)} test images"
        f"{' (--limit-test evaluates fewer)' if len(splits.test) > len(splits.train) else ''}, "
        f"{ctx.world_size} process(es) on {device}; run directory {run.path}",
    )

    probe = first_images(splits.test, MODULATION_IMAGES).to(device)
    probe = probe.contiguous(memory_format=memory_format)

    def modulation() -> dict[str, float]:
        return {name: maps.modulation for name, maps in attention_maps(model, probe).items()}

    elapsed = (history[-1].elapsed_s or 0.0) if history else 0.0
    result = None
    for epoch in range(start_epoch, config.epochs):
        torch.manual_seed(config.seed * 100_003 + epoch * 1_009 + ctx.rank)
        loader: Iterable[Any]
        if on_device is not None:
            loader = on_device[0].epoch(
                config.batch_size,
                generator=_epoch_generator(config, epoch),
                drop_last=True,
                rank=ctx.rank,
                world_size=ctx.world_size,
            )
        else:
            loader = _train_loader(splits, config, ctx, epoch)
        batches = _progress(loader, ctx, desc=f"epoch {epoch + 1}/{config.epochs}")
        lambda_start = lambdas(model)
        wall_start = time.time()
        stats, step = train_one_epoch(step_ctx, batches, step, epoch + 1)
        eval_started = time.perf_counter()
        evaluated = _evaluates(config, epoch + 1)
        last = epoch + 1 == config.epochs
        if evaluated:
            result = run_eval(splits.test, on_device[1] if on_device else None, keep=last)
        correct = {"test_acc": result.correct} if last and result is not None else {}
        eval_seconds = time.perf_counter() - eval_started
        corrupt = {}
        if last and config.eval_corrupt:
            corrupt = {
                name: run_eval(dataset, keep=True)
                for name, dataset in corrupted_test_sets(config, splits).items()
            }
            correct.update({name: r.correct for name, r in corrupt.items()})
        elapsed += stats["seconds"] + eval_seconds
        record = EpochRecord(
            epoch=epoch + 1,
            train_loss=stats["loss"] / stats["seen"],
            train_acc=stats["correct"] / stats["seen"],
            lr=stats["lr"],
            lam=lambdas(model),
            lam_start=lambda_start,
            modulation=modulation(),
            images_per_s=stats["seen"] / stats["seconds"],
            epoch_time_s=stats["seconds"],
            eval_time_s=eval_seconds,
            elapsed_s=elapsed,
            wall_start=wall_start,
            wall_end=time.time(),
            step=step,
            test_loss=result.loss if evaluated and result is not None else None,
            test_acc=result.accuracy if evaluated and result is not None else None,
            test_acc_corrupt={name: r.accuracy for name, r in corrupt.items()},
        )
        if record.test_loss is not None and not math.isfinite(record.test_loss):
            raise TrainingDiverged(
                f"test loss became {record.test_loss} after epoch {epoch + 1}; stopped, "
                "the last good checkpoint is kept"
            )
        history.append(record)
        if ctx.is_main:
            write_test_correct(run, {k: v for k, v in correct.items() if v is not None})
            run.append_steps(stats["steps"])
            _commit_epoch(run, model, optimizer, scaler, record, step, config)
        barrier()
        for callback in callbacks:
            callback(record)
    if ctx.is_main and history and config.plots:
        rows = [r.to_json() for r in history]
        run.record(*plot_history(rows, run.path, run.read_steps(), name=str(run.path)))
        if result is not None:  # this call evaluated: the confusion of its last evaluation
            title = (
                f"{run.path}: epoch {history[-1].epoch}, test accuracy "
                f"{100 * result.accuracy:.2f} %"
            )
            run.record(
                plot_confusion(result.confusion, splits.classes, run.path / "confusion.png", title)
            )
    return history[-1]


def _evaluates(config: TrainConfig, epoch: int) -> bool:
    """Whether ``epoch`` (1-based) is evaluated on the test set: the last one always, and
    every ``eval_every``-th (``eval_every=0``: only the last)."""
    every = config.eval_every
    return epoch == config.epochs or (every > 0 and epoch % every == 0)


def _device_images(
    splits: DataSplits, config: TrainConfig, ctx: DistContext
) -> tuple[DeviceImages, DeviceImages] | None:
    """The training and test sets on the device when ``config.device_data`` asks and the
    set allows it (in-memory images, no training corruptions); else None, with a line
    saying the data loader is used."""
    if not config.device_data:
        return None
    train = DeviceImages.of(splits.train, ctx.device)
    test = DeviceImages.of(splits.test, ctx.device) if train is not None else None
    if train is None or test is None:
        _log(
            ctx,
            f"--device-data: {config.dataset}"
            f"{' with train_corrupt' if config.train_corrupt else ''} is not an in-memory "
            "image set; using the data loader",
        )
        return None
    return train, test


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
