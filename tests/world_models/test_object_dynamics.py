"""object_dynamics: object vectors, the renderer, the model contract, training from the CLI."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from dataset_tools.sequences import SequenceDataset
from world_models import build_model, load_model
from world_models.objects.object_dynamics import (
    PIXELS,
    ObjectDynamics,
    ObjectDynamicsConfig,
    move_vocabulary,
    near_a_paddle,
    object_moves,
)
from world_models.objects.pong_objects import frame_vectors, ram_vectors, render
from world_models.training import TrainError, train

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
    [
        {},
        {"open_loop": True},
        {"bounce": True},
        {"modes": 2},
        {"noise_px": 2.0, "jitter_px": 0.5},
        {"contact": True},
        {"move_classes": 12},
        {"move_classes": 12, "joint_moves": True, "event_weight": 0.0, "decision_weight": 10.0},
    ],
    ids=["teacher-forced", "open-loop", "bounce", "modes", "noise", "contact", "move-classes", "joint-moves"],
)
def test_learns_a_real_batch_without_reading_frames(pong_dataset: Path, changes: dict, fit) -> None:
    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY, **changes)
    ObjectDynamics.prepare_data(cfg, pong_dataset)  # fills move_vocab with move_classes, else nothing
    model = build_model("object_dynamics", cfg, (3, 64, 64), 6)
    batch = _batch(pong_dataset, 16, frames=False)
    assert batch.frames.numel() == 0
    first, *_, logs = fit(model, batch, 60)
    assert logs["loss"] < 0.5 * first["loss"]
    assert {"state", "mode_ce", "flip_bce", "reward_ce", "player_px", "enemy_px", "point_recall"} <= set(logs)
    assert (logs["flip_bce"] > 0) == bool(changes.get("bounce")) and (logs["mode_ce"] > 0) == ("modes" in changes)
    assert (logs["move_ce"] > 0) == ("move_classes" in changes) == ("ball_move_acc" in logs)
    state = model.start(torch.zeros(2, TINY.n_past, 3, 64, 64), torch.zeros(2, TINY.n_past - 1, dtype=torch.long))
    assert model.step(state, torch.zeros(2, dtype=torch.long)).state["window"].shape == (2, TINY.n_past, 3, 3)


def test_trains_from_the_cli_runner_and_refuses_other_games(pong_dataset: Path, tmp_path: Path) -> None:
    ckpt = train(
        "object_dynamics",
        pong_dataset,
        tmp_path / "run",
        [
            "steps=3",
            "batch_size=4",
            "n_past=2",
            "n_future=2",
            "hidden=16",
            "layers=1",
            "image_every=3",
            "move_classes=4",
        ],
        progress=False,
    )
    model, config = load_model(ckpt)
    assert config.model == "object_dynamics" and model.crop.tolist() == [34.0, 194.0, 0.0, 160.0]
    assert model.vocab.shape == (3, 4, 2) and np.array(config.model_config["move_vocab"]).shape == (3, 4, 2)
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


def test_move_vocabulary_lists_each_objects_most_common_moves(pong_dataset: Path) -> None:
    v = np.zeros((6, 3, 3), dtype=np.float32)
    v[:, 2, 0] = 1.0
    v[:, 2, 1] = np.array([0, 4, 8, 12, 8, 4]) / 80.0  # the ball: +4 px three times, -4 px twice
    v[3, 2, 0] = 0.0  # ... but unseen in frame 3: the moves into and out of it do not count
    assert object_moves(v)[2].tolist() == [[4.0, 0.0], [4.0, 0.0], [-4.0, 0.0]]
    vocab = move_vocabulary([v], 3)
    assert vocab[2] == [[4.0, 0.0], [-4.0, 0.0], [4.0, 0.0]]  # most common first, padded with it
    assert vocab[0] == [[0.0, 0.0]] * 3  # never seen: no move
    cfg = dataclasses.replace(TINY, move_classes=16)
    ObjectDynamics.prepare_data(cfg, pong_dataset)
    real = np.array(cfg.move_vocab)  # (3, 16, 2) from the dataset's RAM
    assert real.shape == (3, 16, 2) and (real[:2, :, 0] == 0).all()  # paddles never move sideways
    assert (np.abs(real[2, :4, 0]) >= 2).all()  # the ball's common moves all go sideways
    with pytest.raises(ValueError, match="fills it from the data"):
        build_model("object_dynamics", dataclasses.replace(TINY, move_classes=16), (3, 64, 64), 6)
    with pytest.raises(ValueError, match="joint_moves needs move_classes"):
        build_model("object_dynamics", dataclasses.replace(TINY, joint_moves=True), (3, 64, 64), 6)
    with pytest.raises(ValueError, match="modes=1"):
        build_model("object_dynamics", dataclasses.replace(cfg, modes=2), (3, 64, 64), 6)


def test_move_choices_move_seen_objects_by_a_listed_move_and_place_new_ones_by_regression() -> None:
    vocab = [
        [[0.0, 0.0], [0.0, 6.0], [0.0, -6.0]],
        [[0.0, 0.0], [0.0, 4.0], [0.0, -4.0]],
        [[4.0, 8.0], [-4.0, 4.0], [8.0, 0.0]],
    ]
    cfg = dataclasses.replace(TINY, n_past=2, move_classes=3, move_vocab=vocab, sample_presence=False)
    model = build_model("object_dynamics", cfg, (3, 64, 64), 6)
    with torch.no_grad():
        model.move_head.weight.zero_()
        bias = torch.zeros(3, 3, 3)  # (object, move, [logit, dx, dy])
        bias[:, 1, 0] = 50.0  # every object picks move 1
        bias[2, 1, 1:] = torch.tensor([0.5, -0.5])  # the ball's move 1 with a correction
        model.move_head.bias.copy_(bias.flatten())
        model.objects_head.weight.zero_()
        model.objects_head.bias.zero_()
        model.objects_head.bias[[0, 3, 6]] = 50.0  # all present
    window = torch.zeros(2, 2, 3, 3)
    window[:, :, :, 0] = 1.0
    window[:, :, 0, 1:] = torch.tensor([0.75, 0.1])
    window[:, :, 1, 1:] = torch.tensor([-0.8, -0.2])
    window[:, :, 2, 1:] = torch.tensor([0.1, 0.3])
    window[1, -1, 2] = 0.0  # env 1: the ball is not seen in the last frame, so it is placed by regression
    state = {"window": window, "actions": torch.zeros(2, 1, dtype=torch.long)}
    new = model.step(state, torch.zeros(2, dtype=torch.long), torch.Generator().manual_seed(0)).state["window"][:, -1]
    pixels = torch.tensor(PIXELS)
    moved = (new[0, :, 1:] - window[0, -1, :, 1:]) * pixels
    assert torch.allclose(moved, torch.tensor([[0.0, 6.0], [0.0, 4.0], [-3.5, 3.5]]), atol=1e-4)
    assert torch.allclose(new[1, 2, 1:], torch.zeros(2), atol=1e-6)  # regression from 0 with a zero head
    assert new[:, :, 0].all()


def test_the_decision_band_is_around_both_paddles_columns_and_needs_a_seen_ball() -> None:
    x_px = torch.tensor([18.0, 30.0, 40.0, 80.0, 120.0, 130.0, 142.0, 157.0, 142.0])
    ball = torch.stack([torch.ones(9), x_px / 80.0 - 1.0, torch.zeros(9)], dim=-1)
    ball[-1, 0] = 0.0  # not seen
    assert near_a_paddle(ball).tolist() == [1, 1, 0, 0, 0, 1, 1, 1, 0]


def test_imagination_draws_the_moves_of_the_whole_move_heads() -> None:
    """``LearnedPongObjects-v1`` draws its moves computing only the logits and the drawn moves' corrections: with
    the same random numbers, the same moves as from the whole heads (the paddles', then the ball's given theirs)."""
    from learned_envs.registration import ASSETS
    from world_models.objects.moves import draw_choice

    model = load_model(ASSETS / "LearnedPongObjects-v1")[0].eval()
    assert model.ball_move_head is not None
    torch.manual_seed(0)
    b, k = 128, model.cfg.n_past
    window = torch.rand(b, k, 3, 3) * 1.6 - 0.8
    window[..., 0] = (torch.rand(b, k, 3) > 0.2).float()
    past, action = torch.randint(0, model.n_actions, (b, k - 1)), torch.randint(0, model.n_actions, (b,))
    with torch.no_grad():
        hidden = model._predict(window, past, action)[0]
        got = model._draw_moves(hidden, window, torch.Generator().manual_seed(3))
        g = torch.Generator().manual_seed(3)
        logits, correction = model._choices(hidden, window)  # the paddles' whole head
        paddles = draw_choice(logits, model.cfg.move_temperature, g)
        paddle_moves = model._move_of(paddles, correction, slice(0, 2))
        ball_out = model._ball_choices(hidden, window, paddle_moves * window[:, -1, :2, :1])
        ball = draw_choice(ball_out[..., 0], model.cfg.move_temperature, g)
        ball_move = model._move_of(ball, ball_out[..., 1:], slice(2, 3))
    assert torch.allclose(got, torch.cat([paddle_moves, ball_move], 1), atol=1e-4)
