"""Starting weights (``init_from``, grown inputs) and the random state a checkpoint carries."""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch

from world_models.base import Model
from world_models.checkpoint import load_model
from world_models.training.config import TrainError

log = logging.getLogger(__name__)


def init_weights(model: Model, source: str, device: torch.device) -> None:
    """Copy the weights of checkpoint ``source`` into ``model`` (``init_from``)."""
    src, config = load_model(source, device)
    if config.model != model.name:
        raise TrainError(f"init_from={source} holds a {config.model} model, this run trains {model.name}")
    target = model.state_dict()
    weights, grown = grow_inputs(src.state_dict(), target)
    # modules the source lacks (a head a new setting adds, e.g. rssm's object_weight) keep their fresh
    # initialisation; modules this model lacks (a head a setting replaces) are left out; any other mismatch is
    # an error
    new = {k: v for k, v in target.items() if _module_absent(k, weights)}
    fresh = sorted({_absent_module(k, weights) for k in new})
    dropped = sorted({_absent_module(k, target) for k in weights if _module_absent(k, target)})
    weights = {k: v for k, v in weights.items() if not _module_absent(k, target)}
    weights.update(new)
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise TrainError(f"init_from={source}: weights do not fit this model's config ({err})") from None
    log.info("initialised from %s (step %s)", source, config.step)
    if fresh:
        log.info("init_from: %s not in the source; they start from scratch", ", ".join(fresh))
    if dropped:
        log.info("init_from: %s not in this model; left out", ", ".join(dropped))
    if grown:
        log.info("init_from: more inputs than the source in %s; their weights start at zero", ", ".join(grown))


def _absent_module(key: str, weights: dict[str, torch.Tensor]) -> str:
    """The outermost module on ``key``'s path none of whose weights are in ``weights`` ("" if every one is)."""
    parts = key.split(".")
    for n in range(1, len(parts)):
        prefix = ".".join(parts[:n])
        if not any(k.startswith(prefix + ".") for k in weights):
            return prefix
    return ""


def _module_absent(key: str, weights: dict[str, torch.Tensor]) -> bool:
    return key not in weights and _absent_module(key, weights) != ""


def grow_inputs(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``source`` weights, those with fewer inputs (dim 1) than ``target``'s padded with zeros after them.

    For layers that keep their inputs along dim 1 (``Conv2d``, ``Linear``, ``LSTM``), new inputs at
    zero weight leave the layer computing what the source's did, e.g. ``svg_lp``'s encoder with
    ``encoder_frames=2`` from a one-frame model. Other shape differences (a grown bias or norm) are
    left for ``load_state_dict`` to report. Returns the weights and the names of the grown ones.
    """
    out, grown = dict(source), []
    for name, w in source.items():
        t = target.get(name)
        if t is None or t.dim() < 2 or t.dim() != w.dim() or t.shape[1] <= w.shape[1]:
            continue
        if t.shape[0] != w.shape[0] or t.shape[2:] != w.shape[2:]:
            continue
        padded = torch.zeros_like(t)
        padded[:, : w.shape[1]] = w
        out[name] = padded
        grown.append(name)
    return out, grown


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """torch / numpy / python RNG states as tensors and plain lists (loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
