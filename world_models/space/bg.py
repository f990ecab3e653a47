"""SPACE's background: K components, GENESIS-like.

Mask latents ``z_mask_1..K`` come one after another from a recurrent posterior (which sees an
encoding of the frame and the previous mask latent) and have a recurrent prior; decoded masks are
turned into a partition of the frame by stick-breaking (component k takes ``sigmoid(logit_k)`` of
the scope the earlier ones left, the last takes the rest). Each component's appearance latent
``z_comp_k`` is encoded from the frame and its mask, with a prior conditioned on ``z_mask_k``, and
decoded into an RGB image. Decoders halve their channels at every doubling of resolution, so the
full-size layers stay cheap; with ``bg_downsample`` > 1 all of it runs on an average-pooled frame and
masks and components are upsampled (bilinear, so the masks still sum to one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal, kl_divergence

from world_models.space.config import SpaceTimeConfig


def _gn(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, c), c)


def _normal(params: torch.Tensor) -> Normal:
    mean, std = params.chunk(2, dim=-1)
    return Normal(mean, F.softplus(std) + 1e-4)


class DownEncoder(nn.Module):
    """(B, C, S, S) -> (B, out_dim): stride-2 convs down to 4 x 4, channels doubling up to 4 * nf."""

    def __init__(self, c_in: int, size: int, nf: int, out_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = c_in
        for i in range(int(math.log2(size)) - 2):
            c_out = max(nf * 2 ** min(i, 2) // 4, 8)
            layers += [nn.Conv2d(c, c_out, 4, 2, 1), _gn(c_out), nn.CELU()]
            c = c_out
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Linear(c * 16, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).flatten(1))  # (B, c, 4, 4) -> (B, c*16) -> (B, out_dim)


class UpDecoder(nn.Module):
    """(B, in_dim) -> (B, c_out, S, S): transposed convs up from 4 x 4, channels halving (at least 8)."""

    def __init__(self, in_dim: int, c_out: int, size: int, nf: int) -> None:
        super().__init__()
        self.c0 = nf
        self.fc = nn.Linear(in_dim, nf * 16)
        layers: list[nn.Module] = []
        c = nf
        for _ in range(int(math.log2(size)) - 2):
            c_next = max(c // 2, 8)
            layers += [nn.ConvTranspose2d(c, c_next, 4, 2, 1), _gn(c_next), nn.CELU()]
            c = c_next
        layers += [nn.Conv2d(c, c_out, 3, 1, 1)]
        self.deconv = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.fc(z).view(-1, self.c0, 4, 4))  # (B, nf*16) -> (B, nf, 4, 4) -> (B, c_out, S, S)


@dataclass
class BgOutput:
    masks: torch.Tensor  # (B, K, 1, S, S), summing to 1 over K
    comps: torch.Tensor  # (B, K, 3, S, S) in (0, 1)
    kl: torch.Tensor  # (B,)

    @property
    def image(self) -> torch.Tensor:
        """The background as one image (B, 3, S, S)."""
        return (self.masks * self.comps).sum(1)


class SpaceBg(nn.Module):
    def __init__(self, cfg: SpaceTimeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        s, nf, hidden = cfg.img_size // cfg.bg_downsample, cfg.bg_nf, 4 * cfg.bg_nf
        self.image_encoder = DownEncoder(3, s, nf * 4, hidden)
        self.post_rnn = nn.GRUCell(hidden + cfg.z_mask_dim, hidden)
        self.post_head = nn.Linear(hidden, 2 * cfg.z_mask_dim)
        self.prior_rnn = nn.GRUCell(cfg.z_mask_dim, hidden)
        self.prior_head = nn.Linear(hidden, 2 * cfg.z_mask_dim)
        self.mask_decoder = UpDecoder(cfg.z_mask_dim, 1, s, nf * 4)
        self.comp_encoder = DownEncoder(4, s, nf * 4, 2 * cfg.z_comp_dim)
        self.comp_prior = nn.Sequential(
            nn.Linear(cfg.z_mask_dim, hidden), nn.CELU(), nn.Linear(hidden, 2 * cfg.z_comp_dim)
        )
        self.comp_decoder = UpDecoder(cfg.z_comp_dim, 3, s, nf * 4)

    def forward(self, frames: torch.Tensor) -> BgOutput:
        cfg, b, k_n = self.cfg, frames.shape[0], self.cfg.bg_k
        d = cfg.bg_downsample
        x = F.avg_pool2d(frames, d) if d > 1 else frames  # (B, 3, S, S) -> (B, 3, S/d, S/d)
        feat = self.image_encoder(x)  # (B, hidden)
        h_post = x.new_zeros(b, self.post_rnn.hidden_size)
        h_prior = x.new_zeros(b, self.prior_rnn.hidden_size)
        z_prev = x.new_zeros(b, cfg.z_mask_dim)
        z_masks, kl = [], x.new_zeros(b)
        for _ in range(k_n):
            h_post = self.post_rnn(torch.cat([feat, z_prev], -1), h_post)
            h_prior = self.prior_rnn(z_prev, h_prior)
            q, p = _normal(self.post_head(h_post)), _normal(self.prior_head(h_prior))
            z = q.rsample() if self.training else q.mean
            kl = kl + kl_divergence(q, p).sum(-1)
            z_masks.append(z)
            z_prev = z
        z_mask = torch.stack(z_masks, 1)  # (B, K, Dm)
        logits = self.mask_decoder(z_mask.flatten(0, 1)).view(
            b, k_n, 1, *x.shape[-2:]
        )  # (B*K, 1, S, S) -> (B, K, 1, S, S)
        masks, scope = [], torch.ones_like(logits[:, 0])
        for k in range(k_n - 1):
            m = scope * torch.sigmoid(logits[:, k])
            masks.append(m)
            scope = scope - m
        masks.append(scope)
        mask = torch.stack(masks, 1)  # (B, K, 1, S, S)

        comp_in = torch.cat([x[:, None].expand(-1, k_n, -1, -1, -1), mask], dim=2).flatten(0, 1)  # (B*K, 4, S, S)
        q_comp = _normal(self.comp_encoder(comp_in))  # (B*K, Dc)
        p_comp = _normal(self.comp_prior(z_mask.flatten(0, 1)))
        z_comp = q_comp.rsample() if self.training else q_comp.mean
        kl = kl + kl_divergence(q_comp, p_comp).sum(-1).view(b, k_n).sum(1)
        comps = torch.sigmoid(self.comp_decoder(z_comp))  # (B*K, 3, S/d, S/d)
        if d > 1:
            size = frames.shape[-2:]
            mask = F.interpolate(mask.flatten(0, 1), size=size, mode="bilinear", align_corners=False)
            comps = F.interpolate(comps, size=size, mode="bilinear", align_corners=False)
        masks = mask.view(b, k_n, 1, *frames.shape[-2:])  # (B*K, 1, S, S) -> (B, K, 1, S, S)
        return BgOutput(masks=masks, comps=comps.view(b, k_n, 3, *frames.shape[-2:]), kl=kl)
