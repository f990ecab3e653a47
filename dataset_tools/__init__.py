"""Dataset tools: ALE rollout collection, the episode format, preprocessing, motion targets, readers."""

from __future__ import annotations

from dataset_tools.collect import CollectConfig, CollectResult, collect
from dataset_tools.dataset import DatasetDir
from dataset_tools.episode import DatasetError, Episode
from dataset_tools.games import EnvSettings, UnknownGameError, make_env, resolve_game
from dataset_tools.preprocess import Preprocess, default_preprocess

_LAZY = {"SequenceBatch", "SequenceDataset"}  # torch readers: imported on first use, so collection
# workers (spawned processes that import this package) do not pay for importing torch


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from dataset_tools import sequences

        return getattr(sequences, name)
    raise AttributeError(f"module 'dataset_tools' has no attribute {name!r}")


__all__ = [
    "CollectConfig",
    "CollectResult",
    "DatasetDir",
    "DatasetError",
    "EnvSettings",
    "Episode",
    "Preprocess",
    "SequenceBatch",
    "SequenceDataset",
    "UnknownGameError",
    "collect",
    "default_preprocess",
    "make_env",
    "resolve_game",
]
