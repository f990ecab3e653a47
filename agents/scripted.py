"""The scripted Pong player (it reads the RAM): defined with Pong's spec in :mod:`dataset_tools.atari.pong`."""

from __future__ import annotations

from dataset_tools.atari.pong import ScriptedPongAgent

__all__ = ["ScriptedPongAgent"]
