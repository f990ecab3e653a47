"""SPACE's foreground: a G x G grid of object slots, glimpses cut by a spatial transformer, local rendering.

Per cell (row r, column c) the image encoder gives ``z_pres`` (relaxed Bernoulli, temperature tau),
``z_where = [w, h, cx, cy]`` and ``z_depth``. Sizes are fractions of the frame
(``z_scale_max * sigmoid(latent)``); the centre stays in its cell
(``cx = cell centre + tanh(latent) / G`` in the (-1, 1) frame coordinates), the convention of the
dataset's motion targets (:func:`dataset_tools.motion.grid_targets`). A spatial transformer cuts a
glimpse around each box, the glimpse encoder gives ``z_what``, and the glimpse decoder draws RGB plus
alpha. Each glimpse is drawn back into a local window of ``2m + 1`` cells around its cell (``m`` is
the largest box's half side in cells), and the windows are summed into the frame with ``F.fold``:
the same picture as drawing every glimpse over the whole frame, at a fraction of the cost.

Objects overlap by depth: ``fg = sum_i w_i rgb_i / sum_i w_i`` with ``w_i = alpha_i z_pres_i
100 sigmoid(-z_depth_i)``, and the foreground's alpha is ``sum_i alpha_i z_pres_i`` clamped to
(0, 1) (straight-through, as SPACE).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal, kl_divergence

from world_models.space.config import SpaceTimeConfig

EPS = 1e-5


def _gn(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, c), c)


@dataclass
class FgOutput:
    """What the foreground pass gives: N = G * G cells per image, S = frame side."""

    pres_logits: torch.Tensor  # (B, N)
    z_pres: torch.Tensor  # (B, N) relaxed sample in training, probability in eval
    z_where: torch.Tensor  # (B, N, 4) [w, h, cx, cy]
    z_depth: torch.Tensor  # (B, N)
    z_what: torch.Tensor  # (B, N, D) sample in training, mean in eval
    z_what_mean: torch.Tensor  # (B, N, D)
    fg: torch.Tensor  # (B, 3, S, S)
    alpha: torch.Tensor  # (B, 1, S, S)
    kl: torch.Tensor  # (B,) foreground KL per image
    kl_pres: torch.Tensor  # (B,)

    @property
    def pres_prob(self) -> torch.Tensor:
        return torch.sigmoid(self.pres_logits)


class GlimpseEncoder(nn.Module):
    """(N, 3, g, g) glimpses -> z_what mean, std (N, D). An MLP: glimpses of Atari sprites are small, and
    on the CPU it is several times faster than the conv encoder of the reference for the G * G glimpses."""

    def __init__(self, size: int, hidden: int, z_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(3 * size * size, hidden),
            nn.CELU(),
            nn.Linear(hidden, hidden),
            nn.CELU(),
            nn.Linear(hidden, 2 * z_dim),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = self.net(x.flatten(1)).chunk(2, dim=-1)  # (N, 3, g, g) -> (N, 3*g*g) -> 2 x (N, D)
        return mean, F.softplus(std) + 1e-4


class GlimpseDecoder(nn.Module):
    """z_what (N, D) -> RGB (N, 3, g, g) and alpha (N, 1, g, g), both in (0, 1). An MLP (see the encoder)."""

    def __init__(self, size: int, hidden: int, z_dim: int) -> None:
        super().__init__()
        self.size = size
        self.net = nn.Sequential(
            nn.Linear(z_dim, hidden),
            nn.CELU(),
            nn.Linear(hidden, hidden),
            nn.CELU(),
            nn.Linear(hidden, 4 * size * size),
        )

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = torch.sigmoid(self.net(z)).view(-1, 4, self.size, self.size)  # (N, 4*g*g) -> (N, 4, g, g)
        return out[:, :3], out[:, 3:]


class ImageEncoder(nn.Module):
    """(B, 3, S, S) -> per-cell parameters (B, 11, G, G): pres logit, scale / shift / depth means and stds.

    The frame is first folded into channels (pixel unshuffle to 2G x 2G, every pixel kept, so one-pixel
    sprites survive), then one stride-2 conv reaches the grid and 3 x 3 convs add context from the
    neighbouring cells; far cheaper on the CPU than stride-2 convs from full resolution.
    """

    def __init__(self, size: int, grid: int, nf: int) -> None:
        super().__init__()
        self.factor = size // (2 * grid)
        c_in = 3 * self.factor**2
        self.conv = nn.Sequential(
            nn.Conv2d(c_in, nf, 3, 1, 1), _gn(nf), nn.CELU(),
            nn.Conv2d(nf, nf, 4, 2, 1), _gn(nf), nn.CELU(),
            nn.Conv2d(nf, nf, 3, 1, 1), _gn(nf), nn.CELU(),
            nn.Conv2d(nf, nf, 3, 1, 1), _gn(nf), nn.CELU(),
        )  # fmt: skip
        self.head = nn.Conv2d(nf, 11, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pixel_unshuffle(x, self.factor) if self.factor > 1 else x  # (B, 3, S, S) -> (B, 3 f^2, 2G, 2G)
        return self.head(self.conv(x))


def relaxed_bernoulli(logits: torch.Tensor, tau: float) -> torch.Tensor:
    """A reparameterised sample of a relaxed Bernoulli (binary Concrete) with temperature ``tau``."""
    u = torch.rand_like(logits).clamp(EPS, 1 - EPS)
    return torch.sigmoid((logits + torch.log(u) - torch.log1p(-u)) / tau)


def kl_bernoulli(p: torch.Tensor, prior: float) -> torch.Tensor:
    """Elementwise KL(Bernoulli(p) || Bernoulli(prior))."""
    p = p.clamp(EPS, 1 - EPS)
    return p * (torch.log(p) - math.log(prior)) + (1 - p) * (torch.log1p(-p) - math.log1p(-prior))


class SpaceFg(nn.Module):
    def __init__(self, cfg: SpaceTimeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        g, s = cfg.grid, cfg.img_size
        self.cell = s // g
        self.m = math.ceil(cfg.z_scale_max * g / 2 - 1e-9)  # window half side in cells, beyond the own cell
        self.window = (2 * self.m + 1) * self.cell  # P: window side in pixels
        self.encoder = ImageEncoder(s, g, cfg.fg_nf)
        self.glimpse_encoder = GlimpseEncoder(cfg.glimpse_size, cfg.glimpse_hidden, cfg.z_what_dim)
        self.glimpse_decoder = GlimpseDecoder(cfg.glimpse_size, cfg.glimpse_hidden, cfg.z_what_dim)
        centres = (2 * torch.arange(g, dtype=torch.float32) + 1) / g - 1  # (G,) cell centres in (-1, 1)
        cy, cx = torch.meshgrid(centres, centres, indexing="ij")
        self.register_buffer("cell_centres", torch.stack([cx, cy], -1).view(1, g * g, 2), persistent=False)
        glimpse = (2 * torch.arange(cfg.glimpse_size, dtype=torch.float32) + 1) / cfg.glimpse_size - 1
        self.register_buffer("glimpse_coords", glimpse, persistent=False)  # (g,) pixel centres in (-1, 1)
        # Frame coordinates of the window's pixel centres relative to its cell's left / top edge: (P,).
        offsets = (torch.arange(self.window, dtype=torch.float32) - self.m * self.cell + 0.5) * 2 / s
        self.register_buffer("window_offsets", offsets, persistent=False)
        edges = torch.arange(g, dtype=torch.float32) * 2 * self.cell / s - 1  # (G,) left / top edge of each cell
        self.register_buffer("cell_edges", edges, persistent=False)

    # ------------------------------------------------------------------ spatial transformer
    def glimpses(self, x: torch.Tensor, z_where: torch.Tensor) -> torch.Tensor:
        """Cut a (g x g) glimpse of ``x`` (B, 3, S, S) around each box of ``z_where`` (B, N, 4) -> (B, N, 3, g, g)."""
        b, n, _ = z_where.shape
        gs = self.cfg.glimpse_size
        u = self.glimpse_coords
        gx = z_where[..., 2, None] + z_where[..., 0, None] * u  # (B, N, g) frame x of each glimpse column
        gy = z_where[..., 3, None] + z_where[..., 1, None] * u  # (B, N, g) frame y of each glimpse row
        grid = torch.stack([gx[:, :, None, :].expand(b, n, gs, gs), gy[:, :, :, None].expand(b, n, gs, gs)], dim=-1)
        grid = grid.reshape(b, n * gs, gs, 2)  # (B, N, g, g, 2) -> (B, N*g, g, 2): one sampling pass per image
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)  # (B, 3, N*g, g)
        return out.view(b, 3, n, gs, gs).transpose(1, 2)  # (B, 3, N, g, g) -> (B, N, 3, g, g)

    def render(self, patches: torch.Tensor, z_where: torch.Tensor) -> torch.Tensor:
        """Draw (B, N, C, g, g) glimpse maps at their boxes and sum them over cells -> (B, C, S, S)."""
        b, n, c, gs, _ = patches.shape
        g, p, s = self.cfg.grid, self.window, self.cfg.img_size
        rows = torch.arange(n, device=patches.device) // g
        cols = torch.arange(n, device=patches.device) % g
        # Frame coordinates of every window pixel (the window of cell (r, c) starts at pixel (c - m) * cell),
        # then glimpse coordinates u = (X - cx) / w.
        wx = self.cell_edges[cols][:, None] + self.window_offsets[None, :]  # (N, P)
        wy = self.cell_edges[rows][:, None] + self.window_offsets[None, :]  # (N, P)
        w, h = z_where[..., 0:1].clamp_min(EPS), z_where[..., 1:2].clamp_min(EPS)  # (B, N, 1)
        ux = (wx[None] - z_where[..., 2:3]) / w  # (B, N, P)
        uy = (wy[None] - z_where[..., 3:4]) / h  # (B, N, P)
        grid = torch.stack([ux[:, :, None, :].expand(b, n, p, p), uy[:, :, :, None].expand(b, n, p, p)], dim=-1)
        drawn = F.grid_sample(
            patches.reshape(b * n, c, gs, gs),  # (B, N, C, g, g) -> (B*N, C, g, g)
            grid.reshape(b * n, p, p, 2),
            mode="bilinear",
            padding_mode="zeros",
            align_corners=False,
        ).view(b, n, c, p, p)
        cols_in = drawn.permute(0, 2, 3, 4, 1).reshape(b, c * p * p, n)  # (B, N, C, P, P) -> (B, C*P*P, N)
        pad = self.m * self.cell
        full = F.fold(cols_in, output_size=(s + 2 * pad, s + 2 * pad), kernel_size=p, stride=self.cell)
        return full[:, :, pad : pad + s, pad : pad + s]  # (B, C, S + 2 pad, S + 2 pad) -> (B, C, S, S)

    # ------------------------------------------------------------------ forward
    def _cells(self, x: torch.Tensor) -> tuple[torch.Tensor, Normal, Normal, Normal]:
        """Per-cell presence logits (B, N) and the scale / shift / depth posteriors of frames ``x``."""
        params = self.encoder(x).flatten(2).transpose(1, 2)  # (B, 11, G, G) -> (B, N, 11)
        pres_logits = params[..., 0].clamp(-8.8, 8.8)
        stds = (F.softplus(params[..., i : i + k]) + 1e-4 for i, k in ((6, 2), (8, 2), (10, 1)))
        means = (params[..., 1:3], params[..., 3:5], params[..., 5:6])
        q_scale, q_shift, q_depth = (Normal(m, s) for m, s in zip(means, stds, strict=True))
        return pres_logits, q_scale, q_shift, q_depth

    def _z_where(self, scale_raw: torch.Tensor, shift_raw: torch.Tensor) -> torch.Tensor:
        """Raw scale / shift latents (B, N, 2) each -> ``z_where`` (B, N, 4) ``[w, h, cx, cy]``."""
        scale = self.cfg.z_scale_max * torch.sigmoid(scale_raw)  # (B, N, 2) [w, h]
        centre = self.cell_centres + torch.tanh(shift_raw) / self.cfg.grid  # (B, N, 2) [cx, cy]
        return torch.cat([scale, centre], dim=-1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The means of frames ``x`` (B, 3, S, S), without drawing anything (extraction only): presence
        logits (B, N), ``z_where`` (B, N, 4), ``z_depth`` (B, N) and ``z_what`` (B, N, D)."""
        pres_logits, q_scale, q_shift, q_depth = self._cells(x)
        z_where = self._z_where(q_scale.mean, q_shift.mean)
        return pres_logits, z_where, q_depth.mean.squeeze(-1), self.what(x, z_where)

    def locate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Presence logits (B, N) and ``z_where`` means (B, N, 4) of frames ``x`` (B, 3, S, S): the image
        encoder alone, far cheaper than :meth:`encode` (no glimpses)."""
        pres_logits, q_scale, q_shift, _ = self._cells(x)
        return pres_logits, self._z_where(q_scale.mean, q_shift.mean)

    def what(self, x: torch.Tensor, z_where: torch.Tensor) -> torch.Tensor:
        """``z_what`` means (B, K, D) of the glimpses of frames ``x`` (B, 3, S, S) cut at ``z_where`` (B, K, 4)."""
        what_mean, _ = self.glimpse_encoder(self.glimpses(x, z_where).flatten(0, 1))  # (B*K, 3, g, g) -> (B*K, D)
        return what_mean.view(x.shape[0], z_where.shape[1], -1)

    def composite(
        self, rgb: torch.Tensor, alpha: torch.Tensor, z_pres: torch.Tensor, depth: torch.Tensor, z_where: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw the cells' glimpses ``rgb`` (B, N, 3, g, g) and ``alpha`` (B, N, 1, g, g), weighted by
        ``z_pres`` (B, N) and ordered by ``depth`` (B, N), at their ``z_where`` (B, N, 4) -> the foreground
        (B, 3, S, S) and its alpha (B, 1, S, S)."""
        a = alpha * z_pres[..., None, None, None]  # (B, N, 1, g, g)
        weight = a * 100.0 * torch.sigmoid(-depth)[..., None, None, None]  # (B, N, 1, g, g)
        sums = self.render(torch.cat([weight * rgb, weight, a], dim=2), z_where)  # (B, 5, S, S)
        fg = sums[:, :3] / (sums[:, 3:4] + EPS)
        alpha_sum = sums[:, 4:5]
        return fg, alpha_sum + (alpha_sum.clamp(EPS, 1 - EPS) - alpha_sum).detach()

    def forward(self, x: torch.Tensor, tau: float, z_pres_prior: float, z_scale_prior: float) -> FgOutput:
        """Foreground of frames ``x`` (B, 3, S, S); samples in training mode, means / probabilities in eval."""
        cfg, b = self.cfg, x.shape[0]
        n = cfg.grid * cfg.grid
        pres_logits, q_scale, q_shift, q_depth = self._cells(x)
        scale_mean, scale_std, shift_mean, shift_std = q_scale.mean, q_scale.stddev, q_shift.mean, q_shift.stddev
        if self.training:
            z_pres = relaxed_bernoulli(pres_logits, tau)
            scale_raw, shift_raw, depth = q_scale.rsample(), q_shift.rsample(), q_depth.rsample()
        else:
            z_pres = torch.sigmoid(pres_logits)
            scale_raw, shift_raw, depth = q_scale.mean, q_shift.mean, q_depth.mean
        z_where = self._z_where(scale_raw, shift_raw)  # (B, N, 4)

        glimpses = self.glimpses(x, z_where)  # (B, N, 3, g, g)
        what_mean, what_std = self.glimpse_encoder(glimpses.flatten(0, 1))  # (B*N, 3, g, g) -> (B*N, D)
        q_what = Normal(what_mean, what_std)
        z_what = q_what.rsample() if self.training else what_mean
        rgb, alpha = self.glimpse_decoder(z_what)  # (B*N, 3, g, g), (B*N, 1, g, g)
        fg, alpha_map = self.composite(
            rgb.view(b, n, 3, *rgb.shape[-2:]), alpha.view(b, n, 1, *alpha.shape[-2:]), z_pres, depth[..., 0], z_where
        )

        kl_pres = kl_bernoulli(torch.sigmoid(pres_logits), z_pres_prior).sum(1)  # (B,)
        prior_scale = Normal(
            torch.full_like(scale_mean, z_scale_prior), torch.full_like(scale_std, cfg.z_scale_prior_std)
        )
        standard = Normal(torch.zeros_like(shift_mean), torch.ones_like(shift_std))
        kl_cell = (
            kl_divergence(q_scale, prior_scale).sum(-1)
            + kl_divergence(q_shift, standard).sum(-1)
            + kl_divergence(q_depth, Normal(0.0, 1.0)).sum(-1)
            + kl_divergence(q_what, Normal(0.0, 1.0)).sum(-1).view(b, n)
        )  # (B, N)
        kl = kl_pres + (kl_cell * z_pres).sum(1)
        return FgOutput(
            pres_logits=pres_logits,
            z_pres=z_pres,
            z_where=z_where,
            z_depth=depth.squeeze(-1),
            z_what=z_what.view(b, n, -1),
            z_what_mean=what_mean.view(b, n, -1),
            fg=fg,
            alpha=alpha_map,
            kl=kl,
            kl_pres=kl_pres,
        )
