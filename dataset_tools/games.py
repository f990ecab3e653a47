"""ALE game names, environment settings and environment construction.

Every dataset records the exact environment it came from (:class:`EnvSettings`), so a later
stage (the learned env's real twin, agent evaluation) can rebuild the same game.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym


class UnknownGameError(ValueError):
    """Raised for a game name that ALE does not know; the message names close matches."""


@functools.cache
def _register() -> None:
    import ale_py

    gym.register_envs(ale_py)


@functools.cache
def ale_games() -> tuple[str, ...]:
    """Names of every ALE game with a ``ALE/<Name>-v5`` id, e.g. ``("Adventure", ..., "Zaxxon")``."""
    _register()
    names = {
        key.split("/", 1)[1].rsplit("-v", 1)[0]
        for key in gym.registry
        if key.startswith("ALE/") and key.endswith("-v5")
    }
    return tuple(sorted(names))


def resolve_game(name: str) -> str:
    """Canonical game name: ``"pong"``, ``"Pong"`` and ``"ALE/Pong-v5"`` all give ``"Pong"``.

    Raises :class:`UnknownGameError` naming the closest known games.
    """
    games = ale_games()
    bare = name.strip()
    if bare.startswith("ALE/"):
        bare = bare[4:].rsplit("-v", 1)[0]
    by_lower = {g.lower(): g for g in games}
    if bare.lower() in by_lower:
        return by_lower[bare.lower()]
    close = difflib.get_close_matches(bare.lower(), list(by_lower), n=3, cutoff=0.5)
    hint = ", ".join(by_lower[c] for c in close) if close else "none close"
    raise UnknownGameError(f"unknown game {name!r}; did you mean: {hint}? ({len(games)} ALE games are known)")


@dataclass(frozen=True)
class EnvSettings:
    """How the real game is stepped; defaults are ALE v5 (the Atari 100k protocol)."""

    game: str = "Pong"
    """ALE game name as in ``ALE/<game>-v5``."""
    frameskip: int = 4
    """Emulator frames per agent step."""
    repeat_action_probability: float = 0.25
    """Sticky actions: probability of repeating the previous action."""
    full_action_space: bool = False
    """Use all 18 Atari actions instead of the game's minimal set."""
    max_episode_steps: int | None = None
    """Truncate episodes after this many agent steps (None: the game's own limit)."""

    @property
    def env_id(self) -> str:
        return f"ALE/{self.game}-v5"

    def env_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``gymnasium.make(self.env_id, **kwargs)``."""
        kwargs: dict[str, Any] = {
            "frameskip": self.frameskip,
            "repeat_action_probability": self.repeat_action_probability,
            "full_action_space": self.full_action_space,
        }
        if self.max_episode_steps is not None:
            kwargs["max_episode_steps"] = self.max_episode_steps
        return kwargs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnvSettings:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def make_env(settings: EnvSettings, **extra: Any) -> gym.Env:
    """Build the real ALE environment described by ``settings`` (RGB observations)."""
    _register()
    return gym.make(settings.env_id, **settings.env_kwargs(), **extra)


def action_meanings(settings: EnvSettings) -> list[str]:
    """Names of the actions (``["NOOP", "FIRE", ...]``) in the env's action order."""
    return list(_action_meanings(settings.game, settings.full_action_space))


@functools.cache
def _action_meanings(game: str, full_action_space: bool) -> tuple[str, ...]:
    env = make_env(EnvSettings(game=game, full_action_space=full_action_space))  # loads the ROM: 0.1 s
    try:
        return tuple(env.unwrapped.get_action_meanings())  # type: ignore[attr-defined]
    finally:
        env.close()
