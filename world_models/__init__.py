"""World models: one contract (:class:`WorldModel`), a registry, checkpoints, trainer and evaluator."""

from __future__ import annotations

from world_models.base import MODELS, ModelConfig, State, StepResult, WorldModel, build_model, model_class, register
from world_models.checkpoint import CheckpointError, load_context, load_model

# Model modules register themselves on import.
from world_models import (  # noqa: E402,F401  isort: skip
    asset_spatial_rnn,
    epva,
    frame_transformer,
    object_dynamics,
    objects,
    rnn_deconv,
    savp,
    scene_dynamics,
    space,
    svg,
)

__all__ = [
    "MODELS",
    "CheckpointError",
    "ModelConfig",
    "State",
    "StepResult",
    "WorldModel",
    "build_model",
    "load_context",
    "load_model",
    "model_class",
    "register",
]
