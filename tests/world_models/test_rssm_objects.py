"""``rssm`` with ``object_state``: the ball and paddles as numbers beside ``h`` and ``z``, stepped by drawn moves
and drawn into the decoded frames where the state says."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from dataset_tools.sequences import SequenceDataset
from world_models import build_model
from world_models.pixel.rssm import RSSMConfig
from world_models.pixel.rssm_objects import (
    BALL_DX,
    BALL_DY,
    ENEMY,
    PADDLE_DY,
    RELATIVE,
    drawn_grid_move,
    enemy_features,
    exit_points,
    fill_gaps,
    line_points,
    mirrored,
    object_features,
    object_triples,
    pass_points,
    relative_features,
    serve_steps,
    shuffled_last_move,
    two_hot,
)

SMALL = RSSMConfig(n_past=2, n_future=4, deter=32, stoch=4, classes=4, hidden=32, embed=32, nf=8)
OBJECTS = dataclasses.replace(SMALL, object_state=True)
OBJECT_BALL = dataclasses.replace(OBJECTS, ball_moves="objects")
OBJECT_REL = dataclasses.replace(OBJECTS, ball_moves="relative")
OBJECT_RELX = dataclasses.replace(OBJECTS, ball_moves="relative_x")
OBJECT_ENEMY = dataclasses.replace(OBJECTS, enemy_moves="objects")


def _batch(pong_dataset: Path, size: int = 4):
    seqs = SequenceDataset(pong_dataset, seq_len=SMALL.n_past + SMALL.n_future, split="train")
    return next(iter(seqs.loader(size, seed=0)))


def test_two_hot_weights_average_to_the_value() -> None:
    values = torch.tensor([-3.0, -2.5, 0.0, 1.25, 2.9, 3.0, 7.0, -9.0])
    weights = two_hot(values, -3, 3)
    grid = torch.arange(-3, 4.0)
    assert torch.allclose(weights.sum(-1), torch.ones(8))
    assert torch.allclose(weights @ grid, values.clamp(-3, 3))  # off the grid: its nearest end
    assert int((weights > 0).sum(-1).max()) <= 2


def test_object_features_zero_what_was_not_found() -> None:
    window = torch.zeros(2, 3, 3)
    window[0] = torch.tensor([[1.0, 0.8, 0.1], [1.0, -0.8, 0.0], [1.0, 0.2, 0.3]])
    window[1] = torch.tensor([[1.0, 0.8, 0.0], [1.0, -0.8, 0.0], [0.0, 0.5, 0.5]])  # the ball was not seen before
    f = object_features(window)
    assert f.shape == (24,)
    assert torch.allclose(f[18:20], torch.tensor([0.0, 0.5]))  # the player moved 0.1 down: its speed, x 5
    assert torch.equal(f[22:24], torch.zeros(2))  # no speed for a ball seen once
    assert torch.equal(f[15:18], torch.zeros(3))  # nor a place where it was not found


def test_a_one_frame_miss_is_filled_and_a_longer_absence_is_not() -> None:
    found = torch.zeros(1, 8, 3, 3)
    ball = [1, 0, 1, 1, 0, 0, 1, 0]  # a one-frame miss at 1, an absence of two at 4-5, gone at the end
    for t, seen in enumerate(ball):
        found[0, t, 2] = torch.tensor([seen, 0.1 * t, -0.2 * t]) * seen
    filled = fill_gaps(found)
    assert torch.allclose(filled[0, 1, 2], torch.tensor([1.0, 0.1, -0.2]))  # halfway between frames 0 and 2
    assert filled[0, :, 2, 0].tolist() == [1, 1, 1, 1, 0, 0, 1, 0]
    assert torch.equal(filled[0, :, :2], found[0, :, :2])  # the paddles were never missed


def test_heat_maps_peak_on_each_objects_pixels(pong_dataset: Path) -> None:
    """The detector's places, through field units, land on the objects' own pixels of the 64 x 64 frame."""
    from dataset_tools.dataset import DatasetDir

    model = build_model("rssm", OBJECTS, (3, 64, 64), 6)
    model.bind_data("Pong", DatasetDir(pong_dataset).preprocess())
    frames = _batch(pong_dataset, 8).frames.flatten(0, 1)  # (N, C, H, W)
    found = model.objects.detect(frames)  # (N, 3, 3)
    maps = model.objects.heat_maps(torch.stack([found, found], 1))  # (N, 3, H, W)
    r, g, b = frames[:, 0], frames[:, 1], frames[:, 2]
    field = frames.flatten(2).median(-1).values[..., None, None]  # (N, C, 1, 1) the field's colour
    # the player's green; the ball, blended into one or two pixels, lighter than the field in every channel
    looks = {0: (g > r + 0.2) & (g > b + 0.2), 2: (frames - field).amin(1) > 0.05}
    checked = 0
    for obj, colour in looks.items():
        for i in torch.nonzero(found[:, obj, 0] > 0).flatten().tolist():
            y, x = divmod(int(maps[i, obj].argmax()), 64)
            near = colour[i, max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2]
            assert near.any(), (obj, i, y, x)
            checked += 1
    assert checked > 20
    assert maps[found[:, 2, 0] == 0, 2].abs().sum() == 0  # no ball drawn where none was found


def test_grown_from_a_plain_rssm_it_starts_as_that_model_but_for_the_reward(pong_dataset: Path) -> None:
    torch.manual_seed(0)
    plain = build_model("rssm", SMALL, (3, 64, 64), 6).eval()
    grown = build_model("rssm", OBJECTS, (3, 64, 64), 6).eval()
    missing, unexpected = grown.load_state_dict(plain.state_dict(), strict=False)  # as init_from does
    assert not unexpected and all(k.split(".")[0] in {"objects", "obj_in", "obj_prior", "obj_reward"} for k in missing)
    batch = _batch(pong_dataset)
    frames, actions = batch.frames[:, :2], batch.actions[:, :1]
    with torch.no_grad():
        states = [m.start(frames, actions, generator=torch.Generator().manual_seed(1)) for m in (plain, grown)]
        steps = [
            m.step(s, batch.actions[:, 1], generator=torch.Generator().manual_seed(2))
            for m, s in zip((plain, grown), states, strict=True)
        ]
    assert torch.equal(states[0]["h"], states[1]["h"]) and torch.equal(states[0]["z"], states[1]["z"])
    assert "obj" in states[1] and "obj" not in states[0]
    h, window = steps[1].state["h"], steps[1].state["obj"]  # the objects drew first: z differs from here on
    assert torch.allclose(steps[0].state["h"], h)
    with torch.no_grad():
        objs = object_features(window)
        assert torch.allclose(plain._prior(h), grown._prior(h, objs))
        same = {"h": h, "z": steps[0].state["z"]}
        feat = plain.features(same)
        assert torch.allclose(plain.decode(same), grown.decode({**same, "obj": window}))
        # the reward is read from the objects alone: the same objects, any h and z, the same reward
        other = grown._reward_logits(torch.randn_like(feat), objs)
        assert torch.equal(grown._reward_logits(feat, objs), other)
        moved = window.clone()
        moved[:, 0, 2] = torch.tensor([1.0, 0.5, 0.1])  # a ball, elsewhere
        assert not torch.equal(grown._reward_logits(feat, object_features(moved)), other)
        assert torch.equal(grown.features({**same, "obj": window})[:, : plain.feature_dim], feat)


@pytest.mark.parametrize(
    "config",
    [OBJECTS, OBJECT_BALL, OBJECT_REL],
    ids=["h", "objects", "relative"],
)
def test_it_learns_the_moves_and_a_dream_steps_them_on_the_grid(pong_dataset: Path, fit, config: RSSMConfig) -> None:
    from dataset_tools.dataset import DatasetDir

    torch.manual_seed(0)
    model = build_model("rssm", config, (3, 64, 64), 6)
    model.bind_data("Pong", DatasetDir(pong_dataset).preprocess())
    batch = _batch(pong_dataset)
    history = fit(model, batch, 40)
    for key in ("ball_move_ce", "paddle_move_ce", "object_found_bce"):  # two-hot targets keep an entropy floor
        assert history[-1][key] < 0.6 * history[0][key], key
    assert model.obj_in.weight.abs().sum() > 0  # the GRU reads the objects once trained
    model.eval()
    with torch.no_grad():
        state = model.start(batch.frames[:, :2], batch.actions[:, :1], generator=torch.Generator().manual_seed(0))
        before = state["obj"][:, 0]
        new = model.step(state, batch.actions[:, 1], generator=torch.Generator().manual_seed(0)).state["obj"]
    assert torch.equal(new[:, 1], before)  # the window shifts
    half = model.objects._half()
    inside = new[:, 0, :, 1:].abs().lt(1).all(-1)  # not stopped by the field's edge
    both = (before[:, :, 0] > 0) & (new[:, 0, :, 0] > 0) & inside
    moves = (new[:, 0, :, 1:] - before[:, :, 1:]) * half  # raw pixels
    assert both[:, :2].any()
    for obj, reach in ((0, PADDLE_DY), (1, PADDLE_DY), (2, BALL_DX)):
        m = moves[both[:, obj], obj]
        assert torch.allclose(m, m.round(), atol=1e-3) and m.abs().max() <= reach  # whole grid moves
    assert torch.equal(moves[both[:, 0], 0, 0], torch.zeros(int(both[:, 0].sum())))  # paddles move up or down only
    model.set_imagination({"move_temperature": 0.0, "sample_presence": False})  # the likeliest: no draw
    with torch.no_grad():
        cold = [model.step(state, batch.actions[:, 1], generator=torch.Generator().manual_seed(s)) for s in (0, 1)]
    assert torch.equal(cold[0].state["obj"], cold[1].state["obj"])


def test_object_state_refuses_what_it_cannot_do() -> None:
    from dataset_tools.preprocess import default_preprocess

    with pytest.raises(ValueError, match="teacher forced"):
        build_model("rssm", dataclasses.replace(OBJECTS, overshoot=1.0), (3, 64, 64), 6)
    with pytest.raises(ValueError, match="ball_moves must be one of h, objects"):
        build_model("rssm", dataclasses.replace(OBJECTS, ball_moves="pixels"), (3, 64, 64), 6)
    model = build_model("rssm", OBJECTS, (3, 64, 64), 18)
    with pytest.raises(ValueError, match="Pong's objects"):
        model.bind_data("Boxing", default_preprocess("Boxing"))


@pytest.mark.parametrize(
    "config", [OBJECTS, OBJECT_BALL, OBJECT_REL, OBJECT_RELX], ids=["h", "objects", "relative", "relative_x"]
)
def test_a_ball_stepped_past_the_fields_side_is_not_seen_and_past_a_wall_stays(config: RSSMConfig) -> None:
    model = build_model("rssm", config, (3, 64, 64), 6).eval()
    objects = model.objects
    with torch.no_grad():
        objects.paddle_head[-1].bias[:3] = 20.0  # every object stays
        last = objects.ball_net[-1] if config.ball_moves != "h" else objects.ball_head[-1]
        last.weight.zero_()
        last.bias.zero_()
        if config.ball_moves != "h":  # the ball moves 13 px right, then 4 down
            last.bias[BALL_DX + 13] = last.bias[2 * BALL_DX + 1 + BALL_DY + 4] = 50.0
        else:
            last.bias[(BALL_DX + 13) * (2 * BALL_DY + 1) + BALL_DY + 4] = 50.0
        window = torch.zeros(3, 2, 3, 3)
        window[:, :, :2] = torch.tensor([[1.0, 0.78, 0.0], [1.0, -0.78, 0.0]])
        window[0, :, 2] = torch.tensor([1.0, 0.80, 0.0])  # a ball at 0.80 in both frames
        window[1, :, 2] = torch.tensor([1.0, 0.90, 0.0])  # one at 0.90
        window[2, :, 2] = torch.tensor([1.0, 0.0, 0.98])  # one at mid-field, 1.6 px above the bottom wall
        new = objects.step(torch.zeros(3, 32), window, torch.zeros(3, dtype=torch.int64), temperature=0.0)
    assert new[0, 0, 2, 0] == 1 and torch.allclose(new[0, 0, 2, 1:], torch.tensor([0.80 + 13 / 80, 4 / 80]))
    assert torch.equal(new[1, 0, 2], torch.zeros(3))  # 0.90 + 13 px is past the edge: gone, as from the frame
    assert torch.allclose(new[2, 0, 2], torch.tensor([1.0, 13 / 80, 1.0]))  # past the wall: kept at it


def test_contact_weight_weighs_the_balls_moves_where_it_may_turn() -> None:
    torch.manual_seed(0)
    plain = build_model("rssm", OBJECTS, (3, 64, 64), 6).objects
    weighted = build_model("rssm", dataclasses.replace(OBJECTS, contact_weight=9.0), (3, 64, 64), 6).objects
    weighted.load_state_dict(plain.state_dict())
    window = torch.zeros(1, 2, 2, 3, 3)  # (B, T, frames, objects, [found, x, y])
    window[..., :2, :] = torch.tensor([[1.0, 0.78, 0.0], [1.0, -0.78, 0.0]])
    window[0, 0, :, 2] = torch.tensor([1.0, 0.70, 0.0])  # 6.4 px from the player's paddle: may turn
    window[0, 1, :, 2] = torch.tensor([1.0, 0.0, 0.0])  # mid-field
    target = window[:, :, 0].clone()
    target[..., 2, 1] += 0.03
    h, actions = torch.zeros(1, 2, 32), torch.zeros(1, 2, dtype=torch.int64)
    assert plain._contact(window[:, :, 0]).tolist() == [[1.0, 0.0]]
    with torch.no_grad():
        per_move = [
            plain.loss(h[:, i : i + 1], window[:, i : i + 1], actions[:, :1], target[:, i : i + 1]) for i in (0, 1)
        ]
        both = [m.loss(h, window, actions, target)[1]["ball_move_ce"] for m in (plain, weighted)]
    near, far = (logs["ball_move_ce"] for _, logs in per_move)
    assert both[0] == pytest.approx((near + far) / 2, rel=1e-5)
    assert both[1] == pytest.approx((10 * near + far) / 2, rel=1e-5)


def _one_ball(moves: list[tuple[float, float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows (1, T, 2, 3, 3) of a ball at mid-field between two still paddles and the targets it moves to by
    ``moves`` (raw px)."""
    window = torch.zeros(1, len(moves), 2, 3, 3)
    window[..., :2, :] = torch.tensor([[1.0, 0.78, 0.0], [1.0, -0.78, 0.0]])
    window[..., 2, :] = torch.tensor([1.0, 0.0, 0.0])
    target = window[:, :, 0].clone()
    target[0, :, 2, 1:] = torch.tensor(moves) / 80  # 80 raw px a field unit, Pong's crop
    return window, target


