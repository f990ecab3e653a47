"""Episode frames as keyframes plus sparse deltas: exact, and about 40x fewer bytes than raw indices.

Consecutive Atari frames differ in few pixels (in Pong about 22 of the 4,200 eight-pixel words of
a 210 x 160 frame change per step). Writing whole frames made collection pay more for the kernel's
file writes than for anything but the emulator, so a shard stores:

    keyframes.npy    (K, H, W) uint8   frames stored whole: frame 0, every ``key_every``-th frame,
                                       and frames where more than ``key_fraction`` of the words changed
    keyframe_at.npy  (K,) int64        their frame numbers (increasing, starting at 0)
    delta_start.npy  (N+1,) int64      frame t's changes are rows delta_start[t]:delta_start[t+1]
                                       (none for keyframes)
    delta_pos.npy    (D,) uint16       changed word positions in the frame seen as (H*W/w,) words
    delta_val.npy    (D,) uint64       their new values (w = 8 bytes; smaller words if H*W needs)

:class:`DeltaFrames` decodes any frame from the keyframe at or before it, so random access costs at
most ``key_every`` small updates, and every array can stay memory-mapped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FILES = ("keyframes", "keyframe_at", "delta_start", "delta_pos", "delta_val")


def _word_dtype(pixels: int) -> np.dtype:
    for size, dtype in ((8, np.uint64), (4, np.uint32), (2, np.uint16)):
        if pixels % size == 0:
            return np.dtype(dtype)
    return np.dtype(np.uint8)


def encode(indices: np.ndarray, key_every: int = 64, key_fraction: float = 0.25) -> dict[str, np.ndarray]:
    """``(N, H, W)`` uint8 frames -> the arrays listed in the module docstring."""
    n, h, w = indices.shape
    word = _word_dtype(h * w)
    words = np.ascontiguousarray(indices).reshape(n, -1).view(word)  # (N, H, W) -> (N, H*W/w)
    changed = words[1:] != words[:-1]  # (N-1, words): what changed since the previous frame
    counts = changed.sum(axis=1)
    is_key = np.zeros(n, dtype=bool)
    is_key[0] = True
    is_key[1:] = counts > key_fraction * words.shape[1]
    since = 0
    for t in range(1, n):  # a keyframe at least every key_every frames
        since = 0 if is_key[t] else since + 1
        if since == key_every:
            is_key[t], since = True, 0
    changed[is_key[1:]] = False  # keyframes carry no deltas
    frame, pos = np.nonzero(changed)  # row-major: sorted by frame, then position
    starts = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(frame + 1, minlength=n), out=starts[1:])  # (N,) counts per frame -> offsets
    pos_dtype = np.uint16 if words.shape[1] <= 1 << 16 else np.uint32
    return {
        "keyframes": np.ascontiguousarray(indices[is_key]),
        "keyframe_at": np.flatnonzero(is_key).astype(np.int64),
        "delta_start": starts,
        "delta_pos": pos.astype(pos_dtype),
        "delta_val": words[1:][frame, pos],
    }


class DeltaFrames:
    """The ``(N, H, W)`` uint8 frames of :func:`encode`'s arrays (which may be memory maps).

    Indexing along the first axis (an int, a slice, an int array) decodes the frames asked for;
    further indices apply to the decoded frames.
    """

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.keyframes = arrays["keyframes"]
        self.keyframe_at = np.asarray(arrays["keyframe_at"])
        self.delta_start = np.asarray(arrays["delta_start"])
        self.delta_pos = arrays["delta_pos"]
        self.delta_val = arrays["delta_val"]
        n = len(self.delta_start) - 1
        if self.keyframes.ndim != 3 or len(self.keyframes) != len(self.keyframe_at) or n < 1:
            raise ValueError(f"{len(self.keyframe_at)} keyframe numbers for keyframes {self.keyframes.shape}")
        if self.keyframe_at[0] != 0 or self.keyframe_at[-1] >= n or np.any(np.diff(self.keyframe_at) <= 0):
            raise ValueError(f"keyframe numbers must increase from 0 and stay below {n}")
        if (
            self.delta_start[0] != 0
            or self.delta_start[-1] != len(self.delta_pos)
            or len(self.delta_pos) != len(self.delta_val)
        ):
            raise ValueError(f"delta offsets end at {self.delta_start[-1]}, there are {len(self.delta_pos)} deltas")
        self._key_row = np.full(n, -1, dtype=np.int64)
        self._key_row[self.keyframe_at] = np.arange(len(self.keyframe_at))
        self._word = np.dtype(self.delta_val.dtype)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self._key_row), *self.keyframes.shape[1:])  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8)

    @property
    def ndim(self) -> int:
        return 3

    def __len__(self) -> int:
        return len(self._key_row)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        frames = self._decode(0, len(self))
        return frames if dtype is None else frames.astype(dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        rest: tuple[Any, ...] = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                return self[(np.arange(start, stop, step), *rest)]
            frames, lead = self._decode(start, max(stop, start)), 1
        elif isinstance(key, (int, np.integer)):
            t = int(key) + len(self) if key < 0 else int(key)
            if not 0 <= t < len(self):
                raise IndexError(f"frame {key} out of range for {len(self)} frames")
            frames, lead = self._decode(t, t + 1)[0], 0
        else:
            ts = np.arange(len(self))[np.asarray(key)]  # bounds-checked frame numbers
            frames, lead = np.empty((*ts.shape, *self.shape[1:]), dtype=np.uint8), ts.ndim
            for out, t in zip(frames.reshape(-1, *self.shape[1:]), ts.reshape(-1), strict=True):
                out[...] = self._decode(int(t), int(t) + 1)[0]
        return frames[(slice(None),) * lead + rest] if rest else frames

    def _decode(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start:stop`` ``(stop - start, H, W)``, decoded from the keyframe at or before ``start``."""
        out = np.empty((stop - start, *self.shape[1:]), dtype=np.uint8)
        if stop == start:
            return out
        first = int(self.keyframe_at[np.searchsorted(self.keyframe_at, start, side="right") - 1])
        words = np.empty(out[0].size // self._word.itemsize, dtype=self._word)
        for t in range(first, stop):
            row = self._key_row[t]
            if row >= 0:
                words[...] = np.asarray(self.keyframes[row]).reshape(-1).view(self._word)
            else:
                a, b = self.delta_start[t], self.delta_start[t + 1]
                words[self.delta_pos[a:b]] = self.delta_val[a:b]
            if t >= start:
                out[t - start] = words.view(np.uint8).reshape(self.shape[1:])
        return out
