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

from dataset_tools.atari import game_spec

log = logging.getLogger(__name__)

NAMES = ("player", "enemy", "ball")
SIDES = {"player": (1, 120.0), "enemy": (-1, 40.0)}
"""Per side: the direction (x) in which a ball flies at that side's paddle, and the x (raw px) it crosses
when it arrives there."""
REPLAY_STEPS = 16
"""Steps each replay of an arrival runs (the ball is back or the point scored well within it)."""
ARRIVAL_X = 120.0
"""A ball flying right across this x (raw px) arrives at the player's side."""
RETURN_X = 120.0
"""A turn of the ball at an x beyond this (raw px) is a return by the player."""
NEAR_PX = 12.0
"""A paddle within this many raw px (y) of the ball counts as there."""
BANDS = tuple(range(128, 148, 2))
"""Left edges of the 2-px bands of ball x (raw px) of the one-step table."""
SPEED_BINS = np.arange(-0.5, 16.5)
"""Bin edges (raw px per step) of the speed histograms: one bin per whole pixel, centred on it."""
SPEEDS = ("4", "8", "12+")
"""Classes of the ball's horizontal speed (``|dx|`` raw px per step, rounded to Pong's steps of 4)."""


def speed_class(dx: float) -> str:
    """``|dx|`` (raw px per step) -> its class in :data:`SPEEDS`."""
    return SPEEDS[0] if abs(dx) < 6 else SPEEDS[1] if abs(dx) < 10 else SPEEDS[2]


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
    samples: int = 16
    """Replays of each real arrival: in the dream, and in the real game restored to that moment."""
    trust_pickle: bool = False
    """Let ``agent`` be an older agent's ``agent.zip`` (loading one unpickles it)."""


