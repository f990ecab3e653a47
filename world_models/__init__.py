"""World models: the contracts (:class:`Model`; :class:`WorldModel` imagines a game, :class:`Extractor` finds
objects), a registry, checkpoints, trainer and evaluator.

By role: the contract (:mod:`~world_models.base`), configs, checkpoints and shared blocks here;
:mod:`~world_models.pixel` the video models, :mod:`~world_models.objects` the object models and the
frames-only extractor, :mod:`~world_models.space` SPACE-Time, :mod:`~world_models.training` the trainer,
:mod:`~world_models.evaluation` held-out evaluation and ``compare``.
"""

from __future__ import annotations

from world_models.base import (
    MODELS,
    Extractor,
    Model,
    ModelConfig,
    State,
    StepResult,
    WorldModel,
    build_model,
    model_class,
    register,
)
from world_models.checkpoint import CheckpointError, load_context, load_model

# Model modules register themselves on import: this is the one list of models.
from world_models.pixel import (  # noqa: E402,F401  isort: skip
    asset_spatial_rnn,
    epva,
    frame_transformer,
    rnn_deconv,
    rssm,
    savp,
    svg,
)
from world_models.objects import object_dynamics, scene_dynamics, slot_dynamics  # noqa: E402,F401  isort: skip
from world_models import space  # noqa: E402,F401  isort: skip

__all__ = [
    "MODELS",
    "CheckpointError",
    "Extractor",
    "Model",
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
