"""The forward-model variants of reference 003: frame_transformer and asset_spatial_rnn, on real Pong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dataset_tools.sequences import SequenceBatch, SequenceDataset
from learned_envs.env import LearnedVectorEnv
from world_models import build_model, load_model
from world_models.config import ConfigError
from world_models.evaluation.evaluate import evaluate
from world_models.pixel.asset_spatial_rnn import AssetSpatialRNNConfig, SpriteRenderer, gaussian_blur
from world_models.pixel.frame_transformer import FrameTransformerConfig, shift_copies
from world_models.training import train

TINY = {
    "frame_transformer": FrameTransformerConfig(n_future=3, g_dim=16, nf=8, action_dim=4, kernel_size=7),
    "asset_spatial_rnn": AssetSpatialRNNConfig(n_future=3, hidden=16, nf=8, action_dim=4, sprite_size=6),
}
OVERRIDES = {
    "frame_transformer": ["g_dim=16", "kernel_size=7"],
    "asset_spatial_rnn": ["hidden=16", "sprite_size=6"],
}
COMMON = ["n_future=2", "nf=8", "action_dim=4", "batch_size=2", "n_contexts=3", "image_every=0", "steps=2"]


@pytest.fixture(scope="module")
def batch(pong_dataset: Path) -> SequenceBatch:
    data = SequenceDataset(pong_dataset, seq_len=5, split="train")
    return next(iter(data.loader(4, seed=0)))


@pytest.fixture(scope="module", params=sorted(TINY))
def trained(request: pytest.FixtureRequest, pong_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of each model after 2 steps of the one trainer (machinery, not quality)."""
    name = request.param
    run = tmp_path_factory.mktemp(name)
    return train(name, pong_dataset, run, [*COMMON, *OVERRIDES[name]], progress=False)


@pytest.mark.parametrize("name", sorted(TINY))
def test_contract_shapes(name: str, batch: SequenceBatch) -> None:
    torch.manual_seed(0)
    model = build_model(name, TINY[name], (3, 64, 64), 6)
    assert not model.stochastic and model.deterministic_start
    loss, logs = model.loss(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert {"recon", "reward_ce", "term_bce", "reward_acc", "term_acc"} <= set(logs)
    state = model.start(batch.frames[:, :2], batch.actions[:, :1])
    assert torch.equal(model.decode(state), batch.frames[:, 1])  # before any step: the last real frame
    state, reward, term = model.step(state, batch.actions[:, 1])
    frame = model.decode(state)
    assert frame.shape == (4, 3, 64, 64) and 0 <= frame.min() and frame.max() <= 1
    assert model.features(state).shape == (4, model.feature_dim)
    assert set(reward.tolist()) <= {-1.0, 0.0, 1.0} and ((0 <= term) & (term <= 1)).all()
    out = model.rollout(batch.frames[:, :2], batch.actions[:, :1], batch.actions[:, 1:4])
    assert out["frames"].shape == (4, 3, 3, 64, 64) and out["terminated"].shape == (4, 3)


@pytest.mark.parametrize("name", sorted(TINY))
def test_frame_loss_decreases_on_a_real_batch(name: str, batch: SequenceBatch, fit) -> None:
    torch.manual_seed(0)
    model = build_model(name, TINY[name], (3, 64, 64), 6)
    history = [logs["weighted_recon"] for logs in fit(model, batch, 12, lr=1e-2)]
    assert history[-1] < 0.9 * history[0]
    assert all(p.grad is not None for p in model.parameters())


def test_shift_kernels_move_the_frame() -> None:
    frame = torch.zeros(1, 2, 16, 16)
    frame[0, :, 5, 7] = 1.0
    taps = 5
    down, right = torch.zeros(1, 1, taps), torch.zeros(1, 1, taps)
    down[0, 0, 0] = 1.0  # row i reads row i - 2: content moves down by 2
    right[0, 0, 3] = 1.0  # column j reads column j + 1: content moves left by 1
    moved = shift_copies(frame, down, right)
    assert moved.shape == (1, 1, 2, 16, 16)
    assert moved[0, 0, 0, 7, 6] == 1.0 and moved.sum() == 2.0


def test_sprites_land_where_the_pose_says() -> None:
    renderer = SpriteRenderer(hidden=4, channels=1, size=32, n_sprites=1, sprite_size=4)
    with torch.no_grad():
        renderer.background.fill_(-20.0)  # black
        renderer.sprites.fill_(20.0)  # an opaque white 4 x 4 square
        renderer.pose.weight.zero_()
        renderer.pose.bias.copy_(torch.tensor([float(np.arctanh(0.5)), float(np.arctanh(-0.5)), 20.0]))
    with torch.no_grad():
        frame = renderer(torch.zeros(1, 4))[0, 0]  # centre x = 0.5, y = -0.5: pixel (8, 24) in a 32 x 32 frame
    rows, cols = torch.nonzero(frame > 0.5, as_tuple=True)
    assert rows.float().mean() == pytest.approx(7.5, abs=0.1) and cols.float().mean() == pytest.approx(23.5, abs=0.1)
    assert len(rows) == 16
    blurred = gaussian_blur(frame[None, None], 2.0)
    assert blurred.sum() == pytest.approx(frame.sum().item(), rel=1e-4) and blurred.max() < 0.9


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ConfigError, match="kernel_size"):
        FrameTransformerConfig(kernel_size=4)
    with pytest.raises(ConfigError, match="n_sprites"):
        AssetSpatialRNNConfig(n_sprites=0)


def test_trained_checkpoint_backs_a_learned_env(trained: Path) -> None:
    model, config = load_model(trained)
    assert config.step == 2 and config.model == model.name
    for obs_type, precision in (("frames", "float32"), ("latent", "bfloat16")):
        venv = LearnedVectorEnv(trained, 3, device="cpu", obs_type=obs_type, max_episode_steps=3, precision=precision)
        obs, _ = venv.reset(seed=0)
        for _ in range(4):  # past max_episode_steps: autoreset runs start() again
            obs, reward, term, trunc, _ = venv.step(np.array([0, 2, 3]))
        assert venv.observation_space.contains(obs) and reward.shape == term.shape == trunc.shape == (3,)


def test_evaluate_runs(trained: Path, pong_dataset: Path, tmp_path: Path) -> None:
    result = evaluate(trained, pong_dataset, tmp_path, horizon=3, max_sequences=2, progress=False)
    assert [row["step"] for row in result["per_step"]] == [1, 2, 3] and result["samples_per_window"] == 1
    assert all(np.isfinite(row["psnr_avg"]) for row in result["per_step"])
    assert (tmp_path / "metrics.json").exists()
