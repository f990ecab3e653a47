"""The SimPLe-style loop: collect real steps -> train the world model -> train the agent in the dream.

Iteration ``i`` of ``learned-envs loop -g Pong --real-steps 100000 --iterations K``:

1. collect real steps with the current policy (random in the first iteration) until the dataset
   holds ``(i + 1) * real_steps / K`` steps (``OUT/data``);
2. train the world model on all data so far, starting from the previous iteration's weights
   (``OUT/models/iter_i``);
3. train a fresh agent in the new model's dream (``OUT/agents/iter_i``);
4. score it on the real game (``eval_episodes`` full episodes) and add a row to ``OUT/loop.json``.

Every stage leaves its result on disk and is skipped when present, so an interrupted loop run
again with the same command picks up where it stopped.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class LoopConfig:
    """Settings of :func:`run_loop` (``learned-envs loop`` flags and ``key=value`` overrides)."""

    game: str = "Pong"
    """ALE game (the object model reads Pong only)."""
    real_steps: int = 100_000
    """Real agent steps collected over the whole loop."""
    iterations: int = 4
    """Collect / train model / train agent rounds."""
    model: str = "object_dynamics"
    """World model trained on the real data."""
    model_steps: int = 8000
    """Trainer steps per iteration."""
    model_overrides: list[str] = field(
        default_factory=lambda: [
            "batch_size=256",
            "lr=1e-3",
            "lr_schedule=cosine",
            "grad_clip=10",
            "reward_weight=5",
            "move_classes=128",
            "joint_moves=true",
        ]
    )
    """Extra ``key=value`` settings of the world model's training (those of LearnedPongObjects-v1)."""
    dream_steps: int = 4_000_000
    """Dream steps of each iteration's agent."""
    n_envs: int = 64
    """Parallel dream envs."""
    eval_episodes: int = 5
    """Real episodes scored per iteration."""
    workers: int = 2
    """Collection worker processes."""
    seed: int = 0
    """Seeds collection, training and the dream."""


def format_table(rows: list[dict[str, Any]]) -> str:
    """The per-iteration table: real steps used, model evaluation, real score."""
    lines = [
        "| iteration | real steps | model ball px (train log) | point recall (train log) | dream return | real score |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['iteration']} | {r['real_steps']:,} | {r['model_ball_px']:.2f} | {r['model_point_recall']:.2f} "
            f"| {r['dream_return']:.1f} | {r['real_mean']:.1f} +- {r['real_std']:.1f} |"
        )
    return "\n".join(lines)


def run_loop(cfg: LoopConfig, out: str | Path, progress: bool = True) -> list[dict[str, Any]]:
    """Run (or resume) the loop in ``out``; returns one row per finished iteration."""
    from agents.dream import DreamConfig, train_in_dream
    from agents.evaluate import evaluate_agent
    from dataset_tools.collect import CollectConfig, collect
    from dataset_tools.dataset import DatasetDir, write_json
    from dataset_tools.games import EnvSettings, resolve_game
    from world_models.checkpoint import checkpoint_dirs, read_config
    from world_models.train import train

    if cfg.iterations < 1 or cfg.real_steps < cfg.iterations:
        raise ValueError(f"need iterations >= 1 and real_steps >= iterations, got {cfg.iterations}, {cfg.real_steps}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "loop.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {"config": asdict(cfg), "rows": []}
    if state["config"] != asdict(cfg):
        raise ValueError(f"{out}: holds a loop with other settings ({state_path}); use another --out")
    game = resolve_game(cfg.game)
    data = out / "data"
    previous_agent: Path | None = None
    previous_model: Path | None = None
    for i in range(cfg.iterations):
        model_dir, agent_dir = out / "models" / f"iter_{i}", out / "agents" / f"iter_{i}"
        done = next((r for r in state["rows"] if r["iteration"] == i), None)
        if done is None:
            # 1. real data, up to this iteration's share of the budget
            target = (i + 1) * cfg.real_steps // cfg.iterations
            have = DatasetDir(data).counts()["steps"] if (data / "dataset.json").exists() else 0
            if have < target:
                agent = str(previous_agent) if previous_agent is not None else "random"
                log.info("iteration %d: collecting %d real steps with %s", i, target - have, agent)
                collect(
                    CollectConfig(
                        out=data,
                        env=EnvSettings(game=game),
                        frames=target - have,
                        agent=agent,
                        workers=cfg.workers,
                        seed=cfg.seed,
                        command=f"learned-envs loop (iteration {i})",
                    ),
                    progress=progress,
                )
            # 2. the world model, from the previous iteration's weights
            overrides = [f"steps={cfg.model_steps}", f"seed={cfg.seed}", "image_every=0", *cfg.model_overrides]
            if previous_model is not None:
                overrides.append(f"init_from={previous_model}")
            resume = bool(checkpoint_dirs(model_dir))
            checkpoint = train(
                cfg.model, data, model_dir, [] if resume else overrides, resume=resume, progress=progress
            )
            # 3. the agent, in the new model's dream
            dream = DreamConfig(
                env=str(checkpoint),
                steps=cfg.dream_steps,
                n_envs=cfg.n_envs,
                seed=cfg.seed,
                eval_every=0,
                eval_episodes=1,
            )
            agent_zip = train_in_dream(dream, agent_dir, progress=progress)
            # 4. the real score
            result = evaluate_agent(
                agent_zip, game, cfg.eval_episodes, seed=cfg.seed, progress=progress, out=agent_dir / "real_scores.json"
            )
            metrics = read_config(checkpoint).get("metrics", {})
            dream_meta = json.loads((agent_dir / "agent.json").read_text())
            done = {
                "iteration": i,
                "real_steps": DatasetDir(data).counts()["steps"],
                "model_ball_px": float(metrics.get("ball_px", float("nan"))),
                "model_point_recall": float(metrics.get("point_recall", float("nan"))),
                "dream_return": float(dream_meta.get("dream_return", float("nan"))),
                "real_mean": result["mean"],
                "real_std": result["std"],
                "real_scores": result["scores"],
                "checkpoint": str(checkpoint),
                "agent": str(agent_zip),
            }
            state["rows"].append(done)
            write_json(state_path, state)
            log.info("\n%s", format_table(state["rows"]))
        previous_agent, previous_model = Path(done["agent"]), Path(done["checkpoint"])
    return state["rows"]
