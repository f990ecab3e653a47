"""Dataset tools: ALE rollout collection, the episode format, preprocessing, motion targets, readers."""

from __future__ import annotations

from dataset_tools.collect import CollectConfig, CollectResult, collect
from dataset_tools.dataset import DatasetDir
from dataset_tools.episode import DatasetError, Episode
from dataset_tools.games import EnvSettings, UnknownGameError, make_env, resolve_game
from dataset_tools.preprocess import Preprocess, default_preprocess
from dataset_tools.sequences import SequenceBatch, SequenceDataset

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
