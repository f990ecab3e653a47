"""``learned-envs fidelity``: can this learned env be trusted for this agent?

One agent (or random actions) plays ``envs`` dream games for ``steps`` steps each and
``real_episodes`` full real games through the env's real twin (the observations it was trained on).
Both are measured the same way, per 1,000 steps (Pong):

* points lost and won, and ball returns by the player (the ball turning back on the player's side),
  with how far the paddle was at each return (a return with the paddle more than 12 px away is one
  the real game would not give);
* rally length (steps from a serve to the point);
* the ball's speed: histograms of its move per step along x and y;
* one step at a time near the player's paddle: of the balls flying at it in each 2-px band of x, the
  share that turn back at the next step, with the paddle within 12 px and farther.

A dream that is faithful for this agent gives the same figures as the real game. Real positions come
from the RAM (read here only to score); the dream's from the model's objects, matched to the RAM's
objects on the real games (object models), or from the Pong detector on decoded frames (pixel models).

Outputs in ``out``: ``fidelity.json``, ``fidelity.md`` and ``fidelity.png``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

NAMES = ("player", "enemy", "ball")
RETURN_X = 120.0
"""A turn of the ball at an x beyond this (raw px) is a return by the player."""
NEAR_PX = 12.0
"""A paddle within this many raw px (y) of the ball counts as there."""
BANDS = tuple(range(128, 148, 2))
"""Left edges of the 2-px bands of ball x (raw px) of the one-step table."""
SPEED_BINS = np.arange(-0.5, 16.5)
"""Bin edges (raw px per step) of the speed histograms: one bin per whole pixel, centred on it."""


@dataclass
class FidelityConfig:
    """Settings of :func:`fidelity` (``learned-envs fidelity`` flags)."""

    checkpoint: str
    """A learned-env id or checkpoint directory (Pong)."""
    agent: str | None = None
    """An agent from ``learned-envs dream`` (or a shipped one); None: uniformly random actions."""
    envs: int = 64
    """Dream games played side by side."""
    steps: int = 1000
    """Steps of each dream game (an episode the dream ends restarts from a real context)."""
    real_episodes: int = 3
    """Full real games (ALE v5, sticky actions 0.25)."""
    seed: int = 0
    """Seeds the dream, the random actions and the real games (game i: seed + 1000 + i)."""
    device: str = "cpu"
    """Device of the world model."""


# ---------------------------------------------------------------------- figures of trajectories
def statistics(segments: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Pong figures of trajectories: each segment is tracks (T, 3, 3) ``[present, x, y]`` of player, enemy
    and ball in raw pixels, and the rewards (T,) of the steps that led to those frames."""
    steps = sum(len(r) for _, r in segments)
    k = 1000.0 / max(steps, 1)
    lost = sum(float((r < 0).sum()) for _, r in segments)
    won = sum(float((r > 0).sum()) for _, r in segments)
    dist, rallies, dx, dy = [], [], [], []
    near = {b: [0, 0] for b in BANDS}  # turned, seen (paddle within NEAR_PX)
    far = {b: [0, 0] for b in BANDS}
    for tracks, rewards in segments:
        ball, player = tracks[:, 2], tracks[:, 0]
        seen = ball[:, 0] > 0
        move = ball[1:, 1:] - ball[:-1, 1:]  # (T-1, 2) the move into frame t+1
        both = seen[1:] & seen[:-1]
        start = None
        for t in range(1, len(tracks)):
            if seen[t] and not seen[t - 1]:
                start = t
            if rewards[t] != 0 and start is not None:
                rallies.append(t - start)
                start = None
            if t >= 2 and both[t - 1] and both[t - 2]:
                into, out = move[t - 2], move[t - 1]  # the moves into and out of frame t-1
                x, gap = ball[t - 1, 1], abs(ball[t - 1, 2] - player[t - 1, 2]) if player[t - 1, 0] else np.inf
                if into[0] > 0 and out[0] < 0 and x > RETURN_X:
                    dist.append(gap)
                if into[0] > 0:
                    for b in BANDS:
                        if b <= x < b + 2:
                            cell = near[b] if gap < NEAR_PX else far[b]
                            cell[0] += int(out[0] < 0)
                            cell[1] += 1
                if into[0] * out[0] > 0 and into[1] * out[1] >= 0:  # no turn: a free flight
                    dx.append(abs(out[0]))
                    dy.append(abs(out[1]))
    d = np.array(dist) if dist else np.zeros(0)
    return {
        "steps": int(steps),
        "points_lost": lost * k,
        "points_won": won * k,
        "returns": len(d) * k,
        "return_paddle_px_median": float(np.median(d)) if len(d) else float("nan"),
        "returns_paddle_far": float(np.mean(d > NEAR_PX)) if len(d) else float("nan"),
        "rallies": len(rallies),
        "rally_steps_mean": float(np.mean(rallies)) if rallies else float("nan"),
        "rally_steps_median": float(np.median(rallies)) if rallies else float("nan"),
        "ball_dx_hist": np.histogram(np.clip(dx, 0, SPEED_BINS[-1] - 0.5), SPEED_BINS)[0].tolist(),
        "ball_dy_hist": np.histogram(np.clip(dy, 0, SPEED_BINS[-1] - 0.5), SPEED_BINS)[0].tolist(),
        "ball_dx_mean": float(np.mean(dx)) if dx else float("nan"),
        "ball_dy_mean": float(np.mean(dy)) if dy else float("nan"),
        "turn_near": {str(b): [c[0], c[1]] for b, c in near.items()},
        "turn_far": {str(b): [c[0], c[1]] for b, c in far.items()},
    }


