"""Train a Stable-Baselines3 agent inside a learned env ("in the dream"), scored on the real game.

:func:`train_in_dream` builds the batched :class:`~learned_envs.env.LearnedVectorEnv` behind an
SB3 ``VecEnv``, trains PPO (or A2C) on it, and every ``eval_every`` dream steps plays
``eval_episodes`` episodes of the real game through the real-env twin (same observations), logging
the real score to TensorBoard (``real/score``). It writes into ``out``::

    agent.pt      the policy's weights   agent.json   what evaluate-agent needs: env id, checkpoint,
    tb/           TensorBoard logs                    obs_type, config, how to rebuild the policy, scores
    evals.csv     dream step, real score mean / std, wall time
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dataset_tools.dataset import write_json

log = logging.getLogger(__name__)


@dataclass
class DreamConfig:
    """Settings of :func:`train_in_dream` (``learned-envs dream`` flags and ``key=value`` overrides)."""

    env: str = "LearnedPong-v2"
    """A registered learned-env id, or a checkpoint / run directory."""
    algo: str = "ppo"
    """SB3 algorithm: a key of :data:`agents.algos.ALGOS` (ppo, a2c, dqn)."""
    steps: int = 1_000_000
    """Dream steps (summed over all envs)."""
    n_envs: int = 64
    """Parallel dream envs (one batched model step)."""
    obs_type: Literal["latent", "frames", "objects"] | None = None
    """``latent`` (the model's features; MlpPolicy), ``objects`` (the ball and paddles an ``rssm`` with
    ``object_state`` holds, alone: the dream's as it steps them, the real game's as the frame detector reads
    them; MlpPolicy) or ``frames`` (CnnPolicy). None: ``objects`` for an ``rssm`` with ``object_state``
    (``LearnedPong-v6``: its agents on the objects scored -4.1 on real Pong over 5 seeds, on the latent -16.6
    over 3 in an earlier dream), ``latent`` for every other model."""
    max_episode_steps: int = 0
    """Truncate dream episodes after this many steps; short rollouts from real starts (as SimPLe's
    50-step ones) keep the model's drift small (on LearnedPongObjects-v0, 1,000-step episodes gave
    agents that lost 21-0 on the real game, 100-step ones -16 to -18). 0: the env's own, 100 but for the
    ids of :data:`learned_envs.registration.DREAM_EPISODE_STEPS` (``LearnedBoxing-v0``: 30)."""
    seed: int = 0
    """Seeds SB3, the dream's resets and the real evaluation episodes."""
    device: str = "auto"
    """Device of the world model and the policy."""
    eval_every: int = 250_000
    """Dream steps between real-game evaluations (0: only at the end)."""
    eval_episodes: int = 2
    """Real episodes per evaluation (full games of Pong: 21 points); 0: no real evaluation at all."""
    eval_max_steps: int = 0
    """Cut real evaluation episodes after this many steps (0: full episodes, the protocol)."""
    eval_at_end: bool = True
    """Score the agent once more when training ends, unless a check just did (the quick start scores its
    own games then, so it turns this off)."""
    n_steps: int = 0
    """PPO / A2C: rollout length per env between updates (0: 8,192 dream steps per rollout over the envs,
    128 at 64 envs; :func:`learned_envs.sb3.ppo_settings`)."""
    batch_size: int = 0
    """PPO minibatch size (0: an eighth of a rollout, 1,024 at 64 envs); DQN's (0: 256)."""
    n_epochs: int = 4
    """PPO epochs per rollout."""
    lr: float = 2.5e-4
    """Learning rate."""
    gamma: float = 0.99
    """Discount."""
    ent_coef: float = 0.01
    """Entropy bonus (PPO, A2C)."""
    net_arch: list[int] = field(default_factory=lambda: [128, 128])
    """Hidden layers of the policy and value MLPs (latent observations)."""
    model_settings: list[str] = field(default_factory=list)
    """Imagination settings of the learned env's model, ``key=value`` (e.g. ``move_temperature=0.8``, or
    ``reward_disagreement=1`` for a ``slot_dynamics`` ensemble): fields that change how a trained model
    imagines, not its weights (the model's ``imagination_settings``); set on every ensemble member."""
    ensemble: list[str] = field(default_factory=list)
    """More learned envs (ids or checkpoints, e.g. earlier loop iterations' models, or models trained with
    other seeds) to train in beside ``env``, the envs split among them
    (:class:`~learned_envs.env.EnsembleVectorEnv`); all must observe alike. Real evaluation goes through
    ``env``'s twin."""


