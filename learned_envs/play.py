"""``learned-envs play``: the dream next to the real game, driven by the same actions (GIF / MP4)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

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
) -> Path:
    """Write ``out`` (``.gif`` or ``.mp4``): real game | dream | |difference|, same actions.

    The dream starts from the real game's first ``n_past`` frames, then runs open loop. ``trust_pickle``
    lets ``agent`` be a Stable-Baselines3 ``.zip`` (loading one runs any code it holds).
    """
    import imageio.v3 as iio

    from agents import make_agent

    twin = make_real_twin(checkpoint, obs_type="frames")
    model, config = twin.model, twin.config
    device = next(model.parameters()).device
    player = make_agent(agent, config["game"], int(config["n_actions"]), seed=seed, trust_pickle=trust_pickle)
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


def _run(args: argparse.Namespace) -> int:
    try:
        play(
            args.checkpoint,
            args.out,
            steps=args.steps,
            agent=args.agent,
            seed=args.seed,
            trust_pickle=args.trust_pickle,
        )
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"learned-envs: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("play")
    p.add_argument(
        "--checkpoint", required=True, help="learned-env id (LearnedPongObjects-v1, ...) or checkpoint / run directory"
    )
    p.add_argument("--out", type=Path, default=Path("play.gif"), help=".gif or .mp4 (default play.gif)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--agent", default="random", help="random | scripted | an agent of learned-envs dream")
    p.add_argument(
        "--trust-pickle",
        action="store_true",
        help="let --agent be a Stable-Baselines3 .zip: loading one unpickles it, which runs any code it holds",
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run)
