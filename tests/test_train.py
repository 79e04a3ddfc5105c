"""Training: decay groups, schedule, checkpoints, deterministic resume, DDP equivalence."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DistributedSampler

from _helpers import TINY_CONFIG, metrics_without_timings, tiny_config
from preattn._io import atomic_write
from preattn.data import build_datasets
from preattn.mixing import LambdaMix
from preattn.models import SimpleCNN
from preattn.train import RunError, TrainConfig, build_model, train
from preattn.train.epoch_record import EpochRecord
from preattn.train.evaluate import read_test_correct
from preattn.train.optim import WarmupCosine, build_optimizer, parameter_groups

# the tiny run with 48 images (3 optimiser steps per epoch) and plots, on the CPU unless a test
# takes `train_device` (pytest --device), which then replaces it
TINY = {**TINY_CONFIG, "limit_train": 48, "limit_test": 24, "seed": 1, "plots": True}


def test_no_weight_decay_on_lambda_bn_and_bias():
    model = SimpleCNN()
    decay, no_decay = parameter_groups(model, 5e-4)
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    no_decay_ids = {id(p) for p in no_decay["params"]}
    for name, p in model.named_parameters():
        # conv and linear weights decay; λ (0-dim), BN weights/biases and biases (1-dim) don't
        assert (id(p) in no_decay_ids) == (p.ndim <= 1), name
    lam_params = [p for m in model.modules() if isinstance(m, LambdaMix) for p in m.parameters()]
    assert lam_params and all(id(p) in no_decay_ids for p in lam_params)
    assert sum(len(g["params"]) for g in (decay, no_decay)) == len(list(model.parameters()))


def test_warmup_cosine_values():
    f = WarmupCosine(total_steps=10, warmup_steps=2)
    assert [f(0), f(1)] == [0.5, 1.0]
    assert f(2) == pytest.approx(1.0)
    assert f(6) == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert f(10) == pytest.approx(0.0)
    opt = build_optimizer(SimpleCNN(), "sgd", 0.1, 1e-4)
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["nesterov"]
    assert isinstance(build_optimizer(SimpleCNN(), "adamw", 1e-3, 0.05), torch.optim.AdamW)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "state.pt"
    target.write_text("old")

    def broken(path: Path) -> None:
        path.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]


def _metrics(run: Path) -> list[dict]:
    return metrics_without_timings(run)


def test_run_writes_metrics_checkpoint_and_plots(tmp_path, train_device):
    config = TrainConfig(
        **{**TINY, **train_device}, epochs=2, lam_warmup_steps=3, out=str(tmp_path / "run")
    )
    record = train(config)
    run = Path(config.out)
    assert {p.name for p in run.iterdir()} == {
        ".lock",
        ".run-files",
        "config.yaml",
        "metrics.jsonl",
        "steps.jsonl",
        "checkpoint",
        "checkpoints",
        "model.safetensors",
        "curves.png",
        "lambda.png",
        "confusion.png",
        "test_correct.npz",
    }
    assert set((run / ".run-files").read_text().split()) == {
        "config.yaml",
        "metrics.jsonl",
        "steps.jsonl",
        "checkpoint",
        "model.safetensors",
        "curves.png",
        "lambda.png",
        "confusion.png",
        "test_correct.npz",
    }
    assert (run / "checkpoint").read_text() == "epoch-0002\n"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch-0002"]
    # the published weights are the committed ones
    committed = run / "checkpoints" / "epoch-0002"
    assert (run / "model.safetensors").read_bytes() == (
        committed / "model.safetensors"
    ).read_bytes()
    # each test image's outcome at the last epoch, agreeing with the recorded accuracy
    correct = read_test_correct(run)["test_acc"]
    assert correct.dtype == np.uint8 and len(correct) == TINY["limit_test"]
    assert correct.mean() == pytest.approx(record.test_acc)
    rows = _metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert set(rows[0]) >= {"train_loss", "train_acc", "test_loss", "test_acc", "lr", "lambda"}
    assert set(rows[0]["lambda"]) == {"block1", "block2"}
    assert record.epoch == 2
    written = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert record.to_json() == written
    state = torch.load(committed / "state.pt", weights_only=True)
    assert state["epoch"] == 2 and state["step"] == 2 * 3 and "optimizer" in state
    weights = load_file(str(run / "model.safetensors"))
    assert int(weights["block1.mix.warmup_step"]) == 2 * 3  # 3 steps per epoch, ramp continues
    assert TrainConfig.from_yaml(run / "config.yaml") == config


@pytest.mark.parametrize("device_data", [False, True])
def test_interrupted_and_resumed_run_equals_uninterrupted(
    tmp_path, train_device, fashion_files, device_data, caplog
):
    """Synthetic images through the data loader; Fashion-MNIST-shaped files on the device
    path (``device_data``): both resume to the same metrics and weights, bit for bit."""
    data = (
        dict(
            dataset="fashion-mnist", data_dir=str(fashion_files), image_size=None, device_data=True
        )
        if device_data
        else {}
    )
    base = {**TINY, **train_device, **data, "epochs": 3, "lam_warmup_steps": 4}
    base["warmup_epochs"] = 0.5
    full = TrainConfig(**base, out=str(tmp_path / "full"))
    train(full)

    interrupted = TrainConfig(**base, out=str(tmp_path / "cut"))

    def stop_after_first_epoch(record: EpochRecord) -> None:
        if record.epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(interrupted, callbacks=[stop_after_first_epoch])
    assert len(_metrics(tmp_path / "cut")) == 1
    train(interrupted, resume=True)

    assert _metrics(tmp_path / "cut") == _metrics(tmp_path / "full")
    assert "using the data loader" not in caplog.text
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_device_data_falls_back_to_the_loader_for_generated_images(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="preattn")
    train(TrainConfig(**TINY, epochs=1, device_data=True, out=str(tmp_path / "r")))
    assert "--device-data: synthetic is not an in-memory image set; using the data loader" in (
        caplog.text
    )


def test_eval_every_evaluates_those_epochs_and_the_last(tmp_path):
    config = TrainConfig(**TINY, epochs=5, eval_every=2, out=str(tmp_path / "r"))
    train(config)
    rows = _metrics(tmp_path / "r")
    assert [r["epoch"] for r in rows if "test_acc" in r] == [2, 4, 5]
    assert all(("test_loss" in r) == ("test_acc" in r) for r in rows)
    train(config.replace(epochs=6, eval_every=0), resume=True)  # eval_every may change
    assert [r["epoch"] for r in _metrics(tmp_path / "r") if "test_acc" in r] == [2, 4, 5, 6]


def test_resume_rejects_mismatched_files(run_copy):
    config = tiny_config(out=str(run_copy))
    path = run_copy / "checkpoints" / "epoch-0001" / "state.pt"
    state = torch.load(path, weights_only=True)
    state["epoch"] = 7
    torch.save(state, path)
    with pytest.raises(
        RunError, match="weights are from epoch 1 and its training state from epoch 7"
    ):
        train(config, resume=True)


@pytest.mark.slow
def test_two_process_ddp_equals_single_process_accumulation(tmp_path):
    """2 gloo ranks vs one process summing the same two per-rank micro-batches (on the CPU:
    the float32 comparison at 1e-5 is a CPU expectation)."""
    args = dict(
        device="cpu",
        dataset="synthetic",
        image_size=8,
        limit_train=32,
        limit_test=8,
        batch_size=8,
        epochs=1,
        lr=0.2,
        weight_decay=1e-3,
        seed=5,
        lam=0.3,
    )
    out = tmp_path / "ddp"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in args.items()]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--standalone",
        "-m",
        "preattn",
        "train",
        *flags,
        f"--out={out}",
    ]
    # own process group, so a hung rendezvous can be killed with all its workers
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    ) as proc:
        try:
            _, stderr = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert proc.returncode == 0, stderr[-3000:]
    ddp_weights = load_file(str(out / "model.safetensors"))

    config = TrainConfig(**args)
    splits = build_datasets(
        config.dataset, limit_train=32, limit_test=8, image_size=8, seed=config.seed
    )
    model = build_model(config, splits.info, initialise=True)  # as a run starts
    optimizer = build_optimizer(model, "sgd", config.lr, config.weight_decay, config.momentum)
    steps = 32 // (8 * 2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(steps, 0))
    shards = []
    for rank in range(2):
        sampler = DistributedSampler(
            splits.train, num_replicas=2, rank=rank, shuffle=True, seed=config.seed, drop_last=True
        )
        sampler.set_epoch(0)
        shards.append(list(sampler))
    model.train()
    for step in range(steps):
        optimizer.zero_grad()
        for shard in shards:
            batch = [splits.train[i] for i in shard[step * 8 : (step + 1) * 8]]
            images = torch.stack([b[0] for b in batch])
            labels = torch.tensor([b[1] for b in batch])
            (nn.functional.cross_entropy(model(images), labels) / 2).backward()
        optimizer.step()
        scheduler.step()
    for name, param in model.named_parameters():
        torch.testing.assert_close(
            ddp_weights[name], param.detach(), atol=1e-5, rtol=1e-4, msg=name
        )
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # the logged λ is the one in the saved weights (σ of each block's logit)
    assert len(rows) == 1 and rows[0]["epoch"] == 1
    for block, value in rows[0]["lambda"].items():
        assert value == pytest.approx(torch.sigmoid(ddp_weights[f"{block}.mix.logit"]).item())


@pytest.mark.parametrize("flags", [{"amp": "bf16"}, {"channels_last": True}])
def test_amp_and_channels_last_reach_the_training_step(tmp_path, monkeypatch, flags, train_device):
    """bf16 autocast and channels-last inputs arrive in the model's forward during training,
    and the run still learns finitely."""
    import preattn.train.loop as loop

    seen: list[tuple[torch.dtype, bool]] = []
    build = loop.build_model

    def spying_build(config, splits, **options):
        model = build(config, splits, **options)

        def record(module, inputs, output):
            if module.training:
                x = inputs[0]
                seen.append((output.dtype, x.is_contiguous(memory_format=torch.channels_last)))

        model.block1.transform.conv1.register_forward_hook(record)
        return model

    monkeypatch.setattr(loop, "build_model", spying_build)
    options = {**TINY, **train_device, **flags}
    record = train(TrainConfig(**options, epochs=1, out=str(tmp_path / "r")))
    assert seen and math.isfinite(record.train_loss) and math.isfinite(record.test_loss)
    dtypes, channels_last = zip(*seen, strict=True)
    assert set(dtypes) == {torch.bfloat16 if flags.get("amp") else torch.float32}
    assert set(channels_last) == {bool(flags.get("channels_last"))}


def test_amp_modes_per_device(monkeypatch):
    import warnings

    from preattn.train import precision
    from preattn.train.precision import amp_dtype, make_scaler, parse_amp

    # the fp16 path's loss scaler is built for CUDA (it disables itself without a GPU);
    # bf16 and float32 training get a disabled one
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fp16 = make_scaler(torch.float16, torch.device("cuda"))
    assert fp16.is_enabled() == torch.cuda.is_available()
    assert not make_scaler(torch.bfloat16, torch.device("cpu")).is_enabled()
    assert not make_scaler(None, torch.device("cuda")).is_enabled()

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert amp_dtype("off", cuda) is None and amp_dtype("off", cpu) is None
    assert amp_dtype("bf16", cpu) == amp_dtype("bf16", cuda) == torch.bfloat16
    assert amp_dtype("fp16", cuda) == torch.float16
    with pytest.raises(ValueError, match="amp='fp16' is for CUDA"):
        amp_dtype("fp16", cpu)
    # auto: bf16 where the hardware has it, fp16 on older GPUs, float32 on other CPUs
    for native, expected in ((True, torch.bfloat16), (False, None)):
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda n=native: n)
        assert amp_dtype("auto", cpu) == expected
    for bf16, expected in ((True, torch.bfloat16), (False, torch.float16)):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda b=bf16: b)
        assert amp_dtype("auto", cuda) == expected
    # the earlier boolean option reads as auto / off, in flags and in saved configurations
    assert [parse_amp(v) for v in (True, False, "true", "no", "BF16")] == [
        "auto",
        "off",
        "auto",
        "off",
        "bf16",
    ]
    assert TrainConfig(amp=True).amp == "auto" and TrainConfig().amp == "off"
    with pytest.raises(ValueError, match=r"amp must be one of .*got 'half'"):
        parse_amp("half")
    with pytest.raises(ValueError, match=r"amp must be one of \['off', 'bf16', 'fp16', 'auto'\]"):
        TrainConfig(amp="yes please").validate()


def test_native_bf16_detection_follows_the_cpu_flags(monkeypatch):
    from preattn.train.precision import cpu_has_native_bf16

    flags = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    for avx512_bf16, amx in ((False, False), (True, False), (False, True)):
        monkeypatch.setattr(torch.cpu, flags[0], lambda v=avx512_bf16: v, raising=False)
        monkeypatch.setattr(torch.cpu, flags[1], lambda v=amx: v, raising=False)
        assert cpu_has_native_bf16() == (avx512_bf16 or amx)


def test_more_processes_than_gpus_is_one_clear_error(monkeypatch):
    from preattn.train import distributed

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match=r"cuda:3 requested \(LOCAL_RANK=3\) but only 2 CUDA"):
        distributed.pick_device("cuda", local_rank=3)


def test_a_resume_keeps_the_records_as_written_and_refuses_a_damaged_one_first(run_copy):
    config = tiny_config(out=str(run_copy))
    metrics = run_copy / "metrics.jsonl"
    row = {**json.loads(metrics.read_text()), "later_field": 7}  # a later version's key
    metrics.write_text(json.dumps({**row, "train_loss": "low"}) + "\n")
    saved = (run_copy / "config.yaml").read_text()
    with pytest.raises(ValueError, match="record 1: 'train_loss' must be a number"):
        train(config.replace(epochs=2), resume=True)
    assert (run_copy / "config.yaml").read_text() == saved  # nothing written first
    metrics.write_text(json.dumps(row) + "\n")
    train(config.replace(epochs=2), resume=True)
    first = json.loads(metrics.read_text().splitlines()[0])
    assert first == row
