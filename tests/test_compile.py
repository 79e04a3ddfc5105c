"""``train --compile``: compiled training behaves as eager training."""

from __future__ import annotations

import json

import pytest
import yaml

from _helpers import TINY_CONFIG
from preattn.train.config import TrainConfig
from preattn.train.loop import train


def _steps(run) -> list[dict]:
    return [json.loads(line) for line in (run / "steps.jsonl").read_text().splitlines()]


@pytest.mark.slow  # inductor compiles the forward and the backward: about a minute here
def test_compiled_training_follows_eager_training(tmp_path):
    runs = {}
    for compiled in (False, True):
        out = tmp_path / f"compile-{compiled}"
        config = TrainConfig(**TINY_CONFIG, epochs=2, compile=compiled, out=str(out))
        runs[compiled] = (train(config), out)
    (eager, eager_dir), (fast, fast_dir) = runs[False], runs[True]
    eager_steps, fast_steps = _steps(eager_dir), _steps(fast_dir)
    assert len(eager_steps) == len(fast_steps) == 4
    for a, b in zip(eager_steps, fast_steps, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-5)
        assert b["lr"] == a["lr"]
    assert fast.test_acc == pytest.approx(eager.test_acc, abs=1 / 12 + 1e-9)
    for block, value in eager.lam.items():
        assert fast.lam[block] == pytest.approx(value, abs=1e-5)
    saved = yaml.safe_load((fast_dir / "config.yaml").read_text())
    assert saved["compile"] is True
    # an eager run may be resumed compiled (and back): compile changes no result
    more = TrainConfig(**TINY_CONFIG, epochs=3, compile=True, out=str(eager_dir))
    assert train(more, resume=True).epoch == 3
