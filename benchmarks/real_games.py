"""Real games side by side through the real twin: one model per game stepped one by one, against one
shared model whose new frames go through it in one batch (``RealTwin.step_many``, what
``evaluate-agent``, the loop and the quick start play with), measured in the same run.

    OMP_NUM_THREADS=1 python benchmarks/real_games.py --checkpoint LearnedPong-v2 --games 10 --repeats 3

Random actions (the policy's cost is the same either way); real-game steps per second over all games,
medians over rounds, and their ratio per round.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch

from learned_envs.twin import RealTwin, load_twin_model, make_real_twin


def rate(twins: list[RealTwin], steps: int, together: bool) -> float:
    """Real steps per second of ``twins`` played ``steps`` steps (random actions, seeded)."""
    rng = np.random.default_rng(0)
    for i, twin in enumerate(twins):
        twin.reset(seed=i)
    t0 = time.perf_counter()
    for _ in range(steps):
        actions = [int(a) for a in rng.integers(0, 6, len(twins))]
        if together:
            stepped = RealTwin.step_many(twins, actions)
        else:
            stepped = [twin.step(a) for twin, a in zip(twins, actions, strict=True)]
        for twin, (_obs, _r, term, trunc, _info) in zip(twins, stepped, strict=True):
            if term or trunc:
                twin.reset()
    return steps * len(twins) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="LearnedPong-v2")
    parser.add_argument("--games", type=int, default=10)
    parser.add_argument("--steps", type=int, default=200, help="steps of every game per round")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    loaded = load_twin_model(args.checkpoint)
    together = [make_real_twin(args.checkpoint, obs_type="latent", loaded=loaded) for _ in range(args.games)]
    alone = [make_real_twin(args.checkpoint, obs_type="latent") for _ in range(args.games)]
    rows = []
    for _ in range(args.repeats):
        a = rate(alone, args.steps, together=False)
        b = rate(together, args.steps, together=True)
        rows.append((a, b, b / a))
    print(
        f"{args.checkpoint}, {args.games} real games side by side, {args.steps} steps each per round, "
        f"{args.repeats} rounds; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} on {torch.get_num_threads()} thread(s)"
    )
    print("| real steps/s: one model per game, one by one | one shared model, frames batched | ratio |")
    print("|---:|---:|---:|")
    for a, b, r in rows:
        print(f"| {a:.0f} | {b:.0f} | {r:.2f}x |")
    med = [statistics.median(col) for col in zip(*rows, strict=True)]
    print(f"| **median {med[0]:.0f}** | **{med[1]:.0f}** | **{med[2]:.2f}x** |")


if __name__ == "__main__":
    main()
