"""Freeway: sidewalk to sidewalk, the chicken and the ten cars in the RAM."""

from __future__ import annotations

import numpy as np

from dataset_tools.atari.spec import GameSpec, sprite_box

FIELD = (15, 195, 8, 160)
"""Sidewalk to sidewalk; columns 0-7 are the black HMOVE bar."""

N_CARS = 10
# car<i> is the car whose x is at RAM 108 + i; car0 drives in the bottom lane, car9 in the top one.
CLASSES = ("player", *(f"car{i}" for i in range(N_CARS)))

# Freeway: left = (RAM x - offset) mod 160; the car at RAM 113 is drawn one pixel further right.
_CAR_X_OFFSET = (3, 3, 3, 3, 3, 2, 3, 3, 3, 3)


def freeway_objects(ram: np.ndarray) -> dict[str, np.ndarray]:
    # Chicken (left player): 7 x 8 (6-7 px wide depending on the walk frame) at columns 44-50,
    # top = 193 - RAM 14.  Cars: 8 x 8 bodies in fixed lanes, car i (RAM 108 + i) at top row
    # 172 - 16 i.  The x position wraps around the 160-px screen; the part that wraps lands
    # under the black bar at columns 0-7, so clipping the unwrapped box to the field is exact.
    f, n = FIELD, len(ram)
    out = {"player": sprite_box(44, 193 - ram[:, 14], 7, 8, f, n)}
    for i in range(N_CARS):
        out[f"car{i}"] = sprite_box((ram[:, 108 + i] - _CAR_X_OFFSET[i]) % 160, 172 - 16 * i, 8, 8, f, n)
    return out


SPEC = GameSpec(
    name="Freeway",
    field=FIELD,
    crop=FIELD,  # the scores above the road would be objects of their own
    classes=CLASSES,
    ram_objects=freeway_objects,
    anchors=(("random", 0.0), ("human", 29.6), ("SimPLe", 16.7), ("DIAMOND", 27.5)),
)
