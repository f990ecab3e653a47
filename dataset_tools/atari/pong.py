"""Pong: the field between the walls, the paddles and the ball in the RAM, a RAM-reading scripted player.

The scripted player follows the ball using the RAM, with a noise knob: with ``noise=0`` it returns most
balls; with more noise it misses more, so a dataset holds hits, won points and lost points rather than
only misses (a random agent almost never hits). It reads the RAM, so data it collects is not frames-only.
"""

from __future__ import annotations

import numpy as np

from dataset_tools.atari.spec import GameSpec, sprite_box
from dataset_tools.policy import Agent

FIELD = (34, 194, 0, 160)
"""Rows 34-194 between the white top and bottom walls (the score above them)."""


def pong_objects(ram: np.ndarray) -> dict[str, np.ndarray]:
    # RAM 46 / 45 (the AtariARI paddle x) never change: the paddles sit at fixed columns.
    # The player's paddle is drawn on even rows only: top = RAM 51 rounded up to even, minus 14
    # (the parity rule is exact on every unclipped frame).  The enemy's RAM 50 was always even
    # in calibration, top = RAM 50 - 15.  Paddles are 4 x 16 and slide under the walls (clipped).
    # Ball: 2 x 4, left = RAM 49 - 49, top = RAM 54 - 14 (exact in ~90% of frames, 1 px off
    # otherwise); when the ball is out of play the RAM holds x = 0 or y = 0, which maps off-field.
    f, n = FIELD, len(ram)
    return {
        "player": sprite_box(140, ((ram[:, 51] + 1) & ~1) - 14, 4, 16, f, n),
        "enemy": sprite_box(16, ram[:, 50] - 15, 4, 16, f, n),
        "ball": sprite_box(ram[:, 49] - 49, ram[:, 54] - 14, 2, 4, f, n),
    }


# Pong RAM: paddle top = ram[51], ball top = ram[54], ball x = ram[49] (same pixel offset, -14 rows).
_PLAYER_Y, _BALL_X, _BALL_Y = 51, 49, 54
_PADDLE_HALF, _BALL_HALF = 8, 2
# Minimal Pong action set: 0 NOOP, 1 FIRE, 2 RIGHT (paddle up), 3 LEFT (paddle down), 4, 5.
_NOOP, _UP, _DOWN = 0, 2, 3


class ScriptedPongAgent(Agent):
    """Moves the right paddle towards the ball.

    ``noise`` is the probability of a uniformly random action at each step; ``aim`` jitters the
    point of the paddle it aims with (in pixels), which makes returns at varied angles.
    """

    name = "scripted"
    needs_frames = False

    def __init__(self, noise: float = 0.1, aim: float = 6.0, n_actions: int = 6, seed: int | None = None) -> None:
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise must be in [0, 1], got {noise}")
        self.noise = noise
        self.aim = aim
        self.n_actions = n_actions
        self.rng = np.random.default_rng(seed)
        self._offset: np.ndarray | None = None

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self._offset = None

    def act(self, frames: np.ndarray, ram: np.ndarray) -> np.ndarray:
        ram = np.asarray(ram, dtype=np.int64).reshape(len(frames), -1)  # (B, 128)
        batch = len(ram)
        if self._offset is None or len(self._offset) != batch:
            self._offset = self.rng.uniform(-self.aim, self.aim, size=batch)
        ball_in_play = ram[:, _BALL_Y] > 0
        paddle = ram[:, _PLAYER_Y] + _PADDLE_HALF + self._offset
        target = np.where(ball_in_play, ram[:, _BALL_Y] + _BALL_HALF, 110.0)
        diff = target - paddle  # > 0: ball below the paddle's aim point
        actions = np.where(diff > 3, _DOWN, np.where(diff < -3, _UP, _NOOP)).astype(np.int64)
        # A new aim point whenever the ball leaves play (a point was scored).
        fresh = ~ball_in_play
        self._offset[fresh] = self.rng.uniform(-self.aim, self.aim, size=int(fresh.sum()))
        random = self.rng.random(batch) < self.noise
        actions[random] = self.rng.integers(0, self.n_actions, size=int(random.sum()))
        return actions

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "noise": self.noise, "aim": self.aim}


SPEC = GameSpec(
    name="Pong",
    field=FIELD,
    crop=FIELD,
    classes=("player", "enemy", "ball"),
    ram_objects=pong_objects,
    scripted=ScriptedPongAgent,
    paddle_rally=True,
    key_tokens=(("UP", "RIGHT"), ("DOWN", "LEFT"), ("LEFT", ""), ("RIGHT", "")),
    anchors=(("random", -20.7), ("human", 14.6), ("SimPLe", 12.8), ("DIAMOND", 20.4)),  # Atari 100k
)
