"""RAM ground truth against objects found by their exact colour in freshly played frames.

For every supported game a few hundred seeded steps are played; each object is located in the
RGB observation by its colour inside the play field (the detectors below), and the centre of
the RAM box must lie within 2 px of the colour box centre on >= 95% of the frames where the
detector finds the object (a frame where RAM says "not visible" counts as a miss).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from dataset_tools import ram_truth

gym = pytest.importorskip("gymnasium")
ale_py = pytest.importorskip("ale_py")

MAX_DIST = 2.0
MIN_AGREEMENT = 0.95
MIN_DETECTIONS = 50

Colour = tuple[int, int, int]
NAN4 = np.full(4, np.nan)


def _pong_actions(rng: np.random.Generator, n_actions: int, steps: int) -> list[int]:
    return [1 if t % 3 == 0 else int(rng.integers(n_actions)) for t in range(steps)]  # FIRE often: ball in play


def _breakout_actions(rng: np.random.Generator, n_actions: int, steps: int) -> list[int]:
    return [1 if t % 4 == 0 else int(rng.integers(n_actions)) for t in range(steps)]


def _boxing_actions(rng: np.random.Generator, n_actions: int, steps: int) -> list[int]:
    # Random actions held for 5-19 steps: with seed 1 the boxers swap sides at step ~171, so
    # both facing directions (mirrored sprites) are covered.
    actions: list[int] = []
    while len(actions) < steps:
        action, hold = int(rng.integers(n_actions)), int(rng.integers(5, 20))
        actions += [action] * hold
    return actions[:steps]


def _freeway_actions(rng: np.random.Generator, n_actions: int, steps: int) -> list[int]:
    return [1 if rng.random() < 0.6 else int(rng.integers(n_actions)) for _ in range(steps)]  # mostly UP


# game -> (action generator, steps, seed)
PLAYS: dict[str, tuple[Callable[[np.random.Generator, int, int], list[int]], int, int]] = {
    "Pong": (_pong_actions, 300, 0),
    "Breakout": (_breakout_actions, 300, 0),
    "Boxing": (_boxing_actions, 400, 1),
    "Freeway": (_freeway_actions, 300, 0),
}


def _play(game: str) -> tuple[np.ndarray, np.ndarray]:
    """Observations and the RAM read right after each one, ``(T, 210, 160, 3)`` and ``(T, 128)``."""
    gym.register_envs(ale_py)
    make_actions, steps, seed = PLAYS[game]
    env = gym.make(f"ALE/{game}-v5", frameskip=4, repeat_action_probability=0.0)
    obs, _ = env.reset(seed=seed)
    frames, rams = [obs], [env.unwrapped.ale.getRAM().copy()]
    for action in make_actions(np.random.default_rng(seed), int(env.action_space.n), steps):
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            obs, _ = env.reset()
        frames.append(obs)
        rams.append(env.unwrapped.ale.getRAM().copy())
    env.close()
    return np.stack(frames), np.stack(rams)


# ---------------------------------------------------------------- colour detectors (validation only)


def _mask(frames: np.ndarray, colour: Colour, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """``(T, H, W)`` bool mask of ``colour`` in ``frames[:, rows, cols]`` (the region, not the full frame)."""
    region = frames[:, rows[0] : rows[1], cols[0] : cols[1]]
    return (region == np.asarray(colour, dtype=np.uint8)).all(axis=-1)


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(x0, y0, x1, y1)`` (exclusive ends) of the set pixels of a 2-D mask, or None."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _centres(frames: np.ndarray, colour: Colour, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """``(T, 4)`` [cx, cy, w, h] of the bounding box of ``colour`` in the region (NaN where absent)."""
    out = np.full((len(frames), 4), np.nan)
    for t, m in enumerate(_mask(frames, colour, rows, cols)):
        b = _bbox(m)
        if b is not None:
            x0, y0, x1, y1 = b
            out[t] = [cols[0] + (x0 + x1) / 2, rows[0] + (y0 + y1) / 2, x1 - x0, y1 - y0]
    return out


def _detect_pong(frames: np.ndarray) -> dict[str, np.ndarray]:
    rows, cols = (34, 194), (0, 160)
    return {
        "player": _centres(frames, (92, 186, 92), rows, cols),
        "enemy": _centres(frames, (213, 130, 74), rows, cols),
        "ball": _centres(frames, (236, 236, 236), rows, cols),
    }


def _detect_breakout(frames: np.ndarray) -> dict[str, np.ndarray]:
    red = (200, 72, 72)  # paddle, ball and the top brick row share it
    paddle = _centres(frames, red, (189, 193), (8, 152))
    paddle[paddle[:, 2] > 16] = NAN4  # the ball is level with the paddle: ambiguous, skip
    ball = _centres(frames, red, (93, 189), (8, 152))  # below the bricks, above the paddle
    return {"player": paddle, "ball": ball}


def _detect_boxing(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Body box of each boxer.  A punch only reaches forward, so the back edge plus the 14-px body
    width gives the body; the vertical extent is the whole sprite.  The boxers face each other;
    who is on the left is decided by the head (sprite rows 17-28), which punches do not move."""
    rows, cols = (36, 177), (32, 128)
    out = {c: np.full((len(frames), 4), np.nan) for c in ("player", "enemy")}
    white, black = _mask(frames, (214, 214, 214), rows, cols), _mask(frames, (0, 0, 0), rows, cols)
    for t in range(len(frames)):
        bw, bb = _bbox(white[t]), _bbox(black[t])
        if bw is None or bb is None:
            continue
        hw, hb = _bbox(white[t, bw[1] + 17 : bw[1] + 29]), _bbox(black[t, bb[1] + 17 : bb[1] + 29])
        if hw is None or hb is None:
            continue
        white_faces_right = hw[0] + hw[2] < hb[0] + hb[2]
        for name, b, right in (("player", bw, white_faces_right), ("enemy", bb, not white_faces_right)):
            x0 = b[0] if right else b[2] - 14
            out[name][t] = [cols[0] + x0 + 7, rows[0] + (b[1] + b[3]) / 2, 14, b[3] - b[1]]
    return out


