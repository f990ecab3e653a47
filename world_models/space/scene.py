"""Scenes for downstream use: ``scene_description``, ``zwhere_to_box`` and the label lists per game.

``z_where = [w, h, cx, cy]``: box size as a fraction of the frame, centre in (-1, 1) (x to the right,
y down), as the dataset's motion targets. A classifier for ``scene_description`` is any object with
scikit-learn's ``predict(features)`` (e.g. the few-shot ridge z_what classifier), fed the rows of
:func:`object_features`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from dataset_tools.ram_truth import GAMES, object_classes

if TYPE_CHECKING:
    from world_models.space.model import Inference, SpaceTime

Scene = dict[Any, list[tuple[float, float]]]
"""``{label: [(x, y), ...]}``: the centres of the objects of each label, in (-1, 1)."""


class Classifier(Protocol):
    def predict(self, features: np.ndarray) -> np.ndarray: ...


LABELS: dict[str, tuple[str, ...]] = {game: object_classes(game) for game in GAMES}
"""Object labels per game, the class names of the RAM ground truth (Pong: player, enemy, ball)."""


def label_list(game: str) -> tuple[str, ...]:
    """The labels of ``game``'s objects (index i is label i of a classifier trained on them)."""
    if game not in LABELS:
        raise ValueError(f"no label list for {game!r}; known: {', '.join(sorted(LABELS))}")
    return LABELS[game]


def zwhere_to_box(z_where: torch.Tensor | np.ndarray, height: int, width: int) -> torch.Tensor | np.ndarray:
    """``z_where`` (..., 4) ``[w, h, cx, cy]`` -> pixel boxes (..., 4) ``[x, y, w, h]`` of a ``height`` x
    ``width`` frame (x, y the top-left corner, as :func:`dataset_tools.motion.draw_boxes` reads them)."""
    w, h = z_where[..., 0] * width, z_where[..., 1] * height
    x = (z_where[..., 2] + 1) / 2 * width - w / 2
    y = (z_where[..., 3] + 1) / 2 * height - h / 2
    if isinstance(z_where, np.ndarray):
        return np.stack([x, y, w, h], axis=-1)
    return torch.stack([x, y, w, h], dim=-1)


def object_features(inference: Inference, only_z_what: bool = True) -> torch.Tensor:
    """Per cell the classifier's input: ``z_what`` (B, N, D), or with ``only_z_what=False``
    ``[z_where, z_depth, z_what]`` (B, N, 5 + D)."""
    if only_z_what:
        return inference.z_what
    return torch.cat([inference.z_where, inference.z_depth[..., None], inference.z_what], dim=-1)


def scene_description(
    model: SpaceTime,
    x: torch.Tensor,
    z_classifier: Classifier | None = None,
    only_z_what: bool = True,
    labels: Sequence[str] | None = None,
    threshold: float = 0.5,
) -> Scene | list[Scene]:
    """The objects of frame ``x`` (3, S, S) RGB in [0, 1] -> ``{label: [(x, y), ...]}`` (a list of them
    for a batch (B, 3, S, S)).

    Objects are the cells with ``z_pres > threshold``; ``z_classifier.predict`` labels them from
    :func:`object_features` (``only_z_what``); ``labels`` maps integer predictions to names (e.g.
    :func:`label_list`). Without a classifier every object is labelled ``"object"``. Positions are
    the box centres in (-1, 1); :func:`zwhere_to_box` maps them to pixels.
    """
    single = x.dim() == 3
    inference = model.infer(x[None] if single else x)
    features = object_features(inference, only_z_what).cpu().numpy()  # (B, N, F)
    present = (inference.z_pres > threshold).cpu().numpy()  # (B, N)
    centres = inference.z_where[..., 2:].cpu().numpy()  # (B, N, 2)
    scenes: list[Scene] = []
    for feats, pres, pos in zip(features, present, centres, strict=True):
        if z_classifier is None:
            names: list[Any] = ["object"] * int(pres.sum())
        else:
            names = list(z_classifier.predict(feats[pres])) if pres.any() else []
        scene: Scene = {}
        for name, (cx, cy) in zip(names, pos[pres], strict=True):
            key = labels[int(name)] if labels is not None and isinstance(name, int | np.integer) else name
            scene.setdefault(key, []).append((float(cx), float(cy)))
        scenes.append(scene)
    return scenes[0] if single else scenes
