"""What the library knows of one ALE game (:class:`GameSpec`), and the helper its RAM maps share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

WHOLE_FRAME = (0, 210, 0, 160)
"""(top, bottom, left, right) of a raw ALE frame."""


@dataclass(frozen=True)
class GameSpec:
    """One game as collection, scoring, the models and the agents see it. General code asks this instead of
    comparing game names; a game with no module of its own gets :func:`~dataset_tools.atari.game_spec`'s
    plain one (whole frame, no RAM truth)."""

    name: str
    """ALE name (``"Pong"``)."""
    field: tuple[int, int, int, int] = WHOLE_FRAME
    """(top, bottom, left, right), half-open, raw pixels: where the game draws its objects."""
    crop: tuple[int, int, int, int] | None = None
    """The default preprocessing crop (None: the whole frame)."""
    classes: tuple[str, ...] = ()
    """Names of the objects its RAM map returns, in order."""
    moving: tuple[str, ...] | None = None
    """The classes that move on screen (None: all of them)."""
    ram_objects: Callable[[np.ndarray], dict[str, np.ndarray]] | None = None
    """``(T, 128)`` int64 RAM -> ``{class: (T, 5) float32 [visible, x, y, w, h]}`` boxes in raw pixels, for
    scoring only (see :mod:`dataset_tools.ram_truth`); None: no RAM truth for this game."""
    scripted: Callable[..., Any] | None = None
    """``scripted(noise=, n_actions=, seed=)`` -> an agent that plays it from the RAM (for data), or None."""
    paddle_rally: bool = False
    """Two paddles and a ball (Pong): the layout ``world_models.objects.pong_objects``, ``object_dynamics``, epva's
    pose modes and ``learned-envs fidelity`` read."""
    key_tokens: tuple[tuple[str, str], ...] = ()
    """For a person at the keyboard (``learned-envs play --serve``): the words of the action names (``UP``,
    ``LEFT``, ...) that the arrow keys stand for where they differ, ``("UP", "RIGHT")`` where ``RIGHT`` moves
    the paddle up; ``("LEFT", "")`` makes a key do nothing."""

    anchors: tuple[tuple[str, float], ...] = ()
    """Published real-game scores to set results beside, Atari 100k (100k agent steps): ``random`` and
    ``human`` (the human-normalised score's ends), then ``SimPLe`` and ``DIAMOND``; empty: none known."""

    @property
    def moving_classes(self) -> tuple[str, ...]:
        return self.classes if self.moving is None else self.moving


def sprite_box(
    x: np.ndarray | int, y: np.ndarray | int, w: int, h: int, field: tuple[int, int, int, int], n: int
) -> np.ndarray:
    """``(n, 5)`` float32 ``[visible, x, y, w, h]`` for a ``w`` x ``h`` sprite at ``(x, y)``, clipped to ``field``."""
    top, bottom, left, right = field
    x = np.broadcast_to(np.asarray(x, dtype=np.int64), (n,))
    y = np.broadcast_to(np.asarray(y, dtype=np.int64), (n,))
    x0, x1 = np.clip(x, left, right), np.clip(x + w, left, right)
    y0, y1 = np.clip(y, top, bottom), np.clip(y + h, top, bottom)
    visible = (x1 > x0) & (y1 > y0)
    out = np.stack([visible, x0, y0, x1 - x0, y1 - y0], axis=-1).astype(np.float32)
    out[~visible] = 0.0
    return out
