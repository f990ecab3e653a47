"""``learned-envs``: one command with subcommands (``validate``, ``score-boxes``, ``create-dataset``,
and, from the modules in :data:`PLUGINS`, ``train``, ``evaluate``, ``plot``, ``play``, ``dream``,
``evaluate-agent``)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from dataset_tools.dataset import DatasetDir
from dataset_tools.episode import DatasetError


def _validate(args: argparse.Namespace) -> int:
    ds = DatasetDir(args.dir)
    problems = ds.validate()
    if problems:
        for p in problems:
            print(f"invalid: {p}", file=sys.stderr)
        print(f"{args.dir}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    counts = ds.counts()
    print(f"{args.dir}: valid ({counts['episodes']} episodes, {counts['steps']} steps)")
    return 0


def _score_boxes(args: argparse.Namespace) -> int:
    from dataset_tools.scoring import score_dataset

    scores = score_dataset(DatasetDir(args.dir), max_dist=args.max_dist)
    print(f"motion boxes vs RAM truth over {scores.frames} frames (centre distance <= {args.max_dist:g} px)")
    print(f"{'class':<12}{'precision':>10}{'recall':>10}{'f1':>8}{'tp':>8}{'fp':>8}{'fn':>8}")
    for name, s in scores.per_class.items():
        print(f"{name:<12}{s.precision:>10.3f}{s.recall:>10.3f}{s.f1:>8.3f}{s.tp:>8d}{s.fp:>8d}{s.fn:>8d}")
    if args.json:
        args.json.write_text(json.dumps(scores.as_dict(), indent=1))
    return 0


def _create_dataset(args: argparse.Namespace) -> int:
    from dataset_tools.cli import main as create_main

    return create_main(args.rest)


# Subcommands defined next to the code they run: "module:function" adds a parser to `sub` and
# sets its `func`. A module that is missing (not built yet) is skipped.
PLUGINS = (
    "world_models.train_cli:add_parser",
    "world_models.eval_cli:add_parser",
    "learned_envs.play:add_parser",
    "agents.cli:add_parser",
)


def _add_plugins(sub: argparse._SubParsersAction) -> None:
    import importlib

    for spec in PLUGINS:
        module, func = spec.split(":")
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name == module:
                continue
            raise
        getattr(mod, func)(sub)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="learned-envs", description="Learned simulators of Atari games.")
    sub = p.add_subparsers(dest="command", required=True)
    _add_plugins(sub)
    v = sub.add_parser("validate", help="check every shard of a dataset")
    v.add_argument("dir", type=Path)
    v.set_defaults(func=_validate)
    s = sub.add_parser("score-boxes", help="precision / recall of motion boxes against RAM ground truth")
    s.add_argument("dir", type=Path)
    s.add_argument("--max-dist", type=float, default=5.0, help="centre distance (px) that counts as a match")
    s.add_argument("--json", type=Path, default=None, help="also write the scores here")
    s.set_defaults(func=_score_boxes)
    c = sub.add_parser("create-dataset", help="same as the create-dataset command", add_help=False)
    c.add_argument("rest", nargs=argparse.REMAINDER)
    c.set_defaults(func=_create_dataset)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return int(args.func(args))
    except (DatasetError, ValueError, FileNotFoundError) as err:
        print(f"learned-envs: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
