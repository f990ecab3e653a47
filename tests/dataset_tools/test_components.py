"""Foreground components: one-colour connected pixels against a background, exact boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dataset_tools.background import background_images
from dataset_tools.components import foreground_components, foreground_mask, merge_specks
from dataset_tools.dataset import DatasetDir
from dataset_tools.ram_truth import ram_objects

FIELD, WHITE, GREEN = (144, 72, 17), (236, 236, 236), (92, 186, 92)


def test_a_ball_over_a_paddle_is_its_own_component() -> None:
    background = np.zeros((40, 30, 3), np.uint8)
    background[:] = FIELD
    frame = background.copy()
    frame[10:26, 20:24] = GREEN  # a 4 x 16 paddle
    frame[14:18, 21:23] = WHITE  # a 2 x 4 ball drawn over it
    frame[30:32, 2:3] = WHITE  # a lone 1 x 2 fleck
    boxes, ids = foreground_components(frame, background, with_ids=True)
    assert boxes.tolist() == [[20, 10, 4, 16, 56], [21, 14, 2, 4, 8], [2, 30, 1, 2, 2]]  # largest first
    assert (ids == 2).sum() == 8 and (ids[14:18, 21:23] == 2).all() and (ids == 1).sum() == 56
    assert foreground_components(frame, background, min_area=3).shape == (2, 5)
    assert foreground_components(background, background).shape == (0, 5)
    assert not foreground_mask(frame + 5, frame).any()  # below the threshold: background
    with pytest.raises(ValueError, match="shape"):
        foreground_mask(frame, background[:10])


def test_specks_join_the_sprite_they_touch() -> None:
    """A car of Freeway's kind (an 8 x 8 body, four 2 x 1 wheels of another colour) is one component; a ball
    over a paddle and a speck touching nothing larger stay their own."""
    background = np.zeros((40, 40, 3), np.uint8)
    background[:] = FIELD
    frame = background.copy()
    frame[11:19, 5:13] = GREEN  # the body
    for y, x in ((10, 6), (10, 10), (19, 6), (19, 10)):
        frame[y, x : x + 2] = WHITE  # the wheels
    frame[20:36, 30:34] = GREEN  # a 4 x 16 paddle
    frame[24:28, 31:33] = WHITE  # a 2 x 4 ball over it
    frame[36, 20:22] = WHITE  # a speck alone
    comp, ids = foreground_components(frame, background, with_ids=True)
    assert len(comp) == 8
    merged, merged_ids = merge_specks(comp, ids, 2)
    assert merged.tolist() == [[5, 10, 8, 10, 72], [30, 20, 4, 16, 56], [31, 24, 2, 4, 8], [20, 36, 2, 1, 2]]
    for k, (x, y, w, h, area) in enumerate(merged):
        ys, xs = np.nonzero(merged_ids == k + 1)
        assert (xs.min(), ys.min(), xs.max() + 1 - x, ys.max() + 1 - y, len(xs)) == (x, y, w, h, area)
    assert merged_ids.max() == 4
    assert merge_specks(comp, ids, 0)[0] is comp  # off


def test_components_find_the_ram_objects_of_real_pong_frames(pong_dataset: Path) -> None:
    ds = DatasetDir(pong_dataset)
    frames = np.concatenate([np.asarray(ds.load(e).frames)[5:] for e in ds.episode_indices()])
    ram = np.concatenate([np.asarray(ds.load(e).ram)[5:] for e in ds.episode_indices()])
    crops = frames[:, 34:194]
    background, _ = background_images(crops)
    truth = ram_objects("Pong", ram)
    found = {name: 0 for name in truth}
    visible = {name: 0 for name in truth}
    for t, crop in enumerate(crops):
        boxes = foreground_components(crop, background)
        for name, box in truth.items():
            if box[t, 0] == 0:
                continue
            visible[name] += 1
            centre = box[t, 1:3] + box[t, 3:5] / 2 - (0, 34)
            centres = boxes[:, :2] + boxes[:, 2:4] / 2
            found[name] += bool(len(boxes)) and np.abs(centres - centre).max(1).min() <= 1.0
    assert visible["ball"] > 100
    for name in truth:  # every object, exact to a pixel (the RAM's ball is itself 1 px off at times)
        assert found[name] == visible[name], (name, found[name], visible[name])


def test_the_fast_mask_is_the_plain_one() -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (50, 40, 3), dtype=np.uint8)
    background = np.clip(frame.astype(np.int16) + rng.integers(-20, 21, frame.shape), 0, 255).astype(np.uint8)
    for threshold in (0, 5, 10, 19):
        plain = np.abs(frame.astype(np.int16) - background.astype(np.int16)).max(axis=-1) > threshold
        np.testing.assert_array_equal(foreground_mask(frame, background, threshold), plain)
        # other dtypes take numpy's way, with the same answer
        np.testing.assert_array_equal(
            foreground_mask(frame.astype(np.int16), background.astype(np.int16), threshold), plain
        )