# ---------------------------------------------------------------------- figures of trajectories
def statistics(segments: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Pong figures of trajectories: each segment is tracks (T, 3, 3) ``[present, x, y]`` of player, enemy
    and ball in raw pixels, and the rewards (T,) of the steps that led to those frames."""
    steps = sum(len(r) for _, r in segments)
    k = 1000.0 / max(steps, 1)
    lost = sum(float((r < 0).sum()) for _, r in segments)
    repeats = 0  # points scored within 3 steps of the last one: never in the game (a serve follows a point)
    for _, r in segments:
        steps_with_points = np.nonzero(r)[0]
        repeats += int((np.diff(steps_with_points) <= 3).sum())
    won = sum(float((r > 0).sum()) for _, r in segments)
    dist, rallies, dx, dy = [], [], [], []
    near = {b: [0, 0] for b in BANDS}  # turned, seen (paddle within NEAR_PX)
    far = {b: [0, 0] for b in BANDS}
    kept: dict[str, dict[str, dict[str, int]]] = {"player": {}, "enemy": {}}  # side -> speed in -> speed out -> n
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
                if into[0] * out[0] < 0 and (x > RETURN_X or x < SIDES["enemy"][1]):
                    side = kept["player" if x > RETURN_X else "enemy"].setdefault(speed_class(into[0]), {})
                    leaving = speed_class(out[0])
                    side[leaving] = side.get(leaving, 0) + 1
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
    arrivals = _arrivals(segments)
    vanish = [sum(int(((tr[:-1, o, 0] > 0) & (tr[1:, o, 0] == 0)).sum()) for tr, _ in segments) for o in range(3)]
    return {
        "steps": int(steps),
        "points_lost": lost * k,
        "points_won": won * k,
        "repeated_points": repeats * k,
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
        "arrivals": arrivals,
        "player_vanishes": vanish[0] * k,
        "enemy_vanishes": vanish[1] * k,
        "turn_near": {str(b): [c[0], c[1]] for b, c in near.items()},
        "turn_far": {str(b): [c[0], c[1]] for b, c in far.items()},
        "return_speeds": kept,
    }


def _arrivals(segments: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, list[int]]:
    """Balls arriving at the player's side (flying right across x = :data:`ARRIVAL_X`), by their speed
    (``|dx|`` px per step, rounded to 4: "4", "8", "12+"): ``[returned, missed, arrived]``. A ball is
    returned when it next turns back, missed when a point is scored first."""
    out: dict[str, list[int]] = {}
    for tracks, rewards in segments:
        ball = tracks[:, 2]
        t = 1
        while t < len(tracks):
            crossing = ball[t, 0] > 0 and ball[t - 1, 0] > 0 and ball[t - 1, 1] < ARRIVAL_X <= ball[t, 1]
            if not crossing:
                t += 1
                continue
            cell = out.setdefault(speed_class(ball[t, 1] - ball[t - 1, 1]), [0, 0, 0])
            cell[2] += 1
            u = t + 1
            while u < len(tracks):
                if rewards[u] != 0:
                    cell[1] += 1
                    break
                if ball[u, 0] > 0 and ball[u - 1, 0] > 0 and ball[u, 1] < ball[u - 1, 1]:
                    cell[0] += 1
                    break
                u += 1
            t = u + 1
    return out


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
    from world_models.objects.pong_objects import find_objects

    found = find_objects(model.decode(state), preprocess)
    return np.stack([found[n] for n in NAMES], 1), True


# ---------------------------------------------------------------------- playing
def _real_games(
    cfg: FidelityConfig, policy: Any, checkpoint: Path, obs_type: str
) -> tuple[list, np.ndarray, np.ndarray, list]:
    """``real_episodes`` real games: segments (RAM tracks, rewards), per step the model's objects seen by the
    twin and the RAM tracks (for matching), and per game the twin's model states and the actions taken."""
    from agents.evaluate import PROTOCOL
    from learned_envs.twin import make_real_twin

    rng = np.random.default_rng(cfg.seed)
    segments, seen, truth, replays, real_again = [], [], [], [], []
    for i in range(cfg.real_episodes):
        twin = make_real_twin(checkpoint, obs_type=obs_type, **PROTOCOL)
        obs, _ = twin.reset(seed=cfg.seed + 1000 + i)
        ale = twin.unwrapped.ale
        rams, rewards, actions, done = [ale.getRAM().copy()], [0.0], [], False
        states, saved = [twin.observer.last_state], [ale.cloneState()]
        while not done:
            if policy is None:
                action = int(rng.integers(twin.action_space.n))
            else:
                action = int(np.asarray(policy.predict(obs[None], deterministic=True)[0]).reshape(-1)[0])
            obs, reward, terminated, truncated, _ = twin.step(action)
            actions.append(action)
            rams.append(ale.getRAM().copy())
            saved.append(ale.cloneState())
            rewards.append(float(reward))
            states.append(twin.observer.last_state)
            done = terminated or truncated
        tracks = ram_tracks(np.stack(rams))
        segments.append((tracks, np.array(rewards)))
        real_again.append(_replay_real(twin.env, saved, tracks, np.array(rewards), np.array(actions), cfg.samples))
        if states[0] is not None:
            seen += [_model_centres(twin.model, s, twin.preprocess)[0][0] for s in states]
            truth.append(tracks)
            replays.append((states, np.array(actions)))
        twin.close()
        log.info("real game %d: %d steps, score %+.0f", i, len(rewards) - 1, sum(rewards))
    seen_all = np.array(seen)
    return segments, seen_all, np.concatenate(truth) if truth else np.zeros((0, 3, 3)), replays, real_again


def _arrival_steps(tracks: np.ndarray, rewards: np.ndarray, side: str) -> list[tuple[int, int]]:
    """(step, real outcome) of every ball arriving at ``side``'s paddle (:data:`SIDES`) whose outcome the
    trajectory shows."""
    direction, x = SIDES[side]
    ball, out = tracks[:, 2], []
    for t in range(1, len(tracks) - 1):
        if (
            ball[t, 0] > 0
            and ball[t - 1, 0] > 0
            and direction * ball[t - 1, 1] < direction * x <= direction * ball[t, 1]
        ):
            real, _ = _outcome(ball, rewards, t, side)
            if real is not None:
                out.append((t, real))
    return out


def _replay_real(
    env: Any, saved: list, tracks: np.ndarray, rewards: np.ndarray, actions: np.ndarray, samples: int
) -> dict[str, list[float]]:
    """The real game again from each arrival: the emulator restored to its state there and stepped ``samples``
    times by the actions the game took next (sticky actions draw anew each time); per side and arrival, the
    share of replays that return the ball. What a perfect dream would return."""
    ale = env.unwrapped.ale
    shares: dict[str, list[float]] = {}
    for side in SIDES:
        shares[side] = []
        for t, _ in _arrival_steps(tracks, rewards, side):
            returned = 0
            for _ in range(samples):
                ale.restoreState(saved[t])
                rams, rs = [tracks[t - 1 : t + 1]], [0.0, 0.0]
                for a in np.resize(actions[t : t + REPLAY_STEPS], REPLAY_STEPS):
                    _, r, terminated, truncated, _ = env.step(int(a))
                    rams.append(ram_tracks(ale.getRAM()[None]))
                    rs.append(float(r))
                    if terminated or truncated:
                        break
                outcome, _ = _outcome(np.concatenate(rams)[:, 2], np.array(rs), 1, side)
                returned += outcome == 1
            shares[side].append(returned / samples)
    return shares


def _outcome(ball: np.ndarray, rewards: np.ndarray, t: int, side: str) -> tuple[int | None, int]:
    """After a ball arriving at ``side``'s paddle at step ``t``: 1 if it next turns back, 0 if a point is
    scored first, None if neither happens in the trajectory; and the step where it was decided."""
    direction = SIDES[side][0]
    for u in range(t + 1, len(ball)):
        if rewards[u] != 0:
            return 0, u
        if ball[u, 0] > 0 and ball[u - 1, 0] > 0 and direction * (ball[u, 1] - ball[u - 1, 1]) < 0:
            return 1, u
    return None, len(ball)


def _by_outcome(segments: list, shares: list[dict[str, list[float]]]) -> dict[str, dict[str, list[float]]]:
    """Mean of per-arrival ``shares`` by side and real outcome: {side: {"returned" | "missed": [mean, arrivals]}}."""
    out: dict[str, dict[str, list[float]]] = {}
    for side in SIDES:
        cells: dict[str, list[float]] = {"returned": [], "missed": []}
        for (tracks, rewards), game in zip(segments, shares, strict=True):
            for (_, real), share in zip(_arrival_steps(tracks, rewards, side), game[side], strict=True):
                cells["returned" if real else "missed"].append(share)
        out[side] = {k: [float(np.mean(v)) if v else float("nan"), len(v)] for k, v in cells.items()}
    return out


def _counterfactual(
    model: Any, segments: list, replays: list, mapping: list[int | None], preprocess: Any, samples: int, seed: int
) -> dict[str, dict[str, list[float]]]:
    """From the twin's state at each real arrival, the dream driven by the actions the real game took next,
    ``samples`` times: per side and real outcome (``"returned"``, ``"missed"``), [share of dream samples that
    return the ball, arrivals]. A faithful dream returns what the real game returns when replayed."""
    horizon = REPLAY_STEPS
    generator = torch.Generator().manual_seed(seed)
    result = {}
    for side in SIDES:
        rows = [
            (g, t, real)
            for g, (tracks, rewards) in enumerate(segments)
            for t, real in _arrival_steps(tracks, rewards, side)
        ]
        out: dict[str, list[float]] = {"returned": [0.0, 0], "missed": [0.0, 0]}
        for first in range(0, len(rows), 64):
            chunk = rows[first : first + 64]
            states = [replays[g][0][t] for g, t, _ in chunk]
            state = {k: torch.cat([s[k] for s in states]).repeat_interleave(samples, 0) for k in states[0]}
            acts = np.stack([np.resize(replays[g][1][t : t + horizon], horizon) for g, t, _ in chunk])  # (E, H)
            acts_t = torch.from_numpy(acts).repeat_interleave(samples, 0)
            frames, rewards = [named(_model_centres(model, state, preprocess)[0], mapping)], []
            with torch.no_grad():
                for k in range(horizon):
                    state, reward, _ = model.step(state, acts_t[:, k], generator=generator)
                    frames.append(named(_model_centres(model, state, preprocess)[0], mapping))
                    rewards.append(reward.float().numpy())
            tracks = np.stack(frames, 1)  # (E*S, H+1, 3, 3)
            r = np.concatenate([np.zeros((len(tracks), 1)), np.stack(rewards, 1)], 1)
            for i, (_, _, real) in enumerate(chunk):
                dream = [
                    _outcome(tracks[i * samples + s, :, 2], r[i * samples + s], 0, side)[0] for s in range(samples)
                ]
                cell = out["returned" if real else "missed"]
                cell[0] += float(np.mean([d == 1 for d in dream]))
                cell[1] += 1
        result[side] = {k: [v[0] / v[1] if v[1] else float("nan"), v[1]] for k, v in out.items()}
    return result


def fidelity(cfg: FidelityConfig, out: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Play the dream and the real game (see the module docstring); returns the figures and writes them to ``out``."""
    from tqdm import tqdm

    from agents.evaluate import load_agent
    from dataset_tools.preprocess import Preprocess
    from learned_envs.env import LearnedVectorEnv
    from learned_envs.registration import resolve_env

    _, checkpoint = resolve_env(cfg.checkpoint)
    policy, obs_type = None, "latent"
    if cfg.agent is not None:
        policy, meta = load_agent(cfg.agent, cfg.trust_pickle)
        obs_type = meta["obs_type"]
    venv = LearnedVectorEnv(checkpoint, cfg.envs, device=cfg.device, obs_type=obs_type, max_episode_steps=10**9)
    if not game_spec(venv.config.game).paddle_rally:
        raise ValueError(f"fidelity measures a paddle game's rules (Pong); {checkpoint} models {venv.config.game}")
    real, seen, truth, replays, real_again = _real_games(cfg, policy, checkpoint, obs_type)
    model, preprocess = venv.model, Preprocess.from_dict(venv.config.preprocess)
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
        "counterfactual": _counterfactual(model, real, replays, mapping, preprocess, cfg.samples, cfg.seed)
        if replays
        else {},
        "real_again": _by_outcome(real, real_again),
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
    ("points within 3 steps of the last one", "repeated_points", ".1f"),
    ("returns", "returns", ".1f"),
    ("paddle px at a return (median)", "return_paddle_px_median", ".1f"),
    (f"returns with the paddle > {NEAR_PX:g} px away", "returns_paddle_far", ".2f"),
    ("rally length, steps (mean)", "rally_steps_mean", ".1f"),
    ("ball |dx| per step (mean)", "ball_dx_mean", ".2f"),
    ("ball |dy| per step (mean)", "ball_dy_mean", ".2f"),
    ("player's paddle vanishes", "player_vanishes", ".1f"),
    ("enemy's paddle vanishes", "enemy_vanishes", ".1f"),
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
    lines += [
        "",
        f"Balls arriving at the player's side (flying right across x {ARRIVAL_X:g}), by speed: returned / missed "
        "(arrived); a dream faithful for this agent returns the same share at every speed.",
        "",
        "| speed (px per step) | dream | real |",
        "|---|---:|---:|",
    ]
    for key in SPEEDS:
        cells = []
        for side in ("dream", "real"):
            r, m, n = result[side]["arrivals"].get(key, [0, 0, 0])
            cells.append(f"{r / n:.2f} / {m / n:.2f} ({n})" if n else "-")
        lines.append(f"| {key} | {cells[0]} | {cells[1]} |")
    if "return_speeds" in result["dream"]:
        lines += [
            "",
            "The ball's speed at a return (px per step): of the balls each paddle turns back at a speed, the share "
            "that leave at each speed (in brackets, how many). A dream faithful for this agent gives the real game's "
            "shares; one that keeps the ball slow at returns never shows the agent the fast rallies the real game "
            "gives it.",
            "",
            "| paddle | speed in | dream: out 4 / 8 / 12+ | real: out 4 / 8 / 12+ |",
            "|---|---|---|---|",
        ]
        for side in SIDES:
            for key in SPEEDS:
                cells = []
                for where in ("dream", "real"):
                    outs = result[where]["return_speeds"][side].get(key, {})
                    n = sum(outs.values())
                    shares = " / ".join(f"{outs.get(o, 0) / n:.2f}" for o in SPEEDS) if n else "-"
                    cells.append(f"{shares} ({n})")
                lines.append(f"| the {side} | {key} | {cells[0]} | {cells[1]} |")
    cf = result.get("counterfactual") or {}
    if cf:
        lines += [
            "",
            "Replays of every real arrival, driven by the actions the real game took next: the share that return "
            "the ball, in the dream (from the twin's state there) and in the real game (restored there; sticky "
            f"actions drawn anew), {result['config']['samples']} each, by what the real game did.",
            "",
            "| arriving at | the real game | arrivals | dream replays return | real replays return |",
            "|---|---|---:|---:|---:|",
        ]
        for side in SIDES:
            for outcome, label in (("returned", "returned it"), ("missed", "missed it")):
                d, r = cf[side][outcome], result["real_again"][side][outcome]
                lines.append(f"| the {side} | {label} | {d[1]} | {d[0]:.2f} | {r[0]:.2f} |")
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
