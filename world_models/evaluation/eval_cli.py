"""``learned-envs evaluate``, ``compare`` and ``plot``: thin commands over :mod:`world_models.evaluation.evaluate`,
:mod:`world_models.evaluation.compare` and :mod:`world_models.evaluation.plot` (added to the main command by ``learned_envs/cli.py``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dataset_tools.episode import DatasetError
from world_models.checkpoint import CheckpointError

_ERRORS: tuple[type[Exception], ...] = (CheckpointError, DatasetError, FileNotFoundError)


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None or value != value else format(value, spec)


def format_table(result: dict[str, Any]) -> str:
    """The compact per-step table printed by ``evaluate``."""
    head = f"{'step':>4} {'PSNR best':>9} {'avg':>6} {'worst':>6} {'copy':>6} {'SSIM avg':>8} {'copy':>6} {'ball err':>8} {'copy':>6}"
    lines = [head]
    for r in result["per_step"]:
        lines.append(
            f"{r['step']:>4} {_fmt(r['psnr_best'], '9.2f')} {_fmt(r['psnr_avg'], '6.2f')} {_fmt(r['psnr_worst'], '6.2f')}"
            f" {_fmt(r['psnr_copy'], '6.2f')} {_fmt(r['ssim_avg'], '8.3f')} {_fmt(r['ssim_copy'], '6.3f')}"
            f" {_fmt(r['ball_err'], '8.2f')} {_fmt(r['ball_err_copy'], '6.2f')}"
        )
    o = result["overall"]
    lines.append(
        f"overall: reward acc {_fmt(o.get('reward_acc'), '.3f')} (non-zero rewards {_fmt(o.get('reward_nonzero_acc'), '.3f')}"
        f" of {o.get('reward_nonzero_count', 0)}), termination acc {_fmt(o.get('term_acc'), '.3f')},"
        f" ball found {_fmt(o.get('ball_found'), '.3f')} (copy {_fmt(o.get('ball_found_copy'), '.3f')})"
    )
    return "\n".join(lines)


def _is_extractor(checkpoint: Path) -> bool:
    from world_models.base import Extractor, model_class
    from world_models.checkpoint import read_config, resolve_checkpoint

    return issubclass(model_class(read_config(resolve_checkpoint(checkpoint)).model), Extractor)


def _evaluate_extractor(args: argparse.Namespace) -> int:
    from world_models.evaluation.evaluate import EvaluationDataError
    from world_models.space.evaluate import CLASSIFIER_FILE, evaluate_space, format_table

    try:
        result = evaluate_space(
            args.checkpoint, args.data, args.out, args.max_frames, args.batch_size, args.device, args.seed
        )
    except (EvaluationDataError, *_ERRORS) as err:
        print(f"learned-envs: error: {err}", file=sys.stderr)
        return 2
    split = result["held_out"]
    print(
        f"{result['model']} at step {result['step']}: {result['frames']} of {split['frames']} held-out frames"
        f" (episodes {split['episodes']})"
    )
    print(format_table(result))
    out = Path(args.out)
    saved = [CLASSIFIER_FILE.format(n=n) for n, score in result["few_shot"].items() if "accuracy" in score]
    print(f"wrote {out / 'metrics.json'}, {', '.join(saved) or 'no classifier'}, z_what_pca.png there")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from world_models.evaluation.evaluate import EvaluationDataError, evaluate

    try:
        if _is_extractor(args.checkpoint):
            return _evaluate_extractor(args)
    except (ValueError, *_ERRORS) as err:
        print(f"learned-envs: error: {err}", file=sys.stderr)
        return 2
    try:
        result = evaluate(
            args.checkpoint,
            args.data,
            args.out,
            n_samples=args.samples,
            horizon=args.horizon,
            max_sequences=args.max_sequences,
            batch_size=args.batch_size,
            seed=args.seed,
            device=args.device,
        )
    except (EvaluationDataError, *_ERRORS) as err:
        print(f"learned-envs: error: {err}", file=sys.stderr)
        return 2
    kind = f"{result['samples_per_window']} samples" if result["stochastic"] else "deterministic"
    print(f"{result['model']} at step {result['step']}, {result['windows']} windows, {kind}")
    print(format_table(result))
    if "objects" in result:
        from world_models.objects.scoring import format_scores

        objects = result["objects"]
        print(f"the extractor on all {objects['frames']} frames of the held-out episodes {objects['episodes']}:")
        print(format_scores(objects))
    out = Path(args.out)
    print(f"wrote {out / 'metrics.json'}, {out / 'metrics.csv'}, {out / 'per_step.png'}, {out / 'prediction.gif'}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from world_models.evaluation.compare import CompareError, compare
    from world_models.evaluation.compare_report import markdown_table
    from world_models.evaluation.evaluate import EvaluationDataError

    try:
        result = compare(
            args.runs,
            args.data,
            args.out,
            n_samples=args.samples,
            horizon=args.horizon,
            max_sequences=args.max_sequences,
            batch_size=args.batch_size,
            seed=args.seed,
            device=args.device,
            val_fraction=args.val_fraction,
            speed_envs=args.speed_envs,
            speed_steps=args.speed_steps,
            speed_repeats=args.speed_repeats,
            reuse=args.reuse,
            progress=not args.no_progress,
        )
    except (CompareError, EvaluationDataError, *_ERRORS) as err:
        print(f"learned-envs: error: {err}", file=sys.stderr)
        return 2
    print(markdown_table(result))
    out = Path(args.out)
    print(f"wrote {out / 'compare.json'}, {out / 'compare.csv'}, {out / 'compare.md'}, {out / 'compare.png'}")
    return 0


def _closed_loop(args: argparse.Namespace) -> int:
    from world_models.evaluation.closed_loop import ClosedLoopConfig, closed_loop, markdown

    cfg = ClosedLoopConfig(
        checkpoint=str(args.checkpoint),
        data=str(args.data),
        envs=args.envs,
        steps=args.steps,
        every=args.every,
        samples=args.samples,
        horizon=args.horizon,
        max_serves=args.max_serves,
        seed=args.seed,
        device=args.device,
        agent=args.agent or "",
        settings=list(args.settings),
    )
    try:
        policy, obs_type = None, "latent"
        if args.agent:
            from agents.evaluate import load_agent

            policy, meta = load_agent(args.agent)
            obs_type = meta["obs_type"]
        result = closed_loop(cfg, args.out, policy, obs_type)
    except (ValueError, *_ERRORS) as err:
        print(f"learned-envs: error: {err}", file=sys.stderr)
        return 2
    print(markdown(result))
    out = Path(args.out)
    print(f"wrote {out / 'closed_loop.json'}, {out / 'closed_loop.md'}, {out / 'closed_loop.png'}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from world_models.evaluation.plot import plot_runs

    out = args.out if args.out is not None else Path(args.runs_dir) / "losses.png"
    try:
        runs = plot_runs(args.runs_dir, out)
    except _ERRORS as err:
        print(f"learned-envs: error: {err}", file=sys.stderr)
        return 2
    print(f"plotted {len(runs)} run(s) to {out}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` and ``plot`` subcommands to ``sub``."""
    e = sub.add_parser(
        "evaluate",
    )
    e.add_argument(
        "--checkpoint",
        required=True,
        type=Path,
        help="learned-env id, or checkpoint directory or run directory (newest)",
    )
    e.add_argument("--data", required=True, type=Path, help="dataset directory (same game and env settings)")
    e.add_argument(
        "--out", required=True, type=Path, help="directory for metrics.json/.csv, per_step.png, prediction.gif"
    )
    e.add_argument("--samples", type=int, default=100, help="samples per window for stochastic models (default 100)")
    e.add_argument("--horizon", type=int, default=10, help="predicted steps per window (default 10)")
    e.add_argument("--max-sequences", type=int, default=64, help="most windows evaluated (default 64)")
    e.add_argument("--batch-size", type=int, default=16, help="windows (extractors: frames) per batch (default 16)")
    e.add_argument("--max-frames", type=int, default=None, help="extractors: most held-out frames scored (all)")
    e.add_argument("--seed", type=int, default=0, help="seed of the samples (default 0)")
    e.add_argument("--device", default="auto", help="auto, cpu, cuda ... (default auto)")
    e.set_defaults(func=_evaluate)
    c = sub.add_parser("compare")
    c.add_argument("runs", nargs="+", type=Path, help="run directories (newest checkpoint) or checkpoint directories")
    c.add_argument("--data", required=True, type=Path, help="dataset directory whose held-out episodes all see")
    c.add_argument(
        "--out", required=True, type=Path, help="directory for compare.json/.csv/.md/.png and per-model dirs"
    )
    c.add_argument("--samples", type=int, default=100, help="samples per window for stochastic models (default 100)")
    c.add_argument("--horizon", type=int, default=10, help="predicted steps per window (default 10)")
    c.add_argument("--max-sequences", type=int, default=64, help="most windows evaluated (default 64)")
    c.add_argument("--batch-size", type=int, default=16, help="windows per batch (default 16)")
    c.add_argument("--seed", type=int, default=0, help="seed of the samples (default 0)")
    c.add_argument("--device", default="auto", help="auto, cpu, cuda ... (default auto)")
    c.add_argument("--val-fraction", type=float, default=None, help="held-out share of episodes (default: first run's)")
    c.add_argument("--speed-envs", type=int, default=64, help="envs stepped at once for imagined steps/s (default 64)")
    c.add_argument("--speed-steps", type=int, default=10, help="imagined steps per timed run (default 10)")
    c.add_argument("--speed-repeats", type=int, default=5, help="timed runs, median taken (default 5)")
    c.add_argument("--reuse", action="store_true", help="reuse a model's metrics.json made with the same settings")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.set_defaults(func=_compare)
    cl = sub.add_parser("closed-loop")
    cl.add_argument("--checkpoint", required=True, type=Path, help="learned-env id, checkpoint or run directory (Pong)")
    cl.add_argument("--data", required=True, type=Path, help="Pong dataset: its held-out episodes give serves, points")
    cl.add_argument("--out", required=True, type=Path, help="directory for closed_loop.json/.md/.png")
    cl.add_argument("--envs", type=int, default=32, help="dreams (and real games) of random actions (default 32)")
    cl.add_argument("--steps", type=int, default=1000, help="steps of each (default 1000)")
    cl.add_argument("--every", type=int, default=100, help="scene check every this many steps (default 100)")
    cl.add_argument("--samples", type=int, default=8, help="dreams per held-out serve (default 8)")
    cl.add_argument("--horizon", type=int, default=10, help="open-loop steps per reward window (default 10)")
    cl.add_argument("--max-serves", type=int, default=40, help="most held-out serves (default 40)")
    cl.add_argument("--agent", default=None, help="a dream agent: its actions drive a second set of dreams")
    cl.add_argument("--seed", type=int, default=0)
    cl.add_argument("--device", default="cpu", help="cpu, cuda, auto ... (default cpu)")
    cl.add_argument(
        "--settings",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="imagination settings of the model (e.g. temperature=0.8); the checkpoint's own otherwise",
    )
    cl.set_defaults(func=_closed_loop)
    p = sub.add_parser("plot")
    p.add_argument("runs_dir", type=Path)
    p.add_argument("--out", type=Path, default=None, help="PNG to write (default RUNS_DIR/losses.png)")
    p.set_defaults(func=_plot)
