"""Object-level world models learned from frames alone.

* :mod:`~world_models.objects.extractor`: the frames-only object extractor (SPACE-Time's objects
  made pixel-exact by the foreground components, in classes found without labels);
* :mod:`~world_models.objects.moves`: drawn moves (a vocabulary of each object's real moves);
* :mod:`~world_models.objects.slot_dynamics`: ``slot_dynamics``, the drawn-move dynamics over the
  extracted objects (``LearnedPong-v2``);
* :mod:`~world_models.objects.object_dynamics`: ``object_dynamics`` over Pong's objects read by a detector
  (``LearnedPongObjects-v0`` / ``v1``), with :mod:`~world_models.objects.pong_objects`, that detector and
  renderer;
* :mod:`~world_models.objects.scene_dynamics`: ``scene_dynamics`` over SPACE-Time's scenes
  (``LearnedPongScene-v0``).
"""

from __future__ import annotations

from world_models.objects.extractor import (
    ExtractorError,
    ObjectExtractor,
    fit_extractor,
    load_extractor,
    read_spec,
    save_extractor,
)
from world_models.objects.slot_dynamics import SlotDynamics, SlotDynamicsConfig

__all__ = [
    "ExtractorError",
    "ObjectExtractor",
    "SlotDynamics",
    "SlotDynamicsConfig",
    "fit_extractor",
    "load_extractor",
    "read_spec",
    "save_extractor",
]
