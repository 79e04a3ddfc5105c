"""Write ``tests/golden/logits.json``: the frozen logits that ``tests/test_contracts.py``
compares every network with (the cases and how each network is built: ``tests/_battery.py``).

    PYTHONPATH=src python tests/golden/make_logits.py          # rewrite the file
    PYTHONPATH=src python tests/golden/make_logits.py --check  # only say what would change

When it is right to regenerate: only when a change is *meant* to change what a network
computes (a formula, a default, a layer's order), or when a network, attention, placement or
λ design is added (then ``--check`` must show that only the new cases change). Never to make
the golden test pass after a change that should not change any number (a refactor, a faster
path): a failing golden test there has found the change. Write down in the commit message
why the numbers moved. Generate on the CPU in float32 (what the test compares); the values
do not depend on the machine beyond float32 rounding, which the test's tolerance covers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

import torch  # noqa: E402

import _battery as battery  # noqa: E402


def compute() -> dict[str, list[list[float]]]:
    """The logits of every golden case, as nested lists of Python floats."""
    torch.set_num_threads(1)
    return {
        battery.case_key(c): battery.golden_logits(battery.golden_model(c)).tolist()
        for c in battery.golden_cases()
    }


def _close(a: list[list[float]] | None, b: list[list[float]] | None) -> bool:
    """Both there and equal within the golden test's tolerance."""
    if a is None or b is None:
        return False
    expected = torch.tensor(b)
    atol = battery.GOLDEN_TOLERANCE * float(expected.abs().max())
    return bool(torch.allclose(torch.tensor(a), expected, atol=atol, rtol=0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; list the changes")
    args = parser.parse_args()
    logits = compute()
    if args.check:
        before = (
            json.loads(battery.GOLDEN_FILE.read_text())["logits"]
            if battery.GOLDEN_FILE.exists()
            else {}
        )
        changed = sorted(
            k for k in logits.keys() | before.keys() if not _close(logits.get(k), before.get(k))
        )
        for key in changed:
            what = "new" if key not in before else "gone" if key not in logits else "changed"
            print(f"{key}: {what}")
        return 1 if changed else 0
    document = {
        "about": "logits (2 images x 6 classes) of each case of tests/_battery.py; "
        "regenerate only as tests/golden/make_logits.py says",
        "torch": torch.__version__,
        "logits": logits,
    }
    battery.GOLDEN_FILE.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {len(logits)} cases to {battery.GOLDEN_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