FREEWAY_CAR_COLOURS: tuple[Colour, ...] = (  # car0 (bottom lane) .. car9 (top lane)
    (210, 210, 64), (135, 183, 84), (184, 50, 50), (84, 92, 214), (162, 98, 33),
    (24, 26, 167), (228, 111, 111), (105, 105, 15), (180, 231, 117), (167, 26, 26),
)  # fmt: skip


def _detect_freeway(frames: np.ndarray) -> dict[str, np.ndarray]:
    chicken = frames.copy()
    chicken[:, (102, 104)] = 0  # the yellow centre line crosses the chicken's column
    out = {"player": _centres(chicken, (252, 252, 84), (14, 195), (40, 56))}
    for i, colour in enumerate(FREEWAY_CAR_COLOURS):
        out[f"car{i}"] = _centres(frames, colour, (23, 188), (8, 160))
    return out


DETECTORS: dict[str, Callable[[np.ndarray], dict[str, np.ndarray]]] = {
    "Pong": _detect_pong,
    "Breakout": _detect_breakout,
    "Boxing": _detect_boxing,
    "Freeway": _detect_freeway,
}


def agreement(game: str, frames: np.ndarray, rams: np.ndarray) -> dict[str, tuple[float, int]]:
    """Per class: (fraction of detected frames whose RAM box centre is within 2 px, detections)."""
    truth = ram_truth.ram_objects(game, rams)
    found = DETECTORS[game](frames)
    result = {}
    for name, det in found.items():
        box = truth[name]
        seen = ~np.isnan(det[:, 0])
        centre = box[:, 1:3] + box[:, 3:5] / 2
        dist = np.abs(centre - det[:, :2]).max(axis=1)
        ok = seen & (box[:, 0] > 0) & (dist <= MAX_DIST)
        result[name] = (float(ok.sum() / max(seen.sum(), 1)), int(seen.sum()))
    return result


