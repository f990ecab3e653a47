"""ALE frames as palette indices: one byte per pixel plus the game's colour table.

The emulator draws every pixel as a palette index (``ale.getScreen()``) and ``getScreenRGB()`` is
that index looked up in a colour table fixed by the ROM. Storing the indices keeps every frame
exactly (a third of the bytes of RGB) as long as the table holds the colour of every index used:
:class:`ColourTable` learns colours from the emulator the first time an index appears on screen
and refuses an index that would map to two colours. Readers get RGB back through
:class:`PaletteFrames`, an array-like view that looks colours up only for the frames indexed.
Shards store the indices further reduced to keyframes plus changes (see :mod:`frame_codec`).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np


class PaletteError(RuntimeError):
    """Frames that cannot be stored as palette indices exactly."""


class ColourTable:
    """Index -> RGB colours of one game, learned from the emulator while collecting.

    ``rgb`` is ``(256, 3)`` uint8 (zeros for indices never seen); ``known`` lists the indices seen.
    """

    def __init__(self) -> None:
        self.rgb = np.zeros((256, 3), dtype=np.uint8)
        self._unknown = np.ones(256, dtype=np.uint8)  # 1 where the colour of an index is not known yet

    @property
    def known(self) -> np.ndarray:
        """Sorted indices whose colour is known, ``(K,)`` int64."""
        return np.flatnonzero(self._unknown == 0)

    def has_unknown(self, indices: np.ndarray, previous: np.ndarray | None = None) -> bool:
        """Whether an ``(H, W)`` uint8 index frame uses an index of unknown colour.

        With ``previous``, a frame already checked, only the pixels that differ from it are looked
        at (they are compared eight at a time): in Pong about 1% of a frame changes per step, and
        this takes a third of the time of a full look-up.
        """
        if previous is None or indices.size % 8:
            return cv2.countNonZero(cv2.LUT(indices, self._unknown)) > 0
        now = indices.reshape(-1).view(np.uint64)  # (H, W) uint8 -> (H*W/8,) uint64
        before = previous.reshape(-1).view(np.uint64)
        changed = now[now != before].view(np.uint8)  # (K,) uint64 -> (8K,) uint8
        return bool(self._unknown.take(changed).any())

    def learn(self, indices: np.ndarray, rgb: np.ndarray) -> None:
        """Add the colours of ``rgb`` ``(H, W, 3)``, the emulator's rendering of ``indices`` ``(H, W)``.

        Raises :class:`PaletteError` if an index shows two colours (the frame would not be stored exactly).
        """
        flat_idx = indices.reshape(-1)  # (H, W) -> (H*W,)
        flat_rgb = rgb.reshape(-1, 3)  # (H, W, 3) -> (H*W, 3)
        for index in np.unique(flat_idx[self._unknown[flat_idx] == 1]):
            self.rgb[index] = flat_rgb[np.argmax(flat_idx == index)]
            self._unknown[index] = 0
        if not np.array_equal(self.rgb[flat_idx], flat_rgb):
            bad = int(flat_idx[np.flatnonzero((self.rgb[flat_idx] != flat_rgb).any(axis=1))[0]])
            raise PaletteError(f"palette index {bad} shows more than one colour; frames cannot be stored as indices")


def used_indices(indices: np.ndarray) -> np.ndarray:
    """Sorted palette indices that occur in the uint8 array ``indices`` (any shape)."""
    counts = np.zeros(256, dtype=np.int64)
    flat = np.asarray(indices).reshape(-1)
    for start in range(0, len(flat), 1 << 20):  # chunks: bincount widens its input to int64
        counts += np.bincount(flat[start : start + (1 << 20)], minlength=256)
    return np.flatnonzero(counts)


def to_rgb(palette: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``(...)`` uint8 palette indices -> ``(..., 3)`` uint8 RGB (OpenCV's LUT: 5x numpy's take)."""
    if indices.size == 0 or indices.ndim == 0:
        return np.take(palette, indices, axis=0)
    flat = np.ascontiguousarray(indices).reshape(-1, indices.shape[-1])  # (..., W) -> (rows, W)
    rgb = cv2.LUT(cv2.merge([flat, flat, flat]), palette.reshape(256, 1, 3))  # (rows, W, 3)
    return rgb.reshape(*indices.shape, 3)


class PaletteFrames:
    """``(N, H, W, 3)`` uint8 RGB frames held as ``indices`` ``(N, H, W)`` uint8 and ``palette`` ``(256, 3)``.

    Behaves like a read-only array for what readers do: ``len``, ``shape``, ``dtype``, slicing and
    integer / array indexing along the first axes (RGB looked up for the selected frames only), and
    ``np.asarray(frames)`` for all of them. ``indices`` is an array (or memory map) or any
    array-like with the same indexing, such as the decoder of stored frames (``DeltaFrames``).
    """

    def __init__(self, indices: Any, palette: np.ndarray) -> None:
        if indices.ndim != 3 or indices.dtype != np.uint8:
            raise ValueError(f"indices must be (N, H, W) uint8, got {indices.dtype} {indices.shape}")
        if palette.shape != (256, 3) or palette.dtype != np.uint8:
            raise ValueError(f"palette must be (256, 3) uint8, got {palette.dtype} {palette.shape}")
        self.indices = indices
        self.palette = palette

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (*self.indices.shape, 3)  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8)

    @property
    def ndim(self) -> int:
        return 4

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple) and len(key) > 3:  # a channel index too: (t, y, x, c)
            return self[key[:3]][(Ellipsis, *key[3:])]
        return to_rgb(self.palette, np.asarray(self.indices[key]))

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        rgb = self[:]
        return rgb if dtype is None else rgb.astype(dtype)

    def __repr__(self) -> str:
        return f"PaletteFrames(shape={self.shape})"
