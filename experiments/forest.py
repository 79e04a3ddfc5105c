"""Draw the forest plot of committed reports (no runs needed):

python experiments/forest.py docs/evidence/*/report.json --out docs/img/forest.png
"""

from __future__ import annotations

import argparse

from preattn.ablate.forest import read_reports, write_forest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", help="report.json files or their folders")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--title", default="Primary contrasts")
    args = parser.parse_args()
    if not write_forest(read_reports(args.reports), args.out, args.title):
        raise SystemExit("no decided contrast in these reports: nothing drawn")


if __name__ == "__main__":
    main()
