"""Ground-truth object boxes decoded from the Atari 2600 RAM.

For a few games the positions of the on-screen objects are stored at known RAM addresses
(the AtariARI annotations were the starting point).  This module turns a RAM snapshot into
pixel boxes in the raw 210x160 (H x W) ALE frame, e.g. to score motion boxes or to label data.

Every mapping below was calibrated empirically against the RGB observations of
``ALE/<Game>-v5`` (frameskip 4, no sticky actions): each object was found by its exact
colour inside the play field and the RAM -> pixel offsets were fitted (the test
``tests/dataset_tools/test_ram_truth.py`` re-measures the agreement on fresh frames).

Timing: for all supported games the observation returned by ``env.step`` matches the RAM read
right after that step (``env.unwrapped.ale.getRAM()``), i.e. frame ``t`` pairs with RAM ``t``;
there is no one-frame lag.  Pairing frame ``t`` with RAM ``t - 1`` was clearly worse for every
fast object: even with offsets re-fitted for that pairing, the Pong and Breakout balls were within
2 px on only 63-89% of frames per axis, against 100% with the matching RAM.

Boxes are ``[visible, x, y, w, h]`` with ``(x, y)`` the top-left corner, clipped to the game's
play field; an object whose clipped box is empty has ``visible = 0`` and zeros elsewhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

logger = logging.getLogger(__name__)

GAMES: tuple[str, ...] = ("Pong", "Breakout", "Boxing", "Freeway")

_N_CARS = 10

_CLASSES: dict[str, tuple[str, ...]] = {
    "Pong": ("player", "enemy", "ball"),
    "Breakout": ("player", "ball"),
    "Boxing": ("player", "enemy"),
    # car<i> is the car whose x is at RAM 108 + i; car0 drives in the bottom lane, car9 in the top one.
    "Freeway": ("player", *(f"car{i}" for i in range(_N_CARS))),
}

# Classes that move during play (all of them, for these games).
_MOVING: dict[str, tuple[str, ...]] = dict(_CLASSES)

# (top, bottom, left, right) of the area where each game draws its objects, half-open, raw pixels.
_FIELDS: dict[str, tuple[int, int, int, int]] = {
    "Pong": (34, 194, 0, 160),  # between the white top and bottom walls
    "Breakout": (32, 196, 8, 152),  # inside the grey walls; the ball is still drawn down to row 195
    "Boxing": (36, 177, 32, 128),  # inside the ropes
    "Freeway": (15, 195, 8, 160),  # sidewalk to sidewalk; columns 0-7 are the black HMOVE bar
}


def _check_game(game: str) -> None:
    if game not in _CLASSES:
        raise ValueError(f"no RAM ground truth for game {game!r}; supported: {', '.join(GAMES)}")


def object_classes(game: str) -> tuple[str, ...]:
    """Names of the objects :func:`ram_objects` returns for ``game`` (e.g. Pong: player, enemy, ball)."""
    _check_game(game)
    return _CLASSES[game]


def moving_classes(game: str) -> tuple[str, ...]:
    """The classes of ``game`` that move on screen (the ones motion boxes should find)."""
    _check_game(game)
    return _MOVING[game]


def _box(
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


def _pong(ram: np.ndarray) -> dict[str, np.ndarray]:
    # RAM 46 / 45 (the AtariARI paddle x) never change: the paddles sit at fixed columns.
    # The player's paddle is drawn on even rows only: top = RAM 51 rounded up to even, minus 14
    # (the parity rule is exact on every unclipped frame).  The enemy's RAM 50 was always even
    # in calibration, top = RAM 50 - 15.  Paddles are 4 x 16 and slide under the walls (clipped).
    # Ball: 2 x 4, left = RAM 49 - 49, top = RAM 54 - 14 (exact in ~90% of frames, 1 px off
    # otherwise); when the ball is out of play the RAM holds x = 0 or y = 0, which maps off-field.
    f, n = _FIELDS["Pong"], len(ram)
    return {
        "player": _box(140, ((ram[:, 51] + 1) & ~1) - 14, 4, 16, f, n),
        "enemy": _box(16, ram[:, 50] - 15, 4, 16, f, n),
        "ball": _box(ram[:, 49] - 49, ram[:, 54] - 14, 2, 4, f, n),
    }


def _breakout(ram: np.ndarray) -> dict[str, np.ndarray]:
    # Paddle: 16 x 4 at rows 189-192, left = RAM 72 - 47 (exact); at the far right it runs
    # under the wall and is clipped.  Ball: 2 x 4, left = RAM 99 - 49, top = RAM 101 + 9
    # (exact in >99% of frames).  Before a serve the ball RAM is 0 (off-field); a missed ball
    # keeps falling below row 195 where it is no longer drawn.
    f, n = _FIELDS["Breakout"], len(ram)
    return {
        "player": _box(ram[:, 72] - 47, 189, 16, 4, f, n),
        "ball": _box(ram[:, 99] - 49, ram[:, 101] + 9, 2, 4, f, n),
    }


def _boxing(ram: np.ndarray) -> dict[str, np.ndarray]:
    # Boxers are 14 x 47 sprites (the body with the gloves at rest; punches reach further
    # forward and are not part of the box).  Each boxer faces the other one and its sprite is
    # mirrored, which moves it: facing right, left = RAM x + 5 and top = RAM y + 38; facing
    # left, left = RAM x + 3 and top = RAM y + 37 (player RAM 32/34, enemy RAM 33/35).
    # Poses move the drawn sprite by 1-2 px (a few punch frames up to 2.5 px vertically).
    f, n = _FIELDS["Boxing"], len(ram)
    px, py, ex, ey = ram[:, 32], ram[:, 34], ram[:, 33], ram[:, 35]
    player_right = px <= ex
    return {
        "player": _box(px + np.where(player_right, 5, 3), py + np.where(player_right, 38, 37), 14, 47, f, n),
        "enemy": _box(ex + np.where(player_right, 3, 5), ey + np.where(player_right, 37, 38), 14, 47, f, n),
    }


# Freeway: left = (RAM x - offset) mod 160; the car at RAM 113 is drawn one pixel further right.
_CAR_X_OFFSET = (3, 3, 3, 3, 3, 2, 3, 3, 3, 3)


def _freeway(ram: np.ndarray) -> dict[str, np.ndarray]:
    # Chicken (left player): 7 x 8 (6-7 px wide depending on the walk frame) at columns 44-50,
    # top = 193 - RAM 14.  Cars: 8 x 8 bodies in fixed lanes, car i (RAM 108 + i) at top row
    # 172 - 16 i.  The x position wraps around the 160-px screen; the part that wraps lands
    # under the black bar at columns 0-7, so clipping the unwrapped box to the field is exact.
    f, n = _FIELDS["Freeway"], len(ram)
    out = {"player": _box(44, 193 - ram[:, 14], 7, 8, f, n)}
    for i in range(_N_CARS):
        out[f"car{i}"] = _box((ram[:, 108 + i] - _CAR_X_OFFSET[i]) % 160, 172 - 16 * i, 8, 8, f, n)
    return out


_DECODERS: dict[str, Callable[[np.ndarray], dict[str, np.ndarray]]] = {
    "Pong": _pong,
    "Breakout": _breakout,
    "Boxing": _boxing,
    "Freeway": _freeway,
}


def ram_objects(game: str, ram: np.ndarray) -> dict[str, np.ndarray]:
    """Object boxes of ``game`` decoded from RAM.

    ``ram`` is ``(T, 128)`` uint8 (a single ``(128,)`` snapshot counts as ``T = 1``).  Returns
    ``{class: (T, 5) float32 [visible, x, y, w, h]}`` for every class in :func:`object_classes`,
    in raw-frame pixels, with RAM row ``t`` describing the observation of the same step.
    """
    _check_game(game)
    arr = np.asarray(ram)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 128:
        raise ValueError(f"ram must have shape (T, 128) or (128,), got {np.shape(ram)}")
    boxes = _DECODERS[game](arr.astype(np.int64))
    logger.debug("decoded %d RAM frame(s) of %s into %d classes", len(arr), game, len(boxes))
    return boxes
