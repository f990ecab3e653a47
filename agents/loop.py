"""The SimPLe-style loop: collect real steps -> train the world model -> train the agent in the dream.

Iteration ``i`` of ``learned-envs loop -g Pong --real-steps 100000 --iterations K``:

1. collect real steps with the current policy (random in the first iteration; then the latest
   agent, sampling its actions, plus ``explore`` random ones) until the dataset holds
   ``(i + 1) * real_steps / K`` steps (``OUT/data``);
2. train the world model on all data so far, starting from the previous iteration's weights
   (``OUT/models/iter_i``);
3. train a fresh agent in the new model's dream (``OUT/agents/iter_i``);
4. score it on the real game (``eval_episodes`` full episodes) and add a row to ``OUT/loop.json``.

After the last iteration, ``final_seeds`` agents in all (the last iteration's and ``final_seeds - 1`` more,
seeds ``seed + 1, ...``) trained in the last model's dream are scored on ``final_episodes`` full games
each (episode seeds 1000, 1001, ...: the frames-only bar's protocol, 10 games x 3 seeds), into
``OUT/loop.json``'s ``final`` and the table :func:`format_final` prints. The last iteration's model can
train longer than the others (``final_model_steps``): it is the one the final agents learn in, and no
later data depends on it. The final agents may train longer, or with more dream envs, than the
iterations' agents (``final_dream_steps``, ``final_n_envs``): no data comes from them either.

With ``frames_only`` the loop keeps the frames-only protocol: the world model is ``slot_dynamics``
over an object extractor trained on the loop's own frames (iteration 0, and again every
``extractor_every`` iterations if set): background and motion hints of the data
(``create-dataset --rootmedian --root``), a ``space_time`` run, the extractor fitted around it
(``OUT/extractor/``). Nothing that collects, trains, dreams or plays reads the RAM. The RAM is read
only to score: each iteration's row gives the extractor's ball recall on the frames just collected
(overall and within 8 px of a paddle) and ``learned-envs fidelity``'s dream-against-real figures for
the iteration's agent.

Every stage leaves its result on disk and is skipped when present, so an interrupted loop run
again with the same command picks up where it stopped. The wall time of each stage is saved in
``OUT/loop.json``'s ``stage_s`` as it ends (a stage interrupted and run again adds up both runs) and
printed by :func:`format_times`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SPACE_SCHEDULE = [
    "lr=5e-4",
    "tau_end_step=1500",
    "z_pres_prior_start_step=300",
    "z_pres_prior_end_step=1500",
    "motion_cooling_start_step=3000",
    "motion_cooling_end_step=6000",
]
"""The SPACE-Time training schedule of the shipped Pong extractor (its model card), for 3,000 steps."""


@dataclass
class LoopConfig:
    """Settings of :func:`run_loop` (``learned-envs loop`` flags and ``key=value`` overrides)."""

    game: str = "Pong"
    """ALE game (the object models read Pong only)."""
    real_steps: int = 100_000
    """Real agent steps collected over the whole loop."""
    iterations: int = 4
    """Collect / train model / train agent rounds."""
    model: str = "object_dynamics"
    """World model trained on the real data (with ``frames_only``: ``slot_dynamics``, whatever this says)."""
    model_steps: int = 8000
    """Trainer steps per iteration."""
    final_model_steps: int = 0
    """Trainer steps of the last iteration's model (0: ``model_steps``); it starts from the previous
    iteration's weights as the others do."""
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
    """Extra ``key=value`` settings of the world model's training (those of LearnedPongObjects-v1; with
    ``frames_only`` those of ``frames_model_overrides`` instead)."""
    frames_only: bool = False
    """The frames-only protocol (see the module docstring): the RAM is read only to score."""
    frames_model_overrides: list[str] = field(
        default_factory=lambda: ["batch_size=256", "lr=1e-3", "lr_schedule=cosine", "grad_clip=10", "reward_weight=5"]
    )
    """With ``frames_only``: extra settings of ``slot_dynamics``' training."""
    extractor_steps: int = 3000
    """With ``frames_only``: ``space_time`` training steps of the extractor."""
    extractor_overrides: list[str] = field(default_factory=lambda: list(SPACE_SCHEDULE))
    """With ``frames_only``: extra settings of the ``space_time`` run (after the game's shipped config)."""
    extractor_max_classes: int = 8
    """With ``frames_only``: the most object classes the extractor's fit may choose (by the silhouette score);
    a game with many kinds of objects (Freeway's cars in nine colours) needs more."""
    extractor_classes: int = 0
    """With ``frames_only``: the number of object classes of the extractor's fit (0: chosen by the silhouette
    score up to ``extractor_max_classes``). Boxing's fit chooses classes of boxer poses, so a boxer that
    changes pose is one object vanishing and another appearing; 2 asks for one class per boxer."""
    extractor_every: int = 0
    """With ``frames_only``: train the extractor again (from the last one, on all data so far) every this
    many iterations; 0: only in iteration 0."""
    dream_steps: int = 4_000_000
    """Dream steps of each iteration's agent."""
    n_envs: int = 64
    """Parallel dream envs."""
    dream_episode_steps: int = 100
    """Dream episodes of every agent (the iterations' and the final ones) are cut after this many steps (the
    dream's ``max_episode_steps``). Shorter episodes restart more often from real states, so the agent
    drifts less far from what the model saw: Boxing's agents lost with 100 and won with 30 (BENCHMARKS.md)."""
    random_repeat: int = 1
    """Steps each random action of iteration 0's collection is held (1: a new one every step). Random play
    that never scores gives the model no reward to learn: on Freeway a new action every step crosses the
    road 0 times in 4 games, each held 16 steps 2-5 times a game (``benchmarks/random_repeat.py``)."""
    explore: float = 0.0
    """Share of random actions when the latest agent collects data (it also samples its policy's actions)."""
    eval_episodes: int = 5
    """Real episodes scored per iteration."""
    fidelity_episodes: int = 0
    """Real games of ``learned-envs fidelity`` per iteration (0: no fidelity figures)."""
    final_seeds: int = 1
    """Agents scored after the last iteration: its own agent and ``final_seeds - 1`` more, trained in the
    same dream with seeds ``seed + 1, ...`` (only with ``final_episodes``)."""
    final_episodes: int = 0
    """Real games per final agent, episode seeds 1000, 1001, ... (0: no final scores)."""
    final_dream_steps: int = 0
    """Dream steps of each final agent (0: ``dream_steps``). The final agents are only scored, no data
    comes from them, so they may train longer than the iterations' agents; with a setting other than
    the iterations' the last iteration's agent is not one of them and every final agent is trained."""
    final_n_envs: int = 0
    """Parallel dream envs of the final agents (0: ``n_envs``)."""
    workers: int = 2
    """Collection worker processes."""
    seed: int = 0
    """Seeds collection, training and the dream."""


