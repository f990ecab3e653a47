"""Background images, motion masks, boxes and SPACE grid targets (dataset_tools.background / .motion)."""

from __future__ import annotations

import numpy as np
import pytest

from dataset_tools.background import background_images, load_background, save_background
from dataset_tools.motion import boxes_from_mask, draw_boxes, episode_motion, grid_targets, motion_masks

BG = (144, 72, 17)
WHITE = (236, 236, 236)
GREEN = (92, 186, 92)
H, W = 80, 96


def _scene(t_len: int = 20) -> tuple[np.ndarray, list[list[tuple[int, int, int, int]]]]:
    """Constant background with two rectangles: A (6x4, white) moves right 3 px/frame, B (5x7, green) down 2 px/frame.

    Returns frames (T, H, W, 3) and the true [x, y, w, h] boxes of every frame, sorted by (y, x).
    """
    frames = np.empty((t_len, H, W, 3), dtype=np.uint8)
    frames[:] = BG
    truth = []
    for t in range(t_len):
        a = (10 + 3 * t, 20, 6, 4)
        b = (70, 5 + 2 * t, 5, 7)
        for (x, y, w, h), col in ((a, WHITE), (b, GREEN)):
            frames[t, y : y + h, x : x + w] = col
        truth.append(sorted([a, b], key=lambda r: (r[1], r[0])))
    return frames, truth


# ---------------------------------------------------------------- background


def test_mode_is_colour_seen_most_often() -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(50, 4, 5, 3), dtype=np.uint8)  # noise: every colour distinct
    frames[rng.permutation(50)[:27], 1, 2] = (10, 20, 30)  # 27 / 50 > 50 % at pixel (1, 2)
    frames[:, 3, 4] = (1, 2, 3)
    mode, median = background_images(frames)
    assert mode.shape == median.shape == (4, 5, 3) and mode.dtype == median.dtype == np.uint8
    assert tuple(mode[1, 2]) == (10, 20, 30)
    assert tuple(median[1, 2]) == (10, 20, 30)  # a colour held by > 50 % is also every channel's median
    assert tuple(mode[3, 4]) == tuple(median[3, 4]) == (1, 2, 3)


def test_mode_is_a_full_colour_and_median_is_per_channel() -> None:
    seq = [(0, 0, 255), (0, 0, 255), (255, 0, 0), (0, 255, 0), (128, 128, 0)]
    frames = np.array(seq, dtype=np.uint8).reshape(5, 1, 1, 3)  # (5, 3) -> (T=5, H=1, W=1, 3)
    mode, median = background_images(frames)
    assert tuple(mode[0, 0]) == (0, 0, 255)  # the most frequent triple
    assert tuple(median[0, 0]) == (0, 0, 0)  # channel medians: a colour that never appeared


def test_mode_ties_and_even_median() -> None:
    frames = np.array([(9, 9, 9), (9, 9, 9), (3, 3, 3), (3, 3, 3)], dtype=np.uint8).reshape(4, 1, 1, 3)
    mode, median = background_images(frames)
    assert tuple(mode[0, 0]) == (3, 3, 3)  # tie -> smallest packed colour
    assert tuple(median[0, 0]) == (6, 6, 6)  # mean of the two middle values


def test_background_matches_brute_force_and_list_input() -> None:
    rng = np.random.default_rng(1)
    palette = np.array([BG, WHITE, GREEN, (0, 0, 0)], dtype=np.uint8)
    frames = palette[rng.choice(4, size=(61, 7, 9), p=[0.4, 0.3, 0.2, 0.1])]  # (T, H, W) -> (T, H, W, 3)
    mode, median = background_images(frames)
    for y in range(7):
        for x in range(9):
            colours, counts = np.unique(frames[:, y, x], axis=0, return_counts=True)
            assert counts[(colours == mode[y, x]).all(axis=1)][0] == counts.max()
    np.testing.assert_array_equal(median, np.median(frames, axis=0).astype(np.uint8))  # odd T: exact
    mode2, median2 = background_images([frames[:20], frames[20:]])
    np.testing.assert_array_equal(mode, mode2)
    np.testing.assert_array_equal(median, median2)


def test_background_subsamples_and_roundtrips(tmp_path) -> None:
    frames, _ = _scene(40)
    mode, median = background_images(frames, max_frames=25, seed=3)
    assert (mode == BG).all() and (median == BG).all()
    save_background(mode, median, tmp_path / "ds")
    for kind, img in (("mode", mode), ("median", median)):
        loaded = load_background(tmp_path / "ds", kind)
        assert loaded.dtype == np.uint8
        np.testing.assert_array_equal(loaded, img)  # RGB order preserved
    with pytest.raises(FileNotFoundError, match="--rootmedian"):
        load_background(tmp_path / "missing", "mode")


# ---------------------------------------------------------------- masks, boxes, grid targets


