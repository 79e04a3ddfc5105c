"""``eval.json`` as a type: an :class:`EvalRecord` written and read back is the same record,
and a file that is not one is refused in one line naming the file and the field."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from preattn.train import EvalRecord, EvalRecordError, EvalResult, RunEvaluation

# 8 test images of two classes: 3 of 4 "cat" right, 4 of 4 "dog" right
CONFUSION = [[3, 1], [0, 4]]
RECORD = EvalRecord(
    epoch=2,
    accuracy=7 / 8,
    loss=0.25,
    per_class_accuracy={"cat": 0.75, "dog": 1.0},
    confusion=CONFUSION,
)


def test_a_written_record_reads_back_equal_and_as_the_documented_json(tmp_path):
    path = RECORD.write(tmp_path / "eval.json")
    assert EvalRecord.read(path) == RECORD
    assert json.loads(path.read_text()) == {
        "epoch": 2,
        "accuracy": 0.875,
        "loss": 0.25,
        "per_class_accuracy": {"cat": 0.75, "dog": 1.0},
        "confusion": [[3, 1], [0, 4]],
    }


def test_a_run_evaluation_records_its_confusion_and_per_class_accuracy(tmp_path):
    result = EvalResult(loss=0.25, accuracy=7 / 8, confusion=np.array(CONFUSION))
    evaluation = RunEvaluation(tmp_path, 2, "synthetic", ("cat", "dog"), result)
    assert evaluation.record() == RECORD
    assert evaluation.to_json() == RECORD.to_json()


def test_a_class_without_test_images_round_trips_as_nan(tmp_path):
    record = EvalRecord(1, 1.0, 0.1, {"cat": 1.0, "dog": math.nan}, [[2, 0], [0, 0]])
    back = EvalRecord.read(record.write(tmp_path / "eval.json"))
    assert back.per_class_accuracy["cat"] == 1.0 and math.isnan(back.per_class_accuracy["dog"])
    assert back.confusion == record.confusion


@pytest.mark.parametrize(
    ("change", "field", "expected"),
    [
        ({"loss": None}, "'loss'", "must be a number"),
        ({"accuracy": "0.9"}, "'accuracy'", "must be a number in [0, 1]"),
        ({"accuracy": 1.5}, "'accuracy'", "must be a number in [0, 1]"),
        ({"epoch": 1.0}, "'epoch'", "must be an int >= 0"),
        ({"per_class_accuracy": [0.75, 1.0]}, "'per_class_accuracy'", "must be a mapping"),
        ({"confusion": [[3, -1], [0, 4]]}, "'confusion'", "ints >= 0"),
        ({"confusion": [[3, 1, 0], [0, 4, 0]]}, "'confusion'", "must be 2 x 2"),
    ],
)
def test_a_malformed_eval_json_is_one_line_naming_the_file_and_the_field(
    tmp_path, change, field, expected
):
    path = tmp_path / "eval.json"
    path.write_text(json.dumps({**RECORD.to_json(), **change}))
    with pytest.raises(EvalRecordError) as error:
        EvalRecord.read(path)
    message = str(error.value)
    assert message.startswith(f"{path}: {field}") and expected in message
    assert "\n" not in message


def test_an_eval_json_without_a_field_or_not_json_or_not_an_object_is_refused(tmp_path):
    path = tmp_path / "eval.json"
    named = re.escape(str(path))
    path.write_text(json.dumps({k: v for k, v in RECORD.to_json().items() if k != "loss"}))
    with pytest.raises(EvalRecordError, match=f"^{named} has no 'loss'$"):
        EvalRecord.read(path)
    path.write_text('{"epoch": 2,')
    with pytest.raises(EvalRecordError, match=f"^{named} is not JSON: "):
        EvalRecord.read(path)
    path.write_text("[1, 2]")
    with pytest.raises(EvalRecordError, match=f"^{named} must hold a JSON object, got"):
        EvalRecord.read(path)
