"""The README's main job: train an agent in the shipped dream, score it on the real game, write a report.

``learned-envs quickstart --out report`` writes::

    report/agent/         the agent (agent.pt, agent.json, evals.csv, tb/) from learned-envs dream
    report/scores.json    real-game scores (Atari 100k protocol)
    report/dream_vs_real.gif   the agent in the real game (left) and the dream driven by the same actions
    report/learning_curve.png  the dream return during training and the real score
    report/REPORT.md      the scores, the curve, the time per stage, the machine and library versions
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.dream import DreamConfig, train_in_dream
from agents.evaluate import PROTOCOL, agent_checkpoint, agent_file, evaluate_agent, load_agent
from learned_envs.registration import resolve_env

log = logging.getLogger(__name__)


@torch.no_grad()
def dream_vs_real_gif(agent: str | Path, out: str | Path, steps: int = 300, seed: int = 0, scale: int = 3) -> Path:
    """The agent playing the real game (left) and the dream (right) started from the same real frames and
    driven by the same actions (the agent's, chosen in the real game), each labelled with its running score."""
    from learned_envs.play import caption, side_by_side, upscale, write_video
    from learned_envs.twin import make_real_twin

    weights = agent_file(agent)
    policy, meta = load_agent(weights)
    twin = make_real_twin(agent_checkpoint(meta, weights), obs_type=meta["obs_type"], **PROTOCOL)

    def choose(obs: np.ndarray) -> int:
        return int(np.asarray(policy.predict(obs[None], deterministic=True)[0]).reshape(-1)[0])

    video, scores = [], [0.0, 0.0]
    for real, dream, _, real_reward, dream_reward in side_by_side(twin, choose, steps, seed):
        scores = [scores[0] + real_reward, scores[1] + dream_reward]
        left = caption(upscale(real, scale), f"real game {scores[0]:+.0f}")
        right = caption(upscale(dream, scale), f"dream {scores[1]:+.0f}")
        gap = np.full((left.shape[0], 2 * scale, 3), 255, np.uint8)
        video.append(np.concatenate([left, gap, right], axis=1))
    twin.close()
    return write_video(out, video)


def _machine() -> list[str]:
    """Hardware and library versions, one Markdown bullet each."""
    import importlib.metadata as md
    import os
    import platform

    def version(name: str) -> str:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return "not installed"

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    libs = ["learned-envs", "torch", "gymnasium", "ale-py", "stable-baselines3", "numpy"]
    return [
        f"- machine: {platform.machine()} {platform.processor() or platform.system()}, {os.cpu_count()} CPU(s), "
        f"torch on {torch.get_num_threads()} thread(s), {device}",
        f"- versions: Python {platform.python_version()}, " + ", ".join(f"{n} {version(n)}" for n in libs),
    ]


def _random_score(game: str) -> float | None:
    """Random play's real score on ``game`` (its Atari 100k anchor in the game registry), or None."""
    from dataset_tools.atari import game_spec

    return dict(game_spec(game).anchors).get("random")


def _curve_png(meta: dict[str, Any], final: dict[str, Any], random_play: float | None, out: Path) -> Path:
    """The dream return as training went (free: SB3's last 100 dream episodes at each rollout's end), the
    real score of any checks during training, and the final real score, against dream steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    evals = meta["evals"]
    if evals:
        ax.plot([e["dream_steps"] for e in evals], [e["real_mean"] for e in evals], "o-", label="real, during training")
    ax.errorbar(
        [meta["dream_steps"]],
        [final["mean"]],
        yerr=[final["std"]],
        fmt="s",
        color="C1",
        capsize=3,
        label=f"real, final ({_games(final['episodes'])})",
    )
    if random_play is not None:
        ax.axhline(random_play, color="grey", linestyle=":", label="real, random play")
    ax.set(xlabel="dream steps", ylabel="real score")
    handles, labels = ax.get_legend_handles_labels()
    curve = meta.get("dream_curve") or []
    if curve:
        dream = ax.twinx()
        (line,) = dream.plot(*zip(*curve, strict=True), color="C2", linewidth=1)
        dream.set_ylabel(f"dream return ({meta['config']['max_episode_steps']}-step episodes)", color="C2")
        handles, labels = [*handles, line], [*labels, "dream return"]
    ax.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)  # off the lines
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out


def _games(n: int) -> str:
    return f"{n} full game{'s' if n != 1 else ''}"


def quickstart(
    out: str | Path = "report",
    env: str = "LearnedPong-v2",
    steps: int = 4_000_000,
    episodes: int = 5,
    seed: int = 0,
    progress: bool = True,
    checks: int = 0,
    n_envs: int = 256,
) -> Path:
    """Train PPO in the dream of ``env`` for ``steps`` with ``n_envs`` envs, score it on ``episodes`` real
    games; returns REPORT.md. The learning curve is the dream return as training goes, and ``checks``
    one-game real evaluations spread over training (each costs a real game: about half a minute)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    env_id, checkpoint = resolve_env(env)
    checks = max(0, checks)
    cfg = DreamConfig(
        env=env,
        steps=steps,
        n_envs=n_envs,
        seed=seed,
        eval_every=-(-steps // (checks + 1)) if checks else 0,  # the final games below are the last point
        eval_episodes=1 if checks else 0,
        eval_at_end=False,
    )
    t0 = time.perf_counter()
    agent = train_in_dream(cfg, out / "agent", progress=progress)
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    result = evaluate_agent(agent, episodes=episodes, seed=seed, out=out / "scores.json", progress=progress)
    eval_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    gif = dream_vs_real_gif(agent, out / "dream_vs_real.gif", seed=seed)
    gif_s = time.perf_counter() - t2
    meta = json.loads((out / "agent" / "agent.json").read_text())
    random_play = _random_score(result["game"])
    random_note = f"; random play scores about {random_play:+.1f}" if random_play is not None else ""
    curve = _curve_png(meta, result, random_play, out / "learning_curve.png")
    check_s = sum(e.get("eval_s", 0.0) for e in meta["evals"])
    n = len(meta["evals"])
    checks_note = f" ({n} one-game check{'s' if n != 1 else ''}: {check_s:.0f} s)" if n else ""
    agent_rel = agent.relative_to(out)
    where = f"`{env_id}` (shipped)" if env_id else f"`{_relative(checkpoint)}`"
    rows = [f"| {e['dream_steps']:,} | {e['real_mean']:+.0f} | {e['wall_s']:.0f} |" for e in meta["evals"]]
    report = out / "REPORT.md"
    report.write_text(
        "\n".join(
            [
                "# learned-envs quickstart report",
                "",
                f"**Real score: {result['mean']:.1f} +- {result['std']:.1f}** over {_games(episodes)} (per game: "
                f"{', '.join(f'{s:+.0f}' for s in result['scores'])}){random_note}.",
                "",
                f"- dream: {where}, {cfg.n_envs} envs, {cfg.algo.upper()}, {meta['dream_steps']:,} dream steps; "
                f"dream return at the end {meta.get('dream_return', float('nan')):+.2f} per "
                f"{meta['config']['max_episode_steps']}-step dream episode",
                f"- real data behind the world model: {meta.get('real_steps_used') or 'unknown'} agent steps",
                f"- real game: {result['game']}, {_games(episodes)} (Atari 100k protocol: sticky actions 0.25, "
                f"frameskip 4, deterministic policy), seeds {seed}..{seed + episodes - 1}",
                *_machine(),
                "",
                "| stage | wall time |",
                "|---|---:|",
                f"| training in the dream{checks_note} | {train_s:.0f} s |",
                f"| scoring on the real game | {eval_s:.0f} s |",
                f"| GIF | {gif_s:.0f} s |",
                f"| **total** | **{train_s + eval_s + gif_s:.0f} s** |",
                "",
                *(
                    [
                        f"Real score during training (one game each, seeds {seed + 1000}...; noisy: a game's score "
                        "varies by about 6 points):",
                        "",
                        "| dream steps | real score | wall time (s) |",
                        "|---:|---:|---:|",
                        *rows,
                        "",
                    ]
                    if rows
                    else []
                ),
                f"![dream return and real score against dream steps]({curve.name})",
                "",
                f"![the agent in the real game (left) and the dream driven by the same actions (right)]({gif.name})",
                "",
                f"Agent: `{agent_rel}`; score it again with `learned-envs evaluate-agent --agent {_relative(agent)} "
                "--episodes 10`.",
                "",
            ]
        )
    )
    log.info("report: %s (real score %.1f)", report, result["mean"])
    return report


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