def ram_tracks(ram: np.ndarray) -> np.ndarray:
    """RAM (T, 128) -> Pong tracks (T, 3, 3) ``[visible, x, y]`` (box centres, raw pixels)."""
    from dataset_tools.ram_truth import ram_objects

    boxes = ram_objects("Pong", ram)
    return np.stack(
        [np.stack([b[:, 0], b[:, 1] + b[:, 3] / 2, b[:, 2] + b[:, 4] / 2], -1) for b in (boxes[n] for n in NAMES)], 1
    )


def match_objects(centres: np.ndarray, tracks: np.ndarray, radius: float = 5.0) -> list[int | None]:
    """For each of player, enemy, ball the model object (index into ``centres`` (N, O, 3)) that is most
    often within ``radius`` px of it in ``tracks`` (N, 3, 3), one object each (None: never)."""
    from scipy.optimize import linear_sum_assignment

    d = np.linalg.norm(centres[:, :, None, 1:] - tracks[:, None, :, 1:], axis=-1)  # (N, O, 3)
    hits = ((d <= radius) & (centres[:, :, None, 0] > 0) & (tracks[:, None, :, 0] > 0)).sum(0)  # (O, 3)
    rows, cols = linear_sum_assignment(-hits)
    out: list[int | None] = [None] * len(NAMES)
    for o, n in zip(rows, cols, strict=True):
        if hits[o, n] > 0:
            out[n] = int(o)
    return out


def named(centres: np.ndarray, mapping: list[int | None]) -> np.ndarray:
    """Model objects (..., O, 3) -> (..., 3, 3) in player, enemy, ball order (absent where unmatched)."""
    out = np.zeros((*centres.shape[:-2], len(NAMES), 3))
    for n, o in enumerate(mapping):
        if o is not None:
            out[..., n, :] = centres[..., o, :]
    return out


def _model_centres(model: Any, state: dict[str, torch.Tensor], preprocess: Any) -> tuple[np.ndarray, bool]:
    """The state's objects (B, O, 3) in raw pixels, and whether they are already named (pixel models:
    the Pong detector on the decoded frames gives player, enemy, ball)."""
    if hasattr(model, "object_centres"):
        return model.object_centres(state).float().cpu().numpy(), False
    from world_models.pong_objects import find_objects

    found = find_objects(model.decode(state), preprocess)
    return np.stack([found[n] for n in NAMES], 1), True