@pytest.mark.parametrize("config", [OBJECT_BALL, OBJECT_REL, OBJECT_RELX], ids=["objects", "relative", "relative_x"])
def test_objects_ball_head_draws_the_vertical_move_given_the_horizontal_one(config: RSSMConfig) -> None:
    """Served up and right or down and left, never across: drawn one after the other the moves keep together
    (drawn apart, each at its own odds, half would cross); and the ball's move reads no ``h``."""
    torch.manual_seed(0)
    objects = build_model("rssm", config, (3, 64, 64), 6).objects
    window, target = _one_ball([(4.0, -3.0), (-4.0, 3.0)] * 4)
    h, actions = torch.zeros(1, 8, 32), torch.zeros(1, 8, dtype=torch.int64)
    optim = torch.optim.Adam(objects.ball_net.parameters(), lr=1e-2)
    for _ in range(150):
        loss, _ = objects.loss(h, window, actions, target)
        optim.zero_grad()
        loss.backward()
        optim.step()
    objects.eval()
    with torch.no_grad():
        start, still = window[0, :1].repeat(400, 1, 1, 1), torch.zeros(400, dtype=torch.int64)
        objects.paddle_head[-1].weight.zero_()  # every object stays and the paddles stand still, whatever h
        objects.paddle_head[-1].bias.zero_()
        objects.paddle_head[-1].bias[:3] = 20.0
        objects.paddle_head[-1].bias[9 + PADDLE_DY] = objects.paddle_head[-1].bias[9 + 3 * PADDLE_DY + 1] = 50.0
        g = torch.Generator().manual_seed(0)
        new = [objects.step(torch.randn(400, 32, generator=g), start, still, g) for _ in range(2)]
    moves = (new[0][:, 0, 2, 1:] - start[:, 0, 2, 1:]) * 80
    assert 0.3 < (moves[:, 0] > 0).float().mean() < 0.7  # both ways
    assert ((moves[:, 0] > 0) == (moves[:, 1] < 0)).float().mean() > 0.95
    with torch.no_grad():
        cold = [objects.step(torch.randn(400, 32, generator=g), start, still, g, 0.0) for _ in range(2)]
    assert torch.equal(cold[0][:, 0, 2], cold[1][:, 0, 2])  # another h, the same likeliest move