def vector_observation(checkpoint: str | Path) -> str:
    """The observation a dream agent reads unless told (``DreamConfig.obs_type`` None): ``objects`` for an ``rssm``
    with ``object_state``, else ``latent`` (read from the checkpoint's ``config.json``, no weights loaded)."""
    from world_models.checkpoint import read_config

    return "objects" if read_config(checkpoint).model_config.get("object_state") else "latent"


def train_in_dream(cfg: DreamConfig, out: str | Path, progress: bool = True) -> Path:
    """Train an agent in the learned env ``cfg.env``; returns the path of its weights (``agent.pt``; see
    :mod:`agents.policy_io`: nothing in it is unpickled when it is loaded)."""
    from stable_baselines3.common.callbacks import BaseCallback
    from tqdm import tqdm

    from agents.algos import get_algo
    from agents.evaluate import play_real
    from agents.policy_io import WEIGHTS, policy_spec, save_policy
    from learned_envs.env import EnsembleVectorEnv, LearnedVectorEnv
    from learned_envs.registration import dream_episode_steps, resolve_env
    from learned_envs.sb3 import SB3VecEnv
    from world_models.base import pick_device

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    env_id, checkpoint = resolve_env(cfg.env)
    if cfg.obs_type is None:
        cfg = replace(cfg, obs_type=vector_observation(checkpoint))
    if cfg.max_episode_steps <= 0:
        cfg = replace(cfg, max_episode_steps=dream_episode_steps(env_id))
    device = pick_device(cfg.device)
    env_kwargs = {
        "device": str(device),
        "obs_type": cfg.obs_type,
        "max_episode_steps": cfg.max_episode_steps,
        "settings": list(cfg.model_settings),
    }
    others = [resolve_env(e)[1] for e in cfg.ensemble]
    venv: LearnedVectorEnv | EnsembleVectorEnv
    if others:
        venv = EnsembleVectorEnv([checkpoint, *others], cfg.n_envs, **env_kwargs)
    else:
        venv = LearnedVectorEnv(checkpoint, cfg.n_envs, **env_kwargs)
    env = SB3VecEnv(venv)  # reports episode returns and lengths (rollout/ep_rew_mean) as VecMonitor would
    env.seed(cfg.seed)
    policy = "CnnPolicy" if cfg.obs_type == "frames" else "MlpPolicy"
    spec = get_algo(cfg.algo)
    algo = spec.cls()(
        policy,
        env,
        learning_rate=cfg.lr,
        gamma=cfg.gamma,
        policy_kwargs={"net_arch": list(cfg.net_arch)} if cfg.obs_type != "frames" else None,
        tensorboard_log=str(out / "tb"),
        seed=cfg.seed,
        device=str(device),
        **spec.settings(cfg),
    )

    meta: dict[str, Any] = {
        "format": 1,
        "env_id": env_id,
        "checkpoint": str(checkpoint.resolve()),
        "game": venv.config.game,
        "obs_type": cfg.obs_type,
        "config": asdict(cfg),
        "real_steps_used": _real_steps(venv),
        "ensemble": [str(c.resolve()) for c in others],
        "evals": [],
        "dream_curve": [],
    }
    evals_csv = out / "evals.csv"
    evals_csv.unlink(missing_ok=True)  # a new run in the same directory starts a new history
    start = time.perf_counter()

    def evaluate(step: int) -> None:
        t0 = time.perf_counter()
        scores = play_real(
            algo,
            checkpoint,
            cfg.obs_type,
            cfg.eval_episodes,
            seed=cfg.seed + 1000,
            max_steps=cfg.eval_max_steps or None,
            progress=progress,
            leave=False,  # a check inside training: the dream's bar stays the one line
        )
        row = {
            "dream_steps": step,
            "real_mean": float(np.mean(scores)),
            "real_std": float(np.std(scores)),
            "scores": scores,
            "wall_s": round(time.perf_counter() - start, 1),
            "eval_s": round(time.perf_counter() - t0, 1),
        }
        meta["evals"].append(row)
        algo.logger.record("real/score", row["real_mean"])
        algo.logger.dump(step)
        new = not evals_csv.exists()
        with evals_csv.open("a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["dream_steps", "real_mean", "real_std", "wall_s"])
            writer.writerow([step, row["real_mean"], row["real_std"], row["wall_s"]])
        log.info("dream step %d: real score %.1f +- %.1f (%s)", step, row["real_mean"], row["real_std"], scores)

    class RealEval(BaseCallback):
        """Real-game evaluation every ``eval_every`` dream steps, and a tqdm progress bar."""

        def __init__(self) -> None:
            super().__init__()
            self.next_eval = cfg.eval_every if cfg.eval_every > 0 and cfg.eval_episodes > 0 else None
            # SB3 runs whole rollouts, so it stops at the first multiple of one rollout's steps >= cfg.steps
            chunk = getattr(algo, "n_steps", 1) * cfg.n_envs
            total = -(-cfg.steps // chunk) * chunk
            self.bar = tqdm(total=total, disable=not progress, desc="dream", unit="step", dynamic_ncols=True)

        def _on_step(self) -> bool:
            self.bar.update(min(self.num_timesteps, self.bar.total) - self.bar.n)
            # checks at eval_every, 2 * eval_every, ... up to cfg.steps (before it without eval_at_end); SB3
            # runs whole rollouts, so a run shorter than one rollout goes on past cfg.steps, where a check
            # every callback was all waste
            due = self.next_eval is not None and self.num_timesteps >= self.next_eval
            if due and (self.next_eval < cfg.steps or (self.next_eval == cfg.steps and cfg.eval_at_end)):
                self.next_eval += cfg.eval_every
                save()
                evaluate(self.num_timesteps)
            return True

        def _on_rollout_end(self) -> None:
            # the dream return as training goes, free where a real check costs a game
            if (mean := dream_return()) is not None:
                meta["dream_curve"].append([int(self.num_timesteps), round(mean, 4)])

        def _on_training_end(self) -> None:
            self.bar.close()

    def dream_return() -> float | None:
        """Mean return of the last (up to 100) finished dream episodes; None before the first ends."""
        return float(np.mean([ep["r"] for ep in algo.ep_info_buffer])) if algo.ep_info_buffer else None

    def save() -> None:
        save_policy(spec.name, algo.policy, out)  # a kill mid-save leaves the previous weights whole
        meta["policy"] = policy_spec(spec.name, algo.policy)
        meta["dream_steps"] = int(algo.num_timesteps)
        if (mean := dream_return()) is not None:
            meta["dream_return"] = mean
        meta["train_wall_s"] = round(time.perf_counter() - start, 1)
        write_json(out / "agent.json", meta)

    log.info(
        "training %s in %s (%s, %d envs, %s) for %d steps", cfg.algo, cfg.env, checkpoint, cfg.n_envs, device, cfg.steps
    )
    try:
        algo.learn(cfg.steps, callback=RealEval(), tb_log_name="dream")
    except KeyboardInterrupt:
        log.warning("interrupted at dream step %d: saving the agent as it is", algo.num_timesteps)
        save()
        raise
    save()
    rollout = getattr(algo, "n_steps", 1) * cfg.n_envs
    if (
        cfg.eval_episodes > 0
        and cfg.eval_at_end
        and (not meta["evals"] or algo.num_timesteps - meta["evals"][-1]["dream_steps"] >= rollout)
    ):
        evaluate(int(algo.num_timesteps))
        save()
    return out / WEIGHTS


def _real_steps(venv: Any) -> int | None:
    """Real steps behind the dream: its data set's; an ensemble's members over one data directory (a loop's
    iterations) used the largest of theirs, over several directories the sum."""
    sets = [(m.config.dataset or {}) for m in getattr(venv, "members", [venv])]
    steps = [d.get("steps") for d in sets]
    if any(s is None for s in steps):
        return None
    if len({d.get("path") for d in sets}) == 1:
        return int(max(steps))
    return int(sum(steps))
