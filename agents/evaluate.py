"""Score an agent trained in the dream on the real game (the Atari 100k protocol).

Protocol: ALE v5 defaults (sticky actions 0.25, frameskip 4, the minimal action set), full episodes
(the game's own end, at most 108,000 emulator frames), the policy's deterministic action. The real
game is seen through the learned env's twin, so the policy gets exactly the observations it was
trained on.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

PROTOCOL = {"frameskip": 4, "repeat_action_probability": 0.25, "max_episode_steps": None}
"""Real-game settings of every evaluation (ALE v5 defaults, full episodes)."""


def play_real(
    policy: Any,
    checkpoint: str | Path,
    obs_type: str,
    episodes: int,
    seed: int = 0,
    deterministic: bool = True,
    gif: str | Path | None = None,
    gif_frames: int = 600,
    progress: bool = False,
    max_steps: int | None = None,
    leave: bool = True,
) -> list[float]:
    """Play ``episodes`` real episodes side by side (one batched policy call per step); returns scores.

    ``policy`` has SB3's ``predict(obs, deterministic=)``. Episode ``i`` is seeded ``seed + i``.
    ``gif`` records the first episode's raw frames (every other frame, at most ``gif_frames``).
    ``max_steps`` cuts episodes short (quick checks only: scores are then not the protocol's).
    """
    from tqdm import tqdm

    from learned_envs.twin import RealTwin, load_twin_model, make_real_twin

    settings = {**PROTOCOL, "max_episode_steps": max_steps}
    loaded = load_twin_model(checkpoint)  # one model for every game: their frames go through it in one batch
    twins = [make_real_twin(checkpoint, obs_type=obs_type, loaded=loaded, **settings) for _ in range(episodes)]
    obs = [twin.reset(seed=seed + i)[0] for i, twin in enumerate(twins)]
    scores = [0.0] * episodes
    live = list(range(episodes))
    frames: list[np.ndarray] = []
    bar = tqdm(desc="real episodes", total=episodes, disable=not progress, unit="ep", leave=leave)
    steps = 0
    while live:
        actions, _ = policy.predict(np.stack([obs[i] for i in live]), deterministic=deterministic)
        actions = [int(a) for a in np.asarray(actions).reshape(-1)]
        stepped = RealTwin.step_many([twins[i] for i in live], actions)
        still = []
        for i, (ob, reward, terminated, truncated, _) in zip(live, stepped, strict=True):
            obs[i] = ob
            scores[i] += reward
            if i == 0 and gif is not None and steps % 2 == 0 and len(frames) < gif_frames:
                frames.append(twins[0].last_raw_frame)
            if terminated or truncated:
                bar.set_postfix(last=scores[i], refresh=False)
                bar.update(1)
            else:
                still.append(i)
        live = still
        steps += 1
    bar.close()
    for twin in twins:
        twin.close()
    if gif is not None and frames:
        import imageio.v3 as iio

        iio.imwrite(gif, np.stack(frames), duration=1000 / 30, loop=0)
    return scores


SHIPPED_AGENTS = {
    name: Path(__file__).resolve().parent / "assets" / name
    for name in ("PongDreamPPO-v0", "PongDreamPPO-v1", "PongDreamPPO-v2", "FreewayDreamPPO-v0", "BoxingDreamPPO-v0")
}
"""Agents shipped with the package (trained only in a shipped dream; see their model cards)."""


def agent_file(path: str | Path) -> Path:
    """The agent meant by ``path``: its weights file (``agent.pt``, or an older ``agent.zip``), the one in a
    directory, or a shipped agent's name (:data:`SHIPPED_AGENTS`). Its ``agent.json`` sits beside it."""
    resolved = SHIPPED_AGENTS.get(str(path), Path(path))
    if resolved.is_dir():
        weights = resolved / "agent.pt"
        return weights if weights.exists() or not (resolved / "agent.zip").exists() else resolved / "agent.zip"
    return resolved


def read_agent_json(path: Path) -> dict[str, Any]:
    """An agent's ``agent.json``, checked for what the commands read from it; errors name the file."""
    from agents.sb3 import AgentLoadError

    meta_path = path.with_name("agent.json")
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise AgentLoadError(f"{meta_path}: missing; it says which learned env the agent was trained in") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AgentLoadError(f"{meta_path}: not valid JSON ({err})") from None
    missing = [k for k in ("obs_type", "checkpoint", "config") if k not in meta] if isinstance(meta, dict) else ["all"]
    if missing:
        raise AgentLoadError(f"{meta_path}: not an agent of learned-envs dream (no {', '.join(missing)})")
    return meta


def load_agent(path: str | Path, trust_pickle: bool = False) -> tuple[Any, dict[str, Any]]:
    """An agent saved by ``learned-envs dream`` (see :func:`agent_file` for what ``path`` may be): its policy
    (``predict``, ``set_random_seed``) and its ``agent.json``. Weights files load without unpickling; an
    older agent's ``agent.zip`` only with ``trust_pickle=True`` (see :mod:`agents.policy_io`)."""
    from agents.policy_io import PICKLE_RISK, load_policy
    from agents.sb3 import AgentLoadError, algo_class

    path = agent_file(path)
    if not path.is_file():
        raise AgentLoadError(f"{path}: no such agent (expected the agent.pt written by learned-envs dream)")
    meta = read_agent_json(path)
    if path.suffix != ".zip":
        if "policy" not in meta:
            raise AgentLoadError(f'{path.with_name("agent.json")}: no "policy" entry to rebuild the network from')
        return load_policy(path, meta["policy"]), meta
    if not trust_pickle:
        raise AgentLoadError(f"{path}: {PICKLE_RISK}")
    return algo_class(str(meta["config"].get("algo", ""))).load(path, device="cpu"), meta


def agent_checkpoint(meta: dict[str, Any], agent_path: Path) -> Path:
    """The world-model checkpoint an agent was trained in: a shipped id's own, else the recorded path
    (relative paths are read next to the agent)."""
    from learned_envs.registration import SHIPPED, shipped_checkpoint

    if meta.get("env_id") in SHIPPED:
        return shipped_checkpoint(meta["env_id"])
    path = Path(meta["checkpoint"])
    return path if path.is_absolute() else (agent_path.parent / path).resolve()


def evaluate_agent(
    agent: str | Path,
    game: str | None = None,
    episodes: int = 10,
    seed: int = 0,
    gif: str | Path | None = None,
    out: str | Path | None = None,
    progress: bool = True,
    max_steps: int | None = None,
    trust_pickle: bool = False,
) -> dict[str, Any]:
    """Real-game scores of a dream-trained agent: ``{"mean", "std", "scores", ...}`` (also written to ``out``).
    ``trust_pickle`` lets an older agent's ``agent.zip`` load (see :func:`load_agent`)."""
    from dataset_tools.games import resolve_game

    zip_path = agent_file(agent)
    model, meta = load_agent(zip_path, trust_pickle)
    if game is not None and resolve_game(game) != meta.get("game"):
        raise ValueError(f"{agent}: this agent plays {meta.get('game')}, not {game}")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    checkpoint = agent_checkpoint(meta, zip_path)
    scores = play_real(
        model, checkpoint, meta["obs_type"], episodes, seed=seed, gif=gif, progress=progress, max_steps=max_steps
    )
    result = {
        "agent": str(zip_path),
        "game": meta.get("game"),
        "episodes": episodes,
        "seed": seed,
        "protocol": {**PROTOCOL, "max_episode_steps": max_steps, "full_action_space": False, "deterministic": True},
        "mean": float(np.mean(scores)),
        "std": float(np.std(scores)),
        "scores": scores,
        "dream_steps": meta.get("dream_steps"),
        "real_steps_used": meta.get("real_steps_used"),
    }
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=1))
    return result
