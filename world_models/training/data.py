"""What the trainer reads: endless shuffled batches, held-out windows for pictures, start contexts."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from dataset_tools.dataset import DatasetDir
from dataset_tools.sequences import SequenceBatch, SequenceDataset, context_windows
from world_models.training.config import TrainConfig, TrainError
from world_models.training.distributed import Dist

log = logging.getLogger(__name__)


def batches(dataset: SequenceDataset, cfg: TrainConfig, dd: Dist, start: int) -> Iterator[SequenceBatch]:
    """Endless shuffled batches; epoch e is shuffled with seed + e and split between ranks.

    The order depends only on the step, so a resumed run reads exactly what the killed one would have.
    With ``point_share`` > 0 each batch instead draws that share of its windows from those with a point and
    the rest from all, with replacement, seeded by (seed, rank, step).
    """
    if cfg.point_share > 0:
        yield from _point_batches(dataset, cfg, dd, start)
        return
    sampler = DistributedSampler(dataset, num_replicas=dd.world, rank=dd.rank, shuffle=True, seed=cfg.seed)
    per_epoch = math.ceil(len(sampler) / cfg.batch_size)
    epoch, skip = divmod(start, per_epoch)
    while True:
        sampler.set_epoch(epoch)
        indices = list(sampler)[skip * cfg.batch_size :]
        loader = DataLoader(
            dataset,
            batch_size=cfg.batch_size,
            sampler=indices,
            num_workers=cfg.num_workers,
            collate_fn=SequenceBatch.collate,
            generator=torch.Generator().manual_seed(cfg.seed + epoch),  # leaves the global RNG alone
        )
        yield from loader
        epoch, skip = epoch + 1, 0


class _PointSampler:
    """Endless batches of window indices for ``point_share`` (see :func:`batches`)."""

    def __init__(self, n: int, points: np.ndarray, cfg: TrainConfig, rank: int, start: int) -> None:
        self.n, self.points, self.cfg, self.rank, self.start = n, points, cfg, rank, start

    def __iter__(self) -> Iterator[list[int]]:
        n_point = round(self.cfg.point_share * self.cfg.batch_size)
        step = self.start
        while True:
            rng = np.random.default_rng([self.cfg.seed, self.rank, step])
            chosen = np.concatenate(
                [rng.choice(self.points, n_point), rng.integers(0, self.n, self.cfg.batch_size - n_point)]
            )
            yield [int(i) for i in chosen]
            step += 1


def _point_batches(dataset: SequenceDataset, cfg: TrainConfig, dd: Dist, start: int) -> Iterator[SequenceBatch]:
    points = dataset.point_windows()
    if len(points) == 0:
        raise TrainError(f"point_share={cfg.point_share}: no training window holds a point (a nonzero reward)")
    log.info(
        "point_share=%s: %d of %d windows hold a point (%.0f%%)",
        cfg.point_share, len(points), len(dataset), 100 * len(points) / len(dataset),
    )  # fmt: skip
    yield from DataLoader(
        dataset,
        batch_sampler=_PointSampler(len(dataset), points, cfg, dd.rank, start),  # type: ignore[arg-type]
        num_workers=cfg.num_workers,
        collate_fn=SequenceBatch.collate,
    )


def start_contexts(
    ds: DatasetDir, dataset: SequenceDataset, n: int, n_past: int, seed: int
) -> dict[str, np.ndarray] | None:
    """``n`` random windows of ``n_past`` preprocessed real frames from the training episodes, shipped with the
    checkpoint for learned envs' resets (:func:`~dataset_tools.sequences.context_windows`)."""
    return context_windows(ds, dataset.episodes, dataset.preprocess, n, n_past, seed)


def val_batch(
    data: Path, seq_len: int, val_fraction: float, options: dict[str, Any] | None = None, n: int = 4
) -> SequenceBatch:
    """``n`` windows spread over the held-out episodes (the training ones if none are held out)."""
    val = SequenceDataset(data, seq_len, split="val", val_fraction=val_fraction, **(options or {}))
    if len(val) == 0:
        val = SequenceDataset(data, seq_len, split="train", val_fraction=val_fraction, **(options or {}))
    idx = np.linspace(0, len(val) - 1, num=min(n, len(val))).round().astype(int)
    return SequenceBatch.collate([val[int(i)] for i in idx])
