"""Boxing: the ring inside the ropes, the two boxers in the RAM."""

from __future__ import annotations

import numpy as np

from dataset_tools.atari.spec import GameSpec, sprite_box

FIELD = (36, 177, 32, 128)
"""Inside the ropes."""


def boxing_objects(ram: np.ndarray) -> dict[str, np.ndarray]:
    # Boxers are 14 x 47 sprites (the body with the gloves at rest; punches reach further
    # forward and are not part of the box).  Each boxer faces the other one and its sprite is
    # mirrored, which moves it: facing right, left = RAM x + 5 and top = RAM y + 38; facing
    # left, left = RAM x + 3 and top = RAM y + 37 (player RAM 32/34, enemy RAM 33/35).
    # Poses move the drawn sprite by 1-2 px (a few punch frames up to 2.5 px vertically).
    f, n = FIELD, len(ram)
    px, py, ex, ey = ram[:, 32], ram[:, 34], ram[:, 33], ram[:, 35]
    player_right = px <= ex
    return {
        "player": sprite_box(px + np.where(player_right, 5, 3), py + np.where(player_right, 38, 37), 14, 47, f, n),
        "enemy": sprite_box(ex + np.where(player_right, 3, 5), ey + np.where(player_right, 37, 38), 14, 47, f, n),
    }


SPEC = GameSpec(
    name="Boxing",
    field=FIELD,
    crop=FIELD,  # the score and clock above the ring would be objects of their own
    classes=("player", "enemy"),
    ram_objects=boxing_objects,
    anchors=(("random", 0.1), ("human", 12.1), ("SimPLe", 7.8), ("DIAMOND", 86.9)),
)