def format_table(rows: list[dict[str, Any]]) -> str:
    """The per-iteration table: real steps used, extractor recall, model and dream figures, real score."""
    frames_only = any("ball_recall" in r for r in rows)
    ball = any(r.get("ball_recall", float("nan")) == r.get("ball_recall", float("nan")) for r in rows)  # not NaN
    fidelity = any("fidelity" in r for r in rows)
    head = "| iteration | real steps |"
    rule = "|---:|---:|"
    if frames_only:
        head += " ball recall (near a paddle) |" if ball else " extractor recall of the RAM's objects, lowest |"
        rule += "---:|"
    head += " model ball px (train log) | point recall (train log) | dream return |"
    rule += "---:|---:|---:|"
    collected = any("real_return_100" in r for r in rows)
    if collected:
        head += " its real return per 100 steps (next collection) |"
        rule += "---:|"
    if fidelity:
        head += " points lost / won per 1,000, dream (real) | returns per 1,000, dream (real) |"
        rule += "---:|---:|"
    lines = [head + " real score |", rule + "---:|"]
    for r in rows:
        line = f"| {r['iteration']} | {r['real_steps']:,} |"
        if frames_only and ball:
            line += f" {r.get('ball_recall', float('nan')):.4f} ({r.get('ball_recall_near', float('nan')):.4f}) |"
        elif frames_only:
            lowest = min(r.get("recall", {}).items(), key=lambda kv: kv[1], default=None)
            line += f" {lowest[1]:.4f} ({lowest[0]}) |" if lowest else " - |"
        line += f" {r['model_ball_px']:.2f} | {r['model_point_recall']:.2f} | {r['dream_return']:.1f} |"
        if collected:
            line += f" {r['real_return_100']:+.2f} |" if "real_return_100" in r else " - |"
        if fidelity:
            f = r.get("fidelity")
            if f:
                d, q = f["dream"], f["real"]
                line += (
                    f" {d['points_lost']:.1f} / {d['points_won']:.1f} ({q['points_lost']:.1f} / {q['points_won']:.1f}) |"
                    f" {d['returns']:.1f} ({q['returns']:.1f}) |"
                )
            else:
                line += " - | - |"
        lines.append(line + f" {r['real_mean']:.1f} +- {r['real_std']:.1f} |")
    return "\n".join(lines)


