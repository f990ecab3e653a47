"""Drawn moves: each object's step is a choice among the moves it makes in the data, not a regression.

Where an object may go two ways (a ball hit or missed), a regressed move is the average of both (the
ball slows down and turns without a paddle); a move drawn from a vocabulary of real moves goes one
way at a real speed. ``object_dynamics`` (``LearnedPongObjects-v1``) and ``slot_dynamics`` share this.

Positions are in slot units (the raw 160 x 210 frame spans [-1, 1]); moves in raw pixels.
"""

from __future__ import annotations

import numpy as np
import torch

UNITS = (80.0, 105.0)
"""Raw pixels per position unit along x and y."""


def raw_centres(objects: torch.Tensor) -> torch.Tensor:
    """Objects (..., O, >=3) ``[present, x, y, ...]`` in position units -> (..., O, 3) ``[present, x, y]``
    with the centres in raw-frame pixels (zero for absent objects)."""
    last = objects[..., :3]
    scale = torch.tensor([1.0, *UNITS], device=last.device, dtype=last.dtype)
    shift = torch.tensor([0.0, 1.0, 1.0], device=last.device, dtype=last.dtype)
    return (last + shift) * scale * last[..., :1]


def object_moves(vectors: np.ndarray) -> list[np.ndarray]:
    """Per object, its moves (N, 2) in raw pixels between consecutive frames where it is present, from
    vectors (T, O, >=3) ``[present, x, y, ...]`` (rounded to 1/8 px, so equal moves count as equal)."""
    both = (vectors[1:, :, 0] > 0) & (vectors[:-1, :, 0] > 0)  # (T-1, O)
    moves = np.round((vectors[1:, :, 1:3] - vectors[:-1, :, 1:3]) * np.array(UNITS) * 8.0) / 8.0
    return [moves[both[:, o], o] for o in range(vectors.shape[1])]


def move_vocabulary(
    episodes: list[np.ndarray], k: int, groups: list[list[int]] | None = None
) -> list[list[list[float]]]:
    """Each object's ``k`` most common moves ``[dx, dy]`` (raw pixels) over episodes of vectors (T, O, >=3);
    an object with fewer distinct moves repeats its most common one (never chosen in training). With
    ``groups`` (lists of object columns: the slots of one class) one vocabulary per group, of the moves of
    all its columns."""
    if not episodes:
        raise ValueError("move_vocabulary needs at least one episode")
    per_episode = [object_moves(v) for v in episodes]  # each: per object (N, 2)
    vocab = []
    for group in groups if groups is not None else [[o] for o in range(episodes[0].shape[1])]:
        allm = np.concatenate([np.zeros((0, 2))] + [moves[o] for moves in per_episode for o in group])
        if len(allm) == 0:
            allm = np.zeros((1, 2))
        values, counts = np.unique(allm, axis=0, return_counts=True)
        order = np.argsort(-counts, kind="stable")[:k]
        top = values[order].tolist()
        vocab.append(top + [top[0]] * (k - len(top)))
    return vocab


def draw_presence(prob: torch.Tensor, sample: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """Objects present in imagination (bool, like ``prob``): drawn from their probabilities, or ``prob > 0.5``."""
    if sample:
        return torch.rand(prob.shape, device=prob.device, generator=generator) < prob
    return prob > 0.5


def gumbel_choice(
    logits: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A draw from ``softmax(logits / temperature)`` along the last dim (..., K) -> (...) indices.

    Gumbel-max: the argmax of logits plus Gumbel noise (3-4x faster than ``torch.multinomial`` on a
    CPU, where the draws were a third of a dream step).
    """
    u = torch.rand(logits.shape, device=logits.device, generator=generator).clamp_(min=1e-20)
    return (logits.float() / temperature - torch.log(-torch.log(u))).argmax(-1)


def nearest_move(vocab: torch.Tensor, moves: torch.Tensor) -> torch.Tensor:
    """The vocabulary entry nearest each move: ``vocab`` (O, K, 2), ``moves`` (..., O, 2) -> (..., O) indices."""
    return (vocab - moves[..., None, :]).square().sum(-1).argmin(-1)
