"""Learned simulators as gymnasium environments.

``import learned_envs`` registers the shipped Pong models (``LearnedPong-v1``, the pixel model, and
the others of ``registration.SHIPPED``), so both ``gym.make("LearnedPong-v1")`` and
``gym.make("learned_envs:LearnedPong-v1")`` work, and ``gym.make_vec("LearnedPong-v1", num_envs=256)``
steps all envs in one batched forward pass.
"""

from __future__ import annotations

from learned_envs.registration import _register_shipped as _register
from learned_envs.registration import register_checkpoint, shipped_checkpoint

_register()

__all__ = ["register_checkpoint", "shipped_checkpoint"]
