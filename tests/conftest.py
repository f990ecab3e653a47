"""Shared fixtures: small datasets collected from the real ALE game, once per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agents import make_agent
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
    return _collect(root, env=settings, episodes=3, agent="scripted", make_agent=make_agent, seed=0)


@pytest.fixture
def pong_copy(pong_dataset: Path, tmp_path: Path) -> Path:
    """A private copy of ``pong_dataset`` that a test may change."""
    dst = tmp_path / "pong"
    shutil.copytree(pong_dataset, dst)
    return dst


@pytest.fixture(scope="session")
def tiny_checkpoint(pong_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny rnn_deconv checkpoint over the Pong fixture (tests the machinery, not quality)."""
    import dataclasses

    import torch

    from dataset_tools.dataset import DatasetDir
    from learned_envs.contexts import contexts_from_dataset
    from world_models import build_model
    from world_models.checkpoint import CheckpointConfig, save_checkpoint
    from world_models.pixel.rnn_deconv import RNNDeconvConfig

    torch.manual_seed(0)
    cfg = RNNDeconvConfig(n_past=2, n_future=3, hidden=32, nf=8, action_dim=8)
    model = build_model("rnn_deconv", cfg, (3, 64, 64), 6)
    manifest = DatasetDir(pong_dataset).read_manifest()
    info = CheckpointConfig(
        model="rnn_deconv",
        model_config=dataclasses.asdict(cfg),
        frame_shape=(3, 64, 64),
        n_actions=6,
        action_meanings=manifest["action_meanings"],
        game="Pong",
        env=manifest["env"],
        preprocess=manifest["preprocess"],
        dataset={"path": str(pong_dataset)},
        command="tests/conftest.py",
    )
    context = contexts_from_dataset(pong_dataset, info, n=16)
    run = tmp_path_factory.mktemp("ckpt")
    return save_checkpoint(run, 1, model, info, context=context)


@pytest.fixture(scope="session")
def fit():
    """``fit(model, batch, steps, lr=3e-3)``: that many Adam updates of a world model on one batch; returns
    every step's logs (the model's, taken before the update) with its ``loss``."""

    def fit(model, batch, steps: int, lr: float = 3e-3) -> list[dict[str, float]]:
        import torch

        opt = torch.optim.Adam(model.parameters(), lr=lr)
        history = []
        for _ in range(steps):
            loss, logs = model.loss(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            assert "loss" not in logs
            history.append({**logs, "loss": loss.item()})
        return history

    return fit


@pytest.fixture(scope="session")
def tiny_object_checkpoint(pong_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny object_dynamics checkpoint trained for a few steps on the Pong fixture (machinery, not quality)."""
    from world_models.training import train

    run = tmp_path_factory.mktemp("objects")
    overrides = ["steps=5", "batch_size=4", "n_past=2", "n_future=2", "hidden=16", "layers=1", "image_every=0"]
    return train("object_dynamics", pong_dataset, run, overrides, progress=False)
