"""Building blocks of ``savp`` (Lee et al. 2018): the conv-LSTM generator, its pixel transformations
(CDNA / DNA / flow) and mask compositing, the per-step Gaussian conv encoder, the video discriminator.

Shapes: frames (B, C, H, W) in [0, 1]; a "cond" vector (B, D) (action embedding and latent) is tiled
over the pixels of every encoder level's input, as in SAVP.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

Hidden = tuple[torch.Tensor, torch.Tensor]  # (h, c) of one conv-LSTM, (B, ch, s, s) each
IDENTITY_LOGIT = 4.0
"""Initial softmax logit of a kernel's centre tap: CDNA / DNA kernels start close to the identity."""


def _norm_act(c: int) -> nn.Sequential:
    return nn.Sequential(nn.GroupNorm(math.gcd(8, c), c), nn.LeakyReLU(0.2))


def tile(x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) and (B, D) -> (B, C + D, H, W), the vector repeated at every pixel."""
    b, _, h, w = x.shape
    return torch.cat([x, cond[:, :, None, None].expand(b, cond.shape[1], h, w)], dim=1)


class ConvLSTMCell(nn.Module):
    """A convolutional LSTM cell whose input and hidden state both have ``ch`` channels."""

    def __init__(self, ch: int, kernel: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2 * ch, 4 * ch, kernel, padding=kernel // 2)
        with torch.no_grad():
            self.conv.bias[ch : 2 * ch] = 1.0  # forget gate starts open

    def forward(self, x: torch.Tensor, hidden: Hidden) -> tuple[torch.Tensor, Hidden]:
        h, c = hidden
        i, f, o, g = self.conv(torch.cat([x, h], dim=1)).chunk(4, dim=1)  # (B, 4ch, s, s) -> 4 x (B, ch, s, s)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


class Generator(nn.Module):
    """One step of the conv-LSTM encoder-decoder with skips.

    Level ``i`` (0..L-1) works at ``S / 2^(i+1)`` with ``nf * 2^i`` channels; every level but the
    first holds a conv-LSTM in the encoder, and every decoder level but the first and last another.
    Returns the full-resolution features (B, nf, S, S) the transformations and masks read, the
    bottleneck (B, nf * 2^(L-1), S / 2^L, S / 2^L) and the new hidden states.
    """

    def __init__(self, c_in: int, nf: int, levels: int, cond_dim: int) -> None:
        super().__init__()
        self.chans = [nf * 2**i for i in range(levels)]
        prev = [c_in, *self.chans[:-1]]
        self.down = nn.ModuleList(
            nn.Sequential(nn.Conv2d(p + cond_dim, c, 4, 2, 1), _norm_act(c))
            for p, c in zip(prev, self.chans, strict=True)
        )
        self.enc_lstm = nn.ModuleList(ConvLSTMCell(c) for c in self.chans[1:])
        self.up = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(self.chans[i + 1] + self.chans[i], self.chans[i], 3, 1, 1), _norm_act(self.chans[i])
            )
            for i in reversed(range(levels - 1))
        )
        self.dec_lstm = nn.ModuleList(ConvLSTMCell(self.chans[i]) for i in reversed(range(1, levels - 1)))
        self.top = nn.Sequential(nn.Conv2d(self.chans[0] + c_in, nf, 3, 1, 1), _norm_act(nf))

    def hidden_shapes(self, size: int) -> list[tuple[int, int, int]]:
        """(channels, s, s) of every conv-LSTM state, encoder ones first."""
        levels = len(self.chans)
        order = [*range(1, levels), *reversed(range(1, levels - 1))]
        return [(self.chans[i], size >> (i + 1), size >> (i + 1)) for i in order]

    def forward(
        self, frame: torch.Tensor, cond: torch.Tensor, hidden: list[Hidden]
    ) -> tuple[torch.Tensor, torch.Tensor, list[Hidden]]:
        new_hidden: list[Hidden] = []
        skips, x = [], frame
        for i, down in enumerate(self.down):
            x = down(tile(x, cond))  # (B, c_prev + D, s, s) -> (B, c_i, s/2, s/2)
            if i > 0:
                x, h = self.enc_lstm[i - 1](x, hidden[len(new_hidden)])
                new_hidden.append(h)
            skips.append(x)
        bottleneck = x
        for k, up in enumerate(self.up):
            i = len(self.chans) - 2 - k  # the level this decoder block outputs
            x = up(torch.cat([F.interpolate(x, scale_factor=2.0), skips[i]], dim=1))  # (B, c_i+1 + c_i, s, s) -> c_i
            if i > 0:
                x, h = self.dec_lstm[k](x, hidden[len(new_hidden)])
                new_hidden.append(h)
        x = self.top(torch.cat([F.interpolate(x, scale_factor=2.0), frame], dim=1))  # (B, c_0 + C, S, S) -> nf
        return x, bottleneck, new_hidden


class Transformation(nn.Module):
    """``n`` transformed copies (B, n, C, H, W) of the previous frame.

    * ``cdna``: ``n`` K x K kernels per sample, predicted from the bottleneck vector, convolved with
      the whole frame (shared over pixels);
    * ``dna``: ``n`` K x K kernels per pixel, predicted from the full-resolution features;
    * ``flow``: ``n`` flow fields (pixels) from the full-resolution features, bilinear resampling.

    Kernels are softmax-normalised (SAVP normalises a ReLU); every kind starts at the identity.
    """

    def __init__(
        self, kind: Literal["cdna", "dna", "flow"], n: int, kernel: int, nf: int, feat_dim: int, size: int
    ) -> None:
        super().__init__()
        if kind not in ("cdna", "dna", "flow"):
            raise ValueError(f"transformation must be 'cdna', 'dna' or 'flow', got {kind!r}")
        if kernel % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel}")
        self.kind, self.n, self.k, self.size = kind, n, kernel, size
        taps = kernel * kernel
        if kind == "cdna":
            self.head: nn.Module = nn.Linear(feat_dim, n * taps)
        else:
            self.head = nn.Conv2d(nf, n * (taps if kind == "dna" else 2), 3, 1, 1)
        with torch.no_grad():
            if kind == "flow":
                nn.init.zeros_(self.head.weight)
                nn.init.zeros_(self.head.bias)
            else:
                self.head.weight.mul_(0.1)
                self.head.bias.view(n, taps).fill_(0.0)[:, taps // 2] = IDENTITY_LOGIT

    def forward(self, prev: torch.Tensor, features: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        b, c, h, w = prev.shape
        taps = self.k * self.k
        if self.kind == "flow":
            flow = self.head(features).view(b * self.n, 2, h, w)  # (B, 2n, H, W) -> (B*n, 2, H, W), pixels
            ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h, device=prev.device, dtype=flow.dtype)
            xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w, device=prev.device, dtype=flow.dtype)
            base = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (H, W, 2) as (x, y)
            scale = torch.tensor([2.0 / w, 2.0 / h], device=prev.device, dtype=flow.dtype)
            grid = base + flow.permute(0, 2, 3, 1) * scale  # (B*n, H, W, 2)
            src = prev.repeat_interleave(self.n, dim=0)  # (B, C, H, W) -> (B*n, C, H, W)
            out = F.grid_sample(src, grid.to(src.dtype), padding_mode="border", align_corners=False)
            return out.view(b, self.n, c, h, w)
        patches = F.unfold(prev, self.k, padding=self.k // 2).view(b, c, taps, h * w)  # (B, C*K*K, H*W) -> split
        if self.kind == "cdna":
            kernels = self.head(feat).view(b, self.n, taps).softmax(-1)  # (B, n, K*K)
            out = torch.einsum("bckp,bnk->bncp", patches, kernels.to(patches.dtype))
        else:
            kernels = self.head(features).view(b, self.n, taps, h * w).softmax(2)  # (B, n, K*K, H*W)
            out = torch.einsum("bckp,bnkp->bncp", patches, kernels.to(patches.dtype))
        return out.reshape(b, self.n, c, h, w)  # (B, n, C, H*W) -> (B, n, C, H, W)


class Compositor(nn.Module):
    """Masks (softmax over the candidate images) from the full-resolution features, and the
    generated ("scratch") image; returns the masked sum of the candidates, in [0, 1]."""

    def __init__(self, nf: int, c: int, n_images: int, scratch: bool, bias_index: int, bias: float) -> None:
        super().__init__()
        self.masks = nn.Conv2d(nf, n_images, 3, 1, 1)
        with torch.no_grad():
            self.masks.bias[bias_index] += bias
        self.scratch = nn.Conv2d(nf, c, 3, 1, 1) if scratch else None

    def forward(self, features: torch.Tensor, images: list[torch.Tensor]) -> torch.Tensor:
        if self.scratch is not None:
            images = [*images, torch.sigmoid(self.scratch(features))]
        stack = torch.stack(images, dim=1)  # n_images x (B, C, H, W) -> (B, n_images, C, H, W)
        masks = self.masks(features).softmax(1).unsqueeze(2)  # (B, n_images, H, W) -> (B, n_images, 1, H, W)
        return (masks * stack).sum(1)


class GaussianConvEncoder(nn.Module):
    """(B, C_in, H, W) (and a cond vector tiled in) -> mu, logvar (B, z_dim): three stride-2 convs,
    a mean over pixels and a linear layer (SAVP's per-step posterior encoder)."""

    def __init__(self, c_in: int, nef: int, z_dim: int, cond_dim: int = 0) -> None:
        super().__init__()
        chans = [nef, 2 * nef, 4 * nef]
        layers: list[nn.Module] = []
        for p, c in zip([c_in + cond_dim, *chans[:-1]], chans, strict=True):
            layers += [nn.Conv2d(p, c, 4, 2, 1), _norm_act(c)]
        self.conv = nn.Sequential(*layers)
        self.out = nn.Linear(chans[-1], 2 * z_dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if cond is not None:
            x = tile(x, cond)
        mu, logvar = self.out(self.conv(x).mean(dim=(2, 3))).chunk(2, dim=-1)  # (B, c, s, s) -> (B, c) -> 2 x (B, Z)
        return mu, logvar


class VideoDiscriminator(nn.Module):
    """(B, T, C, H, W) -> a score per space-time patch (B, N): spectrally normalised 3D convs.

    Three stride-2 (space) blocks, the last also halving time, then a 3 x 3 x 3 conv to one score.
    """

    def __init__(self, c: int, ndf: int) -> None:
        super().__init__()
        chans = [ndf, 2 * ndf, 4 * ndf]
        strides = [(1, 2, 2), (1, 2, 2), (2, 2, 2)]
        layers: list[nn.Module] = []
        for p, ch, s in zip([c, *chans[:-1]], chans, strides, strict=True):
            layers += [spectral_norm(nn.Conv3d(p, ch, (3, 4, 4), s, 1)), nn.LeakyReLU(0.2)]
        layers.append(spectral_norm(nn.Conv3d(chans[-1], 1, 3, 1, 1)))
        self.net = nn.Sequential(*layers)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.net(video.transpose(1, 2)).flatten(1)  # (B, T, C, H, W) -> (B, C, T, H, W) -> (B, N)


def lsgan_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """LSGAN: the generator pushes the scores of its videos to 1."""
    return ((fake_scores - 1) ** 2).mean()


def lsgan_discriminator_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """LSGAN: real videos to 1, generated ones to 0."""
    return 0.5 * (((real_scores - 1) ** 2).mean() + (fake_scores**2).mean())
