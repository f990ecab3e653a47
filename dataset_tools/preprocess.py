"""The one preprocessing function: raw ALE frame -> model frame.

Collection records it in the dataset manifest, training stores it in every checkpoint, and the
learned env and its real twin apply the same :class:`Preprocess` to real frames.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from dataset_tools.atari import game_spec

RAW_SHAPE = (210, 160, 3)
"""(H, W, C) of an ALE RGB frame."""


@dataclass(frozen=True)
class Preprocess:
    """Crop, resize and colour conversion of raw ``(..., 210, 160, 3)`` uint8 frames."""

    crop: tuple[int, int, int, int] | None = None
    """(top, bottom, left, right) pixel bounds in the raw frame; None keeps the whole frame."""
    size: tuple[int, int] = (64, 64)
    """(height, width) of the model frame."""
    grayscale: bool = False
    """Convert to one luminance channel instead of RGB."""

    @property
    def channels(self) -> int:
        return 1 if self.grayscale else 3

    @property
    def shape(self) -> tuple[int, int, int]:
        """(H, W, C) of a preprocessed frame."""
        return (self.size[0], self.size[1], self.channels)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """``(..., 210, 160, 3)`` uint8 RGB -> ``(..., H, W, C)`` uint8."""
        frames = np.asarray(frames)
        if frames.ndim < 3 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected uint8 RGB frames of shape (..., H, W, 3), got {frames.dtype} {frames.shape}")
        lead = frames.shape[:-3]
        flat = frames.reshape((-1, *frames.shape[-3:]))  # (..., H, W, 3) -> (N, H, W, 3)
        if self.crop is not None:
            top, bottom, left, right = self.crop
            flat = flat[:, top:bottom, left:right]
        out = np.empty((flat.shape[0], *self.shape), dtype=np.uint8)
        h, w = self.size
        for i, frame in enumerate(flat):
            small = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
            if self.grayscale:
                out[i, :, :, 0] = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
            else:
                out[i] = small
        return out.reshape((*lead, *self.shape))  # (N, H, W, C) -> (..., H, W, C)

    def boxes(self, boxes: np.ndarray) -> np.ndarray:
        """Pixel boxes ``(N, 4) [x, y, w, h]`` of the raw frame -> the same boxes in the preprocessed frame.

        Boxes are clipped to the crop first; one wholly outside it comes out with zero width or height.
        Returns float64 (N, 4).
        """
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        top, bottom, left, right = self.crop if self.crop is not None else (0, RAW_SHAPE[0], 0, RAW_SHAPE[1])
        x0, x1 = np.clip(b[:, 0], left, right), np.clip(b[:, 0] + b[:, 2], left, right)
        y0, y1 = np.clip(b[:, 1], top, bottom), np.clip(b[:, 1] + b[:, 3], top, bottom)
        sx, sy = self.size[1] / (right - left), self.size[0] / (bottom - top)
        return np.stack([(x0 - left) * sx, (y0 - top) * sy, (x1 - x0) * sx, (y1 - y0) * sy], axis=-1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocess:
        crop = data.get("crop")
        return cls(
            crop=tuple(crop) if crop is not None else None,  # type: ignore[arg-type]
            size=tuple(data.get("size", (64, 64))),  # type: ignore[arg-type]
            grayscale=bool(data.get("grayscale", False)),
        )


def play_field(game: str) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of ``game``'s play field in the raw frame (whole frame if unknown)."""
    return game_spec(game).crop or (0, RAW_SHAPE[0], 0, RAW_SHAPE[1])


def preprocess_for(crop: tuple[float, ...] | list[float], frame_shape: tuple[int, int, int]) -> Preprocess:
    """The preprocessing that makes a model's (C, H, W) frames from the raw frame's ``crop`` (top, bottom, left,
    right), e.g. the crop a checkpoint keeps in a buffer so its frame detector works without the dataset."""
    c, h, w = frame_shape
    top, bottom, left, right = (int(v) for v in crop)
    return Preprocess(crop=(top, bottom, left, right), size=(h, w), grayscale=c == 1)


def default_preprocess(game: str, size: tuple[int, int] = (64, 64), grayscale: bool = False) -> Preprocess:
    """The default preprocessing for ``game``: its play-field crop (if known), resized to ``size``."""
    return Preprocess(crop=game_spec(game).crop, size=size, grayscale=grayscale)


def to_tensor_layout(frames: np.ndarray) -> np.ndarray:
    """``(..., H, W, C)`` uint8 -> ``(..., C, H, W)`` float32 in [0, 1] (the models' layout)."""
    moved = np.moveaxis(frames, -1, -3)  # (..., H, W, C) -> (..., C, H, W)
    return moved.astype(np.float32) / 255.0