# ---------------------------------------------------------------- tests


def test_detectors_cover_every_class() -> None:
    assert set(DETECTORS) == set(ram_truth.GAMES)
    assert len(FREEWAY_CAR_COLOURS) == sum(c.startswith("car") for c in ram_truth.object_classes("Freeway"))


@pytest.mark.parametrize("game", ram_truth.GAMES)
def test_ram_boxes_match_colour_detection(game: str) -> None:
    frames, rams = _play(game)
    if game == "Boxing":  # the sprite mirrors when the boxers swap sides: both sides must be seen
        player_right = np.mean(rams[:, 32] > rams[:, 33])
        assert 0.1 <= player_right <= 0.9, f"Boxing run covers one facing direction only ({player_right:.2f})"
    result = agreement(game, frames, rams)
    assert set(result) == set(ram_truth.object_classes(game))
    report = ", ".join(f"{c}: {frac:.3f} of {n}" for c, (frac, n) in result.items())
    for name, (frac, n) in result.items():
        assert n >= MIN_DETECTIONS, f"{game}/{name}: detector found it in only {n} frames ({report})"
        assert frac >= MIN_AGREEMENT, f"{game}/{name}: RAM box within {MAX_DIST} px in {frac:.1%} ({report})"


@pytest.mark.parametrize("game", ram_truth.GAMES)
def test_output_layout(game: str) -> None:
    rams = np.random.default_rng(1).integers(0, 256, size=(7, 128), dtype=np.uint8)
    boxes = ram_truth.ram_objects(game, rams)
    assert tuple(boxes) == ram_truth.object_classes(game)
    assert set(ram_truth.moving_classes(game)) <= set(boxes)
    for name, b in boxes.items():
        assert b.shape == (7, 5) and b.dtype == np.float32, name
        assert set(np.unique(b[:, 0])) <= {0.0, 1.0}
        vis = b[b[:, 0] > 0]
        assert (vis[:, 3] > 0).all() and (vis[:, 4] > 0).all()
        assert (vis[:, 1] >= 0).all() and (vis[:, 1] + vis[:, 3] <= 160).all()
        assert (vis[:, 2] >= 0).all() and (vis[:, 2] + vis[:, 4] <= 210).all()
        assert (b[b[:, 0] == 0] == 0).all()


def test_single_ram_snapshot() -> None:
    ram = np.zeros(128, dtype=np.uint8)
    ram[[49, 54, 51, 50]] = [100, 120, 100, 100]
    single = ram_truth.ram_objects("Pong", ram)
    batch = ram_truth.ram_objects("Pong", ram[None])
    for name in ram_truth.object_classes("Pong"):
        assert single[name].shape == (1, 5)
        np.testing.assert_array_equal(single[name], batch[name])
    np.testing.assert_array_equal(single["ball"][0], [1, 51, 106, 2, 4])


def test_ball_out_of_play_is_invisible() -> None:
    ram = np.zeros((2, 128), dtype=np.uint8)
    ram[0, 49], ram[1, 49] = 205, 0  # the two "not in play" states seen in Pong
    assert (ram_truth.ram_objects("Pong", ram)["ball"][:, 0] == 0).all()


def test_unknown_game() -> None:
    for fn in (ram_truth.object_classes, ram_truth.moving_classes):
        with pytest.raises(ValueError, match="no RAM ground truth for game 'Tetris'; supported: Pong"):
            fn("Tetris")
    with pytest.raises(ValueError, match="no RAM ground truth for game 'Tetris'"):
        ram_truth.ram_objects("Tetris", np.zeros(128, dtype=np.uint8))


def test_bad_ram_shape() -> None:
    with pytest.raises(ValueError, match="shape"):
        ram_truth.ram_objects("Pong", np.zeros((3, 64), dtype=np.uint8))
