"""Real start contexts for learned envs: shipped with the checkpoint, or drawn from a dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dataset_tools.dataset import DatasetDir
from dataset_tools.preprocess import Preprocess
from dataset_tools.sequences import context_windows
from world_models.checkpoint import CheckpointConfig, CheckpointError, load_context


def contexts_from_dataset(
    data: str | Path, config: CheckpointConfig, n: int = 256, seed: int = 0
) -> dict[str, np.ndarray]:
    """``n`` windows of ``n_past`` frames (preprocessed as the checkpoint says) from a dataset, drawn uniformly
    over its windows as the trainer draws the contexts it ships."""
    ds = DatasetDir(data)
    manifest = ds.read_manifest()
    if manifest["game"] != config.game:
        raise CheckpointError(f"{data}: holds {manifest['game']}, the checkpoint models {config.game}")
    n_past = int(config.model_config["n_past"])
    ctx = context_windows(ds, ds.episode_indices(), Preprocess.from_dict(config.preprocess), n, n_past, seed)
    if ctx is None:
        raise CheckpointError(f"{data}: no episode has {n_past} frames")
    return ctx


def load_contexts(
    checkpoint: str | Path, config: CheckpointConfig, data: str | Path | None = None
) -> dict[str, np.ndarray]:
    """Contexts from ``data`` if given, else the ones shipped in the checkpoint; shapes checked."""
    ctx = contexts_from_dataset(data, config) if data is not None else load_context(checkpoint)
    c, h, w = config.frame_shape
    n_past = int(config.model_config["n_past"])
    if ctx["frames"].shape[1:] != (n_past, h, w, c) or ctx["actions"].shape[1:] != (n_past - 1,):
        raise CheckpointError(
            f"{checkpoint}: start contexts have shape {ctx['frames'].shape[1:]}, the model needs {(n_past, h, w, c)}"
        )
    return ctx
