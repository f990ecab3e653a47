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

import numpy as np

from dataset_tools.atari import REGISTRY, game_spec

logger = logging.getLogger(__name__)

GAMES: tuple[str, ...] = tuple(name for name, spec in REGISTRY.items() if spec.ram_objects is not None)
"""Games whose objects can be read from the RAM (each game's module in :mod:`dataset_tools.atari` holds
its map and how it was calibrated)."""


def _check_game(game: str) -> None:
    if game not in GAMES:
        raise ValueError(f"no RAM ground truth for game {game!r}; supported: {', '.join(GAMES)}")


def object_classes(game: str) -> tuple[str, ...]:
    """Names of the objects :func:`ram_objects` returns for ``game`` (e.g. Pong: player, enemy, ball)."""
    _check_game(game)
    return game_spec(game).classes


def moving_classes(game: str) -> tuple[str, ...]:
    """The classes of ``game`` that move on screen (the ones motion boxes should find)."""
    _check_game(game)
    return game_spec(game).moving_classes


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
    boxes = game_spec(game).ram_objects(arr.astype(np.int64))  # type: ignore[misc]
    logger.debug("decoded %d RAM frame(s) of %s into %d classes", len(arr), game, len(boxes))
    return boxes
