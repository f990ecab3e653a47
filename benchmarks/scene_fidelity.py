"""Does a ``scene_dynamics`` dream stay a Pong scene? Long random-action dream rollouts against the
extractor's slots of the real data.

    python benchmarks/scene_fidelity.py --checkpoint learned_envs/assets/LearnedPongScene-v0 --data data/pong_100k

Per object: how often it is present, where it is (mean and spread of x and y, raw pixels of the
160 x 160 field), its size and how far its ``z_what`` is from the real mean of its label (RMS).
A dream that drifts shows paddles leaving their columns, sizes and ``z_what`` wandering off, and an
agent trained in it learns to exploit that. Then points won / lost and ball returns (the ball
turning back on the player's side) per 1,000 steps. Real figures come from the dataset's cached
slots (``learned-envs train`` writes them) of its random agent's episodes (``--agent``).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from dataset_tools.dataset import DatasetDir
from learned_envs.env import LearnedVectorEnv
from world_models.objects.scene_dynamics import cache_name


def object_rows(slots: np.ndarray, labels: list[str], what_mean: np.ndarray) -> list[str]:
    """Slots (N, O, F) -> one table row per object."""
    rows = []
    for i, label in enumerate(labels):
        s = slots[:, i][slots[:, i, 0] > 0]
        if len(s) == 0:
            rows.append(f"| {label} | 0.00 | - | - | - | - |")
            continue
        x, y = (s[:, 1] + 1) * 80, (s[:, 2] + 1) * 80
        what = np.sqrt(((s[:, 5:] - what_mean[i]) ** 2).mean())
        rows.append(
            f"| {label} | {(slots[:, i, 0] > 0).mean():.2f} | {x.mean():.1f} +- {x.std():.1f} | {y.std():.1f} "
            f"| {s[:, 3].mean() * 160:.1f} x {s[:, 4].mean() * 160:.1f} | {what:.3f} |"
        )
    return rows


def returns(slots: np.ndarray, max_gap: int = 3) -> int:
    """Ball turns from moving right to moving left on the player's half, over (T, O, F) slots of one game.

    Frames where the ball is not found are skipped (up to ``max_gap`` in a row): the extractor often
    misses the ball for a frame or two while it touches a paddle, just when it turns."""
    seen = np.nonzero(slots[:, 2, 0] > 0)[0]
    x = slots[seen, 2, 1]
    close = np.diff(seen) <= max_gap + 1  # successive sightings of one flight
    right, left = np.diff(x) > 0, np.diff(x) < 0
    turn = close[:-1] & close[1:] & right[:-1] & left[1:] & (x[1:-1] > 0.5)
    return int(turn.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True, help="a dataset the checkpoint's extractor has cached slots in")
    ap.add_argument("--envs", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--agent", default="random", help="compare with the episodes of this agent ('' for all)")
    args = ap.parse_args()

    venv = LearnedVectorEnv(args.checkpoint, args.envs, device="cpu", obs_type="latent", max_episode_steps=10**9)
    model = venv.model
    labels, f = list(model.labels), model.slot_dim
    ds = DatasetDir(args.data)
    name = cache_name(model.cfg.extractor_spec)
    episodes = ds.episode_indices()
    if args.agent:
        episodes = [ep for ep in episodes if ds.load(ep).meta.get("agent", {}).get("name") == args.agent]
        if not episodes:
            raise SystemExit(f"{args.data}: no episode of agent {args.agent!r}")
    # the real slots as the model sees them (objects lost for a frame or two held, see hold_frames)
    real = [
        model._hold(torch.from_numpy(np.load(ds.episodes_dir / f"ep_{ep:06d}" / name))[None])[0].numpy()
        for ep in episodes
    ]
    rewards = [np.asarray(ds.load(ep).rewards) for ep in episodes]
    flat = np.concatenate(real)
    what_mean = np.stack([flat[flat[:, i, 0] > 0, i, 5:].mean(0) for i in range(len(labels))])

    rng = np.random.default_rng(args.seed)
    obs, _ = venv.reset(seed=args.seed)
    dream, won, lost = [], 0, 0
    for _ in range(args.steps):
        obs, reward, *_ = venv.step(rng.integers(0, venv.single_action_space.n, size=args.envs))
        dream.append(obs.reshape(args.envs, -1, len(labels), f)[:, -1])
        won, lost = won + int((reward > 0).sum()), lost + int((reward < 0).sum())
    games = np.stack(dream, axis=1)  # (envs, steps, O, F)

    print(f"dream: {args.envs} envs x {args.steps} random-action steps; real: {len(flat):,} frames of {args.data}\n")
    print("| object | present | x (px) | y spread (px) | size (px) | z_what RMS off the real mean |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind, slots in (("dream", games.reshape(-1, len(labels), f)), ("real", flat)):
        for row in object_rows(slots, labels, what_mean):
            print(row.replace("| ", f"| {kind} ", 1))
    steps_dream, steps_real = games.shape[0] * games.shape[1], len(flat)
    real_won = sum(int((r > 0).sum()) for r in rewards)
    real_lost = sum(int((r < 0).sum()) for r in rewards)
    print("\n| per 1,000 steps | points won | points lost | ball returns |")
    print("|---|---:|---:|---:|")
    k = 1000 / steps_dream
    print(f"| dream (random actions) | {won * k:.1f} | {lost * k:.1f} | {sum(returns(g) for g in games) * k:.1f} |")
    k = 1000 / steps_real
    print(
        f"| real ({args.agent or 'all'} agent episodes) | {real_won * k:.1f} | {real_lost * k:.1f} | {sum(returns(g) for g in real) * k:.1f} |"
    )


if __name__ == "__main__":
    main()
