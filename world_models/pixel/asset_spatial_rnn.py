"""``asset_spatial_rnn``: the Asset Spatial Transforming RNN of reference 003 (learned sprites, moved).

The recurrent part is ``rnn_deconv``'s (a conv encoder of the context frames and actions gives the
initial GRU state; each step feeds the action embedding to the GRU; reward and termination heads read
the state). Only the renderer differs: instead of deconvolving the frame, the state predicts, for
each of ``n_sprites`` learned RGBA sprites (the "assets", shared by every frame), a translation of
its centre and a presence in [0, 1]; a spatial transformer (``affine_grid`` / ``grid_sample``)
places the sprites, which are composited in order over a learned background.

Placing a sprite by gradient descent only works where the drawn sprite and the true object overlap;
``blur_sigma`` adds an MSE between Gaussian-blurred predicted and true frames, which widens that basin
to a few pixels. ``context_weight`` also trains the initial state to draw the last context frame,
so the encoder learns where the objects are before the GRU learns how they move.

The background is a single learned image: changing scores are not drawn (nor anything else no
sprite covers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dataset_tools.sequences import SequenceBatch
from world_models.base import register
from world_models.config import ConfigError
from world_models.losses import head_losses, recon_loss
from world_models.pixel.frame_transformer import kernel_matrices
from world_models.pixel.rnn_deconv import RNNDeconv, RNNDeconvConfig


@dataclass
class AssetSpatialRNNConfig(RNNDeconvConfig):
    n_sprites: int = 4
    """Learned sprites (assets); each is drawn once per frame, in order, over the background."""
    sprite_size: int = 12
    """Side in frame pixels of each sprite's square canvas (Pong at 64 x 64: paddles are ~2 x 7 px)."""
    blur_sigma: float = 2.0
    """Std (pixels) of the Gaussian blur of the extra blurred-frame MSE (0: no such term)."""
    blur_weight: float = 1.0
    """Weight of the blurred-frame MSE."""
    context_weight: float = 1.0
    """Weight of drawing the last context frame from the initial state (before any step)."""
    texture_scale: float = 20.0
    """Multiplier of the background and sprite logits, which are stored divided by it: Adam then moves
    those images this many times faster than the trainer's ``lr`` (otherwise a short run cannot even
    learn the background's colours)."""

    def __post_init__(self) -> None:
        if self.n_sprites < 1 or self.sprite_size < 1:
            raise ConfigError(f"n_sprites and sprite_size must be >= 1, got {self.n_sprites}, {self.sprite_size}")