class _Stages:
    """Times the loop's stages into ``state["stage_s"]`` (seconds by stage name) and saves ``state`` as each
    one ends, also when it is interrupted."""

    def __init__(self, state: dict[str, Any], path: Path) -> None:
        self.state, self.path = state, path

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        from dataset_tools.dataset import write_json

        start = time.perf_counter()
        try:
            yield
        finally:
            times = self.state.setdefault("stage_s", {})
            times[name] = round(times.get(name, 0.0) + time.perf_counter() - start, 1)
            write_json(self.path, self.state)
            log.info("%s: %.1f min", name, times[name] / 60)


def format_times(state: dict[str, Any]) -> str:
    """The wall time of each stage the loop ran (``loop.json``'s ``stage_s``) as a table, and their sum."""
    times = state.get("stage_s", {})
    if not times:
        return ""
    lines = ["| stage | wall time |", "|---|---:|"]
    lines += [f"| {name} | {s / 60:.1f} min |" for name, s in times.items()]
    lines.append(f"| **all** | **{sum(times.values()) / 60:.1f} min** |")
    return "\n".join(lines)


def _collect(cfg: LoopConfig, data: Path, target: int, agent: Path | None, i: int, progress: bool) -> None:
    from agents.factory import make_agent
    from dataset_tools.collect import CollectConfig, collect
    from dataset_tools.dataset import DatasetDir
    from dataset_tools.games import EnvSettings, resolve_game

    have = DatasetDir(data).counts()["steps"] if (data / "dataset.json").exists() else 0
    if have >= target:
        return
    spec = str(agent) if agent is not None else ("random" if cfg.random_repeat == 1 else f"random:{cfg.random_repeat}")
    log.info("iteration %d: collecting %d real steps with %s", i, target - have, spec)
    collect(
        CollectConfig(
            out=data,
            env=EnvSettings(game=resolve_game(cfg.game)),
            frames=target - have,
            agent=spec,
            make_agent=make_agent,
            agent_noise=cfg.explore if agent is not None else None,
            workers=cfg.workers,
            seed=cfg.seed,
            command=f"learned-envs loop (iteration {i})",
        ),
        progress=progress,
    )