def test_ball_prefit_fits_the_ball_head_alone_on_the_detectors_moves(pong_dataset: Path) -> None:
    from dataset_tools.dataset import DatasetDir

    torch.manual_seed(0)
    model = build_model("rssm", dataclasses.replace(OBJECT_BALL, ball_prefit=400), (3, 64, 64), 6)
    model.bind_data("Pong", DatasetDir(pong_dataset).preprocess())
    data = SequenceDataset(pong_dataset, seq_len=SMALL.n_past + SMALL.n_future, split="train")
    batch = _batch(pong_dataset, 8)
    others = {k: v.clone() for k, v in model.state_dict().items() if ".ball_net." not in k}
    with torch.no_grad():
        before = model.loss(batch)[1]["ball_move_ce"]
    logs = model.prefit(data, progress=False)
    loss, train_logs = model.loss(batch)
    assert logs["prefit_moves"] > 100 and train_logs["ball_move_ce"] < 0.6 * before
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in others.items())  # nothing else moved
    loss.backward()  # then held: the whole model's loss does not train it (its term is logged)
    assert all(p.grad is None for p in model.objects.ball_net.parameters())
    assert model.objects.paddle_head[0].weight.grad is not None
    plain = build_model("rssm", OBJECTS, (3, 64, 64), 6)
    assert plain.prefit(data, progress=False) == {}
    with pytest.raises(ValueError, match="ball_prefit needs ball_moves=objects or relative"):
        build_model("rssm", dataclasses.replace(OBJECTS, ball_prefit=10), (3, 64, 64), 6)
    with pytest.raises(ValueError, match="ball_noise is the ball_prefit fit's"):
        build_model("rssm", dataclasses.replace(OBJECT_BALL, ball_noise=1.0), (3, 64, 64), 6)


def test_the_vertical_move_is_taught_given_a_grid_move_as_a_dream_draws_it(monkeypatch) -> None:
    """The horizontal move the vertical one is taught given is one grid move drawn from the true move's two-hot
    weights (a dream gives the head a drawn one-hot move; given two-hot weights in training, the head read their
    fraction and at one-hot inputs called flying balls flat)."""
    torch.manual_seed(0)
    moves = drawn_grid_move(torch.tensor([3.75] * 4000 + [-2.0, 20.0, -20.0]), BALL_DX) - BALL_DX
    assert 0.72 < (moves[:4000] == 4).float().mean() < 0.78 and set(moves[:4000].tolist()) == {3, 4}
    assert moves[4000:].tolist() == [-2, BALL_DX, -BALL_DX]  # on the grid: itself; beyond: the grid's end
    objects = build_model("rssm", OBJECT_BALL, (3, 64, 64), 6).objects
    given = []
    real_y = objects._ball_y
    monkeypatch.setattr(objects, "_ball_y", lambda inputs, dx: given.append(dx) or real_y(inputs, dx))
    window, target = _one_ball([(3.75, -3.0), (-4.5, 3.0), (2.2, 1.0)])
    objects._ball_objects_ce(window[0], torch.zeros(3, dtype=torch.int64), target[0])
    assert torch.equal(given[0].sum(-1), torch.ones(3)) and set(given[0].flatten().tolist()) == {0.0, 1.0}


