"""``learned-envs train``: parses arguments and calls :func:`world_models.training.train_grid`.

Examples::

    learned-envs train --model rnn_deconv --data data/pong --out runs/pong steps=20000 lr=3e-4
    learned-envs train --model space_time --config atari_pong.yaml --data data/pong --out runs/space seed=1
    learned-envs train --model rnn_deconv --data data/pong --out runs/grid seed=0,1,2   # 3 runs
    torchrun --nproc_per_node=2 -m learned_envs.cli train --model rnn_deconv ...          # DDP
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import fields
from pathlib import Path

from dataset_tools.episode import DatasetError
from world_models.base import MODELS
from world_models.checkpoint import CheckpointError
from world_models.config import read_config_file
from world_models.training import TrainConfig, TrainError, config_file, train_grid


def _load_models() -> None:
    """Register every model: the one list is the imports of :mod:`world_models`."""
    importlib.import_module("world_models")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand to ``sub``; its ``func`` returns the exit code."""
    _load_models()
    p = sub.add_parser(
        "train",
        description="Train a world model. Trailing key=value pairs override the train config "
        f"({', '.join(f.name for f in fields(TrainConfig))}) and the model's config; a value with commas "
        "(seed=0,1) runs every combination, each in OUT/<key=value>/.",
    )
    p.add_argument("--model", required=True, help=f"registered model: {', '.join(sorted(MODELS)) or '(none)'}")
    p.add_argument("--data", required=True, type=Path, help="dataset directory (made by create-dataset)")
    p.add_argument("--out", required=True, type=Path, help="run directory (checkpoints, logs, samples)")
    p.add_argument(
        "--config",
        default=None,
        help="YAML file of flat 'key: value' overrides applied before the command line's; a bare name "
        "(atari_pong.yaml) is looked up in the model's configs/ folder",
    )
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Train from parsed arguments; a bad config, model, dataset or checkpoint, or divergence -> 2."""
    from world_models.base import pick_threads

    print(pick_threads()[1])  # stdout: stderr is kept for the one-line errors
    try:
        overrides = list(args.overrides)
        if args.config is not None:
            overrides = read_config_file(config_file(args.config, args.model)) + overrides
        runs = train_grid(args.model, args.data, args.out, overrides, resume=args.resume, progress=args.progress)
    except (ValueError, DatasetError, CheckpointError, TrainError) as err:  # ConfigError is a ValueError
        print(f"learned-envs: error: {err}", file=sys.stderr)
        return 2
    for ckpt in runs:
        print(f"final checkpoint: {ckpt}")
    return 0
