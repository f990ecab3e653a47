"""Parallel rollout collection into an episode dataset.

Worker 0 is a thread of the calling process and the others are separate processes; each runs its
own game (:class:`AleStepper`) and agent, and a writer thread saves finished episodes atomically
while the next one is played. Episode ``i`` always uses the seed derived from ``(seed, i)``, so a
re-run extends a dataset with new episodes (new indices, new seeds) and never duplicates or
overwrites old ones. Frames are stored as palette indices (see :mod:`palette`).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dataset_tools.dataset import SCHEMA_VERSION, DatasetDir
from dataset_tools.episode import DatasetError, Episode, write_episode
from dataset_tools.games import EnvSettings, action_meanings, resolve_game
from dataset_tools.lock import DatasetLock
from dataset_tools.palette import PaletteFrames, to_rgb
from dataset_tools.policy import random_only, random_repeat
from dataset_tools.preprocess import RAW_SHAPE, default_preprocess
from dataset_tools.stepper import AleStepper

log = logging.getLogger(__name__)

_CHUNK = 64  # frame-budget reservation size, so workers touch the shared counter rarely
STEPS_PER_WORKER = 500
"""A worker is started for at most every this many steps asked for (each costs a process start, ~0.5 s)."""
MAX_WORKERS_PER_CPU = 2
"""Workers beyond this many per CPU only wait on each other."""


@dataclass
class CollectConfig:
    """What to collect and where."""

    out: Path
    """Dataset directory (created, or extended if it exists)."""
    env: EnvSettings = field(default_factory=EnvSettings)
    """The real game and its settings."""
    episodes: int | None = None
    """Number of new episodes (exclusive with ``frames``)."""
    frames: int | None = None
    """Number of new agent steps; the last episodes are truncated to fit (exclusive with ``episodes``)."""
    agent: str = "random"
    """``random``, ``scripted`` (Pong), a dream agent or a path to a Stable-Baselines3 ``.zip``: what
    ``make_agent`` builds, and what the manifest records."""
    make_agent: Callable[..., Any] | None = None
    """Builds the agent: ``make_agent(agent, game, n_actions, seed=, noise=, trust_pickle=)``, e.g.
    ``agents.make_agent`` (``create-dataset`` and ``learned-envs loop`` pass it). A module-level function,
    since worker processes receive it pickled by reference. None: :func:`~dataset_tools.policy.random_only`."""
    trust_pickle: bool = False
    """Let ``agent`` be a Stable-Baselines3 ``.zip`` (or an older dream agent's): loading one unpickles it,
    which runs any code its author put there."""
    agent_noise: float | None = None
    """Probability of a random action per step instead of the agent's (None: 0.1 for the scripted agent,
    0 for a dream agent, which explores by sampling its policy's actions)."""
    workers: int = 1
    """Worker processes (1 collects in this process)."""
    seed: int = 0
    """Base seed; episode i uses a seed derived from (seed, i)."""
    command: str = ""
    """The command line, recorded in the manifest."""


@dataclass
class CollectResult:
    episodes: list[int]
    steps: int
    seconds: float
    interrupted: bool

    @property
    def steps_per_second(self) -> float:
        return self.steps / max(self.seconds, 1e-9)


def episode_seed(seed: int, index: int) -> int:
    """The env seed of episode ``index`` (independent of which worker runs it)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] >> 1)


def validate_config(cfg: CollectConfig) -> None:
    """Raise ValueError for counts that cannot work."""
    if cfg.episodes is not None and cfg.frames is not None:
        raise ValueError("give either --episodes or --frames, not both")
    if cfg.episodes is not None and cfg.episodes < 1:
        raise ValueError(f"--episodes must be at least 1, got {cfg.episodes}")
    if cfg.frames is not None and cfg.frames < 1:
        raise ValueError(f"--frames must be at least 1, got {cfg.frames}")
    if cfg.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {cfg.workers}")
    if cfg.seed < 0:
        raise ValueError(f"--seed must be 0 or more, got {cfg.seed}")
    if cfg.env.frameskip < 1:
        raise ValueError(f"--frameskip must be at least 1, got {cfg.env.frameskip}")
    if not 0.0 <= cfg.env.repeat_action_probability <= 1.0:
        raise ValueError(f"--sticky must be in [0, 1], got {cfg.env.repeat_action_probability}")
    if cfg.env.max_episode_steps is not None and cfg.env.max_episode_steps < 1:
        raise ValueError(f"--max-episode-steps must be at least 1, got {cfg.env.max_episode_steps}")


def prepare_dataset(cfg: CollectConfig) -> DatasetDir:
    """Create the dataset directory and manifest, or check that an existing one matches ``cfg``."""
    ds = DatasetDir(cfg.out)
    try:
        ds.root.mkdir(parents=True, exist_ok=True)
        probe = ds.root / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise DatasetError(f"{ds.root}: cannot write there ({err.strerror or err})") from None
    settings = cfg.env.to_dict()
    if ds.exists():
        manifest = ds.read_manifest()
        if manifest["env"] != settings:
            raise DatasetError(
                f"{ds.manifest_path}: holds {manifest['env']}, this run asks for {settings}; "
                "use another --out to collect different settings"
            )
        if manifest["schema_version"] != SCHEMA_VERSION:  # new shards are palette shards
            log.info("%s: schema version %s -> %s", ds.manifest_path, manifest["schema_version"], SCHEMA_VERSION)
            manifest["schema_version"] = SCHEMA_VERSION
            ds.write_manifest(manifest)
        removed = ds.clean_partial()  # under the writer lock: leftovers of runs that are over
        if removed:
            log.info("removed %d unfinished episode(s) left by an interrupted run", removed)
        counts = ds.counts()  # reads every meta.json: a broken one stops the run before it collects
        if manifest.get("counts") != counts:
            log.warning(
                "%s: counts %s did not match the episodes on disk %s; fixed",
                ds.manifest_path,
                manifest.get("counts"),
                counts,
            )
            manifest["counts"] = counts
            ds.write_manifest(manifest)
        return ds
    from dataset_tools import ram_truth

    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "game": cfg.env.game,
        "env_id": cfg.env.env_id,
        "env": settings,
        "action_meanings": action_meanings(cfg.env),
        "frame_shape": list(RAW_SHAPE),
        "preprocess": default_preprocess(cfg.env.game).to_dict(),
        "labels": list(ram_truth.object_classes(cfg.env.game)) if cfg.env.game in ram_truth.GAMES else None,
        "runs": [],
        "counts": {"episodes": 0, "steps": 0, "frames": 0},
    }
    ds.write_manifest(manifest)
    return ds


# --------------------------------------------------------------------------- worker side
@dataclass
class _Shared:
    """State shared by the workers (multiprocessing values)."""

    lock: Any
    next_index: Any  # next episode index to start
    last_index: Any  # episodes mode: last index + 1 to start; -1 in frames mode
    budget: Any  # frames mode: agent steps still to hand out; -1 in episodes mode
    done_steps: Any  # steps finished (for the progress bar)
    stop: Any  # Event: stop now, drop the episode in progress


def _claim_episode(shared: _Shared) -> int | None:
    with shared.lock:
        if shared.stop.is_set():
            return None
        if shared.last_index.value >= 0 and shared.next_index.value >= shared.last_index.value:
            return None
        if shared.last_index.value < 0 and shared.budget.value <= 0:
            return None
        index = shared.next_index.value
        shared.next_index.value += 1
        return index


def _claim_steps(shared: _Shared) -> int:
    """Steps this worker may take next (frames mode); 0 when the budget is spent."""
    with shared.lock:
        if shared.budget.value < 0:
            return _CHUNK
        grant = min(_CHUNK, shared.budget.value)
        shared.budget.value -= grant
        return grant


class _Buffer:
    """A growing array reused across episodes (fresh arrays per step cost page faults)."""

    def __init__(self, row_shape: tuple[int, ...], dtype: Any, capacity: int = 1024) -> None:
        self.data = np.empty((capacity, *row_shape), dtype=dtype)
        self.n = 0

    def next_row(self) -> np.ndarray:
        """The next row, to be filled in place (the buffer grows as needed)."""
        if self.n == len(self.data):
            grown = np.empty((2 * len(self.data), *self.data.shape[1:]), dtype=self.data.dtype)
            grown[: self.n] = self.data[: self.n]
            self.data = grown
        self.n += 1
        return self.data[self.n - 1]

    def view(self) -> np.ndarray:
        return self.data[: self.n]


_NO_FRAMES = np.empty((1, 0, 0, 3), dtype=np.uint8)  # what agents with needs_frames=False get


def _run_episode(
    stepper: AleStepper,
    agent: Any,
    index: int,
    cfg: CollectConfig,
    shared: _Shared,
    parent: int | None,
    bufs: dict[str, _Buffer],
) -> Episode | None:
    seed = episode_seed(cfg.seed, index)
    frames, rams = bufs["frames"], bufs["ram"]
    frames.n = rams.n = 0
    frame, ram = frames.next_row(), rams.next_row()
    stepper.reset(seed, frame, ram)
    agent.reset(seed=seed + 1)
    colours = stepper.colours
    actions: list[int] = []
    rewards: list[float] = []
    terminated: list[bool] = []
    truncated: list[bool] = []
    allowance, stopped_by_budget, uncounted = 0, False, 0
    while True:
        if allowance == 0:
            if shared.stop.is_set() or (parent is not None and os.getppid() != parent):
                return None  # interrupted (or the parent died): drop the unfinished episode
            with shared.lock:  # progress bar
                shared.done_steps.value += uncounted
            uncounted = 0
            allowance = _claim_steps(shared)
            if allowance == 0:
                stopped_by_budget = True
                break
        seen = to_rgb(colours.rgb, frame[None]) if agent.needs_frames else _NO_FRAMES  # -> (1, 210, 160, 3)
        action = int(agent.act(seen, ram[None])[0])
        frame, ram = frames.next_row(), rams.next_row()
        reward, term, trunc = stepper.step(action, frame, ram)
        allowance -= 1
        uncounted += 1
        actions.append(action)
        rewards.append(reward)
        terminated.append(term)
        truncated.append(trunc)
        if term or trunc:
            break
    with shared.lock:
        shared.done_steps.value += uncounted
        if shared.budget.value >= 0:
            shared.budget.value += allowance  # hand back what this episode did not use
    if not actions:
        return None
    if stopped_by_budget:
        truncated[-1] = True
    meta = {
        "seed": seed,
        "agent": agent.describe(),
        "stopped_by_frame_budget": stopped_by_budget,
        "collected_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "palette_indices": colours.known.tolist(),
    }
    return Episode(
        frames=PaletteFrames(frames.view(), colours.rgb.copy()),
        actions=np.asarray(actions, dtype=np.int64),
        rewards=np.asarray(rewards, dtype=np.float32),
        terminated=np.asarray(terminated),
        truncated=np.asarray(truncated),
        ram=rams.view(),
        meta=meta,
    )


def _labels(game: str, ram: np.ndarray) -> dict[str, np.ndarray] | None:
    from dataset_tools import ram_truth

    if game not in ram_truth.GAMES:
        return None
    return ram_truth.ram_objects(game, ram)


def _exit_when_orphaned(parent: int, grace: float = 2.0) -> None:
    """Start a watchdog thread that ends this worker process if ``parent`` dies (e.g. SIGKILL).

    The worker loop notices a dead parent itself between step chunks and exits cleanly; but a parent
    killed while it held one of the shared locks (the step budget's, a counter's, the stop event's)
    leaves the worker blocked on that lock forever, holding the parent's stdout and stderr open.
    After ``grace`` seconds without a clean exit the watchdog ends the process (unfinished episodes
    are lost, as they are on a kill; finished ones are already on disk).
    """
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        time.sleep(grace)
        os._exit(1)

    threading.Thread(target=watch, name="orphan-watchdog", daemon=True).start()


def _worker(worker_id: int, cfg: CollectConfig, shared: _Shared, results: Any, parent: int | None) -> None:
    """Collect episodes until the shared budget is spent or ``stop`` is set.

    ``parent`` is the pid of the parent process (None when running as a thread of it).
    """
    if parent is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and sets `stop`
        _exit_when_orphaned(parent)

    from concurrent.futures import Future, ThreadPoolExecutor

    episodes_dir = DatasetDir(cfg.out).episodes_dir
    # Two buffer sets: one is filled by the env loop while a writer thread saves the other.
    buffer_sets = [{"frames": _Buffer(RAW_SHAPE[:2], np.uint8), "ram": _Buffer((128,), np.uint8)} for _ in range(2)]
    pending: list[Future[None] | None] = [None, None]

    def save(index: int, episode: Episode) -> None:
        labels = _labels(cfg.env.game, np.asarray(episode.ram))
        episode.meta["worker"] = worker_id
        write_episode(episodes_dir, index, episode, extras={"labels": labels} if labels else None)
        results.put(("episode", index, len(episode), float(episode.rewards.sum())))

    writer = ThreadPoolExecutor(max_workers=1)
    stepper = None
    try:
        stepper = AleStepper(cfg.env)
        agent = (cfg.make_agent or random_only)(
            cfg.agent,
            cfg.env.game,
            stepper.n_actions,
            seed=cfg.seed,
            noise=cfg.agent_noise,
            trust_pickle=cfg.trust_pickle,
        )
        episodes_dir.mkdir(parents=True, exist_ok=True)
        slot = 0
        while (index := _claim_episode(shared)) is not None:
            if pending[slot] is not None:
                pending[slot].result()  # this buffer set is still being written
            episode = _run_episode(stepper, agent, index, cfg, shared, parent, buffer_sets[slot])
            if episode is None:
                break
            pending[slot] = writer.submit(save, index, episode)
            slot = 1 - slot
        for fut in pending:
            if fut is not None:
                fut.result()
    except Exception as err:  # reported to the parent, which stops everyone
        results.put(("error", worker_id, f"{type(err).__name__}: {err}", None))
    finally:
        writer.shutdown(wait=True)
        if stepper is not None:
            stepper.close()
        results.put(("done", worker_id, 0, 0.0))  # wakes the parent at once (it would poll for 0.2 s)


# --------------------------------------------------------------------------- parent side
def worker_count(cfg: CollectConfig) -> int:
    """The workers worth starting: at most one per episode asked for, one per ``STEPS_PER_WORKER`` steps, and
    ``MAX_WORKERS_PER_CPU`` per CPU; a cap is logged."""
    cpus = os.cpu_count() or 1
    limits = [cfg.workers, MAX_WORKERS_PER_CPU * cpus]
    if cfg.episodes is not None:
        limits.append(cfg.episodes)
    if cfg.frames is not None:
        limits.append(max(1, -(-cfg.frames // STEPS_PER_WORKER)))
    n = max(1, min(limits))
    if n < cfg.workers:
        log.warning("starting %d worker(s), not %d: no more are useful for this run on %d CPU(s)", n, cfg.workers, cpus)
    return n


def collect(
    cfg: CollectConfig, progress: bool = True, on_episode: Callable[[int, int, float], None] | None = None
) -> CollectResult:
    """Collect new episodes into ``cfg.out``; see :class:`CollectConfig`.

    Ctrl-C (or SIGTERM) stops the workers; every finished episode stays on disk, and the manifest
    records the run as interrupted. One run writes a dataset at a time (:class:`DatasetLock`): a second
    one into the same directory fails at once, naming the first.
    """
    cfg.env = EnvSettings.from_dict({**cfg.env.to_dict(), "game": resolve_game(cfg.env.game)})
    validate_config(cfg)
    if cfg.episodes is None and cfg.frames is None:
        raise ValueError("nothing to collect: give --episodes N or --frames N")
    (cfg.make_agent or random_only)(  # fail early, here
        cfg.agent, cfg.env.game, len(action_meanings(cfg.env)), noise=cfg.agent_noise, trust_pickle=cfg.trust_pickle
    )
    with DatasetLock(cfg.out):
        return _collect(cfg, progress, on_episode)


def _collect(cfg: CollectConfig, progress: bool, on_episode: Callable[[int, int, float], None] | None) -> CollectResult:
    from tqdm import tqdm

    ds = prepare_dataset(cfg)
    existing = ds.episode_indices()
    start = (max(existing) + 1) if existing else 0
    ctx = mp.get_context("spawn")
    shared = _Shared(
        lock=ctx.Lock(),
        next_index=ctx.Value("q", start, lock=False),
        last_index=ctx.Value("q", start + cfg.episodes if cfg.episodes else -1, lock=False),
        budget=ctx.Value("q", cfg.frames if cfg.frames else -1, lock=False),
        done_steps=ctx.Value("q", 0, lock=False),
        stop=ctx.Event(),
    )
    results: Any = ctx.Queue()
    n_workers = worker_count(cfg)
    bar = tqdm(total=cfg.frames, unit="step", desc=f"collect {cfg.env.game}", disable=not progress, dynamic_ncols=True)
    finished: list[int] = []
    steps = 0
    errors: list[str] = []
    interrupted = False
    t0 = time.perf_counter()
    old_term = signal.signal(signal.SIGTERM, _raise_interrupt) if _in_main_thread() else None

    done: set[int] = set()

    def drain(block: bool) -> None:
        nonlocal steps
        while True:
            try:
                kind, a, b, c = results.get(timeout=0.2) if block else results.get_nowait()
            except queue.Empty:
                return
            block = False
            if kind == "done":
                done.add(a)
                continue
            if kind == "error":
                errors.append(f"worker {a}: {b}")
                shared.stop.set()
                continue
            finished.append(a)
            steps += b
            if on_episode:
                on_episode(a, b, c)
            bar.set_postfix(episodes=len(finished), last_return=f"{c:+.0f}", refresh=False)  # shown at the next update

    procs: list[Any] = []
    try:
        import threading

        # Worker 0 is a thread of this process, which otherwise only waits: it starts stepping at
        # once, while the other workers start Python and import their modules (about 0.5 s).
        for wid in range(1, n_workers):
            proc = ctx.Process(target=_worker, args=(wid, cfg, shared, results, os.getpid()), daemon=True)
            proc.start()
            procs.append(proc)
        thread = threading.Thread(target=_worker, args=(0, cfg, shared, results, None), daemon=True)
        thread.start()
        procs.append(thread)
        while len(done) < len(procs) and any(p.is_alive() for p in procs):
            drain(block=True)
            if shared.done_steps.value > bar.n:  # redrawn only when it moved: one final line, not one per poll
                bar.update(shared.done_steps.value - bar.n)
        for p in procs:
            p.join(timeout=30)  # every worker said it is done: they only have to exit
        drain(block=False)
    except KeyboardInterrupt:
        interrupted = True
        shared.stop.set()
        log.warning("interrupted: waiting for workers to stop; finished episodes are kept")
        for p in procs:
            p.join(timeout=30)
        drain(block=False)
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        for p in procs:
            if isinstance(p, mp.process.BaseProcess) and p.is_alive():
                p.terminate()
        if steps != bar.n:
            bar.n = steps
        bar.close()
        seconds = time.perf_counter() - t0
        ds.clean_partial()
        _record_run(ds, cfg, sorted(finished), steps, seconds, interrupted or bool(errors))
    if errors:
        raise RuntimeError("collection failed: " + "; ".join(errors))
    return CollectResult(sorted(finished), steps, seconds, interrupted)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _record_run(
    ds: DatasetDir, cfg: CollectConfig, indices: list[int], steps: int, seconds: float, interrupted: bool
) -> None:
    manifest = ds.read_manifest()
    manifest["runs"].append(
        {
            "agent": cfg.agent,
            "agent_noise": cfg.agent_noise if random_repeat(cfg.agent) is None else None,
            "seed": cfg.seed,
            "workers": cfg.workers,
            "sticky_actions_by": "collector",  # drawn from each episode's seed (stepper.py), ALE's set to 0
            "episodes_added": indices,
            "steps_added": steps,
            "seconds": round(seconds, 2),
            "interrupted": interrupted,
            "command": cfg.command or " ".join(sys.argv),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
    )
    manifest["counts"] = ds.counts()
    ds.write_manifest(manifest)
