"""The dream next to the real game, driven by the same actions (GIF / MP4); the ``learned-envs play`` command
is in :mod:`agents.cli`, which picks the agent."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
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


def caption(panel: np.ndarray, text: str, height: int = 14) -> np.ndarray:
    """``panel`` (H, W, 3) uint8 with a black strip above it holding ``text`` in white."""
    import cv2

    strip = np.zeros((height, panel.shape[1], 3), np.uint8)
    cv2.putText(strip, text, (3, height - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([strip, panel], axis=0)


@torch.no_grad()
def start_dream(
    twin: Any, choose: Callable[[np.ndarray], int], seed: int = 0
) -> tuple[Any, np.ndarray, torch.Generator]:
    """Reset the real game and start the dream from its first ``n_past`` frames and the actions ``choose``
    picked between them: ``(dream state, the twin's latest observation, the dream's generator)``."""
    model = twin.model
    device = next(model.parameters()).device
    obs, _ = twin.reset(seed=seed)
    frames, actions = [twin.preprocess(twin.last_raw_frame)], []
    for _ in range(model.cfg.n_past - 1):
        a = int(choose(obs))
        obs, *_ = twin.step(a)
        frames.append(twin.preprocess(twin.last_raw_frame))
        actions.append(a)
    ctx = torch.from_numpy(np.stack(frames)).to(device).permute(0, 3, 1, 2).float().unsqueeze(0) / 255.0
    generator = torch.Generator(device=device).manual_seed(seed)
    state = model.start(  # ctx: (P, H, W, C) -> (1, P, C, H, W)
        ctx, torch.tensor([actions], dtype=torch.int64, device=device).reshape(1, -1), generator=generator
    )
    return state, obs, generator


def dream_frame(model: Any, state: Any) -> np.ndarray:
    """The dream's frame (H, W, C) uint8 of a one-env ``state``."""
    return (model.decode(state)[0].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


@torch.no_grad()
def side_by_side(
    twin: Any, choose: Callable[[np.ndarray], int], steps: int, seed: int = 0
) -> Iterator[tuple[np.ndarray, np.ndarray, int, float, float]]:
    """The real game and the dream, driven by the same actions: per step, ``(real frame, dream frame, action,
    real reward, dream reward)``, frames as the model sees them (H, W, C) uint8.

    ``twin`` is the checkpoint's real twin (:func:`~learned_envs.twin.make_real_twin`); ``choose(obs)`` picks
    each action from the twin's latest observation. The dream starts from the real game's first ``n_past``
    frames and actions (:func:`start_dream`), then runs on its own (open loop), as ``learned-envs play`` shows
    it.
    """
    model = twin.model
    device = next(model.parameters()).device
    state, obs, _ = start_dream(twin, choose, seed)
    for _ in range(steps):
        a = int(choose(obs))
        obs, real_reward, term, trunc, _ = twin.step(a)
        state, dream_reward, _ = model.step(state, torch.tensor([a], device=device))
        yield (
            twin.preprocess(twin.last_raw_frame),
            dream_frame(model, state),
            a,
            float(real_reward),
            float(dream_reward[0]),
        )
        if term or trunc:
            break


def write_video(out: str | Path, video: list[np.ndarray], fps: int = 15) -> Path:
    """``video`` frames to ``out`` (``.gif``, or ``.mp4`` with ffmpeg's libx264)."""
    import imageio.v3 as iio

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".mp4":
        iio.imwrite(out, np.stack(video), fps=fps, codec="libx264")
    else:
        _write_gif(out, video, fps)
    return out


def _write_gif(out: Path, video: list[np.ndarray], fps: int) -> None:
    """Every frame mapped to one palette: the video's own colours where it has at most 256 (an Atari
    video, upscaled, has a few dozen; looked for on every other pixel), else Pillow's fast octree over a
    sample of frames. Pillow's default for RGB frames, median cut frame by frame, took 8.6 of the quick
    start's 18 s GIF."""
    from PIL import Image

    colours: set[int] = set()
    for frame in video:
        f = frame[::2, ::2].astype(np.uint32)
        colours.update(np.unique((f[..., 0] << 16) | (f[..., 1] << 8) | f[..., 2]).tolist())
        if len(colours) > 256:
            break
    none = Image.Dither.NONE
    if len(colours) <= 256:
        rgb = [((c >> 16) & 255, (c >> 8) & 255, c & 255) for c in sorted(colours)]
        palette = Image.new("P", (1, 1))
        palette.putpalette([v for c in rgb + rgb[-1:] * (256 - len(rgb)) for v in c])
    else:
        sample = np.concatenate(video[:: max(1, len(video) // 10)], axis=0)
        palette = Image.fromarray(sample).quantize(256, method=Image.Quantize.FASTOCTREE, dither=none)
    frames = [Image.fromarray(np.ascontiguousarray(f)).quantize(palette=palette, dither=none) for f in video]
    frames[0].save(out, save_all=True, append_images=frames[1:], duration=1000 / fps, loop=0)


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
    from dataset_tools.policy import random_only

    twin = make_real_twin(checkpoint, obs_type="frames")
    config = twin.config
    player = (make_agent or random_only)(
        agent, config.game, int(config.n_actions), seed=seed, trust_pickle=trust_pickle
    )
    player.reset(seed=seed)

    def choose(_: np.ndarray) -> int:
        return int(player.act(twin.last_raw_frame[None], twin.unwrapped.ale.getRAM()[None])[0])

    video = []
    scores = [0.0, 0.0]
    for real, dream, _, real_reward, dream_reward in side_by_side(twin, choose, steps, seed):
        scores = [scores[0] + real_reward, scores[1] + dream_reward]
        diff = np.abs(real.astype(np.int16) - dream.astype(np.int16)).astype(np.uint8)
        panels = [
            caption(upscale(real, scale), f"real {scores[0]:+.0f}"),
            caption(upscale(dream, scale), f"dream {scores[1]:+.0f}"),
            caption(upscale(diff, scale), "difference"),
        ]
        gap = np.full((panels[0].shape[0], 2 * scale, 3), 255, np.uint8)
        video.append(np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1))
    out = write_video(out, video, fps)
    log.info("wrote %s (%d frames: real | dream | difference)", out, len(video))
    return out