class SpriteRenderer(nn.Module):
    """State ``h`` (B, hidden) -> frame (B, C, S, S): a learned background and learned RGBA sprites,
    each translated and faded by values read from ``h`` and composited back to front."""

    def __init__(
        self, hidden: int, channels: int, size: int, n_sprites: int, sprite_size: int, texture_scale: float = 1.0
    ) -> None:
        super().__init__()
        self.channels, self.size, self.n_sprites = channels, size, n_sprites
        self.texture_scale = texture_scale
        self.background = nn.Parameter(torch.zeros(channels, size, size))  # logits / texture_scale
        sprites = 0.5 * torch.randn(n_sprites, channels + 1, sprite_size, sprite_size) / texture_scale
        self.sprites = nn.Parameter(sprites)  # RGBA logits / texture_scale
        self.pose = nn.Linear(hidden, n_sprites * 3)  # per sprite: centre x, centre y, presence logit
        self.scale = sprite_size / size  # sprite canvas half-width in normalised frame coordinates

    def poses(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Centres (B, K, 2) in [-1, 1] (x, y of ``affine_grid``) and presences (B, K) in [0, 1]."""
        pose = self.pose(h).view(-1, self.n_sprites, 3)  # (B, K*3) -> (B, K, 3)
        return torch.tanh(pose[..., :2]), torch.sigmoid(pose[..., 2])

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, k, c, s = h.shape[0], self.n_sprites, self.channels, self.size
        centre, presence = self.poses(h)
        # Output point p samples the sprite at (p - centre) / scale: the canvas lands on centre +- scale.
        theta = torch.zeros(b * k, 2, 3, device=h.device, dtype=h.dtype)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / self.scale
        theta[:, :, 2] = -centre.reshape(b * k, 2) / self.scale  # (B, K, 2) -> (B*K, 2)
        grid = F.affine_grid(theta, [b * k, c + 1, s, s], align_corners=False)  # (B*K, S, S, 2)
        rgba = torch.sigmoid(self.texture_scale * self.sprites).to(h.dtype)  # (K, C+1, s, s)
        rgba = rgba[None].expand(b, *rgba.shape).reshape(b * k, *rgba.shape[1:])  # (B*K, C+1, s, s)
        placed = F.grid_sample(rgba, grid, align_corners=False).view(b, k, c + 1, s, s)  # zero outside the canvas
        alpha = placed[:, :, c:] * presence[:, :, None, None, None]  # (B, K, 1, S, S)
        frame = torch.sigmoid(self.texture_scale * self.background).to(h.dtype).expand(b, c, s, s)
        for rgb, a in zip(placed[:, :, :c].unbind(1), alpha.unbind(1), strict=True):  # (B, C, S, S), (B, 1, S, S)
            frame = frame * (1 - a) + rgb * a
        return frame


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (..., H, W) images, borders replicated."""
    r = max(1, math.ceil(2.5 * sigma))
    taps = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    h, w = x.shape[-2:]
    rows, cols = kernel_matrices(kernel, h), kernel_matrices(kernel, w)  # (H, H), (W, W)
    y = x.reshape(-1, w) @ cols.T  # (..., H, W) -> (N*H, W): one large product filters every row
    y = y.view(-1, h, w).mT.reshape(-1, h) @ rows.T  # (N, H, W) -> (N, W, H) -> (N*W, H): the columns
    return y.view(-1, w, h).mT.reshape(x.shape)


@register
class AssetSpatialRNN(RNNDeconv):
    name = "asset_spatial_rnn"
    Config = AssetSpatialRNNConfig
    cfg: AssetSpatialRNNConfig

    def _build_decoder(self, channels: int, size: int) -> nn.Module:
        cfg = self.cfg
        return SpriteRenderer(cfg.hidden, channels, size, cfg.n_sprites, cfg.sprite_size, cfg.texture_scale)

    def loss(self, batch: SequenceBatch) -> tuple[torch.Tensor, dict[str, float]]:
        p, cfg = self.cfg.n_past, self.cfg
        frames, actions = batch.frames, batch.actions  # (B, T, C, H, W), (B, T-1)
        hs = [self._initial(frames[:, :p], actions[:, : p - 1])]
        for t in range(p - 1, frames.shape[1] - 1):
            hs.append(self.rnn(self.action_embed(actions[:, t]), hs[-1]))
        h = torch.stack(hs, dim=1)  # (B, 1+F, hidden): the initial state, then one per step
        b, n = h.shape[:2]
        drawn = self.decoder(h.flatten(0, 1)).view(b, n, *self.frame_shape)  # (B*(1+F), C, H, W) -> (B, 1+F, ...)
        pred, target, previous = drawn[:, 1:], frames[:, p:], frames[:, p - 1 : -1]
        recon = recon_loss(pred, target, previous, cfg.change_weight)
        context = torch.mean((drawn[:, 0] - frames[:, p - 1]) ** 2)
        loss = recon + cfg.context_weight * context
        logs: dict[str, float] = {}
        if cfg.blur_sigma > 0 and cfg.blur_weight > 0:
            both = torch.stack([drawn, frames[:, p - 1 :]])  # (2, B, 1+F, C, H, W)
            blurred_pred, blurred_true = gaussian_blur(both, cfg.blur_sigma)
            blurred = torch.mean((blurred_pred - blurred_true) ** 2)
            loss = loss + cfg.blur_weight * blurred
            logs["blurred"] = blurred.item()
        heads = h[:, 1:].flatten(0, 1)  # (B, F, hidden) -> (B*F, hidden)
        r_logits = self.reward_head(heads).view(b, n - 1, 3)
        t_logits = self.term_head(heads).view(b, n - 1)
        reward_ce, term_bce, head_logs = head_losses(
            r_logits, t_logits, batch.rewards[:, p - 1 :], batch.terminated[:, p - 1 :]
        )
        loss = loss + cfg.reward_weight * reward_ce + cfg.termination_weight * term_bce
        logs.update(head_logs)
        with torch.no_grad():
            logs["recon"] = torch.mean((pred - target) ** 2).item()
            _, presence = self.decoder.poses(h.flatten(0, 1))
            logs["presence"] = presence.mean().item()
        logs["weighted_recon"] = recon.item()
        logs["context_recon"] = context.item()
        return loss, logs