@pytest.mark.parametrize("method", ["mode", "median"])
def test_background_motion_is_exact(method: str) -> None:
    frames, truth = _scene()
    mask = motion_masks(frames, method)  # the frames' own background
    assert mask.shape == (20, H, W) and mask.dtype == bool
    for t in range(20):
        expected = np.zeros((H, W), dtype=bool)
        for x, y, w, h in truth[t]:
            expected[y : y + h, x : x + w] = True
        np.testing.assert_array_equal(mask[t], expected)
        np.testing.assert_array_equal(boxes_from_mask(mask[t]), np.array(truth[t], dtype=np.int32))
    given = np.full((H, W, 3), BG, dtype=np.uint8)
    np.testing.assert_array_equal(motion_masks(frames, method, background=given), mask)
    assert not motion_masks(frames, method, background=given, threshold=255).any()
    with pytest.raises(ValueError, match="background shape"):
        motion_masks(frames, method, background=given[:10])


def test_mode_and_median_backgrounds_differ_where_no_colour_dominates() -> None:
    frames = np.zeros((5, 2, 2, 3), dtype=np.uint8)
    frames[:, 0, 0] = [(0, 0, 255), (0, 0, 255), (255, 0, 0), (0, 255, 0), (128, 128, 0)]
    mode_mask = motion_masks(frames, "mode", close_kernel=1)
    median_mask = motion_masks(frames, "median", close_kernel=1)
    np.testing.assert_array_equal(mode_mask[:, 0, 0], [False, False, True, True, True])  # mode (0,0,255)
    np.testing.assert_array_equal(median_mask[:, 0, 0], [True, True, True, True, True])  # median (0,0,0)
    assert not mode_mask[:, 1:].any() and not median_mask[:, 1:].any()


def test_boxes_from_mask_min_area_and_empty() -> None:
    mask = np.zeros((30, 40), dtype=bool)
    mask[2:4, 3:5] = True  # 2x2
    mask[10:20, 20:23] = True  # 3x10
    mask[25, 35] = True  # 1x1
    np.testing.assert_array_equal(boxes_from_mask(mask), [[3, 2, 2, 2], [20, 10, 3, 10], [35, 25, 1, 1]])
    np.testing.assert_array_equal(boxes_from_mask(mask, min_area=4), [[3, 2, 2, 2], [20, 10, 3, 10]])
    empty = boxes_from_mask(np.zeros((5, 5), dtype=bool))
    assert empty.shape == (0, 4) and empty.dtype == np.int32


def test_grid_targets_values() -> None:
    z_pres, z_where = grid_targets(np.array([[10, 20, 6, 4], [70, 5, 5, 7]]), H, W, grid=8)
    assert z_pres.shape == (8, 8) and z_where.shape == (8, 8, 4)
    assert z_pres.dtype == z_where.dtype == np.float32
    # A: centre (13, 22) -> col floor(13 / 96 * 8) = 1, row floor(22 / 80 * 8) = 2
    # B: centre (72.5, 8.5) -> col 6, row 0
    assert set(zip(*np.nonzero(z_pres), strict=True)) == {(2, 1), (0, 6)}
    np.testing.assert_allclose(z_where[2, 1], [6 / 96, 4 / 80, 2 * 13 / 96 - 1, 2 * 22 / 80 - 1], rtol=1e-6)
    np.testing.assert_allclose(z_where[0, 6], [5 / 96, 7 / 80, 2 * 72.5 / 96 - 1, 2 * 8.5 / 80 - 1], rtol=1e-6)
    assert (z_where[z_pres == 0] == 0).all()
    z_pres, z_where = grid_targets(np.zeros((0, 4), dtype=np.int32), H, W)
    assert z_pres.shape == (16, 16) and not z_pres.any() and not z_where.any()
    z_pres, z_where = grid_targets(np.array([[0, 0, W, H]]), H, W, grid=4)  # whole frame: centre cell (2, 2)
    np.testing.assert_allclose(z_where[2, 2], [1, 1, 0, 0])


def test_grid_targets_keeps_the_larger_box_of_a_cell() -> None:
    small, large, other = [1, 1, 2, 2], [0, 0, 4, 4], [40, 40, 3, 3]
    for boxes in ([small, large, other], [large, small, other]):
        z_pres, z_where = grid_targets(np.array(boxes), 64, 64, grid=8)
        assert z_pres.sum() == 2
        np.testing.assert_allclose(z_where[0, 0], [4 / 64, 4 / 64, 2 * 2 / 64 - 1, 2 * 2 / 64 - 1])
    first, second = [0, 0, 2, 3], [1, 1, 3, 2]  # same area, same cell: the first wins
    _, z_where = grid_targets(np.array([first, second]), 64, 64, grid=8)
    np.testing.assert_allclose(z_where[0, 0, :2], [2 / 64, 3 / 64])


def test_draw_boxes_copies() -> None:
    frames, truth = _scene(1)
    frame = frames[0]
    before = frame.copy()
    drawn = draw_boxes(frame, np.array(truth[0]), color=(255, 0, 0), labels=["a", "b"])
    np.testing.assert_array_equal(frame, before)
    assert drawn.shape == frame.shape and drawn.dtype == np.uint8
    x, y, w, h = truth[0][0]
    for px, py in ((x, y), (x + w - 1, y), (x, y + h - 1), (x + w - 1, y + h - 1)):
        assert tuple(drawn[py, px]) == (255, 0, 0)
    assert (draw_boxes(frame, np.zeros((0, 4))) == frame).all()


