"""``learned-envs closed-loop``: does a Pong dream stay a game when it runs on its own output?

Open-loop scores (``evaluate``) feed the model real frames' context and grade ten steps. A learned env runs
for hundreds of steps on what the model itself drew; this grades that (the pixel-dreams issue's protocol):

1. **Long dreams.** ``envs`` dreams start from the checkpoint's real contexts and run ``steps`` steps with
   uniformly random actions. At every ``every``-th step the decoded frames go through the Pong scene check
   (:func:`world_models.objects.pong_objects.scene_check`: the player's paddle, the enemy's or none, at most
   one ball, nothing larger than it should be). Points won and lost per 1,000 steps (the reward head) and
   terminations (probability above one half) are counted; the real game is played the same way (random
   actions, the checkpoint's env settings) for the same figures and the same scene check of its frames.
2. **Serves.** At each held-out serve (the ball, by the RAM, absent from the last context frame and in play at
   the next), ``samples`` dreams run with the real actions; the ball's first move found in each sample's
   decoded frames gives its direction (left or right, up or down). A stochastic latent that carries the
   game's choice sends the samples of one serve in more than one direction.
3. **Reward head.** Windows of the held-out episodes, one after the other, roll out open loop with the real
   actions: recall and precision of the points' sign over every held-out transition (the dream's rewards).
   Models whose posterior filters real frames (``filtered_rewards``: ``rssm``) are also scored on the real
   episodes' own filtered states, where the head is trained (``filtered``): the head, without the dream. The
   frame detector also reads those dreams' decoded frames beside the real ones (``tracking``): how far apart
   the ball and the player's paddle are at each step, and how many missed points the dream kept in play.

4. **Returns at the paddle.** In the long dreams and the real games, every ball that comes at the player's
   paddle (read by the frame detector at every step) is returned or let past; the share returned by how far
   the ball is from the paddle's centre when it gets there (:func:`paddle_returns`). The game returns nearly
   every ball within 8 px and nearly none beyond 24; a dream that returns balls whatever its paddle does (or
   none) does not pay an agent for meeting the ball. The same of the enemy's paddle (``enemy_returns``, the
   field read mirrored): the game's enemy returns nearly every ball, and a dream's enemy that lets balls past
   pays an agent points the game never gives.

The RAM is read only to score (where the ball is at serves). Outputs: ``closed_loop.json``, ``closed_loop.md``
and ``closed_loop.png`` (the first dreams' frames at every ``every``-th step).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dataset_tools.atari import game_spec
from dataset_tools.dataset import DatasetDir
from dataset_tools.preprocess import Preprocess, to_tensor_layout
from world_models.base import WorldModel, pick_device
from world_models.checkpoint import CheckpointError, load_context, load_model
from world_models.evaluation.evaluate import check_dataset
from world_models.objects.pong_objects import find_objects, ram_centres, scene_check

log = logging.getLogger(__name__)

SERVE_STEPS = 12
"""Steps each serve's samples run (the ball's first move is found well within them)."""
SHOWN = 8
"""Dreams whose frames ``closed_loop.png`` shows."""
RETURN_BINS = (0, 4, 8, 12, 16, 24)
"""Bins (raw px from the player's paddle's centre, the last is open) of :func:`paddle_returns`."""


@dataclass
class ClosedLoopConfig:
    checkpoint: str
    """A learned-env id, checkpoint or run directory (a Pong world model)."""
    data: str
    """A Pong dataset with the checkpoint's settings; its held-out episodes give the serves and rewards."""
    envs: int = 32
    steps: int = 1000
    every: int = 100
    samples: int = 8
    """Dreams per held-out serve."""
    horizon: int = 10
    """Open-loop steps per reward window."""
    max_serves: int = 40
    seed: int = 0
    agent: str = ""
    """A dream agent whose actions drive a second set of long dreams (empty: none)."""
    device: str = "cpu"
    settings: list[str] = field(default_factory=list)
    """Imagination settings, ``key=value`` (``temperature=0.8``): the model's ``imagination_settings``."""
    val_fraction: float | None = None
    """Held-out share of episodes (default: the checkpoint's training setting)."""


