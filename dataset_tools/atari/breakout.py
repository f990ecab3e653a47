"""Breakout: the field inside the grey walls, the paddle and the ball in the RAM."""

from __future__ import annotations

import numpy as np

from dataset_tools.atari.spec import GameSpec, sprite_box

FIELD = (32, 196, 8, 152)
"""Inside the grey walls; the ball is still drawn down to row 195."""


def breakout_objects(ram: np.ndarray) -> dict[str, np.ndarray]:
    # Paddle: 16 x 4 at rows 189-192, left = RAM 72 - 47 (exact); at the far right it runs
    # under the wall and is clipped.  Ball: 2 x 4, left = RAM 99 - 49, top = RAM 101 + 9
    # (exact in >99% of frames).  Before a serve the ball RAM is 0 (off-field); a missed ball
    # keeps falling below row 195 where it is no longer drawn.
    f, n = FIELD, len(ram)
    return {
        "player": sprite_box(ram[:, 72] - 47, 189, 16, 4, f, n),
        "ball": sprite_box(ram[:, 99] - 49, ram[:, 101] + 9, 2, 4, f, n),
    }


SPEC = GameSpec(
    name="Breakout",
    field=FIELD,
    crop=FIELD,  # the score and lives above the walls would be objects of their own
    classes=("player", "ball"),
    ram_objects=breakout_objects,
    anchors=(("random", 1.7), ("human", 30.5), ("SimPLe", 16.4), ("DIAMOND", 132.5)),
)
