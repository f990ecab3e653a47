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


def draw_choice(
    logits: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A draw from ``softmax(logits / temperature)`` along the last dim (..., K) -> (...) indices.

    By the inverse of the cumulative distribution: one uniform number per draw against the running sum of
    the probabilities (2.7x faster than the Gumbel-max trick, which needs K uniforms and 2K logarithms,
    and 9x faster than ``torch.multinomial``, measured on a CPU at 768 draws of 128; the draws were a
    third of a dream step).
    """
    scaled = logits.float() / temperature
    # (..., K) running sums; clamped so exp makes no subnormal numbers (10x slower on x86): moves below
    # e^-80 of the likeliest keep e^-80 (never drawn in practice: 1e-35)
    total = (scaled - scaled.amax(-1, keepdim=True)).clamp_(min=-80.0).exp_().cumsum_(-1)
    u = torch.rand((*total.shape[:-1], 1), device=total.device, generator=generator).mul_(total[..., -1:])
    # the first move whose running sum exceeds u (a move of probability 0 is never drawn)
    return torch.searchsorted(total, u, right=True).squeeze(-1).clamp_(max=total.shape[-1] - 1)


def draw_from_head(
    head: torch.nn.Linear,
    x: torch.Tensor,
    n: int,
    k: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Imagination's move draw from a move head: ``head`` maps ``x`` (B, H) to [logit, dx, dy] for each of ``n``
    objects' ``k`` moves (its outputs laid out (n, k, 3)). Returns the drawn moves (B, n) and their corrections
    (B, n, 2): the same numbers as drawing from the whole output, computing only the logits and the drawn
    moves' corrections (a third of the head's products at 128 moves; the heads were most of a dream step)."""
    w = head.weight.view(n, k, 3, -1)
    b = head.bias.view(n, k, 3) if head.bias is not None else torch.zeros(n, k, 3, dtype=w.dtype, device=w.device)
    logits = torch.nn.functional.linear(x, w[:, :, 0].reshape(n * k, -1), b[:, :, 0].reshape(n * k))
    choice = draw_choice(logits.view(-1, n, k), temperature, generator)  # (B, n)
    rows = torch.arange(n, device=x.device)[None, :]
    # the drawn moves' rows (B, n, 2, H); a product and a sum, 4x faster here than a batched matrix product
    picked = w.reshape(n * k, 3, -1).index_select(0, (rows * k + choice).flatten())[:, 1:].view(*choice.shape, 2, -1)
    correction = (picked * x[:, None, None, :].to(picked.dtype)).sum(-1) + b[:, :, 1:][rows, choice]
    return choice, correction


def nearest_move(vocab: torch.Tensor, moves: torch.Tensor) -> torch.Tensor:
    """The vocabulary entry nearest each move: ``vocab`` (O, K, 2), ``moves`` (..., O, 2) -> (..., O) indices."""
    return (vocab - moves[..., None, :]).square().sum(-1).argmin(-1)