# ---------------------------------------------------------------------- playing
def _real_games(
    cfg: FidelityConfig, policy: Any, checkpoint: Path, obs_type: str
) -> tuple[list, np.ndarray, np.ndarray]:
    """``real_episodes`` real games: segments (RAM tracks, rewards), and per step the model's objects seen
    by the twin and the RAM tracks (for matching)."""
    from agents.evaluate import PROTOCOL
    from learned_envs.twin import make_real_twin

    rng = np.random.default_rng(cfg.seed)
    segments, seen, truth = [], [], []
    for i in range(cfg.real_episodes):
        twin = make_real_twin(checkpoint, obs_type=obs_type, **PROTOCOL)
        obs, _ = twin.reset(seed=cfg.seed + 1000 + i)
        ale = twin.unwrapped.ale
        rams, rewards, done = [ale.getRAM().copy()], [0.0], False
        states = [twin.observer.last_state]
        while not done:
            if policy is None:
                action = int(rng.integers(twin.action_space.n))
            else:
                action = int(np.asarray(policy.predict(obs[None], deterministic=True)[0]).reshape(-1)[0])
            obs, reward, terminated, truncated, _ = twin.step(action)
            rams.append(ale.getRAM().copy())
            rewards.append(float(reward))
            states.append(twin.observer.last_state)
            done = terminated or truncated
        tracks = ram_tracks(np.stack(rams))
        segments.append((tracks, np.array(rewards)))
        if states[0] is not None:
            seen += [_model_centres(twin.model, s, twin.preprocess)[0][0] for s in states]
            truth.append(tracks)
        twin.close()
        log.info("real game %d: %d steps, score %+.0f", i, len(rewards) - 1, sum(rewards))
    return segments, np.array(seen), np.concatenate(truth) if truth else np.zeros((0, 3, 3))


