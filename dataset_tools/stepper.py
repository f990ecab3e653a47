"""Stepping the real game for collection: ALE v5 semantics, one seed per episode, no ROM reloads.

``gymnasium``'s ``env.reset(seed=s)`` reloads the ROM to reseed ALE's sticky-action generator
(about 0.1 s, a quarter of the time of a 1000-step Pong episode). With sticky actions off, ALE is
deterministic and the seed changes nothing else (checked on Pong, Breakout, SpaceInvaders and
MsPacman: the same actions give the same frames and RAM for any seed), so :class:`AleStepper`
runs ALE with ``repeat_action_probability=0``, restores a saved start state at each episode and
applies sticky actions itself, as ALE does: before each emulator frame, with probability
``repeat_action_probability`` the previous frame's action is kept instead of the agent's; the
previous action is NOOP at the start of an episode. The draws come from the episode's seed.

Frames are read as palette indices straight into the caller's buffer (see :mod:`palette`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from dataset_tools.games import EnvSettings, make_env
from dataset_tools.palette import ColourTable

_DRAWS = 1024  # sticky-action draws taken from the generator at a time


class AleStepper:
    """One ALE game stepped the way ``gymnasium.make(settings.env_id, **settings.env_kwargs())`` steps it."""

    def __init__(self, settings: EnvSettings) -> None:
        import ale_py

        self.settings = settings
        self.env = make_env(dataclasses.replace(settings, repeat_action_probability=0.0, max_episode_steps=None))
        self.env.reset()  # no seed: the env has just loaded the ROM, and with no sticky actions it needs none
        ale = self.env.unwrapped.ale  # type: ignore[attr-defined]
        self.ale: Any = ale
        self.actions = list(ale.getLegalActionSet() if settings.full_action_space else ale.getMinimalActionSet())
        self.noop = ale_py.Action.NOOP
        self.colours = ColourTable()
        self._start_state = ale.cloneState()
        self._start_frame = ale.getScreen()  # (210, 160) uint8 palette indices
        self._start_ram = ale.getRAM()  # (128,) uint8
        self.colours.learn(self._start_frame, ale.getScreenRGB())
        self._rng = np.random.default_rng(0)
        self._draws: list[float] = []
        self._next_draw = 0
        self._applied = self.noop
        self._previous = self._start_frame  # the last frame written, whose colours are all known
        self.steps = 0

    @property
    def n_actions(self) -> int:
        return len(self.actions)

    def reset(self, seed: int, frame: np.ndarray, ram: np.ndarray) -> None:
        """Start an episode whose sticky actions are drawn from ``seed``; write its first frame
        (``(210, 160)`` uint8 palette indices) and RAM (``(128,)`` uint8) into ``frame`` and ``ram``."""
        self.ale.restoreState(self._start_state)
        frame[...] = self._start_frame
        ram[...] = self._start_ram
        self._rng = np.random.default_rng(seed)
        self._draws, self._next_draw = [], 0
        self._applied = self.noop
        self._previous = frame
        self.steps = 0

    def step(self, action: int, frame: np.ndarray, ram: np.ndarray) -> tuple[float, bool, bool]:
        """Take agent action ``action`` (index into the action set) for ``frameskip`` emulator frames;
        write the next frame and RAM into ``frame`` and ``ram``; return (reward, terminated, truncated)."""
        ale, wanted, p = self.ale, self.actions[action], self.settings.repeat_action_probability
        reward = 0
        for _ in range(self.settings.frameskip):
            if p > 0.0:
                if self._next_draw == len(self._draws):
                    self._draws, self._next_draw = self._rng.random(_DRAWS).tolist(), 0
                keep = self._draws[self._next_draw] < p
                self._next_draw += 1
                if not keep:
                    self._applied = wanted
            else:
                self._applied = wanted
            reward += ale.act(self._applied)
        self.steps += 1
        ale.getScreen(frame)
        if self.colours.has_unknown(frame, self._previous):
            self.colours.learn(frame, ale.getScreenRGB())
        self._previous = frame
        ale.getRAM(ram)
        terminated = bool(ale.game_over(with_truncation=False))
        limit = self.settings.max_episode_steps
        truncated = bool(ale.game_truncated()) or (limit is not None and self.steps >= limit)
        return float(reward), terminated, truncated

    def close(self) -> None:
        self.env.close()
