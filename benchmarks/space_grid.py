"""SPACE+M against SPACE+MOC: score every run of a ``space_time`` grid and average over seeds.

    learned-envs train --model space_time --config atari_pong.yaml --data data/pong_space --out runs/space_grid \\
        seed=0,1,2,3,4 area_object_weight=0,10
    python benchmarks/space_grid.py --grid runs/space_grid --data data/pong_space

Each run's newest checkpoint is scored on the held-out frames (``learned-envs evaluate``'s extractor
protocol: box F-score per class against the RAM, AP, counting, few-shot z_what accuracy, KMeans
AMI; results also in ``GRID/<run>/eval/metrics.json``), then one row per value of the varied
weight: mean +- standard deviation over the seeds.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from world_models.space.evaluate import evaluate_space, headline

COLUMNS = ["f1_player", "f1_enemy", "f1_ball", "ap_mean", "count_acc", "few_shot_1", "few_shot_4", "few_shot_16", "ami"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grid", required=True, help="the --out of a grid run (one folder per combination)")
    ap.add_argument("--data", required=True)
    ap.add_argument("--key", default="area_object_weight", help="the varied setting to group by")
    ap.add_argument("--max-frames", type=int, default=None, help="most held-out frames scored (all)")
    args = ap.parse_args()

    groups: dict[str, list[dict[str, float]]] = defaultdict(list)
    runs = sorted(p for p in Path(args.grid).iterdir() if (p / "checkpoints").is_dir())
    if not runs:
        raise SystemExit(f"{args.grid}: no run folders with checkpoints")
    for run in runs:
        match = re.search(rf"{re.escape(args.key)}=([^-/]+)", run.name)
        value = match.group(1) if match else "?"
        row = headline(evaluate_space(run, args.data, run / "eval", max_frames=args.max_frames, device="cpu"))
        groups[value].append(row)
        print(f"{run.name}: " + ", ".join(f"{c} {row.get(c, float('nan')):.3f}" for c in COLUMNS), flush=True)

    print(f"\n| {args.key} | runs | " + " | ".join(COLUMNS) + " |")
    print("|---|---:|" + "---:|" * len(COLUMNS))
    for value, rows in sorted(groups.items()):
        cells = []
        for c in COLUMNS:
            x = np.array([r.get(c, np.nan) for r in rows], dtype=float)
            cells.append(f"{np.nanmean(x):.3f} +- {np.nanstd(x):.3f}")
        print(f"| {value} | {len(rows)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
