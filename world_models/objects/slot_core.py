"""The networks of one ``slot_dynamics`` member: the trunk, the object, move, reward and termination heads.

``slot_dynamics`` holds ``members`` of these (an ensemble: each dream step draws one member per env, so
an agent cannot live off one member's mistakes). Inputs and outputs are described with
:class:`~world_models.objects.slot_dynamics.SlotDynamics`; the box geometry helpers live here too.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from world_models.blocks import mlp
from world_models.objects.moves import UNITS, draw_from_head


class SlotCore(nn.Module):
    """One member's networks over ``n_slots`` objects in ``tiers``; ``sizes`` (S, 2) the classes' typical sizes
    (slot units), where the size head starts."""

    def __init__(
        self, cfg: Any, n_slots: int, n_actions: int, tiers: list[list[int]], sizes: torch.Tensor, n_pairs: int
    ) -> None:
        super().__init__()
        self.cfg, self.n_slots, self.n_actions, self.tiers = cfg, n_slots, n_actions, tiers
        p, s, k = cfg.n_past, n_slots, cfg.move_classes
        n_in = p * s * 5 + (p - 1) * s * 2 + p * n_pairs * 2 + p * n_actions + ((p - 1) * 3 if cfg.reward_memory else 0)
        self.trunk = mlp(n_in, cfg.hidden, cfg.layers)
        self.objects_head = nn.Linear(cfg.hidden, s * 5)  # presence logit, regressed place (2), size deviation (2)
        self.prototypes = nn.Parameter(sizes.clone())  # (S, 2) each class's typical size, slot units
        heads: list[nn.Module] = []
        for j, tier in enumerate(tiers):
            before = sum(len(t) for t in tiers[:j])
            if j == 0:
                heads.append(nn.Linear(cfg.hidden, len(tier) * k * 3))
            else:  # reads where the earlier tiers went: their moves, this tier's offsets from them, and the
                # overlap of the boxes now and after those moves (with this tier's objects flying on as they were)
                extra = before * 2 + len(tier) * before * (6 if cfg.contact_geometry else 2)
                heads.append(mlp(cfg.hidden + extra, cfg.hidden, 1, out=len(tier) * k * 3))
        self.move_heads = nn.ModuleList(heads)
        summary = cfg.hidden + s * 3
        self.reward_head = mlp(summary, 128, 1, out=3)
        self.term_head = mlp(summary, 128, 1, out=1)

    def predict(
        self,
        window: torch.Tensor,
        past: torch.Tensor,
        rewards: torch.Tensor,
        action: torch.Tensor,
        pairs: tuple[torch.Tensor, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``window`` (B, K, S, 5), ``past`` actions (B, K-1), the ``rewards`` (B, K-1) of those steps, the new
        ``action`` (B,) and the object pairs (first, second) -> hidden (B, H), presence logits (B, S),
        regressed places (B, S, 2) and sizes (B, S, 2)."""
        b = window.shape[0]
        first, second = pairs
        pres, pos = window[..., :1], window[..., 1:3]
        moves = (pos[:, 1:] - pos[:, :-1]) * (pres[:, 1:] * pres[:, :-1])  # (B, K-1, S, 2) of objects seen twice
        seen = pres[:, :, first] * pres[:, :, second]  # (B, K, pairs, 1)
        relative = (pos[:, :, second] - pos[:, :, first]) * seen  # (B, K, pairs, 2)
        acts = F.one_hot(torch.cat([past, action[:, None]], dim=1), self.n_actions).to(window.dtype)
        parts = [
            torch.cat([pres, pos, window[..., 3:] * 4.0], dim=-1).flatten(1),
            moves.flatten(1) * 10.0,
            relative.flatten(1) * 4.0,
            acts.flatten(1),
        ]
        if self.cfg.reward_memory:
            parts.append(F.one_hot((rewards.sign() + 1).long(), 3).to(window.dtype).flatten(1))
        hidden = self.trunk(torch.cat(parts, dim=1))
        out = self.objects_head(hidden).view(b, self.n_slots, 5)
        regressed = pos[:, -1] + out[..., 1:3] * 0.1  # absent objects sit at 0: an appearing one is placed absolutely
        size = self.prototypes + out[..., 3:] * 0.1
        return hidden, out[..., 0], regressed, size

    def tier_choices(
        self, j: int, hidden: torch.Tensor, last: torch.Tensor, earlier: torch.Tensor | None, flight: torch.Tensor
    ) -> torch.Tensor:
        """Tier ``j``'s [logit, dx, dy] per move (B, n_j, K, 3), given the last frame (B, S, 5), the earlier
        tiers' moves ``earlier`` (B, n_before, 2) in raw pixels (zero for objects not seen) and every object's
        last move ``flight`` (B, S, 2) in slot units (zero unless seen in both of the last two frames)."""
        out = self.move_heads[j](self._tier_input(j, hidden, last, earlier, flight))
        return out.view(hidden.shape[0], len(self.tiers[j]), self.cfg.move_classes, 3)

    def tier_draw(
        self,
        j: int,
        hidden: torch.Tensor,
        last: torch.Tensor,
        earlier: torch.Tensor | None,
        flight: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Imagination: tier ``j``'s drawn moves (B, n_j) and their corrections (B, n_j, 2) in raw pixels, drawn
        from :meth:`tier_choices`' logits (at ``move_temperature``) without computing the other moves' corrections."""
        x = self._tier_input(j, hidden, last, earlier, flight)
        head = self.move_heads[j]
        if isinstance(head, nn.Sequential):
            x, head = head[:-1](x), head[-1]
        assert isinstance(head, nn.Linear)
        return draw_from_head(head, x, len(self.tiers[j]), self.cfg.move_classes, self.cfg.move_temperature, generator)

    def _tier_input(
        self, j: int, hidden: torch.Tensor, last: torch.Tensor, earlier: torch.Tensor | None, flight: torch.Tensor
    ) -> torch.Tensor:
        """What tier ``j``'s move head reads (see :meth:`tier_choices`): the trunk's ``hidden`` state, and after
        the first tier where the earlier tiers went."""
        if j == 0 or earlier is None:
            return hidden
        tier = self.tiers[j]
        units = torch.tensor(UNITS, device=last.device, dtype=last.dtype)
        before = [c for t in self.tiers[:j] for c in t]
        moved = last[:, before, 1:3] + earlier / units  # (B, n_before, 2) where the earlier objects went
        seen = last[:, tier, None, :1] * last[:, None, before, :1]  # (B, n_j, n_before, 1)
        offset = (last[:, tier, None, 1:3] - moved[:, None]) * 4.0 * seen  # (B, n_j, n_before, 2)
        parts = [earlier.flatten(1) / 8.0, offset.flatten(1)]
        if self.cfg.contact_geometry:
            ahead, after = last[:, tier].clone(), last[:, before].clone()
            ahead[..., 1:3] = ahead[..., 1:3] + flight[:, tier]  # this tier flying on as it was
            after[..., 1:3] = moved
            now, then = overlaps(last[:, tier], last[:, before]), overlaps(ahead, after)  # (B, n_j, n_before, 2)
            parts.append(((torch.cat([now, then], dim=-1) / 8.0).clamp(-4.0, 4.0) * seen).flatten(1))
        return torch.cat([hidden, torch.cat(parts, dim=1).to(hidden.dtype)], dim=1)

    def heads(
        self, hidden: torch.Tensor, prob: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reward logits (B, 3) and termination logit (B,) of the next objects' presence (B, S) and places (B, S, 2)."""
        summary = torch.cat([hidden, prob, positions.flatten(1)], dim=1)
        return self.reward_head(summary), self.term_head(summary).squeeze(-1)


def overlaps(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """How far the boxes of objects ``a`` (B, n, 5) and ``b`` (B, m, 5) overlap along x and y: (B, n, m, 2) in
    raw pixels (negative: the gap between them)."""
    units = torch.tensor(UNITS, device=a.device, dtype=a.dtype)
    ca, cb = a[:, :, None, 1:3] * units, b[:, None, :, 1:3] * units  # (B, n, 1, 2), (B, 1, m, 2) centres
    ha, hb = a[:, :, None, 3:5] * units / 2, b[:, None, :, 3:5] * units / 2  # half sizes
    return torch.minimum(ca + ha, cb + hb) - torch.maximum(ca - ha, cb - hb)


def gaps_to_others(objects: torch.Tensor) -> torch.Tensor:
    """The gap (raw pixels, the larger of the x and y gaps; 0 where they overlap) between each present object
    of ``objects`` (B, n, 5) and each other present one: (B, n, n), infinite for absent ones and the diagonal."""
    gap = (-overlaps(objects, objects)).clamp(min=0.0).amax(-1)
    eye = torch.eye(objects.shape[1], dtype=torch.bool, device=objects.device)
    both = (objects[:, :, None, 0] > 0) & (objects[:, None, :, 0] > 0) & ~eye
    return torch.where(both, gap, torch.full_like(gap, float("inf")))
