"""Shared fixtures: small datasets collected from the real ALE game, once per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dataset_tools.collect import CollectConfig, collect
from dataset_tools.games import EnvSettings


def _collect(root: Path, **kwargs) -> Path:
    cfg = CollectConfig(out=root, **kwargs)
    collect(cfg, progress=False)
    return root


@pytest.fixture(scope="session")
def pong_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Pong, scripted agent, 3 episodes of at most 200 steps (about 600 frames). Read-only: copy to modify."""
    root = tmp_path_factory.mktemp("data") / "pong"
    settings = EnvSettings(game="Pong", max_episode_steps=200)
    return _collect(root, env=settings, episodes=3, agent="scripted", seed=0)


@pytest.fixture
def pong_copy(pong_dataset: Path, tmp_path: Path) -> Path:
    """A private copy of ``pong_dataset`` that a test may change."""
    dst = tmp_path / "pong"
    shutil.copytree(pong_dataset, dst)
    return dst