def test_ball_noise_moves_what_the_head_reads_not_what_it_is_taught() -> None:
    torch.manual_seed(0)
    objects = build_model("rssm", dataclasses.replace(OBJECT_BALL, ball_prefit=1, ball_noise=1.25), (3, 64, 64), 6)
    objects = objects.objects
    window, target = _one_ball([(4.0, -3.0), (-4.0, 3.0), (3.0, 1.0)])
    window, target, actions = window[0], target[0], torch.zeros(3, dtype=torch.int64)
    with torch.no_grad():
        clean = objects._ball_objects_ce(window, actions, target)[0]
        noisy = objects._ball_objects_ce(window, actions, target, noise=1.25)[0]
        assert not torch.equal(clean, noisy)  # the head reads other places
        objects.ball_net[-1].weight.zero_()  # a head that reads nothing: the same loss, so the same targets
        objects.ball_net[-1].bias.normal_()
        assert torch.equal(
            objects._ball_objects_ce(window, actions, target)[0],
            objects._ball_objects_ce(window, actions, target, noise=1.25)[0],
        )


def _contact(ball_y: float, player_y: float) -> torch.Tensor:
    """A window (2, 3, 3): the ball moving right at the player's column (0.78) at ``ball_y``, the player at
    ``player_y``, the enemy at its column (-0.78) level with mid-field."""
    window = torch.zeros(2, 3, 3)
    window[:, :2] = torch.tensor([[1.0, 0.78, player_y], [1.0, -0.78, 0.0]])
    window[0, 2] = torch.tensor([1.0, 0.74, ball_y])
    window[1, 2] = torch.tensor([1.0, 0.69, ball_y - 0.02])
    return window


def test_relative_features_read_the_ball_from_each_paddle() -> None:
    """The same stand of ball and paddles reads the same at any height but for the ball's own height (the walls);
    the player's paddle moved away changes the player's pair only; what is not found reads zero."""
    window = _contact(0.1, 0.12)
    f = relative_features(window, window[0, :2])
    assert f.shape == (RELATIVE,)
    raised = window.clone()
    raised[..., 2] -= 0.3 * raised[..., 0]
    g = relative_features(raised, raised[0, :2])
    height = 4  # seen, moved, speed x 2, then the ball's height
    assert torch.allclose(g[height], f[height] - 0.3)
    others = [i for i in range(RELATIVE) if i != height]
    assert torch.allclose(g[others], f[others], atol=1e-6)
    away = window.clone()
    away[:, 0, 2] = -0.5  # the player far above the ball
    h = relative_features(away, away[0, :2])
    assert not torch.allclose(h[5:11], f[5:11]) and torch.allclose(h[11:], f[11:])
    gone = window.clone()
    gone[:, 2] = 0.0  # no ball: nothing to read from the paddles
    assert torch.equal(
        relative_features(gone, gone[0, :2])[[0, 1, 2, 3, 4, 6, 7, 8, 9, 12, 13, 14, 15]], torch.zeros(13)
    )


def test_relative_x_reads_the_relative_inputs_and_the_balls_x() -> None:
    window = _contact(0.1, 0.12)[None]
    actions = torch.zeros(1, dtype=torch.int64)
    rel = build_model("rssm", OBJECT_REL, (3, 64, 64), 6).objects._ball_input(window, actions, window[:, 0, :2])
    relx = build_model("rssm", OBJECT_RELX, (3, 64, 64), 6).objects._ball_input(window, actions, window[:, 0, :2])
    assert torch.equal(relx[:, : rel.shape[1]], rel)
    assert torch.allclose(relx[:, rel.shape[1] :], torch.tensor([[0.74, 0.74 * 20]]))  # its x (0.74), and x 20


def test_mirrored_swaps_the_paddles_and_the_sides() -> None:
    objects = torch.tensor([[1.0, 0.78, 0.1], [1.0, -0.78, -0.2], [1.0, 0.5, 0.3]])
    m = mirrored(objects)
    assert torch.equal(m[0], torch.tensor([1.0, 0.78, -0.2]))  # the enemy, now on the player's side
    assert torch.equal(m[1], torch.tensor([1.0, -0.78, 0.1]))
    assert torch.equal(m[2], torch.tensor([1.0, -0.5, 0.3]))
    assert torch.equal(mirrored(m), objects)
    # the relative head reads a contact off the enemy's paddle, mirrored, as the same contact off the player's
    window = _contact(0.1, 0.12)
    enemy = mirrored(window)
    assert torch.allclose(
        relative_features(mirrored(enemy), mirrored(enemy)[0, :2]), relative_features(window, window[0, :2])
    )


def test_ball_mirror_fits_on_both_sides_moves(pong_dataset: Path) -> None:
    from dataset_tools.dataset import DatasetDir

    data = SequenceDataset(pong_dataset, seq_len=SMALL.n_past + SMALL.n_future, split="train")
    counts = []
    for mirror in (False, True):
        torch.manual_seed(0)
        config = dataclasses.replace(OBJECT_REL, ball_prefit=2, ball_mirror=mirror)
        model = build_model("rssm", config, (3, 64, 64), 6)
        model.bind_data("Pong", DatasetDir(pong_dataset).preprocess())
        counts.append(model.prefit(data, progress=False)["prefit_moves"])
    assert counts[0] > 100 and counts[1] == 2 * counts[0]
    for bad in (dataclasses.replace(OBJECT_BALL, ball_prefit=10), OBJECT_REL):  # not relative; no prefit
        with pytest.raises(ValueError, match="ball_mirror is the ball_prefit fit's of ball_moves=relative"):
            build_model("rssm", dataclasses.replace(bad, ball_mirror=True), (3, 64, 64), 6)


def test_a_served_ball_appears_at_its_odds_whatever_the_move_temperature() -> None:
    """A ball whose presence is 0.3 likely appears in about 0.3 of the dreams at ``move_temperature`` 0 (drawn,
    as a serve after a random wait), and in none when thresholded (``sample_presence`` false)."""
    objects = build_model("rssm", OBJECT_REL, (3, 64, 64), 6).objects.eval()
    with torch.no_grad():
        objects.paddle_head[-1].weight.zero_()
        objects.paddle_head[-1].bias.zero_()
        objects.paddle_head[-1].bias[:3] = torch.tensor([20.0, 20.0, float(torch.logit(torch.tensor(0.3)))])
        window = torch.zeros(400, 2, 3, 3)
        window[:, :, :2] = torch.tensor([[1.0, 0.78, 0.0], [1.0, -0.78, 0.0]])  # no ball in either frame
        still = torch.zeros(400, dtype=torch.int64)
        drawn = objects.step(torch.zeros(400, 32), window, still, torch.Generator().manual_seed(0), 0.0)
        held = objects.step(torch.zeros(400, 32), window, still, torch.Generator().manual_seed(0), 0.0, False)
    assert 0.22 < drawn[:, 0, 2, 0].mean() < 0.38
    assert held[:, 0, 2, 0].sum() == 0


