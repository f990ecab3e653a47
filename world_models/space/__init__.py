"""SPACE-Time: SPACE (Lin et al. 2020) with motion and object-continuity losses, an object extractor.

Train it with the common trainer (checkpoints keep the last ``keep_last``, the reference's
``max_num``; ``--resume`` continues from the newest, the reference's ``load_last`` / ``resume``)::

    create-dataset -g Pong --frames 8000 --max-episode-steps 1000 --agent scripted --out data/pong
    create-dataset -g Pong --out data/pong --rootmedian      # mode.png / median.png
    create-dataset -g Pong --out data/pong --root            # motion targets against them
    learned-envs train --model space_time --config atari_pong.yaml --data data/pong --out runs/space
    learned-envs train --model space_time --config atari_pong.yaml --data data/pong --out runs/grid \\
        seed=0,1,2,3,4 area_object_weight=0,10                # SPACE+M and SPACE+MOC, 5 seeds each

and read scenes from a checkpoint (a trained Pong one ships as :data:`PONG_CHECKPOINT`, with its
4-shot z_what classifier; ``examples/space_scene.py`` draws the scene of a real frame)::

    model, config = world_models.load_model(PONG_CHECKPOINT)
    clf = load_classifier(PONG_CHECKPOINT / "z_what-classifier_4.json")   # numbers in JSON: loading runs no code
    scene = model.scene_description(x, z_classifier=clf, only_z_what=True)   # {label: [(x, y), ...]}
"""

from __future__ import annotations

from pathlib import Path

from world_models.space.config import SpaceTimeConfig, linear_anneal
from world_models.space.model import Inference, SpaceTime
from world_models.space.scene import LABELS, label_list, object_features, scene_description, zwhere_to_box

PONG_CHECKPOINT = Path(__file__).parent / "assets" / "SpaceTimePong-v0"
"""The shipped SPACE-Time checkpoint trained on Pong (model card beside it)."""

__all__ = [
    "PONG_CHECKPOINT",
    "LABELS",
    "Inference",
    "SpaceTime",
    "SpaceTimeConfig",
    "label_list",
    "linear_anneal",
    "object_features",
    "scene_description",
    "zwhere_to_box",
]
