"""The training loop: data, model, optimiser, schedule, metrics, checkpoints, plots.

One call of :func:`train` runs (or resumes) a run described by a :class:`TrainConfig`.
Under ``torchrun`` it runs DDP: a ``DistributedSampler`` shards the training set, the test
set is split into disjoint strided shards, metrics are summed across ranks, and only rank 0
writes files.

Reproducibility: the model is initialised from ``seed``; each epoch's shuffling and
augmentation are seeded from ``(seed, epoch, rank)``, so an interrupted run resumed from its
last checkpoint ends with the same metrics as an uninterrupted one (on CPU).
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Subset
from tqdm import tqdm

from .._io import atomic_write
from ..data.registry import DataSplits, build_datasets
from ..mixing import lambdas
from ..models.factory import create_model
from . import checkpoint
from .config import TrainConfig
from .distributed import DistContext, all_reduce_sum, barrier, init_distributed, shutdown
from .evaluate import evaluate
from .optim import WarmupCosine, build_optimizer
from .plots import plot_history

__all__ = ["EpochCallback", "build_model_for", "load_run", "train"]

EpochCallback = Callable[[dict[str, Any]], None]
METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.yaml"


def build_model_for(config: TrainConfig, splits: DataSplits) -> nn.Module:
    """The network ``config`` describes, for the data set ``splits`` (classes, channels and
    image size, which decides the ResNets' stem)."""
    return create_model(
        config.model,
        image_size=splits.image_size,
        num_classes=splits.num_classes,
        in_chans=splits.in_chans,
        stages=config.stages,
        spec=config.spec,
    )


def load_run(
    run_dir: str | Path, *, data_dir: str | None = None, limit_test: int | None = None
) -> tuple[TrainConfig, DataSplits, nn.Module, int]:
    """Rebuild a run's model with its saved weights: (config, data splits, model, epoch).

    ``data_dir`` overrides the run's data folder; ``limit_test`` its test subset (default:
    the run's own). The training split is limited to one sample (it is not needed).
    """
    run_dir = Path(run_dir)
    config = TrainConfig.from_yaml(run_dir / CONFIG_FILE)
    if data_dir:
        config = config.replace(data_dir=data_dir)
    splits = build_datasets(
        config.dataset,
        config.data_dir,
        limit_train=1,
        limit_test=limit_test if limit_test is not None else config.limit_test,
        image_size=config.image_size,
        seed=config.seed,
    )
    model = build_model_for(config, splits)
    weights, epoch = checkpoint.load_weights(run_dir)
    model.load_state_dict(weights)
    return config, splits, model, epoch


def _amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if not config.amp:
        return None
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def _test_shard(splits: DataSplits, ctx: DistContext) -> Any:
    if not ctx.distributed:
        return splits.test
    return Subset(splits.test, range(ctx.rank, len(splits.test), ctx.world_size))


def _train_loader(
    splits: DataSplits, config: TrainConfig, ctx: DistContext, epoch: int
) -> DataLoader:
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
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


def _progress(iterable: Any, ctx: DistContext, **kwargs: Any) -> Iterator[Any]:
    quiet = not ctx.is_main or not sys.stderr.isatty()
    return iter(tqdm(iterable, disable=quiet, leave=False, dynamic_ncols=True, **kwargs))


def _log(ctx: DistContext, message: str) -> None:
    if ctx.is_main:
        print(message, flush=True)


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    callbacks: list[EpochCallback] | None = None,
) -> dict[str, Any]:
    """Run (or, with ``resume=True``, continue) the run in ``config.out``.

    Returns the last epoch's metrics record (the last line of ``metrics.jsonl``).
    Each callback receives every epoch's record (rank 0 and the others alike).
    """
    config.validate()
    ctx = init_distributed(config.device)
    try:
        return _train(config, ctx, resume, callbacks or [])
    finally:
        shutdown()