def _extractor(cfg: LoopConfig, data: Path, out: Path, i: int, progress: bool, stage: _Stages) -> Path:
    """The fitted extractor of iteration ``i`` (trained and fitted on the data so far when due)."""
    from dataset_tools.dataset import DatasetDir
    from dataset_tools.postprocess import MotionConfig, compute_motion, compute_root
    from world_models.checkpoint import checkpoint_dirs
    from world_models.config import read_config_file
    from world_models.objects import fit_extractor, read_spec
    from world_models.training import config_file, train

    every = cfg.extractor_every
    last = (i // every) * every if every > 0 else 0  # the iteration that trained the extractor in use
    fitted = out / "extractor" / f"fitted_{last}"
    if (fitted / "extractor.json").exists():
        return fitted
    ds = DatasetDir(data)
    space = out / "extractor" / f"space_{last}"
    if not checkpoint_dirs(space):  # SPACE-Time's motion loss needs the hints of every episode
        log.info("iteration %d: background and motion hints of %d frames", i, ds.counts()["steps"])
        with stage(f"iteration {i}: background and motion hints"):
            compute_root(ds, seed=cfg.seed)
            compute_motion(ds, MotionConfig(root=True), workers=cfg.workers, progress=progress)
    shipped = f"atari_{cfg.game.lower()}.yaml"
    try:
        base = read_config_file(config_file(shipped, "space_time"))
    except ValueError:
        base = []
    overrides = [*base, f"steps={cfg.extractor_steps}", f"seed={cfg.seed}", "image_every=0", *cfg.extractor_overrides]
    if last > 0:
        overrides.append(f"init_from={out / 'extractor' / f'space_{last - every}'}")
    resume = bool(checkpoint_dirs(space))
    with stage(f"iteration {i}: SPACE-Time, {cfg.extractor_steps} steps"):
        checkpoint = train("space_time", data, space, [] if resume else overrides, resume=resume, progress=progress)
    classes = cfg.extractor_classes if last == 0 else len(read_spec(out / "extractor" / "fitted_0")["classes"])
    with stage(f"iteration {i}: fitting the extractor"):
        fit_extractor(
            checkpoint,
            data,
            fitted,
            classes=classes,
            max_classes=cfg.extractor_max_classes,
            seed=cfg.seed,
            progress=progress,
        )
    return fitted


def _recall(fitted: Path, data: Path, episodes: list[int]) -> dict[str, Any]:
    """Scoring only: the extractor's recall on ``episodes`` of each object the RAM shows (``recall``), and of
    the ball (``ball_recall``, ``ball_recall_near``: NaN in a game without one)."""
    from world_models.objects import load_extractor
    from world_models.objects.scoring import score_extractor

    scores = score_extractor(load_extractor(fitted), data, episodes)["classes"]
    ball = scores.get("ball", {})
    return {
        "ball_recall": ball.get("recall", float("nan")),
        "ball_recall_near": ball.get("recall_near", float("nan")),
        "recall": {name: s["recall"] for name, s in scores.items() if s["recall"] == s["recall"]},
    }


def run_loop(cfg: LoopConfig, out: str | Path, progress: bool = True) -> list[dict[str, Any]]:
    """Run (or resume) the loop in ``out``; returns one row per finished iteration."""
    from agents.dream import DreamConfig, train_in_dream
    from agents.evaluate import evaluate_agent
    from dataset_tools.dataset import DatasetDir, write_json
    from dataset_tools.games import resolve_game
    from world_models.checkpoint import checkpoint_dirs, read_config
    from world_models.training import train

    if cfg.iterations < 1 or cfg.real_steps < cfg.iterations:
        raise ValueError(f"need iterations >= 1 and real_steps >= iterations, got {cfg.iterations}, {cfg.real_steps}")
    if cfg.random_repeat < 1:
        raise ValueError(f"random_repeat must be >= 1, got {cfg.random_repeat}")
    if not 0.0 <= cfg.explore <= 1.0:
        raise ValueError(f"explore must be a probability in [0, 1], got {cfg.explore}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "loop.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {"config": asdict(cfg), "rows": []}
    stage = _Stages(state, state_path)

    # a loop saved before a setting existed ran it at its default; the final agents' settings may change
    # once the iterations are done (score more seeds of a finished loop)
    def settings(c: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in {**asdict(LoopConfig()), **c}.items() if k not in FINAL_SETTINGS}

    if settings(state["config"]) != settings(asdict(cfg)):
        raise ValueError(f"{out}: holds a loop with other settings ({state_path}); use another --out")
    state["config"] = asdict(cfg)
    game = resolve_game(cfg.game)
    data = out / "data"
    model_name = "slot_dynamics" if cfg.frames_only else cfg.model
    previous_agent: Path | None = None
    previous_model: Path | None = None
    for i in range(cfg.iterations):
        model_dir, agent_dir = out / "models" / f"iter_{i}", out / "agents" / f"iter_{i}"
        done = next((r for r in state["rows"] if r["iteration"] == i), None)
        if done is None:
            # 1. real data, up to this iteration's share of the budget
            before = max((r["real_steps"] for r in state["rows"] if r["iteration"] < i), default=0)
            with stage(f"iteration {i}: collecting"):
                _collect(cfg, data, (i + 1) * cfg.real_steps // cfg.iterations, previous_agent, i, progress)
            new_episodes = _episodes_after(DatasetDir(data), before)  # also right when resumed after collecting
            if i > 0 and new_episodes:
                # what the previous agent scored in the real game while collecting, beside its dream return:
                # a dream that credits an agent with much more than this is being exploited
                prev = next(r for r in state["rows"] if r["iteration"] == i - 1)
                prev["real_return_100"] = _return_per_100(DatasetDir(data), new_episodes)
                write_json(state_path, state)
            # 2. the world model, from the previous iteration's weights
            last = i == cfg.iterations - 1
            steps = cfg.final_model_steps if last and cfg.final_model_steps > 0 else cfg.model_steps
            overrides = [f"steps={steps}", f"seed={cfg.seed}", "image_every=0"]
            overrides += cfg.frames_model_overrides if cfg.frames_only else cfg.model_overrides
            extra: dict[str, Any] = {}
            if cfg.frames_only:
                fitted = _extractor(cfg, data, out, i, progress, stage)
                overrides.append(f"extractor={fitted}")
                extra["extractor"] = str(fitted)
                if new_episodes:
                    with stage(f"iteration {i}: extractor recall (scoring only)"):
                        extra |= _recall(fitted, data, new_episodes)
            if previous_model is not None:
                overrides.append(f"init_from={previous_model}")
            resume = bool(checkpoint_dirs(model_dir))
            with stage(f"iteration {i}: {model_name}, {steps} steps"):
                checkpoint = train(
                    model_name, data, model_dir, [] if resume else overrides, resume=resume, progress=progress
                )
            # 3. the agent, in the new model's dream
            dream = DreamConfig(
                env=str(checkpoint),
                steps=cfg.dream_steps,
                n_envs=cfg.n_envs,
                max_episode_steps=cfg.dream_episode_steps,
                seed=cfg.seed,
                eval_every=0,
                eval_episodes=1,
            )
            with stage(f"iteration {i}: agent, {cfg.dream_steps} dream steps"):
                agent_path = train_in_dream(dream, agent_dir, progress=progress)
            # 4. the real score, and how faithful the dream was for this agent
            with stage(f"iteration {i}: {cfg.eval_episodes} real games"):
                result = evaluate_agent(
                    agent_path,
                    game,
                    cfg.eval_episodes,
                    seed=cfg.seed,
                    progress=progress,
                    out=agent_dir / "real_scores.json",
                )
            if cfg.fidelity_episodes > 0:
                from agents.fidelity import FidelityConfig, fidelity

                with stage(f"iteration {i}: fidelity"):
                    fid = fidelity(
                        FidelityConfig(
                            checkpoint=str(checkpoint),
                            agent=str(agent_path),
                            envs=32,
                            steps=500,
                            real_episodes=cfg.fidelity_episodes,
                            seed=cfg.seed,
                        ),
                        agent_dir / "fidelity",
                        progress=progress,
                    )
                extra["fidelity"] = {
                    side: {k: fid[side][k] for k in ("points_lost", "points_won", "returns")}
                    for side in ("dream", "real")
                }
            metrics = read_config(checkpoint).metrics
            dream_meta = json.loads((agent_dir / "agent.json").read_text())
            ball_px = metrics.get("ball_px", metrics.get(_last_class_px(metrics), float("nan")))
            done = {
                "iteration": i,
                "real_steps": DatasetDir(data).counts()["steps"],
                "model_ball_px": float(ball_px),
                "model_point_recall": float(metrics.get("point_recall", float("nan"))),
                "dream_return": float(dream_meta.get("dream_return", float("nan"))),
                "real_mean": result["mean"],
                "real_std": result["std"],
                "real_scores": result["scores"],
                "checkpoint": str(checkpoint),
                "agent": str(agent_path),
                **extra,
            }
            state["rows"].append(done)
            write_json(state_path, state)
            log.info("\n%s", format_table(state["rows"]))
        previous_agent, previous_model = Path(done["agent"]), Path(done["checkpoint"])
    if cfg.final_episodes > 0:
        _final_agents(cfg, out, state, progress, stage)
    return state["rows"]


FINAL_EPISODE_SEED = 1000
"""First episode seed of the final agents' real games (``evaluate-agent --seed 1000``)."""
FINAL_SETTINGS = ("final_seeds", "final_episodes", "final_dream_steps", "final_n_envs")
"""Settings of the final agents alone: they may be changed on a finished loop."""


def _final_training(cfg: LoopConfig) -> dict[str, int]:
    """How the final agents train: their dream steps and parallel envs."""
    return {
        "dream_steps": cfg.final_dream_steps or cfg.dream_steps,
        "n_envs": cfg.final_n_envs or cfg.n_envs,
    }


def _final_agents(cfg: LoopConfig, out: Path, state: dict[str, Any], progress: bool, stage: _Stages) -> None:
    """Train the extra final agents in the last model's dream and score every final agent; each agent's
    result is saved as soon as it exists, so an interrupted run goes on from the next one."""
    from agents.dream import DreamConfig, train_in_dream
    from agents.evaluate import evaluate_agent
    from dataset_tools.dataset import write_json
    from dataset_tools.games import resolve_game

    if cfg.final_seeds < 1:
        raise ValueError(f"final_seeds must be >= 1, got {cfg.final_seeds}")
    if cfg.final_dream_steps < 0 or cfg.final_n_envs < 0:
        raise ValueError(
            f"final_dream_steps and final_n_envs must be >= 0, got {cfg.final_dream_steps}, {cfg.final_n_envs}"
        )
    last = next(r for r in state["rows"] if r["iteration"] == cfg.iterations - 1)
    training, iteration_training = _final_training(cfg), {"dream_steps": cfg.dream_steps, "n_envs": cfg.n_envs}
    as_iterations = training == iteration_training
    # results of final agents trained otherwise (a result saved before these settings existed trained as
    # the iterations' agents) are kept in "final_earlier", not mixed with these
    final, earlier = [], []
    for f in state.get("final_earlier", []) + state.get("final", []):
        (final if {**iteration_training, **f.get("training", {})} == training else earlier).append(f)
    if (final, earlier) != (state.get("final", []), state.get("final_earlier", [])):
        state["final"], state["final_earlier"] = final, earlier
        write_json(out / "loop.json", state)
    final = state.setdefault("final", [])
    suffix = "" if as_iterations else f"_{training['dream_steps']}steps_{training['n_envs']}envs"
    for k in range(cfg.final_seeds):
        seed = cfg.seed + k
        if any(f["seed"] == seed for f in final):
            continue
        agent_dir = out / "agents" / f"final_s{seed}{suffix}"
        if k == 0 and as_iterations:
            agent = Path(last["agent"])
        elif _trained(agent_dir, **training):  # trained before an interruption
            agent = agent_dir / "agent.pt"
        else:
            dream = DreamConfig(
                env=last["checkpoint"],
                steps=training["dream_steps"],
                n_envs=training["n_envs"],
                max_episode_steps=cfg.dream_episode_steps,
                seed=seed,
                eval_every=0,
                eval_episodes=0,
            )
            with stage(f"final agent, seed {seed}: {training['dream_steps']} dream steps"):
                agent = train_in_dream(dream, agent_dir, progress=progress)
        with stage(f"final agent, seed {seed}: {cfg.final_episodes} real games"):
            result = evaluate_agent(
                agent,
                resolve_game(cfg.game),
                cfg.final_episodes,
                seed=FINAL_EPISODE_SEED,
                progress=progress,
                out=agent.parent / "final_scores.json",
            )
        final.append(
            {
                "seed": seed,
                "agent": str(agent),
                "training": training,
                "mean": result["mean"],
                "std": result["std"],
                "scores": result["scores"],
            }
        )
        write_json(out / "loop.json", state)
        log.info("\n%s", format_final(final))


def _trained(agent_dir: Path, dream_steps: int, n_envs: int) -> bool:
    """Whether ``agent_dir`` holds an agent trained with ``n_envs`` dream envs whose training ran its
    ``dream_steps`` to the end."""
    meta_path = agent_dir / "agent.json"
    if not (meta_path.exists() and (agent_dir / "agent.pt").exists()):
        return False
    meta = json.loads(meta_path.read_text())
    return int(meta.get("dream_steps", 0)) >= dream_steps and int(meta.get("config", {}).get("n_envs", 0)) == n_envs


def format_final(final: list[dict[str, Any]]) -> str:
    """The final agents' table: one row per training seed and the mean over all their games."""
    if not final:
        return ""
    games = len(final[0]["scores"])
    lines = []
    training = final[0].get("training")
    if training:
        lines += [f"final agents: {training['dream_steps']:,} dream steps, {training['n_envs']} envs", ""]
    lines += [
        f"| final agent, training seed | real score, {games} games (episode seeds {FINAL_EPISODE_SEED}..) | per game |",
        "|---|---:|---|",
    ]
    for f in final:
        per_game = ", ".join(f"{s:+.0f}" for s in f["scores"])
        lines.append(f"| {f['seed']} | {f['mean']:.1f} +- {f['std']:.1f} | {per_game} |")
    mean = sum(sum(f["scores"]) for f in final) / sum(len(f["scores"]) for f in final)
    seeds = f"{len(final)} seed" + ("s" if len(final) > 1 else "")
    lines.append(f"| **mean of {seeds}** | **{mean:.1f}** | |")
    return "\n".join(lines)


def read_final(out: str | Path) -> list[dict[str, Any]]:
    """The final agents' results saved in ``out/loop.json`` (empty if none)."""
    path = Path(out) / "loop.json"
    return json.loads(path.read_text()).get("final", []) if path.exists() else []


def _episodes_after(ds: Any, steps: int) -> list[int]:
    """The episodes collected after the first ``steps`` real steps of the dataset ``ds`` (episodes are numbered
    in the order they were collected)."""
    from dataset_tools.episode import episode_index, read_meta

    out, total = [], 0
    for path in ds.episode_dirs():
        if total >= steps:
            out.append(episode_index(path))
        total += int(read_meta(path)["length"])
    return out


def _return_per_100(ds: Any, episodes: list[int]) -> float:
    """The real return per 100 steps over ``episodes`` of the dataset ``ds`` (from their saved metadata)."""
    from dataset_tools.episode import episode_name, read_meta

    metas = [read_meta(ds.episodes_dir / episode_name(e)) for e in episodes]
    return 100.0 * sum(float(m["episode_return"]) for m in metas) / max(1, sum(int(m["length"]) for m in metas))


def _last_class_px(metrics: dict[str, Any]) -> str:
    """``slot_dynamics`` logs ``class{c}_px`` per class; the last class is the smallest (Pong: the ball)."""
    keys = sorted((k for k in metrics if k.startswith("class") and k.endswith("_px")), key=lambda k: int(k[5:-3]))
    return keys[-1] if keys else "ball_px"