def test_enemy_features_read_the_ball_from_the_enemy() -> None:
    """The enemy reads the ball's place from it, the ball's move, its own height and last move: the player's paddle
    is not read, the same stand higher up differs only in the enemy's height, and no ball reads zero."""
    window = _contact(0.1, 0.12)
    window[1, 1, 2] = -0.05  # the enemy moved down 0.05 since the frame before
    f = enemy_features(window)
    assert f.shape == (ENEMY,)
    assert torch.allclose(f[4:6], torch.tensor([0.74 + 0.78, 0.1]))  # the ball from the enemy
    assert torch.allclose(f[6:], torch.tensor([0.25, 0.1, 0.0, 0.25]))  # its move x 5, the enemy's height, move x 5
    away = window.clone()
    away[:, 0, 2] = -0.9
    assert torch.equal(enemy_features(away), f)
    raised = window.clone()
    raised[:, 1:, 2] -= 0.3
    g = enemy_features(raised)
    assert torch.allclose(g[8], f[8] - 0.3) and torch.allclose(
        g[[0, 1, 2, 3, 4, 5, 6, 7, 9]], f[[0, 1, 2, 3, 4, 5, 6, 7, 9]]
    )
    gone = window.clone()
    gone[:, 2] = 0.0
    assert torch.equal(enemy_features(gone)[2:8], torch.zeros(6))


