"""``learned-envs``: one command with subcommands (``validate``, ``score-boxes``, ``create-dataset``,
and, from the modules named in :data:`COMMANDS`, ``train``, ``evaluate``, ``play``, ``dream`` ...)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

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


# Subcommands defined next to the code they run: command -> (module whose ``add_parser(sub)`` adds it and
# sets its ``func``, one-line help). Only the invoked command's module is imported (torch and SB3 load
# then, not for ``--help``); the other commands are listed by name and help.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("world_models.train_cli", "train a world model on a dataset"),
    "evaluate": (
        "world_models.evaluation.eval_cli",
        "open-loop PSNR / SSIM / object errors of a checkpoint on held-out episodes (object extractors: box "
        "F-scores, AP, counting and few-shot z_what accuracy against RAM truth)",
    ),
    "compare": (
        "world_models.evaluation.eval_cli",
        "one table of several trained models on the same held-out episodes",
    ),
    "closed-loop": (
        "world_models.evaluation.eval_cli",
        "Pong dreams on their own output: valid frames over 1,000 steps, serves' directions, reward recall",
    ),
    "plot": ("world_models.evaluation.eval_cli", "plot recon / kl of every train_log.csv under a runs directory"),
    "play": ("agents.cli", "GIF / MP4 of the dream next to the real game, same actions"),
    "dream": ("agents.cli", "train an SB3 agent inside a learned env, scored on the real game"),
    "evaluate-agent": ("agents.cli", "score a dream-trained agent on the real game (Atari 100k protocol)"),
    "fidelity": (
        "agents.cli",
        "play one agent in a learned env and in the real game: does the dream keep the game's rules for it?",
    ),
    "quickstart": ("agents.cli", "train an agent in the shipped dream, score it on the real game, write a report"),
    "loop": (
        "agents.cli",
        "SimPLe-style loop: collect real steps, train the world model, train the agent in the dream, repeat",
    ),
    "suite": (
        "agents.cli",
        "one table of dream agents' real scores per game, human-normalised, beside random, human, SimPLe, DIAMOND",
    ),
}


class _Helped:
    """The subparsers as a plugin sees them: each command gets its help line (and, lacking one, its
    description) from :data:`COMMANDS`."""

    def __init__(self, sub: argparse._SubParsersAction) -> None:
        self.sub = sub

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs.setdefault("help", COMMANDS[name][1])
        kwargs.setdefault("description", COMMANDS[name][1])
        return self.sub.add_parser(name, **kwargs)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``learned-envs`` parser. Given ``argv``, only the module of the command it names is imported."""
    import importlib

    p = argparse.ArgumentParser(prog="learned-envs", description="Learned simulators of Atari games.")
    sub = p.add_subparsers(dest="command", required=True)
    command = next((a for a in argv if not a.startswith("-")), None) if argv is not None else None
    modules = {module for module, _ in COMMANDS.values()}
    if argv is not None:
        modules = {COMMANDS[command][0]} if command in COMMANDS else set()
    for module in dict.fromkeys(module for module, _ in COMMANDS.values()):
        if module in modules:
            importlib.import_module(module).add_parser(_Helped(sub))
    for name, (module, help_line) in COMMANDS.items():
        if module not in modules:
            sub.add_parser(name, help=help_line)  # listed only: this run does not parse it
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


def _resolve_id(value: str | Path) -> str | Path:
    if Path(value).exists() or "/" in str(value):  # a path: its command says what is wrong with it
        return value
    from learned_envs.registration import resolve_env

    _, path = resolve_env(str(value))  # an unknown name: a one-line error listing the ids
    return type(value)(path) if isinstance(value, Path) else str(path)


def _resolve_ids(args: argparse.Namespace) -> None:
    """Every command's ``--checkpoint`` (and ``compare``'s runs) takes a registered learned-env id as well as
    a path."""
    if getattr(args, "checkpoint", None) is not None:
        args.checkpoint = _resolve_id(args.checkpoint)
    if args.command == "compare":
        args.runs = [_resolve_id(run) for run in args.runs]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        _resolve_ids(args)
        return int(args.func(args))
    except (DatasetError, ValueError, FileNotFoundError) as err:
        print(f"learned-envs: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
