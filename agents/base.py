"""The agent interface: batched ``act`` on raw frames (and RAM, for scripted agents). Defined beside data
collection (:mod:`dataset_tools.policy`), which drives agents without importing this package."""

from __future__ import annotations

from dataset_tools.policy import Agent, RandomAgent, random_repeat

__all__ = ["Agent", "RandomAgent", "random_repeat"]
