"""The game registry: what the library knows of each ALE game, one module per game (its play field and
preprocessing crop, its object classes and their RAM map for scoring, an optional scripted player).

General code asks :func:`game_spec` and never compares game names. To add a game, write
``dataset_tools/atari/<game>.py`` with a :class:`GameSpec` called ``SPEC`` (``pong.py`` is the fullest
example) and add its module to :data:`_MODULES` below. Games without a module still collect, train and
play: their spec is the whole frame with no RAM truth.
"""

from __future__ import annotations

import importlib

from dataset_tools.atari.spec import WHOLE_FRAME, GameSpec, sprite_box

_MODULES = ("pong", "breakout", "boxing", "freeway")
"""One line per game with a module here."""

REGISTRY: dict[str, GameSpec] = {
    spec.name: spec for spec in (importlib.import_module(f"{__name__}.{m}").SPEC for m in _MODULES)
}
"""Game name -> its spec."""


def game_spec(game: str | None) -> GameSpec:
    """The spec of ``game`` (an ALE name as :func:`dataset_tools.games.resolve_game` gives it); a game with no
    module here gets a plain one (whole frame, no RAM truth, no scripted player)."""
    return REGISTRY.get(str(game), GameSpec(name=str(game)))


__all__ = ["REGISTRY", "WHOLE_FRAME", "GameSpec", "game_spec", "sprite_box"]