def fidelity(cfg: FidelityConfig, out: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Play the dream and the real game (see the module docstring); returns the figures and writes them to ``out``."""
    from tqdm import tqdm

    from agents.dream import resolve_env
    from agents.evaluate import load_agent
    from dataset_tools.preprocess import Preprocess
    from learned_envs.env import LearnedVectorEnv

    _, checkpoint = resolve_env(cfg.checkpoint)
    policy, obs_type = None, "latent"
    if cfg.agent is not None:
        policy, meta = load_agent(cfg.agent)
        obs_type = meta["obs_type"]
    venv = LearnedVectorEnv(checkpoint, cfg.envs, device=cfg.device, obs_type=obs_type, max_episode_steps=10**9)
    if venv.config.get("game") != "Pong":
        raise ValueError(f"fidelity measures Pong's rules; {checkpoint} models {venv.config.get('game')}")
    real, seen, truth = _real_games(cfg, policy, checkpoint, obs_type)
    model, preprocess = venv.model, Preprocess.from_dict(venv.config["preprocess"])
    mapping: list[int | None] = list(range(len(NAMES)))
    if hasattr(model, "object_centres"):
        mapping = match_objects(seen, truth)
        log.info("the model's objects %s are the RAM's %s", mapping, NAMES)
    rng = np.random.default_rng(cfg.seed)
    obs, _ = venv.reset(seed=cfg.seed)
    frames, rewards, dones = [], [], []
    for _ in tqdm(range(cfg.steps), desc="dream", unit="step", disable=not progress):
        centres, is_named = _model_centres(model, venv.state, preprocess)
        frames.append(centres if is_named else named(centres, mapping))
        if policy is None:
            actions = rng.integers(0, venv.single_action_space.n, cfg.envs)
        else:
            actions = np.asarray(policy.predict(obs, deterministic=True)[0]).reshape(-1)
        obs, reward, terminated, truncated, _ = venv.step(actions)
        rewards.append(reward)
        dones.append(terminated | truncated)
    tracks, r, d = np.stack(frames), np.array(rewards), np.array(dones)  # (T, N, 3, 3), (T, N), (T, N)
    dream = []
    for e in range(cfg.envs):  # split each env's run at its resets; reward t leads to frame t + 1
        cuts = [0, *(np.nonzero(d[:, e])[0] + 1).tolist(), cfg.steps]
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            if b - a >= 3:
                dream.append((tracks[a:b, e], np.concatenate([[0.0], r[a : b - 1, e]])))
    dream_points = {"lost": float((r < 0).sum()), "won": float((r > 0).sum())}
    result = {
        "config": asdict(cfg),
        "checkpoint": str(checkpoint),
        "mapping": {n: m for n, m in zip(NAMES, mapping, strict=True)},
        "dream": statistics(dream),
        "real": statistics(real),
    }
    k = 1000.0 / r.size  # points counted over every dream step, the ones that ended an episode included
    result["dream"]["points_lost"], result["dream"]["points_won"] = dream_points["lost"] * k, dream_points["won"] * k
    if out is not None:
        write(result, Path(out))
    return result


# ---------------------------------------------------------------------- reporting
ROWS = (
    ("points lost", "points_lost", ".1f"),
    ("points won", "points_won", ".1f"),
    ("returns", "returns", ".1f"),
    ("paddle px at a return (median)", "return_paddle_px_median", ".1f"),
    (f"returns with the paddle > {NEAR_PX:g} px away", "returns_paddle_far", ".2f"),
    ("rally length, steps (mean)", "rally_steps_mean", ".1f"),
    ("ball |dx| per step (mean)", "ball_dx_mean", ".2f"),
    ("ball |dy| per step (mean)", "ball_dy_mean", ".2f"),
)


def _rate(cell: list[int]) -> str:
    return f"{cell[0] / cell[1]:.2f} ({cell[1]})" if cell[1] else "-"


def markdown(result: dict[str, Any]) -> str:
    """The two tables of a :func:`fidelity` result."""
    cfg = result["config"]
    who = f"agent {cfg['agent']}" if cfg["agent"] else "random actions"
    lines = [
        f"Fidelity of {result['checkpoint']} for {who}: {cfg['envs']} dream games x {cfg['steps']} steps, "
        f"{cfg['real_episodes']} real games ({result['real']['steps']} steps); per 1,000 steps unless said.",
        "",
        "| | dream | real |",
        "|---|---:|---:|",
    ]
    for label, key, spec in ROWS:
        lines.append(f"| {label} | {format(result['dream'][key], spec)} | {format(result['real'][key], spec)} |")
    lines += [
        "",
        f"One step at a time: of the balls flying at the player's paddle, the share that turn back next step, by ball x "
        f"(raw px; in brackets, how many), with the paddle within {NEAR_PX:g} px and farther.",
        "",
        "| ball x | dream, paddle near | real, paddle near | dream, paddle far | real, paddle far |",
        "|---|---:|---:|---:|---:|",
    ]
    for b in BANDS:
        d, r = result["dream"], result["real"]
        lines.append(
            f"| {b}-{b + 2} | {_rate(d['turn_near'][str(b)])} | {_rate(r['turn_near'][str(b)])} | "
            f"{_rate(d['turn_far'][str(b)])} | {_rate(r['turn_far'][str(b)])} |"
        )
    return "\n".join(lines)


def write(result: dict[str, Any], out: Path) -> None:
    """``fidelity.json``, ``fidelity.md`` and ``fidelity.png`` (per-1,000 figures, speed histograms, turn rates)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dataset_tools.dataset import write_json

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "fidelity.json", result)
    (out / "fidelity.md").write_text(markdown(result) + "\n")
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    keys = ("points_lost", "points_won", "returns")
    x = np.arange(len(keys))
    for i, side in enumerate(("dream", "real")):
        axes[0].bar(x + (i - 0.5) * 0.4, [result[side][k] for k in keys], 0.4, label=side)
    axes[0].set_xticks(x, ["points lost", "points won", "returns"])
    axes[0].set_title("per 1,000 steps")
    for ax, key, label in ((axes[1], "ball_dx_hist", "|dx|"), (axes[2], "ball_dy_hist", "|dy|")):
        for side in ("dream", "real"):
            h = np.array(result[side][key], dtype=float)
            ax.step(SPEED_BINS[:-1] + 0.5, h / max(h.sum(), 1), where="mid", label=side)
        ax.set_title(f"ball {label} per step (raw px), share of steps")
    for side, style in (("dream", "-o"), ("real", "--s")):
        rates = [c[0] / c[1] if c[1] else np.nan for c in result[side]["turn_near"].values()]
        axes[3].plot(np.array(BANDS) + 1, rates, style, label=f"{side}, paddle near")
    axes[3].set_title("share of balls turned next step, by ball x")
    axes[3].set_ylim(0, 1)
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "fidelity.png", dpi=80)
    plt.close(fig)


def main_json(result: dict[str, Any]) -> str:
    """The headline figures as one JSON line (what the command prints last)."""
    keys = ("points_lost", "points_won", "returns", "returns_paddle_far", "rally_steps_mean")
    return json.dumps({side: {k: round(result[side][k], 3) for k in keys} for side in ("dream", "real")})
