"""Learned env throughput vs the real ALE game, measured in the same run.

    python benchmarks/learned_env.py --checkpoint learned_envs/assets/LearnedPong-v0 --repeats 3

``--settings move_temperature=0`` steps with imagination settings other than the checkpoint's (as
``LearnedVectorEnv(settings=...)``); ``--obs latent,objects`` times an object-state ``rssm``'s two vector
observations.

For each (obs_type, num_envs) it times ``LearnedVectorEnv.step`` with random actions (env steps/s
= batched steps/s x num_envs) and divides by a real ALE Pong loop's steps/s (one process, random
actions) timed in the same round; the median ratio over rounds is reported. ``--device cuda`` sweeps
256 to 65,536 envs unless ``--envs`` says otherwise.

``--profile`` adds where a step's time goes, per (obs_type, num_envs): torch's profiler over
``--profile-steps`` steps, its operators grouped into the models' matrix products, the move and
presence draws, and the rest (the other tensor operations, Python and the env's bookkeeping).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch

from dataset_tools.games import EnvSettings, make_env
from learned_envs.env import LearnedVectorEnv


def real_rate(steps: int) -> float:
    env = make_env(EnvSettings(game="Pong"))
    env.reset(seed=0)
    t0 = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
    env.close()
    return steps / (time.perf_counter() - t0)


def learned_rate(venv: LearnedVectorEnv, seconds: float) -> float:
    rng = np.random.default_rng(0)
    venv.reset(seed=0)
    venv.step(rng.integers(0, venv.single_action_space.n, venv.num_envs))  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        venv.step(rng.integers(0, venv.single_action_space.n, venv.num_envs))
        n += 1
    if venv.device.type == "cuda":
        torch.cuda.synchronize()
    return n * venv.num_envs / (time.perf_counter() - t0)


GROUPS = {
    "matrix products": ("aten::addmm", "aten::mm", "aten::bmm", "aten::matmul", "aten::linear"),
    "draws": (
        "aten::uniform_",
        "aten::exponential_",
        "aten::multinomial",
        "aten::searchsorted",
        "aten::cumsum",
        "aten::cumsum_",
        "aten::exp_",
        "aten::argmax",
        "aten::log",
    ),
}


def where_time_goes(venv: LearnedVectorEnv, steps: int) -> dict[str, float]:
    """Milliseconds per step: each group of :data:`GROUPS` (operators' own time), the rest, and the total."""
    from torch.profiler import ProfilerActivity, profile

    rng = np.random.default_rng(1)
    venv.reset(seed=1)
    venv.step(rng.integers(0, venv.single_action_space.n, venv.num_envs))
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            venv.step(rng.integers(0, venv.single_action_space.n, venv.num_envs))
    total = (time.perf_counter() - t0) / steps * 1e3
    own = {e.key: e.self_cpu_time_total / 1e3 / steps for e in prof.key_averages()}  # ms per step
    out = {g: sum(own.get(op, 0.0) for op in ops) for g, ops in GROUPS.items()}
    out["the rest"] = total - sum(out.values())
    out["total"] = total
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="learned_envs/assets/LearnedPong-v0")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--envs",
        default=None,
        help="numbers of envs, comma-separated (a scaling table: 1,4,16,...; default 1,16,64,256 on the CPU, "
        "256,1024,4096,16384,65536 on CUDA)",
    )
    p.add_argument(
        "--obs", default="latent,frames", help="observation types, comma-separated (latent, objects, frames)"
    )
    p.add_argument(
        "--settings",
        default="",
        help="imagination settings, comma-separated key=value (e.g. move_temperature=0; default: the checkpoint's)",
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    p.add_argument("--precision", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--profile", action="store_true", help="also print where a step's time goes")
    p.add_argument("--profile-steps", type=int, default=100)
    args = p.parse_args()
    from world_models.base import pick_device

    cuda = pick_device(args.device).type == "cuda"
    sizes = [int(s) for s in (args.envs or ("256,1024,4096,16384,65536" if cuda else "1,16,64,256")).split(",")]
    if not set(args.obs.split(",")) <= {"latent", "objects", "frames"}:
        p.error(f"--obs takes latent, objects and/or frames, got {args.obs}")
    settings = [s for s in args.settings.split(",") if s]
    venvs = {
        (o, n): LearnedVectorEnv(
            args.checkpoint, n, device=args.device, obs_type=o, precision=args.precision, settings=settings
        )
        for o in args.obs.split(",")
        for n in sizes
    }
    ratios: dict[tuple[str, int], list[float]] = {k: [] for k in venvs}
    rates: dict[tuple[str, int], list[float]] = {k: [] for k in venvs}
    reals = []
    for _ in range(args.repeats):
        real = real_rate(3000)
        reals.append(real)
        for key, venv in venvs.items():
            rate = learned_rate(venv, args.seconds)
            rates[key].append(rate)
            ratios[key].append(rate / real)
    device = next(iter(venvs.values())).device
    print(
        f"checkpoint {args.checkpoint} ({next(iter(venvs.values())).config.model}), device {device}, {args.precision}, "
        f"{platform.machine()} {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, median of {args.repeats} rounds"
        + (f", settings {', '.join(settings)}" if settings else "")
    )
    print(f"real ALE Pong, 1 process: {statistics.median(reals):.0f} steps/s")
    print(f"{'obs':<8}{'envs':>6}{'env steps/s':>14}{'x real':>9}")
    for (obs, n), values in rates.items():
        print(f"{obs:<8}{n:>6}{statistics.median(values):>14.0f}{statistics.median(ratios[(obs, n)]):>9.2f}")
    if args.profile:
        print(f"\nwhere a step's time goes (ms per step, {args.profile_steps} steps under torch's profiler)")
        names = [*GROUPS, "the rest", "total"]
        print(f"{'obs':<8}{'envs':>6}" + "".join(f"{g:>18}" for g in names))
        for (obs, n), venv in venvs.items():
            ms = where_time_goes(venv, args.profile_steps)
            print(f"{obs:<8}{n:>6}" + "".join(f"{ms[g]:>12.3f} ({ms[g] / ms['total']:>3.0%})" for g in names))


if __name__ == "__main__":
    main()
