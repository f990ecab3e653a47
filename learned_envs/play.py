"""The dream next to the real game, driven by the same actions (GIF / MP4); the ``learned-envs play`` command
is in :mod:`agents.cli`, which picks the agent."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from learned_envs.twin import make_real_twin

log = logging.getLogger(__name__)


def upscale(frame: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour enlargement by ``scale``; grey frames become RGB (for GIFs)."""
    frame = np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1)
    return np.repeat(frame, 3, axis=-1) if frame.shape[-1] == 1 else frame


@torch.no_grad()
def play(
    checkpoint: str | Path,
    out: str | Path,
    steps: int = 200,
    agent: str = "random",
    seed: int = 0,
    fps: int = 15,
    scale: int = 3,
    trust_pickle: bool = False,
    make_agent: Callable[..., Any] | None = None,
) -> Path:
    """Write ``out`` (``.gif`` or ``.mp4``): real game | dream | |difference|, same actions.

    The dream starts from the real game's first ``n_past`` frames, then runs open loop. ``make_agent``
    builds ``agent`` as collection does (``agents.make_agent``, which the ``play`` command passes; None:
    random actions only). ``trust_pickle`` lets ``agent`` be a Stable-Baselines3 ``.zip`` (loading one runs
    any code it holds).
    """
    import imageio.v3 as iio

    from dataset_tools.policy import random_only

    twin = make_real_twin(checkpoint, obs_type="frames")
    model, config = twin.model, twin.config
    device = next(model.parameters()).device
    player = (make_agent or random_only)(
        agent, config["game"], int(config["n_actions"]), seed=seed, trust_pickle=trust_pickle
    )
    player.reset(seed=seed)
    real, _ = twin.reset(seed=seed)
    frames, actions = [real], []
    for _ in range(model.cfg.n_past - 1):
        a = int(player.act(twin.last_raw_frame[None], twin.unwrapped.ale.getRAM()[None])[0])
        real, *_ = twin.step(a)
        frames.append(real)
        actions.append(a)
    ctx = (
        torch.from_numpy(np.stack(frames)).to(device).permute(0, 3, 1, 2).float().unsqueeze(0) / 255.0
    )  # (1, P, C, H, W)
    state = model.start(
        ctx,
        torch.tensor([actions], dtype=torch.int64, device=device).reshape(1, -1),
        generator=torch.Generator(device=device).manual_seed(seed),
    )
    video = []
    for _ in range(steps):
        a = int(player.act(twin.last_raw_frame[None], twin.unwrapped.ale.getRAM()[None])[0])
        real, _, term, trunc, _ = twin.step(a)
        state, *_ = model.step(state, torch.tensor([a], device=device))
        dream = (model.decode(state)[0].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        diff = np.abs(real.astype(np.int16) - dream.astype(np.int16)).astype(np.uint8)
        gap = np.full((real.shape[0], 2, real.shape[2]), 255, np.uint8)
        video.append(upscale(np.concatenate([real, gap, dream, gap, diff], axis=1), scale))
        if term or trunc:
            break
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".mp4":
        iio.imwrite(out, np.stack(video), fps=fps, codec="libx264")
    else:
        iio.imwrite(out, np.stack(video), duration=1000 / fps, loop=0)
    log.info("wrote %s (%d frames: real | dream | difference)", out, len(video))
    return out
