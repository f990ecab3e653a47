"""Does the frames-only extractor lose the ball where the game is decided? Recall against the RAM by region.

    python benchmarks/extractor_recall.py --extractor DATA/extractors/NAME --data data/pong_100k

On the held-out episodes (the last ``--val-fraction`` of them), for every frame where the RAM shows an
object inside the field, is it found? Two extractors side by side:

* **SPACE-Time alone**: any cell with ``z_pres > 0.5`` whose box centre is within 5 raw px of the object
  (no class needed: an upper bound on what its slots could hold);
* **the extractor** (SPACE-Time's code over the foreground components): its class's slot within 5 px.

Rows: all frames, frames where the object is within 8 px of another (Pong's ball near a paddle), and
10-px bands of the object's x. The RAM is read only to score.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from dataset_tools.dataset import DatasetDir
from dataset_tools.ram_truth import ram_objects
from world_models.objects import load_extractor
from world_models.objects.scoring import MATCH_PX, score_slots


def space_alone_hits(extractor, crops: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(N,) whether any SPACE-Time detection (z_pres > 0.5) of each crop is within MATCH_PX of ``truth`` (N, 2)."""
    top, _, left, _ = extractor.crop
    with torch.no_grad():
        pres_logits, z_where = extractor.space.fg.locate(extractor._resized(crops))
    pres = torch.sigmoid(pres_logits).numpy() > 0.5
    cx = (z_where[..., 2].numpy() + 1) / 2 * extractor.width + left
    cy = (z_where[..., 3].numpy() + 1) / 2 * extractor.height + top
    d = np.hypot(cx - truth[:, :1], cy - truth[:, 1:])
    return ((d <= MATCH_PX) & pres).any(1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--extractor", required=True, help="a fitted extractor directory (extractor.json)")
    p.add_argument("--data", required=True)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--object", default="ball", help="the RAM object whose recall is broken down (default ball)")
    p.add_argument(
        "--size-gate",
        type=float,
        default=None,
        help="classify with this area ratio gate (default: the extractor's own; 0: off); see ObjectExtractor.classify",
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    extractor = load_extractor(args.extractor)
    if args.size_gate is not None:
        extractor.size_gate = args.size_gate
    ds = DatasetDir(args.data)
    game = str(ds.read_manifest()["game"])
    episodes = ds.split(args.val_fraction)[1]
    top, bottom, left, right = extractor.crop
    slots, rams, alone = [], [], []
    for ep in episodes:
        episode = ds.load(ep, mmap=True)
        ram = np.asarray(episode.ram)
        box = ram_objects(game, ram)[args.object]
        centre = np.stack([box[:, 1] + box[:, 3] / 2, box[:, 2] + box[:, 4] / 2], -1)
        for t in range(0, len(ram), 64):
            crops = np.ascontiguousarray(np.asarray(episode.frames[t : t + 64])[:, top:bottom, left:right])
            slots.append(extractor.slots(crops, slots[-1][-1] if t else None))
            alone.append(space_alone_hits(extractor, crops, centre[t : t + 64]))
        rams.append(ram)
    ram = np.concatenate(rams)
    scores = score_slots(game, np.concatenate(slots), ram)
    hit_alone = np.concatenate(alone)
    s = scores["classes"][args.object]
    truth = ram_objects(game, ram)
    visible = truth[args.object][:, 0] > 0
    x = truth[args.object][:, 1] + truth[args.object][:, 3] / 2
    near = np.zeros(len(ram), bool)
    obj = truth[args.object]
    for other, b in truth.items():
        if other == args.object:
            continue
        gx = np.maximum(np.maximum(b[:, 1] - (obj[:, 1] + obj[:, 3]), obj[:, 1] - (b[:, 1] + b[:, 3])), 0)
        gy = np.maximum(np.maximum(b[:, 2] - (obj[:, 2] + obj[:, 4]), obj[:, 2] - (b[:, 2] + b[:, 4])), 0)
        near |= (b[:, 0] > 0) & (np.maximum(gx, gy) <= 8)
    print(f"{args.object} on {visible.sum()} held-out frames (episodes {episodes}) of {args.data}")
    print("| frames | n | SPACE-Time alone | extractor |")
    print("|---|---:|---:|---:|")
    print(f"| all where it is in play | {visible.sum()} | {hit_alone[visible].mean():.4f} | {s['recall']:.4f} |")
    m = visible & near
    print(f"| within 8 px of another object | {m.sum()} | {hit_alone[m].mean():.4f} | {s['recall_near']:.4f} |")
    for band in s["by_x"]:
        lo, hi = band["x"]
        m = visible & (x >= lo) & (x < hi)
        print(f"| x {lo}-{hi} px | {band['frames']} | {hit_alone[m].mean():.4f} | {band['recall']:.4f} |")


if __name__ == "__main__":
    main()
