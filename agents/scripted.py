"""A scripted Pong player that follows the ball using the RAM, with a noise knob.

With ``noise=0`` it returns most balls; with more noise it misses more, so a dataset holds hits,
won points and lost points rather than only misses (a random agent almost never hits).
"""

from __future__ import annotations

import numpy as np

from agents.base import Agent

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
