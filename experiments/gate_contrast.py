"""The gates' own contrast in the runs of a grid: std(g)/mean(g) of CBAM's gate
g = M_c·M_s per attended block (the modulation an uncontrolled block would have), on the
first 256 test images, mean over seeds.

Run: ``python experiments/gate_contrast.py RUNS_DIR`` (the ``--out`` of an ablate grid of
CBAM variants); prints one Markdown row per variant.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from preattn import attention_maps
from preattn.data.registry import first_images
from preattn.modulation import gate_modulation
from preattn.train import build_data, load_model


def contrast(run: Path, images: int = 256) -> dict[str, float]:
    loaded = load_model(run)
    x = first_images(build_data(loaded.config, limit_train=1, limit_test=images).test, images)
    out = {}
    for name, maps in attention_maps(loaded.model, x).items():
        if maps.channel is None or maps.spatial is None:
            continue
        gate = maps.channel[:, :, None, None] * maps.spatial  # (N, C, H, W)
        out[name] = gate_modulation(gate)
    return out


def main() -> None:
    root = Path(sys.argv[1])
    print("| variant | gate contrast std(g)/mean(g), per block (mean over seeds) |")
    print("|---|---|")
    for variant in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        per_seed = [contrast(run) for run in sorted(variant.glob("seed*"))]
        blocks = sorted({b for c in per_seed for b in c})
        if not blocks:
            continue
        cells = ", ".join(
            f"{b} {100 * statistics.fmean(c[b] for c in per_seed):.0f} %" for b in blocks
        )
        print(f"| {variant.name} | {cells} |")


if __name__ == "__main__":
    main()
