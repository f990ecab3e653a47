"""Collection throughput vs a raw ALE loop, measured in the same run.

    python benchmarks/collection.py --steps 20000 --repeats 3

Prints agent steps/s of a bare ``env.step`` loop (one process, random actions, nothing stored)
and of ``collect`` with 1 and 2 workers (random agent, everything written to disk), and the
ratios. Rounds are interleaved (raw, 1 worker, 2 workers, raw x 2, raw, ...); each ratio is taken
within one round and the median over rounds is reported, because shared machines are noisy.

``raw ALE loop x 2 processes`` runs the same bare loop in two processes at once (half the steps
each; steps over the time from the first start to the last end, env creation not counted): the
most two workers could reach on this machine.

``CPU us/step`` is the user + system CPU time of the run (this process and its children, process
start-up included for collection, not for the raw loops) per agent step. It hardly depends on what
else the machine runs, so on a busy shared machine it is the figure to compare: two workers can
reach ``2 x raw`` steps/s only if their CPU per step is close to the raw loop's.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from dataset_tools.collect import CollectConfig, collect
from dataset_tools.games import EnvSettings, make_env


def raw_loop(settings: EnvSettings, steps: int, seed: int) -> float:
    env = make_env(settings)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    t0 = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
    rate = steps / (time.perf_counter() - t0)
    env.close()
    return rate


def _timed_raw_loop(args: tuple[EnvSettings, int, int]) -> tuple[float, float]:
    settings, steps, seed = args
    env = make_env(settings)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    t0 = time.perf_counter()  # CLOCK_MONOTONIC: comparable between processes
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
    t1 = time.perf_counter()
    env.close()
    return t0, t1


def raw_loop_processes(settings: EnvSettings, steps: int, seed: int, processes: int) -> float:
    """Steps/s of ``processes`` bare loops running at once (``steps`` in all)."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(processes) as pool:
        spans = pool.map(_timed_raw_loop, [(settings, steps // processes, seed + i) for i in range(processes)])
    return (steps // processes) * processes / (max(t1 for _, t1 in spans) - min(t0 for t0, _ in spans))


def collect_rate(settings: EnvSettings, steps: int, workers: int, seed: int, root: Path) -> float:
    out = root / f"w{workers}-{seed}"
    result = collect(CollectConfig(out=out, env=settings, frames=steps, workers=workers, seed=seed), progress=False)
    shutil.rmtree(out)
    return result.steps_per_second


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--game", default="Pong")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dir", type=Path, default=None, help="where the datasets are written (default: a temp dir)")
    args = p.parse_args()
    settings = EnvSettings(game=args.game)
    rates: dict[str, list[float]] = {
        "raw ALE loop": [],
        "collect, 1 worker": [],
        "collect, 2 workers": [],
        "raw ALE loop x 2 processes": [],
    }
    cpu: dict[str, list[float]] = {name: [] for name in rates}
    runs = {
        "raw ALE loop": lambda r, tmp: raw_loop(settings, args.steps, r),
        "collect, 1 worker": lambda r, tmp: collect_rate(settings, args.steps, 1, r, tmp),
        "collect, 2 workers": lambda r, tmp: collect_rate(settings, args.steps, 2, r, tmp),
        "raw ALE loop x 2 processes": lambda r, tmp: raw_loop_processes(settings, args.steps, r, 2),
    }
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for r in range(args.repeats):
            for name, run in runs.items():
                before = _cpu_seconds()
                rates[name].append(run(r, Path(tmp)))
                cpu[name].append((_cpu_seconds() - before) / args.steps * 1e6)
    raw = rates["raw ALE loop"]
    print(
        f"{args.game}, {args.steps} steps per run, median of {args.repeats} rounds; {platform.machine()}, {os.cpu_count()} cores"
    )
    print(f"{'':<28}{'steps/s':>10}{'x raw':>8}{'CPU us/step':>13}   per-round steps/s (x raw), CPU us/step")
    for name, values in rates.items():
        ratios = [v / r for v, r in zip(values, raw, strict=True)]
        rounds = ", ".join(f"{v:.0f} ({q:.2f}) {c:.0f}" for v, q, c in zip(values, ratios, cpu[name], strict=True))
        median = (
            f"{statistics.median(values):>10.0f}{statistics.median(ratios):>8.2f}{statistics.median(cpu[name]):>13.0f}"
        )
        print(f"{name:<28}{median}   {rounds}")


if __name__ == "__main__":
    main()
