"""The README's main job: train an agent in the shipped dream, score it on the real game, write a report.

``learned-envs quickstart --out report`` writes::

    report/agent/         the agent (agent.pt, agent.json, evals.csv, tb/) from learned-envs dream
    report/scores.json    real-game scores (Atari 100k protocol)
    report/dream_vs_real.gif   the agent playing the real game (left) and its dream (right)
    report/REPORT.md      what was run, how long it took, the scores
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from agents.dream import DreamConfig, train_in_dream
from agents.evaluate import PROTOCOL, agent_checkpoint, agent_file, evaluate_agent, load_agent
from learned_envs.registration import resolve_env

log = logging.getLogger(__name__)


@torch.no_grad()
def dream_vs_real_gif(agent: str | Path, out: str | Path, steps: int = 300, seed: int = 0, scale: int = 3) -> Path:
    """The agent playing the real game (left, model-sized frames) and its own dream episode (right)."""
    import imageio.v3 as iio

    from learned_envs.env import LearnedVectorEnv
    from learned_envs.play import upscale
    from learned_envs.twin import make_real_twin

    zip_path = agent_file(agent)
    policy, meta = load_agent(zip_path)
    checkpoint = agent_checkpoint(meta, zip_path)
    twin = make_real_twin(checkpoint, obs_type=meta["obs_type"], **PROTOCOL)
    dream = LearnedVectorEnv(checkpoint, 1, device="cpu", obs_type=meta["obs_type"], render_mode="rgb_array")
    real_obs, _ = twin.reset(seed=seed)
    dream_obs, _ = dream.reset(seed=seed)
    video = []
    for _ in range(steps):
        a_real, _ = policy.predict(real_obs[None], deterministic=True)
        a_dream, _ = policy.predict(dream_obs, deterministic=True)
        real_obs, _, term, trunc, _ = twin.step(int(a_real[0]))
        dream_obs, *_ = dream.step(np.asarray(a_dream).reshape(1))
        real = twin.preprocess(twin.last_raw_frame)
        imagined = dream.render()
        gap = np.full((real.shape[0], 2, 3), 255, np.uint8)
        video.append(upscale(np.concatenate([real, gap, imagined], axis=1), scale))
        if term or trunc:
            break
    twin.close()
    out = Path(out)
    iio.imwrite(out, np.stack(video), duration=1000 / 15, loop=0)
    return out


def quickstart(
    out: str | Path = "report",
    env: str = "LearnedPongObjects-v1",
    steps: int = 4_000_000,
    episodes: int = 5,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Train PPO in the dream of ``env`` for ``steps``, score it on ``episodes`` real games; returns REPORT.md."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    env_id, checkpoint = resolve_env(env)
    cfg = DreamConfig(env=env, steps=steps, seed=seed, eval_every=0, eval_episodes=1)
    t0 = time.perf_counter()
    agent = train_in_dream(cfg, out / "agent", progress=progress)
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    result = evaluate_agent(agent, episodes=episodes, seed=seed, out=out / "scores.json", progress=progress)
    eval_s = time.perf_counter() - t1
    gif = dream_vs_real_gif(agent, out / "dream_vs_real.gif", seed=seed)
    meta = json.loads((out / "agent" / "agent.json").read_text())
    report = out / "REPORT.md"
    report.write_text(
        "\n".join(
            [
                "# learned-envs quickstart report",
                "",
                f"- dream: `{env}` (checkpoint `{checkpoint}`), {cfg.n_envs} envs, {cfg.algo.upper()}, "
                f"{meta['dream_steps']:,} dream steps in {train_s:.0f} s",
                f"- real data behind the world model: {meta.get('real_steps_used') or 'unknown'} agent steps",
                f"- real game: {result['game']}, {episodes} full episodes (sticky actions 0.25, frameskip 4), "
                f"seeds {seed}..{seed + episodes - 1}, {eval_s:.0f} s",
                "",
                f"**Real score: {result['mean']:.1f} +- {result['std']:.1f}** (per episode: "
                f"{', '.join(f'{s:+.0f}' for s in result['scores'])}); random play scores about -20.7.",
                "",
                f"![the agent in the real game (left) and in its dream (right)]({gif.name})",
                "",
                f"Agent: `{agent}`; score it again with `learned-envs evaluate-agent --agent {agent} --episodes 10`.",
                "",
            ]
        )
    )
    log.info("report: %s (real score %.1f)", report, result["mean"])
    return report