def _enemy_moves(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows (n, 2, 3, 3) with the ball and the enemy at random heights, and targets where the enemy moved up to
    6 raw px towards the ball (a following enemy; 80 raw px a field unit vertically, Pong's crop)."""
    window = torch.zeros(n, 2, 3, 3)
    window[..., 0, :] = torch.tensor([1.0, 0.78, 0.0])
    window[..., 1, 0], window[..., 1, 1] = 1.0, -0.78
    window[..., 1, 2] = (torch.rand(n, generator=generator) * 1.6 - 0.8)[:, None]
    window[..., 2, 0], window[..., 2, 1] = 1.0, torch.tensor([0.1, 0.05])
    window[..., 2, 2] = (torch.rand(n, generator=generator) * 1.6 - 0.8)[:, None]
    target = window[:, 0].clone()
    target[:, 1, 2] += ((window[:, 0, 2, 2] - window[:, 0, 1, 2]) * 80).clamp(-6, 6) / 80
    return window, target


def test_enemy_prefit_fits_a_following_enemy_that_a_dream_steps(pong_dataset: Path) -> None:
    from dataset_tools.dataset import DatasetDir

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = build_model("rssm", dataclasses.replace(OBJECT_ENEMY, enemy_prefit=300), (3, 64, 64), 6)
    objects = model.objects
    logs = objects.prefit_enemy(*_enemy_moves(2000, g), 600, progress=False)
    assert logs["prefit_enemy_moves"] == 2000
    window, target = _enemy_moves(400, g)
    with torch.no_grad():
        objects.paddle_head[-1].weight.zero_()  # h says: every object stays, both paddles stand still
        objects.paddle_head[-1].bias.zero_()
        objects.paddle_head[-1].bias[:3] = 20.0
        objects.paddle_head[-1].bias[9 + PADDLE_DY] = objects.paddle_head[-1].bias[9 + 3 * PADDLE_DY + 1] = 50.0
        new = objects.step(torch.zeros(400, 32), window, torch.zeros(400, dtype=torch.int64), g, 0.0)
        _, error = objects.enemy_ce(window, target)
    moved = (new[:, 0, 1, 2] - window[:, 0, 1, 2]) * 80
    wanted = (target[:, 1, 2] - window[:, 0, 1, 2]) * 80
    assert (moved - wanted).abs().median() < 1.0  # the likeliest move: where the ball is
    assert error.median() < 0.4 * wanted.abs().median()  # the expected one: nearer than standing still
    assert torch.equal(new[:, 0, 0], window[:, 0, 0])  # the player's paddle still follows h
    # on the detector's moves of real play, through the model's prefit; then held
    model.bind_data("Pong", DatasetDir(pong_dataset).preprocess())
    batch = _batch(pong_dataset, 8)
    fresh = build_model("rssm", dataclasses.replace(OBJECT_ENEMY, enemy_prefit=300), (3, 64, 64), 6)
    fresh.bind_data("Pong", DatasetDir(pong_dataset).preprocess())
    others = {k: v.clone() for k, v in fresh.state_dict().items() if ".enemy_net." not in k}
    with torch.no_grad():
        before = fresh.loss(batch)[1]["enemy_move_ce"]
    data = SequenceDataset(pong_dataset, seq_len=SMALL.n_past + SMALL.n_future, split="train")
    logs = fresh.prefit(data, progress=False)
    loss, train_logs = fresh.loss(batch)
    assert logs["prefit_enemy_moves"] > 100 and train_logs["enemy_move_ce"] < 0.6 * before
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in others.items())  # nothing else moved
    loss.backward()
    assert all(p.grad is None for p in fresh.objects.enemy_net.parameters())
    assert fresh.objects.paddle_head[0].weight.grad is not None


def test_shuffled_last_move_draws_other_rows_last_moves_and_keeps_the_latest_frame() -> None:
    g = torch.Generator().manual_seed(0)
    window, _ = _enemy_moves(2000, g)
    window[:, 1, 1, 2] = window[:, 0, 1, 2] - torch.arange(2000.0) / 10000  # every last move its own
    window[:5, 1, 1, 0] = 0.0  # not found before: left as read
    assert torch.equal(shuffled_last_move(window, 0.0), window)
    torch.manual_seed(0)
    out = shuffled_last_move(window, 0.5)
    assert torch.equal(out[:, 0], window[:, 0]) and torch.equal(out[:5], window[:5])
    last, was = out[:, 0, 1, 2] - out[:, 1, 1, 2], window[:, 0, 1, 2] - window[:, 1, 1, 2]
    changed = ~torch.isclose(last, was, atol=1e-6)
    assert 0.4 < changed.float().mean() < 0.6  # about the share (a draw may pick its own row)
    assert torch.isclose(last[changed, None], was[None, 5:], atol=1e-6).any(-1).all()  # another found row's
    assert not changed[:5].any()


def test_enemy_shuffle_makes_the_ball_decide_where_the_last_move_misleads() -> None:
    """Moves where the enemy's next move is always its last one: near the ball it drifts 4 px either way whatever
    the ball does, far from it (more than 16 px) it chases it at 8 px. Fitted as read, the head copies the last
    move; with ``enemy_shuffle`` it goes toward a far ball when its last move goes away."""
    g = torch.Generator().manual_seed(0)

    def moves(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        window, target = _enemy_moves(n, g)
        gap = (window[:, 0, 2, 2] - window[:, 0, 1, 2]) * 80
        drift = torch.where(torch.rand(n, generator=g) < 0.5, -4.0, 4.0)
        step = torch.where(gap.abs() > 16, 8.0 * gap.sign(), drift)
        window[:, 1, 1, 2] = window[:, 0, 1, 2] - step / 80
        target[:, 1, 2] = window[:, 0, 1, 2] + step / 80
        return window, target

    window, target = moves(4000)
    probe, _ = moves(2000)
    gap = (probe[:, 0, 2, 2] - probe[:, 0, 1, 2]) * 80
    probe, toward = probe[gap.abs() > 16], gap[gap.abs() > 16].sign()
    probe[:, 1, 1, 2] = probe[:, 0, 1, 2] + toward * 8 / 80  # it moved 8 px away from the ball
    went = {}
    for share in (0.0, 0.5):
        torch.manual_seed(0)
        config = dataclasses.replace(OBJECT_ENEMY, enemy_prefit=1, enemy_shuffle=share)
        objects = build_model("rssm", config, (3, 64, 64), 6).objects
        objects.prefit_enemy(window, target, 800, progress=False, shuffle=share)
        with torch.no_grad():
            move = objects._enemy_logits(probe).argmax(-1) - PADDLE_DY
        went[share] = float((move.sign() == toward).float().mean())
    assert went[0.0] < 0.3 and went[0.5] > 0.9, went


def test_enemy_serve_fits_the_serves_offset_and_places_the_enemy_level_with_a_served_ball() -> None:
    """``enemy_serve``: the serves (a ball appears) give the enemy's offset from the served ball and are left out of
    the moves' fit; a dream step that serves a ball puts the enemy there, the others move it by its head."""
    g = torch.Generator().manual_seed(0)
    window, target = _enemy_moves(1000, g)
    window[:100, 0, 2] = 0.0  # no ball on the field, then one served 5 raw px above the enemy's next place
    target[:100, 2] = torch.tensor([1.0, 0.0, 0.0])
    target[:100, 2, 2] = (torch.rand(100, generator=g) - 0.5) * 0.2
    target[:100, 1, 2] = target[:100, 2, 2] + (5.0 + torch.randn(100, generator=g) * 0.5) / 80
    assert torch.equal(serve_steps(window, target), torch.arange(1000) < 100)
    model = build_model("rssm", dataclasses.replace(OBJECT_ENEMY, enemy_prefit=1, enemy_serve=True), (3, 64, 64), 6)
    objects = model.objects.eval()
    logs = objects.prefit_enemy(window, target, 200, progress=False)
    assert logs["prefit_serves"] == 100 and logs["prefit_enemy_moves"] == 900
    assert abs(logs["prefit_serve_offset"] - 5.0) < 0.3 and torch.isclose(
        objects.serve.offset, torch.tensor(5.0), atol=0.3
    )
    with torch.no_grad():
        objects.paddle_head[-1].weight.zero_()
        objects.paddle_head[-1].bias.zero_()
        objects.paddle_head[-1].bias[:3] = 20.0  # every object found
        objects.paddle_head[-1].bias[8] = float(torch.atanh(torch.tensor(0.3)))  # a served ball appears at y 0.3
        gone = window[100:300].clone()
        gone[:100, 0, 2] = 0.0  # the first 100: a ball is served
        new = objects.step(torch.zeros(200, 32), gone, torch.zeros(200, dtype=torch.int64), g, 0.0, True, True)
    assert torch.allclose(new[:100, 0, 2, 2], torch.full((100,), 0.3), atol=1e-5)
    assert torch.allclose(new[:100, 0, 1, 2], 0.3 + objects.serve.offset / 80, atol=1e-5)  # level with it
    moved = (new[100:, 0, 1, 2] - gone[100:, 0, 1, 2]) * 80
    assert moved.abs().max() <= PADDLE_DY and (moved != 0).any()  # the rest: the head's moves
    assert torch.equal(new[:, 0, 1, 1], gone[:, 0, 1, 1])  # a found enemy keeps its x
    with torch.no_grad():
        unseen = gone.clone()
        unseen[:, 0, 1] = 0.0  # no enemy in the last frame: it appears (presence 1), in its column
        back = objects.step(torch.zeros(200, 32), unseen, torch.zeros(200, dtype=torch.int64), g, 0.0, True, True)
    assert torch.allclose(back[:, 0, 1, 1], torch.full((200,), (18.0 - 80.0) / 80.0), atol=1e-6)
    plain = build_model("rssm", dataclasses.replace(OBJECT_ENEMY, enemy_prefit=1), (3, 64, 64), 6).objects
    assert "prefit_serves" not in plain.prefit_enemy(window, target, 1, progress=False)
    assert plain.serve is None  # checkpoints without it load as before


def test_enemy_moves_refuses_what_it_cannot_do() -> None:
    with pytest.raises(ValueError, match="enemy_moves must be one of h, objects"):
        build_model("rssm", dataclasses.replace(OBJECTS, enemy_moves="relative"), (3, 64, 64), 6)
    with pytest.raises(ValueError, match="enemy_prefit needs enemy_moves=objects"):
        build_model("rssm", dataclasses.replace(OBJECTS, enemy_prefit=10), (3, 64, 64), 6)
    with pytest.raises(ValueError, match="enemy_serve is fitted by enemy_prefit"):
        build_model("rssm", dataclasses.replace(OBJECT_ENEMY, enemy_serve=True), (3, 64, 64), 6)
    with pytest.raises(ValueError, match="enemy_noise is the enemy_prefit fit's"):
        build_model("rssm", dataclasses.replace(OBJECT_ENEMY, enemy_noise=1.0), (3, 64, 64), 6)
    with pytest.raises(ValueError, match="enemy_shuffle is the enemy_prefit fit's"):
        build_model("rssm", dataclasses.replace(OBJECT_ENEMY, enemy_shuffle=0.5), (3, 64, 64), 6)
    with pytest.raises(ValueError, match=r"enemy_shuffle is a share in \[0, 1\]"):
        build_model("rssm", dataclasses.replace(OBJECT_ENEMY, enemy_prefit=1, enemy_shuffle=1.5), (3, 64, 64), 6)
    unheld = build_model("rssm", OBJECT_ENEMY, (3, 64, 64), 6).objects  # not prefit: it trains with the rest
    window, target = _enemy_moves(8, torch.Generator().manual_seed(0))
    loss, _ = unheld.loss(torch.zeros(8, 32), window, torch.zeros(8, dtype=torch.int64), target)
    loss.backward()
    assert unheld.enemy_net[0].weight.grad is not None


def test_keep_present_keeps_objects_and_lets_a_ball_past_a_paddle_leave_by_its_presence() -> None:
    """With ``keep_present`` a found object stays whatever its presence (0.2 here), but for a ball past a
    paddle's column, where the presence decides; absent objects are still drawn."""
    objects = build_model("rssm", OBJECT_BALL, (3, 64, 64), 6).objects.eval()
    with torch.no_grad():
        objects.paddle_head[-1].weight.zero_()
        objects.paddle_head[-1].bias.zero_()
        objects.paddle_head[-1].bias[:3] = float(torch.logit(torch.tensor(0.2)))  # every presence 0.2
        window = torch.zeros(400, 2, 3, 3)
        window[:, :, :2] = torch.tensor([[1.0, 0.78, 0.0], [1.0, -0.78, 0.0]])
        window[:200, :, 2] = torch.tensor([1.0, 0.0, 0.0])  # a ball mid-field
        window[200:300, :, 2] = torch.tensor([1.0, 0.85, 0.0])  # past the player's column
        window[300:, :, 2] = torch.tensor([1.0, -0.85, 0.0])  # past the enemy's
        still = torch.zeros(400, dtype=torch.int64)
        kept = objects.step(torch.zeros(400, 32), window, still, torch.Generator().manual_seed(0), 0.0, True, True)
        drawn = objects.step(torch.zeros(400, 32), window, still, torch.Generator().manual_seed(0), 0.0, True, False)
        gone = window.clone()
        gone[:, :, 2] = 0.0
        served = objects.step(torch.zeros(400, 32), gone, still, torch.Generator().manual_seed(0), 0.0, True, True)
    assert torch.equal(kept[:, 0, :2, 0], torch.ones(400, 2)) and torch.equal(kept[:200, 0, 2, 0], torch.ones(200))
    assert kept[200:, 0, 2, 0].sum() == 0  # out of play at 0.2: gone
    assert 0.1 < drawn[:, 0, :, 0].mean() < 0.3  # without: each object drawn at 0.2
    assert 0.1 < served[:, 0, 2, 0].mean() < 0.3


def test_exit_edge_keeps_a_ball_past_a_paddle_until_the_side_whatever_its_presence() -> None:
    objects = build_model("rssm", OBJECT_BALL, (3, 64, 64), 6).objects.eval()
    with torch.no_grad():
        objects.paddle_head[-1].weight.zero_()
        objects.paddle_head[-1].bias.zero_()
        ball = objects.ball_net[-1]  # the ball stands still: a drawn move must not carry it past the field's side
        ball.weight.zero_()
        ball.bias.zero_()
        ball.bias[BALL_DX] = ball.bias[2 * BALL_DX + 1 + BALL_DY] = 50.0
        window = torch.zeros(4, 2, 3, 3)
        window[:, :, :2] = torch.tensor([[1.0, 0.78, 0.0], [1.0, -0.78, 0.0]])
        balls = torch.tensor([[1.0, 0.85, 0.0], [1.0, 0.95, 0.0], [1.0, -0.85, 0.0], [1.0, 0.0, 0.0]])
        window[:, :, 2] = balls[:, None]  # past the player's paddle, at its side; past the enemy's; in play
        still = torch.zeros(4, dtype=torch.int64)

        def step(presence: float, edge: float) -> list[float]:
            objects.paddle_head[-1].bias[:3] = float(torch.logit(torch.tensor(presence)))  # every presence
            gen = torch.Generator().manual_seed(0)
            new = objects.step(torch.zeros(4, 32), window, still, gen, 0.0, False, True, None, edge)
            return new[:, 0, 2, 0].tolist()

        # the presence decides past a paddle without it; with it the place does: short of the side the ball stays,
        # at the side it goes; a ball in play stays either way
        assert step(0.1, 0.0) == [0.0, 0.0, 0.0, 1.0] and step(0.9, 0.0) == [1.0, 1.0, 1.0, 1.0]
        assert step(0.1, 0.93) == [1.0, 0.0, 1.0, 1.0] and step(0.9, 0.93) == [1.0, 0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match=r"exit_edge is a place in field units in \[0, 1\]"):
        build_model("rssm", dataclasses.replace(OBJECTS, exit_edge=1.5), (3, 64, 64), 6)


def test_exit_points_score_a_ball_gone_past_a_paddle_for_the_other_side() -> None:
    window = torch.zeros(5, 2, 3, 3)
    window[:, :, :2] = torch.tensor([[1.0, 0.78, 0.0], [1.0, -0.78, 0.0]])  # the player right, the enemy left
    window[:, 1, 2] = torch.tensor([[1.0, 0.85, 0.1], [1.0, -0.85, 0.1], [1.0, 0.0, 0.1], [1.0, 0.85, 0.1], [0, 0, 0]])
    window[3, 0, 2] = torch.tensor([1.0, 0.95, 0.1])  # still found: not yet a point
    # past the player: the enemy scores; past the enemy: the player does; gone mid-field or never there: nothing
    assert exit_points(window).tolist() == [-1.0, 1.0, 0.0, 0.0, 0.0]


def test_exit_reward_rewards_the_dreams_own_exits_in_the_dream_and_on_real_frames(
    pong_dataset: Path, monkeypatch
) -> None:
    from dataset_tools.dataset import DatasetDir

    with pytest.raises(ValueError, match="exit_reward reads the ball of the object state"):
        build_model("rssm", dataclasses.replace(SMALL, exit_reward=True), (3, 64, 64), 6)
    model = build_model("rssm", dataclasses.replace(OBJECTS, keep_present=False), (3, 64, 64), 6).eval()
    model.bind_data("Pong", DatasetDir(pong_dataset).preprocess())
    batch = _batch(pong_dataset, 2)
    frames, actions = batch.frames[:, :2], batch.actions[:, :1]
    with torch.no_grad():
        model.reward_head[-1].bias.copy_(torch.tensor([0.0, 9.0, 0.0]))
        model.obj_reward[-1].bias.copy_(torch.tensor([0.0, 9.0, 0.0]))  # the head: never a point
        state = model.start(frames, actions)
        state["obj"][:, 0, :2] = torch.tensor([[1.0, 0.78, 0.0], [1.0, -0.78, 0.0]])
        state["obj"][:, 0, 2] = torch.tensor([[1.0, 0.9, 0.0], [1.0, -0.9, 0.0]])  # balls past each paddle
        gone = state["obj"].clone()
        gone[:, 0, 2] = 0.0  # what the objects' step gives: the balls gone
        monkeypatch.setattr(model.objects, "step", lambda h, window, *_: torch.stack([gone[:, 0], window[:, 0]], 1))
        head = model.step(state, batch.actions[:, 1]).reward
        model.set_imagination(["exit_reward=true"])
        rule = model.step(state, batch.actions[:, 1]).reward
        many = _batch(pong_dataset, 64)
        filtered = model.filtered_rewards(many.frames, many.actions)
        _, _, _, _, windows = model._filter(many.frames, many.actions)
    assert head.tolist() == [0.0, 0.0] and rule.tolist() == [-1.0, 1.0]
    assert filtered.abs().sum() > 0  # on real frames: the rule on the detector's objects, where the head gives none
    assert torch.equal(filtered, exit_points(windows[:, 1:]))


def test_pass_points_score_a_ball_as_it_first_stands_past_a_paddle() -> None:
    window = torch.zeros(5, 2, 3, 3)
    window[:, :, :2] = torch.tensor([[1.0, 0.78, 0.0], [1.0, -0.78, 0.0]])  # the player right, the enemy left
    window[:, 1, 2] = torch.tensor([[1.0, 0.7, 0.1], [1.0, -0.7, 0.1], [1.0, 0.85, 0.1], [0, 0, 0], [1.0, 0.0, 0.1]])
    window[:, 0, 2] = torch.tensor([[1.0, 0.85, 0.1], [1.0, -0.85, 0.1], [1.0, 0.95, 0.1], [1.0, 0.85, 0.1], [0, 0, 0]])
    # passing the player: the enemy's point; passing the enemy: the player's; already past, not seen before, gone
    # mid-field: nothing
    assert pass_points(window).tolist() == [-1.0, 1.0, 0.0, 0.0, 0.0]


def test_pass_reward_rewards_the_pass_not_the_exit_in_the_dream_and_on_real_frames(
    pong_dataset: Path, monkeypatch
) -> None:
    from dataset_tools.dataset import DatasetDir

    with pytest.raises(ValueError, match="pass_reward reads the ball of the object state"):
        build_model("rssm", dataclasses.replace(SMALL, pass_reward=True), (3, 64, 64), 6)
    model = build_model("rssm", dataclasses.replace(OBJECTS, exit_reward=True), (3, 64, 64), 6).eval()
    model.bind_data("Pong", DatasetDir(pong_dataset).preprocess())
    batch = _batch(pong_dataset, 2)
    with torch.no_grad():
        state = model.start(batch.frames[:, :2], batch.actions[:, :1])
        state["obj"][:, 0, :2] = torch.tensor([[1.0, 0.78, 0.0], [1.0, -0.78, 0.0]])
        state["obj"][:, 0, 2] = torch.tensor([[1.0, 0.7, 0.0], [1.0, -0.7, 0.0]])  # balls in front of each paddle
        passed = state["obj"].clone()
        passed[:, 0, 2] = torch.tensor([[1.0, 0.85, 0.0], [1.0, -0.85, 0.0]])  # the objects' step: past them
        monkeypatch.setattr(model.objects, "step", lambda h, window, *_: torch.stack([passed[:, 0], window[:, 0]], 1))
        at_exit = model.step(state, batch.actions[:, 1]).reward
        model.set_imagination(["pass_reward=true"])
        at_pass = model.step(state, batch.actions[:, 1]).reward
        many = _batch(pong_dataset, 64)
        filtered = model.filtered_rewards(many.frames, many.actions)
        _, _, _, _, windows = model._filter(many.frames, many.actions)
    assert at_exit.tolist() == [0.0, 0.0] and at_pass.tolist() == [-1.0, 1.0]  # the exit rule waits for the exit
    assert filtered.abs().sum() > 0 and torch.equal(filtered, pass_points(windows[:, 1:]))


def test_line_points_score_the_first_frame_at_a_scoring_line_or_an_exit_short_of_it() -> None:
    frames = torch.zeros(8, 3, 3, 3)  # frames t + 1, t, t - 1
    frames[:, :, :2] = torch.tensor([[1.0, 0.78, 0.0], [1.0, -0.78, 0.0]])  # the player right, the enemy left
    ball = [  # the ball's x at t - 1, t, t + 1 (None: not found)
        (0.85, 0.93, 0.96),  # reaches the right line at t: the enemy's point, while the ball is still in sight
        (-0.85, -0.93, None),  # the left line: the player's
        (0.93, 0.96, None),  # at the line already at t - 1: counted then
        (0.85, 0.9, None),  # past the player, gone before its line: counted at the exit
        (0.85, 0.9, 0.93),  # short of the line at t, at it at t + 1: counted a step later
        (None, 0.93, 0.96),  # first found at the line at t
        (0.1, 0.2, None),  # gone mid-field
        (-0.85, -0.9, None),  # past the enemy, gone before its line
    ]
    for i, xs in enumerate(ball):
        for k, x in enumerate(reversed(xs)):
            if x is not None:
                frames[i, k, 2] = torch.tensor([1.0, x, 0.1])
    assert line_points(frames).tolist() == [-1.0, 1.0, 0.0, -1.0, 0.0, -1.0, 0.0, 1.0]


def test_line_reward_rewards_the_move_out_of_the_frame_at_the_line_in_the_dream_and_on_real_frames(
    pong_dataset: Path, monkeypatch
) -> None:
    from dataset_tools.dataset import DatasetDir

    with pytest.raises(ValueError, match="line_reward reads the ball of the object state"):
        build_model("rssm", dataclasses.replace(SMALL, line_reward=True), (3, 64, 64), 6)
    model = build_model("rssm", dataclasses.replace(OBJECTS, exit_reward=True), (3, 64, 64), 6).eval()
    model.bind_data("Pong", DatasetDir(pong_dataset).preprocess())
    batch = _batch(pong_dataset, 2)
    with torch.no_grad():
        state = model.start(batch.frames[:, :2], batch.actions[:, :1])
        state["obj"][:, :, :2] = torch.tensor([[1.0, 0.78, 0.0], [1.0, -0.78, 0.0]])
        state["obj"][:, 1, 2] = torch.tensor([[1.0, 0.85, 0.0], [1.0, -0.85, 0.0]])  # frame t - 1: past each paddle
        state["obj"][:, 0, 2] = torch.tensor([[1.0, 0.93, 0.0], [1.0, -0.93, 0.0]])  # frame t: at the lines
        on = state["obj"].clone()
        on[:, 0, 2] = torch.tensor([[1.0, 0.96, 0.0], [1.0, -0.96, 0.0]])  # the objects' step: still in sight
        monkeypatch.setattr(model.objects, "step", lambda h, window, *_: torch.stack([on[:, 0], window[:, 0]], 1))
        at_exit = model.step(state, batch.actions[:, 1]).reward
        model.set_imagination(["line_reward=true"])
        at_line = model.step(state, batch.actions[:, 1]).reward
        model.set_imagination(["pass_reward=true"])  # the pass rule overrides it
        at_pass = model.step(state, batch.actions[:, 1]).reward
        model.set_imagination(["pass_reward=false"])
        many = _batch(pong_dataset, 64)
        filtered = model.filtered_rewards(many.frames, many.actions)
        _, _, _, _, windows = model._filter(many.frames, many.actions)
    assert at_exit.tolist() == [0.0, 0.0] and at_line.tolist() == [-1.0, 1.0] and at_pass.tolist() == [0.0, 0.0]
    triples = torch.cat([windows[:, 1:], windows[:, :-1, 1:]], 2)  # frames t + 1, t, t - 1 of each move
    assert torch.equal(triples, object_triples(windows[:, :, 0])[:, 1:])
    assert filtered.abs().sum() > 0 and torch.equal(filtered, line_points(triples))