def test_episode_motion_outputs() -> None:
    frames, truth = _scene()
    out = episode_motion(frames, "mode", grid=8, min_area=1)
    assert out["mask"].shape == (20, H, W)
    assert out["boxes"].dtype == np.int32 and out["boxes"].shape == (40, 5)
    assert (np.diff(out["boxes"][:, 0]) >= 0).all()
    for t in (0, 7, 19):
        np.testing.assert_array_equal(out["boxes"][out["boxes"][:, 0] == t][:, 1:], truth[t])
        z_pres, z_where = grid_targets(np.array(truth[t]), H, W, grid=8)
        np.testing.assert_array_equal(out["z_pres"][t], z_pres)
        np.testing.assert_array_equal(out["z_where"][t], z_where)
    assert out["z_pres"].shape == (20, 8, 8) and out["z_where"].shape == (20, 8, 8, 4)
    assert out["z_pres"].sum() == 40


def test_flow_finds_a_moving_square() -> None:
    frames = np.full((6, 64, 64, 3), 40, dtype=np.uint8)
    for t in range(6):
        frames[t, 28:36, 10 + 2 * t : 18 + 2 * t] = 220  # 8x8 square moving right 2 px/frame
    mask = motion_masks(frames, "flow")
    for t in range(6):
        boxes = boxes_from_mask(mask[t], min_area=4)
        assert len(boxes) == 1, (t, boxes)
        x, y, w, h = boxes[0]
        sx = 10 + 2 * t
        assert x <= sx + 2 and sx + 6 <= x + w and y <= 30 and 34 <= y + h  # covers the square's core
        assert abs(x + w / 2 - (sx + 4)) <= 1.5 and abs(y + h / 2 - 32) <= 1.5  # centred on the square
        assert w * h < 24 * 24  # Farneback blurs the blob (18x18 here) but keeps it local
    still = np.repeat(frames[:1], 4, axis=0)
    assert not motion_masks(still, "flow").any()
    assert not motion_masks(frames[:1], "flow").any()  # a single frame has no motion


# ---------------------------------------------------------------- real Pong


@pytest.fixture(scope="module")
def pong_frames() -> np.ndarray:
    gym = pytest.importorskip("gymnasium")
    ale_py = pytest.importorskip("ale_py")
    gym.register_envs(ale_py)
    env = gym.make("ALE/Pong-v5")
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    frames = [obs]
    for _ in range(299):
        obs, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        frames.append(obs)
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return np.stack(frames)  # (300, 210, 160, 3)


def _ball_box(frame: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero((frame[34:194] == WHITE).all(axis=-1))
    if len(ys) == 0:
        return None
    return int(xs.min()), int(ys.min()) + 34, int(xs.max() - xs.min()) + 1, int(ys.max() - ys.min()) + 1


def _overlaps(a: np.ndarray, b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


@pytest.mark.parametrize("method", ["mode", "median", "flow"])
def test_real_pong_ball_is_found(pong_frames: np.ndarray, method: str) -> None:
    frames = pong_frames if method != "flow" else pong_frames[:120]
    out = episode_motion(frames, method)
    boxes = out["boxes"]
    visible = found = exact = 0
    for t, frame in enumerate(frames):
        ball = _ball_box(frame)
        if ball is None:
            continue
        visible += 1
        here = boxes[boxes[:, 0] == t][:, 1:]
        found += any(_overlaps(b, ball) for b in here)
        exact += any(tuple(b) == ball for b in here)
    assert visible >= 40
    assert found >= 0.9 * visible, (found, visible)
    if method != "flow":
        assert exact >= 0.9 * visible, (exact, visible)  # against a background image the box is the sprite


def test_plot_labels_stay_inside_and_truth_is_drawn_around_motion() -> None:
    from dataset_tools.motion import draw_boxes

    frame = np.zeros((210, 160, 3), np.uint8)
    box = np.array([[140, 100, 4, 16]])  # Pong's player paddle, at the right edge
    drawn = draw_boxes(draw_boxes(frame, box, (255, 0, 0)), box, (0, 255, 0), labels=["player"], outside=True)
    assert (drawn[100, 140] == [255, 0, 0]).all() and (drawn[99, 139] == [0, 255, 0]).all()  # both visible
    green = np.argwhere((drawn == [0, 255, 0]).all(-1))
    assert green[:, 1].max() < 160 and (drawn[80:99, 100:159, 1] > 0).any()  # the label, left of the edge


def test_motion_outside_the_play_field_is_dropped() -> None:
    from dataset_tools.atari import game_spec
    from dataset_tools.motion import episode_motion

    frames = np.zeros((3, 210, 160, 3), np.uint8)
    frames[1, 10:20, 30:40] = 200  # a score digit changing above the field
    frames[2, 100:104, 80:82] = 236  # the ball
    out = episode_motion(frames, "mode", background=np.zeros((210, 160, 3), np.uint8), field=game_spec("Pong").field)
    assert len(out["boxes"]) and (out["boxes"][:, 2] >= 34).all() and not out["mask"][:, :34].any()
