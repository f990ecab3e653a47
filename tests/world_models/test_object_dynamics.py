"""object_dynamics: object vectors, the renderer, the model contract, training from the CLI."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from dataset_tools.sequences import SequenceDataset
from world_models import build_model, load_model
from world_models.object_dynamics import ObjectDynamicsConfig
from world_models.pong_objects import frame_vectors, ram_vectors, render
from world_models.train import TrainError, train

TINY = ObjectDynamicsConfig(n_past=3, n_future=4, hidden=32, layers=2)


def _batch(pong_dataset: Path, batch_size: int = 8, frames: bool = True):
    data = SequenceDataset(pong_dataset, TINY.n_past + TINY.n_future, split="train", frames=frames)
    return next(iter(data.loader(batch_size, seed=0)))


def test_vectors_from_ram_and_frames_agree_and_render_redraws_the_frame(pong_dataset: Path) -> None:
    data = SequenceDataset(pong_dataset, 1, split="all")
    items = [data[i] for i in range(5, len(data), 7)]  # skip each episode's odd-coloured first frame
    frames = torch.stack([it["frames"][0] for it in items])  # (N, C, H, W)
    ram = torch.stack([it["ram"][0] for it in items]).numpy()
    from_ram, from_frames = ram_vectors(ram), frame_vectors(frames, data.preprocess)
    assert from_ram.shape == (len(items), 3, 3)
    assert (from_ram[..., 0] == from_frames[..., 0]).mean() > 0.99
    both = (from_ram[..., 0] > 0) & (from_frames[..., 0] > 0)
    err_px = np.abs(from_ram[..., 1:] - from_frames[..., 1:])[both] * [80, 105]
    assert np.median(err_px) < 0.5 and err_px.max() < 3
    drawn = render(torch.from_numpy(from_ram), data.preprocess)
    assert drawn.shape == frames.shape
    psnr = -10 * torch.log10(((drawn - frames) ** 2).mean(dim=(1, 2, 3)))
    assert psnr.median() > 40  # the drawn frame is the real one up to rounding


def test_contract_shapes_and_reproducible_sampling(pong_dataset: Path) -> None:
    torch.manual_seed(0)
    model = build_model("object_dynamics", TINY, (3, 64, 64), 6)
    batch = _batch(pong_dataset)
    state = model.start(batch.frames[:, :3], batch.actions[:, :2])
    assert model.features(state).shape == (8, model.feature_dim) == (8, 27)
    assert model.decode(state).shape == (8, 3, 64, 64)
    outs = []
    for _ in range(2):
        gen = torch.Generator().manual_seed(3)
        outs.append(model.rollout(batch.frames[:, :3], batch.actions[:, :2], batch.actions[:, 2:6], gen))
    assert outs[0]["frames"].shape == (8, 4, 3, 64, 64)
    assert torch.equal(outs[0]["frames"], outs[1]["frames"])
    assert set(outs[0]["rewards"].unique().tolist()) <= {-1.0, 0.0, 1.0}


@pytest.mark.parametrize(
    "changes",
    [{}, {"open_loop": True}, {"bounce": True}, {"modes": 2}, {"noise_px": 2.0, "jitter_px": 0.5}, {"contact": True}],
    ids=["teacher-forced", "open-loop", "bounce", "modes", "noise", "contact"],
)
def test_learns_a_real_batch_without_reading_frames(pong_dataset: Path, changes: dict) -> None:
    torch.manual_seed(0)
    model = build_model("object_dynamics", dataclasses.replace(TINY, **changes), (3, 64, 64), 6)
    batch = _batch(pong_dataset, 16, frames=False)
    assert batch.frames.numel() == 0
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    first = None
    for _ in range(60):
        loss, logs = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.5 * first
    assert {"state", "mode_ce", "flip_bce", "reward_ce", "player_px", "enemy_px", "point_recall"} <= set(logs)
    assert (logs["flip_bce"] > 0) == bool(changes.get("bounce")) and (logs["mode_ce"] > 0) == ("modes" in changes)
    state = model.start(torch.zeros(2, TINY.n_past, 3, 64, 64), torch.zeros(2, TINY.n_past - 1, dtype=torch.long))
    assert model.step(state, torch.zeros(2, dtype=torch.long)).state["window"].shape == (2, TINY.n_past, 3, 3)


def test_trains_from_the_cli_runner_and_refuses_other_games(pong_dataset: Path, tmp_path: Path) -> None:
    ckpt = train(
        "object_dynamics",
        pong_dataset,
        tmp_path / "run",
        ["steps=3", "batch_size=4", "n_past=2", "n_future=2", "hidden=16", "layers=1", "image_every=3"],
        progress=False,
    )
    model, config = load_model(ckpt)
    assert config["model"] == "object_dynamics" and model.crop.tolist() == [34.0, 194.0, 0.0, 160.0]
    assert (tmp_path / "run" / "samples" / "step_00000003.gif").exists()
    with pytest.raises(ValueError, match="n_past >= 2"):
        build_model("object_dynamics", ObjectDynamicsConfig(n_past=1), (3, 64, 64), 6)
    model = build_model("object_dynamics", TINY, (3, 64, 64), 6)
    from dataset_tools.preprocess import default_preprocess

    with pytest.raises(ValueError, match="Breakout"):
        model.bind_data("Breakout", default_preprocess("Breakout"))
    assert issubclass(TrainError, RuntimeError)


def test_training_noise_shifts_only_present_objects_and_only_in_training(pong_dataset: Path) -> None:
    model = build_model("object_dynamics", dataclasses.replace(TINY, noise_px=3.0), (3, 64, 64), 6)
    window = torch.from_numpy(ram_vectors(_batch(pong_dataset, 16, frames=False).ram.numpy()))[:, :3]
    noisy = model._noisy(window)
    assert torch.equal(noisy[..., 0], window[..., 0])  # presence untouched
    absent = window[..., 0] == 0
    assert torch.equal(noisy[absent], window[absent])  # absent objects stay at 0
    assert torch.equal(noisy[:, :, 2], window[:, :, 2])  # the ball stays exact
    paddles = ~absent[:, :, :2]
    shift = (noisy - window)[:, :, :2, 1:][paddles] * torch.tensor([80.0, 105.0])
    assert 1.5 < shift.std().item() < 4.5
    moves = (noisy[:, 1:] - noisy[:, :-1]) - (window[:, 1:] - window[:, :-1])  # one offset per window:
    both = (window[:, 1:, :, :1] * window[:, :-1, :, :1]).expand_as(moves[..., :2]) > 0
    assert moves[..., 1:][both].abs().max() < 1e-5  # velocities are kept
    plain = build_model("object_dynamics", TINY, (3, 64, 64), 6)
    assert plain._noisy(window) is window


def test_contact_features_say_when_and_where_the_ball_meets_a_paddle() -> None:
    model = build_model("object_dynamics", dataclasses.replace(TINY, n_past=2, contact=True), (3, 64, 64), 6)
    window = torch.zeros(1, 2, 3, 3)
    window[0, :, 0] = torch.tensor([[1.0, 0.75, 0.1], [1.0, 0.75, 0.1]])  # player, still
    window[0, :, 1] = torch.tensor([[1.0, -0.8, 0.0], [1.0, -0.8, 0.0]])  # enemy
    window[0, :, 2] = torch.tensor([[1.0, 0.35, 0.0], [1.0, 0.45, 0.02]])  # ball moving right and down
    diffs = window[:, 1:, :, 1:] - window[:, :-1, :, 1:]
    approaching, steps, miss = model._contact(window, diffs).view(3, 2)
    assert approaching.tolist() == [1.0, 0.0]  # towards the player, away from the enemy
    assert steps[0].item() == pytest.approx(3.0 / 8.0)  # 0.3 to go at 0.1 per step: 3 of 8 steps
    assert miss[0].item() == pytest.approx((0.02 + 3 * 0.02 - 0.1) * 4.0)  # y at contact minus the paddle's
    assert steps[1].item() == pytest.approx(1.0) and miss[1].item() == pytest.approx((0.02 + 8 * 0.02) * 4)
    window[0, 0, 2, 0] = 0.0  # the ball seen once: no velocity, no contact features
    assert not model._contact(window, window[:, 1:, :, 1:] - window[:, :-1, :, 1:]).any()
