"""SPACE-Time's losses: the SPACE ELBO's likelihood, the motion loss and the object-continuity loss.

All are per image sums (over pixels, cells or objects); the model averages them over the batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.distributions import Normal

from world_models.space.bg import BgOutput
from world_models.space.fg import EPS, FgOutput


def log_likelihood(x: torch.Tensor, fg: FgOutput, bg: BgOutput, fg_sigma: float, bg_sigma: float) -> torch.Tensor:
    """log p(x | z) of frames ``x`` (B, 3, S, S) under SPACE's mixture -> (B,).

    Per pixel and channel: ``alpha N(x; fg, fg_sigma) + (1 - alpha) sum_k mask_k N(x; comp_k, bg_sigma)``.
    """
    fg_ll = Normal(fg.fg, fg_sigma).log_prob(x) + torch.log(fg.alpha + EPS)  # (B, 3, S, S)
    comp_ll = Normal(bg.comps, bg_sigma).log_prob(x[:, None]) + torch.log(bg.masks + EPS)  # (B, K, 3, S, S)
    bg_ll = torch.logsumexp(comp_ll, dim=1) + torch.log1p(-fg.alpha + EPS)  # (B, 3, S, S)
    return torch.logaddexp(fg_ll, bg_ll).flatten(1).sum(1)


def cell_units(grid: int) -> torch.Tensor:
    """Factors that express ``[w, h, cx, cy]`` in cells (sizes are fractions of the frame, centres in (-1, 1))."""
    return torch.tensor([grid, grid, grid / 2, grid / 2])


def motion_loss(
    pres_logits: torch.Tensor,
    z_where: torch.Tensor,
    target_pres: torch.Tensor,
    target_where: torch.Tensor,
    hint: float,
    grid: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SPACE-Time's motion loss -> (z_pres part (B,), z_where part (B,)).

    ``pres_logits`` (B, N), ``z_where`` (B, N, 4) against the motion targets (B, N), (B, N, 4). The
    z_pres part is the binary cross-entropy with the target ``hint * motion + (1 - hint) * own``,
    where ``own`` is the model's thresholded, detached presence: ``hint`` cools from 1 to 0 and the
    model moves from the motion hints to its own predictions. The z_where part is the squared error,
    in cell units, on the cells the motion marks, times ``hint``.
    """
    own = (pres_logits.detach() > 0).to(pres_logits.dtype)
    target = hint * target_pres + (1.0 - hint) * own
    pres = F.binary_cross_entropy_with_logits(pres_logits, target, reduction="none").sum(1)
    scale = cell_units(grid).to(z_where)
    err = (((z_where - target_where) * scale) ** 2).sum(-1)  # (B, N)
    where = hint * (err * target_pres).sum(1)
    return pres, where


def continuity_loss(
    z_what: torch.Tensor, centres: torch.Tensor, present: torch.Tensor, radius: float, temperature: float
) -> tuple[torch.Tensor, int]:
    """Object continuity (MOC) over consecutive frames -> (loss per window (B,), matched objects).

    ``z_what`` (B, T, N, D), ``centres`` (B, T, N, 2), ``present`` (B, T, N) bool. Each present object
    at frame t is matched with the nearest present object at t+1 (centres at most ``radius`` apart);
    its z_what must pick out the match among all objects present at t+1 (cross-entropy of cosine
    similarities / ``temperature``): the same object keeps its code, other objects of the frame
    move away. Objects of other windows are not negatives (they are often of the same kind).
    """
    b = z_what.shape[0]
    if z_what.shape[1] < 2:
        return z_what.new_zeros(b), 0
    za = F.normalize(z_what[:, :-1], dim=-1)  # (B, T-1, N, D)
    zb = F.normalize(z_what[:, 1:], dim=-1)
    sim = za @ zb.transpose(-1, -2) / temperature  # (B, T-1, N, N)
    pa, pb = present[:, :-1], present[:, 1:]  # (B, T-1, N)
    dist = torch.cdist(centres[:, :-1].float(), centres[:, 1:].float())  # (B, T-1, N, N)
    dist = dist.masked_fill(~pb[..., None, :], math.inf)
    nearest, match = dist.min(-1)  # (B, T-1, N)
    valid = pa & (nearest < radius)
    n = int(valid.sum())
    if n == 0:
        return z_what.new_zeros(b), 0
    logits = sim.masked_fill(~pb[..., None, :], -math.inf)
    ce = torch.zeros_like(nearest, dtype=sim.dtype)
    ce[valid] = F.cross_entropy(logits[valid], match[valid], reduction="none")
    return ce.flatten(1).sum(1), n