def _held_out(data: Path, preprocess: Preprocess, val_fraction: float) -> list[dict[str, np.ndarray]]:
    ds = DatasetDir(data)
    _, val = ds.split(val_fraction)
    if not val:
        raise CheckpointError(f"{data}: no held-out episodes (val_fraction={val_fraction})")
    episodes = []
    for index in val:
        ep = ds.load(index)
        episodes.append(
            {
                "frames": to_tensor_layout(preprocess(np.asarray(ep.frames))),  # (T+1, C, H, W) in [0, 1]
                "actions": np.array(ep.actions, dtype=np.int64),
                "rewards": np.sign(np.asarray(ep.rewards, dtype=np.float32)),
                "ram": np.array(ep.ram),
            }
        )
    return episodes


@torch.no_grad()
def long_dreams(
    model: WorldModel,
    frames: torch.Tensor,
    actions: torch.Tensor,
    preprocess: Preprocess,
    steps: int,
    every: int,
    seed: int = 0,
    policy: Any = None,
    obs_type: str = "latent",
) -> dict[str, Any]:
    """Dreams from real contexts ``frames`` (B, P, C, H, W), ``actions`` (B, P-1), random actions (or ``policy``'s,
    SB3's ``predict``, deterministic, on ``obs_type`` observations) for ``steps`` steps: the scene check's shares
    at every ``every``-th step, points and terminations per 1,000 steps, and the first :data:`SHOWN` dreams'
    frames there (K, SHOWN, C, H, W), and :func:`paddle_returns` of the frame detector's reading of every step."""
    gen = torch.Generator(device=frames.device).manual_seed(seed)
    state = model.start(frames, actions, generator=gen)
    b = frames.shape[0]
    won = lost = ends = 0.0
    rows, shown, balls, players, enemies = [], [], [], [], []
    for t in range(1, steps + 1):
        if policy is None:
            a = torch.randint(model.n_actions, (b,), generator=gen, device=frames.device)
        else:
            if obs_type != "frames":
                obs = model.observation(state, obs_type).cpu().numpy()
            else:  # the learned env's frames: (B, H, W, C) uint8
                obs = (model.decode(state).float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
            chosen = np.asarray(policy.predict(obs, deterministic=True)[0]).reshape(-1)
            a = torch.from_numpy(chosen.astype(np.int64)).to(frames.device)
        state, reward, term = model.step(state, a, generator=gen)
        won += float((reward > 0).sum())
        lost += float((reward < 0).sum())
        ends += float((term > 0.5).sum())
        drawn = model.decode(state).float().clamp(0, 1)
        found = find_objects(drawn.cpu(), preprocess)
        balls.append(found["ball"])
        players.append(found["player"])
        enemies.append(found["enemy"])
        if t % every == 0:
            rows.append({"step": t, **_shares(drawn, preprocess)})
            shown.append(drawn[:SHOWN].cpu())
    per = 1000.0 / (b * steps)
    return {
        "per_step": rows,
        "won_per_1000": won * per,
        "lost_per_1000": lost * per,
        "ends_per_1000": ends * per,
        **_returns(np.stack(balls, 1), np.stack(players, 1), np.stack(enemies, 1)),
        "frames": torch.stack(shown) if shown else None,
    }


def real_random_play(
    env: dict[str, Any], preprocess: Preprocess, envs: int, steps: int, every: int, seed: int = 0
) -> dict[str, Any]:
    """The real game (``env``: a checkpoint's env settings) under the protocol of :func:`long_dreams`: ``envs``
    games of uniformly random actions for ``steps`` steps each (a finished game starts again), the scene check
    of its preprocessed frames at every ``every``-th step, points and game ends per 1,000 steps, and
    :func:`paddle_returns` of every step's frames."""
    from dataset_tools.games import EnvSettings, make_env

    settings = EnvSettings.from_dict({**env, "max_episode_steps": None})
    rng = np.random.default_rng(seed)
    won = lost = ends = 0.0
    checks: dict[int, list[np.ndarray]] = {}
    balls, players, enemies = [], [], []
    for i in range(envs):
        game = make_env(settings)
        game.reset(seed=seed + i)
        seen = []
        for t in range(1, steps + 1):
            raw, reward, terminated, truncated, _ = game.step(int(rng.integers(game.action_space.n)))
            won += float(reward > 0)
            lost += float(reward < 0)
            if terminated or truncated:
                ends += 1
                game.reset(seed=seed + i + 1000 * t)
            seen.append(preprocess(raw))
            if t % every == 0:
                checks.setdefault(t, []).append(seen[-1])
        game.close()
        found = find_objects(torch.from_numpy(to_tensor_layout(np.stack(seen))), preprocess)
        balls.append(found["ball"])
        players.append(found["player"])
        enemies.append(found["enemy"])
    rows = []
    for t, frames in sorted(checks.items()):
        rows.append({"step": t, **_shares(torch.from_numpy(to_tensor_layout(np.stack(frames))), preprocess)})
    per = 1000.0 / (envs * steps)
    return {
        "per_step": rows,
        "won_per_1000": won * per,
        "lost_per_1000": lost * per,
        "ends_per_1000": ends * per,
        **_returns(np.stack(balls), np.stack(players), np.stack(enemies)),
    }


def _returns(ball: np.ndarray, player: np.ndarray, enemy: np.ndarray) -> dict[str, dict[str, Any]]:
    """:func:`paddle_returns` at the player's paddle (``returns``) and at the enemy's (``enemy_returns``), and
    :func:`enemy_gap`."""
    return {
        "returns": paddle_returns(ball, player),
        "enemy_returns": paddle_returns(_mirrored(ball), _mirrored(enemy)),
        "enemy_gap": enemy_gap(ball, enemy),
    }


FAR_GAP = 24.0
"""Raw px between the enemy's centre and the ball, up or down, past which :func:`enemy_gap` counts it far."""


def enemy_gap(ball: np.ndarray, enemy: np.ndarray) -> dict[str, Any]:
    """How far the enemy's paddle is from the ball, up or down (raw px), at every step where the frame detector
    finds both (``ball``, ``enemy`` (B, T, 3) ``[found, x, y]``): the median, 90th and 99th percentiles and the
    share of steps further than :data:`FAR_GAP`. The game's enemy follows the ball (the detector on ``pong_mix``'s
    held-out play: 9 of 13,627 steps with the ball moving are further), and a dream whose enemy strays lets balls
    past it that the game's returns."""
    both = (ball[..., 0] > 0) & (enemy[..., 0] > 0)
    gap = np.abs(ball[..., 2] - enemy[..., 2])[both]
    if not len(gap):
        return {"n": 0, "median": None, "p90": None, "p99": None, "far": None}
    p50, p90, p99 = (float(v) for v in np.quantile(gap, [0.5, 0.9, 0.99]))
    return {"n": int(len(gap)), "median": p50, "p90": p90, "p99": p99, "far": float(np.mean(gap > FAR_GAP))}


def _mirrored(found: np.ndarray) -> np.ndarray:
    """The detector's ``[found, x, y]`` (..., 3) of the field mirrored left to right (x negated): the enemy's
    paddle read as :func:`paddle_returns` reads the player's."""
    out = found.copy()
    out[..., 1] = -out[..., 1]
    return out


def paddle_returns(ball: np.ndarray, player: np.ndarray) -> dict[str, Any]:
    """Balls that come at the player's paddle, returned or let past, by how far the ball is from the paddle.

    ``ball``, ``player`` (B, T, 3): the frame detector's ``[found, x, y]`` (raw px) over B runs of T steps. A ball
    comes at the paddle where it moves right into 6-14 px short of the paddle's column; it is returned if it
    then moves left, let past if it is lost or goes 8 px beyond the column, within 8 steps (else not counted).
    Its distance is ``|ball y - paddle y|`` at its last step before the column's far side. Returns per bin of
    :data:`RETURN_BINS`: ``{"from", "to", "n", "returned"}`` (``returned`` None where ``n`` is 0), and the
    overall share."""
    events: list[tuple[float, int]] = []
    for b in range(ball.shape[0]):
        found, bx, by = ball[b, :, 0] > 0, ball[b, :, 1], ball[b, :, 2]
        t, end = 1, ball.shape[1]
        while t < end - 1:
            column = player[b, t, 1]
            coming = found[t] and found[t - 1] and bx[t] > bx[t - 1] and column - 14 <= bx[t] < column - 6
            if not (coming and player[b, t, 0] > 0):
                t += 1
                continue
            outcome, k = None, t
            while outcome is None and k < min(end - 1, t + 8):
                k += 1
                if not found[k] or bx[k] > column + 8:
                    outcome = 0
                elif bx[k] < bx[k - 1] - 1:
                    outcome = 1
            if outcome is not None:
                last = max(i for i in range(t, k) if found[i] and bx[i] <= column + 1)
                if player[b, last, 0] > 0:
                    events.append((abs(float(by[last] - player[b, last, 2])), outcome))
            t = k + 1
    bins = []
    edges = [*RETURN_BINS, None]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        got = [r for d, r in events if d >= lo and (hi is None or d < hi)]
        bins.append({"from": lo, "to": hi, "n": len(got), "returned": float(np.mean(got)) if got else None})
    return {"bins": bins, "n": len(events), "returned": float(np.mean([r for _, r in events])) if events else None}


def _shares(frames: torch.Tensor, preprocess: Preprocess) -> dict[str, float]:
    """The scene check's shares of valid frames, of each of its parts, and of frames with a ball found: a valid
    scene may have no ball (between points), a dream that loses it often has fewer balls than the game."""
    check = scene_check(frames, preprocess)
    return {k: float(np.mean(check[k])) for k in ("valid", "player", "enemy", "one_ball", "ball")}


def _direction(track: np.ndarray) -> tuple[int, int] | None:
    """(K, 3) [found, x, y] of the ball over steps -> the sign of its first move (x, y) between two steps where
    it is found, None if it never is twice in a row (a move under half a pixel counts as 0)."""
    for k in range(len(track) - 1):
        if track[k, 0] > 0 and track[k + 1, 0] > 0:
            dx, dy = track[k + 1, 1] - track[k, 1], track[k + 1, 2] - track[k, 2]
            return int(np.sign(dx) * (abs(dx) >= 0.5)), int(np.sign(dy) * (abs(dy) >= 0.5))
    return None


@torch.no_grad()
def serves(
    model: WorldModel,
    episodes: list[dict[str, np.ndarray]],
    preprocess: Preprocess,
    samples: int,
    max_serves: int,
    seed: int = 0,
) -> dict[str, Any]:
    """At each held-out serve (the ball absent from the RAM at the last context frame, in play at the next),
    ``samples`` dreams with the real actions: the directions of the ball's first move in each, against the
    real serve's."""
    p = model.cfg.n_past
    found = []
    for ep in episodes:
        seen = ram_centres(ep["ram"])["ball"]  # (T+1, 3) [visible, x, y]
        for s in range(p - 1, len(seen) - SERVE_STEPS - 1):
            if seen[s, 0] == 0 and seen[s + 1, 0] > 0:
                found.append((ep, s, seen[s + 1 : s + 1 + SERVE_STEPS]))
    pick = np.unique(np.linspace(0, len(found) - 1, min(max_serves, len(found))).round().astype(int)) if found else []
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    rows = []
    for i in pick:
        ep, s, real_track = found[i]
        frames = torch.from_numpy(ep["frames"][s - p + 1 : s + 1]).to(device).unsqueeze(0).repeat(samples, 1, 1, 1, 1)
        ctx = torch.from_numpy(ep["actions"][s - p + 1 : s]).to(device).unsqueeze(0).repeat(samples, 1)
        future = torch.from_numpy(ep["actions"][s : s + SERVE_STEPS]).to(device)
        state = model.start(frames, ctx, generator=gen)
        tracks = []
        for k in range(SERVE_STEPS):
            state, _, _ = model.step(state, future[k].repeat(samples), generator=gen)
            tracks.append(find_objects(model.decode(state).float().clamp(0, 1), preprocess)["ball"])  # (S, 3)
        per_sample = np.stack(tracks, 1)  # (S, K, 3)
        dirs = [_direction(per_sample[j]) for j in range(samples)]
        seen_dirs = sorted({d for d in dirs if d is not None})
        real_dir = _direction(real_track)
        rows.append(
            {
                "episode_step": s,
                "real": real_dir,
                "directions": [list(d) for d in seen_dirs],
                "found": sum(d is not None for d in dirs) / samples,
                "agree": sum(d == real_dir for d in dirs if d is not None) / samples,
            }
        )
    real = [r["real"] for r in rows if r["real"] is not None]
    return {
        "serves": rows,
        "n": len(rows),
        "more_than_one_direction": float(np.mean([len(r["directions"]) > 1 for r in rows])) if rows else float("nan"),
        "mean_directions": float(np.mean([len(r["directions"]) for r in rows])) if rows else float("nan"),
        "ball_found": float(np.mean([r["found"] for r in rows])) if rows else float("nan"),
        "agree_with_real": float(np.mean([r["agree"] for r in rows])) if rows else float("nan"),
        "real_directions": {str(list(d)): real.count(d) for d in sorted(set(real))},
    }


@torch.no_grad()
def reward_head(
    model: WorldModel,
    episodes: list[dict[str, np.ndarray]],
    horizon: int,
    seed: int = 0,
    batch: int = 64,
    preprocess: Preprocess | None = None,
) -> dict[str, Any]:
    """Recall and precision of the points' sign on the held-out episodes: windows one after the other (each
    transition predicted once, 1 to ``horizon`` steps after a real context), open loop with the real actions;
    ``by_step`` splits them by steps since the context (how far the dream keeps to the game). With
    ``preprocess`` the dream's frames are decoded too and the frame detector reads them beside the real ones
    (``tracking``: :func:`_tracking`)."""
    p = model.cfg.n_past
    starts = [(ep, s) for ep in episodes for s in range(p - 1, len(ep["actions"]) - horizon + 1, horizon)]
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    true, pred, ahead, dreamt, real = [], [], [], [], []
    windows: list[tuple[np.ndarray, np.ndarray]] = []  # per chunk: (chunk, horizon) real and dreamt rewards
    for i in range(0, len(starts), batch):
        chunk = starts[i : i + batch]
        frames = torch.from_numpy(np.stack([ep["frames"][s - p + 1 : s + 1] for ep, s in chunk])).to(device)
        ctx = np.stack([ep["actions"][s - p + 1 : s] for ep, s in chunk]).reshape(len(chunk), p - 1)
        ctx = torch.from_numpy(ctx).to(device)
        future = torch.from_numpy(np.stack([ep["actions"][s : s + horizon] for ep, s in chunk])).to(device)
        state = model.start(frames, ctx, generator=gen)
        first = len(pred)
        for k in range(horizon):
            state, reward, _ = model.step(state, future[:, k], generator=gen)
            pred.append(reward.float().cpu().numpy())
            true.append(np.array([ep["rewards"][s + k] for ep, s in chunk]))
            ahead.append(np.full(len(chunk), k + 1))
            if preprocess is not None:
                dreamt.append(find_objects(model.decode(state).float().clamp(0, 1).cpu(), preprocess))
                real.append(find_objects(np.stack([ep["frames"][s + k + 1] for ep, s in chunk]), preprocess))
        windows.append((np.stack(true[first:], 1), np.stack(pred[first:], 1)))
    t, q, k = np.concatenate(true), np.concatenate(pred), np.concatenate(ahead)
    by_step = [{"steps": j, **_recall_precision(t[k == j], q[k == j])} for j in range(1, horizon + 1)]
    out: dict[str, Any] = {**_recall_precision(t, q), "transitions": int(len(t)), "by_step": by_step}
    out["within_one_step"] = _recall_precision_near(
        np.concatenate([w[0] for w in windows]), np.concatenate([w[1] for w in windows])
    )
    if preprocess is not None:
        joined = [{name: np.concatenate([f[name] for f in found]) for name in found[0]} for found in (dreamt, real)]
        out["tracking"] = _tracking(*joined, k, t, q, horizon)
    if hasattr(model, "filtered_rewards"):  # the head on the real episodes' posterior states, each in one pass
        calls = [
            model.filtered_rewards(
                torch.from_numpy(ep["frames"]).to(device)[None], torch.from_numpy(ep["actions"]).to(device)[None], gen
            )[0]
            for ep in episodes
        ]
        out["filtered"] = _recall_precision(
            np.concatenate([ep["rewards"] for ep in episodes]), torch.cat(calls).float().cpu().numpy()
        )
    return out


def _tracking(
    dream: dict[str, np.ndarray],
    real: dict[str, np.ndarray],
    ahead: np.ndarray,
    true: np.ndarray,
    pred: np.ndarray,
    horizon: int,
) -> dict[str, Any]:
    """Where the reward windows' dreams leave the game, from the frame detector's ``[found, x, y]`` (N, 3) of the
    dream's and the real frames (``dream``, ``real``) at each transition's end: per step since the context, the
    median distance of the ball and of the player's paddle (raw pixels, where both frames show it; None where
    no frame pair does) and the share of frames where the dream shows a ball exactly when the real frame does.
    ``missed_in_play``: of the real points the dream did not call, the share where its frame still shows a ball
    in the field (the dream kept the ball in play, e.g. returned it, where the real one flew out)."""

    def apart(name: str, sel: np.ndarray) -> float | None:
        both = sel & (dream[name][:, 0] > 0) & (real[name][:, 0] > 0)
        if not both.any():
            return None
        return float(np.median(np.linalg.norm(dream[name][both, 1:] - real[name][both, 1:], axis=1)))

    by_step = []
    for j in range(1, horizon + 1):
        sel = ahead == j
        same = (dream["ball"][sel, 0] > 0) == (real["ball"][sel, 0] > 0)
        by_step.append(
            {
                "steps": j,
                "ball_px": apart("ball", sel),
                "player_px": apart("player", sel),
                "ball_agree": float(same.mean()),
            }
        )
    missed = (true != 0) & (pred != true)
    return {
        "by_step": by_step,
        "missed": int(missed.sum()),
        "missed_in_play": float((dream["ball"][missed, 0] > 0).mean()) if missed.any() else None,
    }


def _recall_precision_near(true: np.ndarray, pred: np.ndarray, slack: int = 1) -> dict[str, float]:
    """As :func:`_recall_precision` on windows (N, T) of real and dreamt reward signs, a call counting for a point of
    its sign up to ``slack`` steps before or after it in the same window (and a point as called so). The game
    gives Pong's point one step before, at or one step after the step where the frame detector loses the ball
    (``pong_mix``'s 131 held-out points: 78 at it, 49 one step before, 3 one step after), so a dream whose ball
    leaves a step early or late calls the right point at the wrong step."""

    def near(hit: np.ndarray) -> np.ndarray:
        out = hit.copy()
        for k in range(1, slack + 1):
            out[:, k:] |= hit[:, :-k]
            out[:, :-k] |= hit[:, k:]
        return out

    points, called = true != 0, pred != 0
    found = np.zeros_like(points)
    right = np.zeros_like(called)
    for sign in (-1, 1):
        found |= (true == sign) & near(pred == sign)
        right |= (pred == sign) & near(true == sign)
    return {
        "points": int(points.sum()),
        "called": int(called.sum()),
        "recall": float(found.sum() / max(points.sum(), 1)),
        "precision": float(right.sum() / called.sum()) if called.any() else float("nan"),
    }


def _recall_precision(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Points (nonzero ``true``), points called (nonzero ``pred``), the share of points called with their sign
    (recall) and of calls that were such a point (precision; NaN when nothing was called): at the exact step."""
    return _recall_precision_near(true.reshape(-1, 1), pred.reshape(-1, 1), slack=0)


def closed_loop(cfg: ClosedLoopConfig, out: str | Path, policy: Any = None, obs_type: str = "latent") -> dict[str, Any]:
    """Run the three measurements of the module docstring; write ``out``/closed_loop.json, .md and .png. With
    ``policy`` (a dream agent: SB3's ``predict`` on ``obs_type`` observations) the long dreams are run a
    second time with its actions (``agent_dreams``; ``learned-envs fidelity`` plays it in the real game)."""
    if min(cfg.envs, cfg.steps, cfg.every, cfg.samples, cfg.horizon, cfg.max_serves) < 1:
        raise ValueError("envs, steps, every, samples, horizon and max_serves must be at least 1")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    model, config = load_model(cfg.checkpoint, device)
    if not isinstance(model, WorldModel) or not game_spec(config.game).paddle_rally:
        raise CheckpointError(
            f"{cfg.checkpoint}: closed-loop needs a Pong world model, got {config.model} on {config.game}"
        )
    check_dataset(config, DatasetDir(cfg.data).read_manifest())
    if cfg.settings:
        model.set_imagination(cfg.settings, cfg.checkpoint)
    model.eval()
    preprocess = Preprocess.from_dict(config.preprocess)
    val_fraction = cfg.val_fraction
    if val_fraction is None:
        val_fraction = float((config.train_config or {}).get("val_fraction", 0.1))
    ctx = load_context(cfg.checkpoint)
    pick = np.arange(cfg.envs) % len(ctx["frames"])
    frames = torch.from_numpy(to_tensor_layout(ctx["frames"][pick])).to(device)  # (B, P, C, H, W)
    actions = torch.from_numpy(ctx["actions"][pick]).long().to(device)
    t0 = time.perf_counter()
    dreams = long_dreams(model, frames, actions, preprocess, cfg.steps, cfg.every, cfg.seed)
    dream_s = time.perf_counter() - t0
    agent = None
    if policy is not None:
        agent = long_dreams(model, frames, actions, preprocess, cfg.steps, cfg.every, cfg.seed, policy, obs_type)
        agent.pop("frames")
    real = real_random_play(config.env, preprocess, cfg.envs, cfg.steps, cfg.every, cfg.seed)
    episodes = _held_out(Path(cfg.data), preprocess, val_fraction)
    serve = serves(model, episodes, preprocess, cfg.samples, cfg.max_serves, cfg.seed)
    rewards = reward_head(model, episodes, cfg.horizon, cfg.seed, preprocess=preprocess)
    shown = dreams.pop("frames")
    result = {
        "config": asdict(cfg),
        "model": config.model,
        "step": config.step,
        "dreams": dreams,
        "dream_s": dream_s,
        "real": real,
        "agent_dreams": agent,
        "serves": serve,
        "reward_head": rewards,
        "min_valid": min((r["valid"] for r in dreams["per_step"]), default=float("nan")),
    }
    (out / "closed_loop.json").write_text(json.dumps(result, indent=1))
    (out / "closed_loop.md").write_text(markdown(result))
    if shown is not None:
        _strip(shown, out / "closed_loop.png")
    return result


def _strip(frames: torch.Tensor, path: Path) -> None:
    """(K, N, C, H, W) -> one PNG: a row per dream, a column per checked step, 2x enlarged."""
    import imageio.v3 as iio

    k, n, c, h, w = frames.shape
    img = (frames.permute(1, 3, 0, 4, 2).reshape(n * h, k * w, c).numpy() * 255).round().astype(np.uint8)
    if c == 1:
        img = np.repeat(img, 3, axis=2)
    iio.imwrite(path, img.repeat(2, axis=0).repeat(2, axis=1))


def markdown(result: dict[str, Any]) -> str:
    """The closed-loop figures as a markdown report."""
    d, r, s, w = result["dreams"], result["real"], result["serves"], result["reward_head"]
    cfg = result["config"]
    real_at = {row["step"]: row for row in r["per_step"]}
    lines = [
        f"# Closed loop: `{cfg['checkpoint']}` ({result['model']}, step {result['step']})",
        "",
        *([f"Imagination settings: {', '.join(cfg['settings'])}.", ""] if cfg.get("settings") else []),
        f"{cfg['envs']} dreams x {cfg['steps']} steps of random actions from real contexts ({result['dream_s']:.0f} s), "
        f"against {cfg['envs']} real games of random actions:",
        "",
        "| step | valid frames (dream) | player | enemy | one ball | a ball found | valid frames (real) | a ball "
        "found (real) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in d["per_step"]:
        real = real_at.get(row["step"], {})
        lines.append(
            f"| {row['step']} | {row['valid']:.2f} | {row['player']:.2f} | {row['enemy']:.2f} | {row['one_ball']:.2f} "
            f"| {row['ball']:.2f} | {real.get('valid', float('nan')):.2f} | {real.get('ball', float('nan')):.2f} |"
        )
    lines += [
        "",
        "| per 1,000 steps | dream | real |",
        "|---|---:|---:|",
        f"| points won | {d['won_per_1000']:.1f} | {r['won_per_1000']:.1f} |",
        f"| points lost | {d['lost_per_1000']:.1f} | {r['lost_per_1000']:.1f} |",
        f"| episode ends | {d['ends_per_1000']:.2f} | {r['ends_per_1000']:.2f} |",
        "",
        "Balls that come at the player's paddle (and at the enemy's, the field read mirrored), share returned by the "
        "ball's distance from the paddle's centre (raw px; balls counted):",
        "",
        "| | " + " | ".join(_bin_name(b) for b in d["returns"]["bins"]) + " | all |",
        "|---|" + "---:|" * (len(d["returns"]["bins"]) + 1),
        *(
            f"| {name}{side} | "
            + " | ".join(f"{_num(b['returned'], 2)} ({b['n']})" for b in x[key]["bins"])
            + f" | {_num(x[key]['returned'], 2)} ({x[key]['n']}) |"
            for key, side in (("returns", ""), ("enemy_returns", ", the enemy's paddle"))
            for name, x in (("dream", d), ("real", r))
            if key in x
        ),
        "",
        *_gap_lines(d, r),
        *_agent_lines(result),
        f"Serves ({s['n']} held out, {cfg['samples']} samples each): samples go in more than one direction at "
        f"{s['more_than_one_direction']:.2f} of them ({s['mean_directions']:.2f} directions on average); the ball "
        f"is found moving in {s['ball_found']:.2f} of the samples, {s['agree_with_real']:.2f} go the real serve's "
        f"way; the real serves' directions (x, y): {s['real_directions']}.",
        "",
        f"Reward head ({w['transitions']} held-out transitions, open loop 1-{cfg['horizon']} steps): recall "
        f"{w['recall']:.2f} of {w['points']} points, precision {w['precision']:.2f} of {w['called']} called. By "
        "steps since the real context (recall / precision, points): "
        + ", ".join(f"{r['steps']}: {r['recall']:.2f} / {r['precision']:.2f} ({r['points']})" for r in w["by_step"])
        + ".",
        "",
    ]
    if "within_one_step" in w:
        n = w["within_one_step"]
        lines += [
            f"Within one step (a call one step before or after a point of its sign counts for it): recall "
            f"{n['recall']:.2f}, precision {_num(n['precision'], 2)}.",
            "",
        ]
    if "filtered" in w:
        f = w["filtered"]
        lines += [
            f"The same head on the held-out episodes' own states (the posterior filtering the real frames, where the "
            f"head is trained; no dream): recall {f['recall']:.2f} of {f['points']} points, precision "
            f"{f['precision']:.2f} of {f['called']} called.",
            "",
        ]
    if "tracking" in w:
        tr = w["tracking"]
        lines += [
            "Where those dreams leave the game (the frame detector on the dream's and the real frames; by steps since "
            "the real context: ball / player's paddle apart in raw pixels, share of frames that agree on a ball): "
            + ", ".join(
                f"{r['steps']}: {_num(r['ball_px'], 1)} / {_num(r['player_px'], 1)} / {r['ball_agree']:.2f}"
                for r in tr["by_step"]
            )
            + f". Of the {tr['missed']} points the dream missed, its frame still shows a ball in the field at "
            f"{_num(tr['missed_in_play'], 2)}.",
            "",
        ]
    return "\n".join(lines)


def _gap_lines(dream: dict[str, Any], real: dict[str, Any]) -> list[str]:
    """The enemy's distance from the ball (:func:`enemy_gap`), dream and real, as markdown lines."""
    if "enemy_gap" not in dream or "enemy_gap" not in real:
        return []

    def said(g: dict[str, Any]) -> str:
        return (
            f"{_num(g['median'], 1)} / {_num(g['p90'], 1)} / {_num(g['p99'], 1)}, further than {FAR_GAP:g} px at "
            f"{_num(g['far'], 4)} of {g['n']} steps"
        )

    return [
        "The enemy's paddle from the ball, up or down, at every step where both are found (raw px, median / 90th / "
        f"99th percentile): dream {said(dream['enemy_gap'])}; real {said(real['enemy_gap'])}.",
        "",
    ]


def _bin_name(b: dict[str, Any]) -> str:
    return f"> {b['from']}" if b["to"] is None else f"{b['from']}-{b['to']}"


def _num(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _agent_lines(result: dict[str, Any]) -> list[str]:
    a = result.get("agent_dreams")
    if not a:
        return []
    valid = ", ".join(f"{row['valid']:.2f}" for row in a["per_step"])
    return [
        f"The same dreams with the actions of `{result['config']['agent']}`: valid frames at every "
        f"{result['config']['every']}th step {valid}; per 1,000 steps {a['won_per_1000']:.1f} points won, "
        f"{a['lost_per_1000']:.1f} lost, {a['ends_per_1000']:.2f} episode ends (`learned-envs fidelity` plays it "
        "in the real game).",
        "",
    ]
