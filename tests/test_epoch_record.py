"""EpochRecord: the one schema of a run's metrics.jsonl lines.

Independent expectations: a line written by an earlier version of the loop (the literal
below, copied from a run), the console line spelled out by hand, and the refusals naming
the field."""

from __future__ import annotations

import pytest

from preattn.train import EpochRecord
from preattn.train.epoch_record import RecordError

# one metrics.jsonl line as runs have written it (epoch 2 of 2, evaluated, one corruption)
LINE = {
    "epoch": 2,
    "train_loss": 0.5,
    "train_acc": 0.8125,
    "test_loss": 0.625,
    "test_acc": 0.75,
    "lr": 0.001,
    "lambda": {"block1": 0.125},
    "lambda_start": {"block1": 0.1},
    "modulation": {"block1": 0.05, "block2": 0.5},
    "images_per_s": 812.4,
    "epoch_time_s": 3.5,
    "eval_time_s": 0.25,
    "elapsed_s": 7.5,
    "wall_start": 1.7e9,
    "wall_end": 1.7e9 + 3.75,
    "step": 40,
    "test_acc_corrupt": {"noise:0.2": 0.5},
}


def test_a_written_line_reads_back_and_writes_the_same_line():
    record = EpochRecord.from_json(LINE)
    assert record.lam == {"block1": 0.125} and record.test_acc == 0.75 and record.evaluated
    assert record.to_json() == LINE


def test_an_epoch_that_did_not_evaluate_writes_no_test_fields():
    row = {k: v for k, v in LINE.items() if k not in ("test_loss", "test_acc", "test_acc_corrupt")}
    record = EpochRecord.from_json(row)
    assert not record.evaluated and record.to_json() == row


def test_the_console_line():
    line = EpochRecord.from_json(LINE).console_line(epochs=2)
    assert line == (
        "epoch 2/2  train loss 0.5000 acc 0.8125  test loss 0.6250 acc 0.7500  lr 0.001  "
        "λ [block1=0.125 m=5.0%; block2 m=50.0%]  812 img/s"
    )
    row = {k: v for k, v in LINE.items() if k not in ("test_loss", "test_acc")}
    row.update({"lambda": {}, "modulation": {}})
    assert "test: not evaluated (eval_every)  lr 0.001  λ [-]" in (
        EpochRecord.from_json(row).console_line(epochs=2)
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epoch": "2"}, "'epoch' must be an int, got '2'"),
        ({"epoch": True}, "'epoch' must be an int, got True"),
        ({"test_acc": None}, "'test_acc' must be a number, got None"),
        (
            {"lambda": {"block1": "x"}},
            "'lambda' must be a mapping of names to numbers, got {'block1': 'x'}",
        ),
        ({"lambda": None}, "'lambda' must be a mapping of names to numbers, got None"),
    ],
)
def test_a_damaged_line_is_refused_naming_the_field(change, message):
    with pytest.raises(RecordError) as error:
        EpochRecord.from_json({**LINE, **change}, "m.jsonl: record 2")
    assert str(error.value) == f"m.jsonl: record 2: {message}"


def test_a_missing_field_is_named_and_an_unknown_one_ignored():
    with pytest.raises(RecordError, match=r"^r: record 1 has no 'images_per_s'$"):
        EpochRecord.from_json({k: v for k, v in LINE.items() if k != "images_per_s"}, "r: record 1")
    # a field later versions added is absent from an earlier run's line: read as None
    earlier = EpochRecord.from_json({k: v for k, v in LINE.items() if k != "wall_start"})
    assert earlier.wall_start is None and "wall_start" not in earlier.to_json()
    assert EpochRecord.from_json({**LINE, "later_field": 1}).to_json() == LINE
