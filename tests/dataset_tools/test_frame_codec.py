"""Keyframes + sparse deltas: exact round trips and array-like indexing."""

from __future__ import annotations

import numpy as np
import pytest

from dataset_tools.frame_codec import DeltaFrames, encode


def _frames(n: int = 300, shape: tuple[int, int] = (210, 160)) -> np.ndarray:
    """Mostly still frames with a moving block and a moving dot, and one frame of noise halfway."""
    frames = np.full((n, *shape), 14, np.uint8)
    for t in range(n):
        y = (3 * t) % (shape[0] - 2)
        frames[t, y : y + 2, 3:5] = 200
        frames[t, shape[0] // 2, t % shape[1]] = 34
    frames[n // 2] = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    return frames


def test_round_trip_keyframes_and_sizes() -> None:
    frames = _frames()
    arrays = encode(frames, key_every=64)
    # frame 0, every 64th frame since the last keyframe, and the two frames around the noise
    assert arrays["keyframe_at"].tolist() == [0, 64, 128, 150, 151, 215, 279]
    assert arrays["delta_pos"].dtype == np.uint16 and arrays["delta_val"].dtype == np.uint64
    stored = sum(a.nbytes for a in arrays.values())
    assert stored < frames.nbytes / 20
    np.testing.assert_array_equal(np.asarray(DeltaFrames(arrays)), frames)


@pytest.mark.parametrize("shape", [(210, 160), (7, 9), (6, 10)])  # 8-, 1- and 4-byte words
def test_indexing_matches_the_array(shape: tuple[int, int]) -> None:
    frames = _frames(120, shape)
    decoded = DeltaFrames(encode(frames, key_every=16))
    assert decoded.shape == frames.shape and len(decoded) == len(frames) and decoded.dtype == np.uint8
    keys = [5, -1, slice(None), slice(30, 50), slice(3, 119, 7), np.array([119, 0, 31, 32]), (7, slice(2, 5), 3)]
    keys += [(slice(10, 12), 1), (np.array([1, 2]), 0, 0), slice(40, 40)]
    for key in keys:
        np.testing.assert_array_equal(decoded[key], frames[key], err_msg=str(key))
    with pytest.raises(IndexError):
        decoded[120]


def test_inconsistent_arrays_are_refused() -> None:
    arrays = encode(_frames(50))
    with pytest.raises(ValueError, match="deltas"):
        DeltaFrames({**arrays, "delta_val": arrays["delta_val"][:-1]})
    with pytest.raises(ValueError, match="keyframe"):
        DeltaFrames({**arrays, "keyframe_at": arrays["keyframe_at"][::-1].copy()})