def _train(
    config: TrainConfig, ctx: DistContext, resume: bool, callbacks: list[EpochCallback]
) -> dict[str, Any]:
    run_dir = Path(config.out)
    device = ctx.device
    torch.manual_seed(config.seed)
    splits = build_datasets(
        config.dataset,
        config.data_dir,
        limit_train=config.limit_train,
        limit_test=config.limit_test,
        image_size=config.image_size,
        seed=config.seed,
    )
    if len(splits.train) < config.batch_size * ctx.world_size:
        raise ValueError(
            f"batch_size={config.batch_size} x {ctx.world_size} process(es) exceeds the "
            f"{len(splits.train)} training samples"
        )
    model = build_model_for(config, splits)
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
        model, config.optimizer, config.lr, config.weight_decay, config.momentum
    )
    steps_per_epoch = len(splits.train) // (config.batch_size * ctx.world_size)
    schedule = WarmupCosine(
        config.epochs * steps_per_epoch, round(config.warmup_epochs * steps_per_epoch)
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    amp_dtype = _amp_dtype(config, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    start_epoch = 0
    history: list[dict[str, Any]] = []
    if resume:
        weights, saved_epoch = checkpoint.load_weights(run_dir)
        state = checkpoint.load_state(run_dir)
        if state["epoch"] != saved_epoch:
            raise ValueError(
                f"{run_dir}: weights are from epoch {saved_epoch} but the training state from "
                f"epoch {state['epoch']}"
            )
        model.load_state_dict(weights)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        start_epoch = saved_epoch
        metrics_path = run_dir / METRICS_FILE
        if metrics_path.is_file():
            lines = metrics_path.read_text().splitlines()
            history = [json.loads(line) for line in lines if line.strip()][:start_epoch]
        _log(ctx, f"resuming {run_dir} after epoch {start_epoch}")
    elif ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(run_dir / CONFIG_FILE, lambda p: p.write_text(config.to_yaml()))
        (run_dir / METRICS_FILE).unlink(missing_ok=True)
    if ctx.is_main and resume:
        # drop metrics of epochs after the checkpoint (written before an interruption)
        atomic_write(
            run_dir / METRICS_FILE,
            lambda p: p.write_text("".join(json.dumps(r) + "\n" for r in history)),
        )

    net: nn.Module = model
    if ctx.distributed:
        net = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    test_loader = DataLoader(
        _test_shard(splits, ctx), batch_size=config.batch_size, num_workers=config.workers
    )
    _log(
        ctx,
        f"training {config.model} ({config.spec.describe()}) on {config.dataset} "
        f"[{splits.source}]: "
        f"{len(splits.train)} train / {len(splits.test)} test images, "
        f"{ctx.world_size} process(es) on {device}",
    )

    record: dict[str, Any] = history[-1] if history else {}
    for epoch in range(start_epoch, config.epochs):
        torch.manual_seed(config.seed * 100_003 + epoch * 1_009 + ctx.rank)
        net.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.float64, device=device)
        seen = torch.zeros((), dtype=torch.float64, device=device)
        lr = optimizer.param_groups[0]["lr"]  # logged: the LR of the epoch's last step
        started = time.perf_counter()
        loader = _train_loader(splits, config, ctx, epoch)
        for images, labels in _progress(loader, ctx, desc=f"epoch {epoch + 1}/{config.epochs}"):
            images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            labels = labels.to(device, non_blocking=True)
            with torch.autocast(
                device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
            ):
                logits = net(images)
                loss = loss_fn(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            loss_sum += loss.detach() * labels.numel()
            correct += (logits.argmax(1) == labels).sum()
            seen += labels.numel()
        elapsed = time.perf_counter() - started
        for total in (loss_sum, correct, seen):
            all_reduce_sum(total)
        result = evaluate(
            model,
            test_loader,
            splits.num_classes,
            device,
            channels_last=config.channels_last,
            amp_dtype=amp_dtype,
        )
        record = {
            "epoch": epoch + 1,
            "train_loss": loss_sum.item() / seen.item(),
            "train_acc": correct.item() / seen.item(),
            "test_loss": result.loss,
            "test_acc": result.accuracy,
            "lr": lr,
            "lambda": lambdas(model),
            "images_per_s": seen.item() / elapsed,
            "epoch_time_s": elapsed,
        }
        history.append(record)
        if ctx.is_main:
            with (run_dir / METRICS_FILE).open("a") as fh:
                fh.write(json.dumps(record) + "\n")
            state = {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": torch.get_rng_state(),
                "config": config.to_dict(),
            }
            checkpoint.save(run_dir, model, state, epoch + 1)
            lam_text = ", ".join(f"{k}={v:.3f}" for k, v in record["lambda"].items()) or "-"
            _log(
                ctx,
                f"epoch {epoch + 1}/{config.epochs}  train loss {record['train_loss']:.4f}"
                f" acc {record['train_acc']:.4f}  test loss {record['test_loss']:.4f} "
                f"acc {record['test_acc']:.4f}  lr {lr:.4g}  λ [{lam_text}]  "
                f"{record['images_per_s']:.0f} img/s",
            )
        barrier()
        for callback in callbacks:
            callback(record)
    if ctx.is_main and history:
        plot_history(history, run_dir)
    return record
