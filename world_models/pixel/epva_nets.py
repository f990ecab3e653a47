"""The networks of the ``epva`` world model (see :mod:`world_models.pixel.epva`).

* :class:`StructureEncoder` - a frame to its high-level structure vector;
* :class:`StructurePredictor` - an action-conditioned LSTM that steps the structure forward;
* :class:`AnalogyNetwork` - the visual analogy network (VAN) that draws a frame from an anchor
  frame, the anchor's structure and a new structure;
* :class:`SequenceCritic` - the WGAN critic over structure transitions (``epva_gan``).

Normalisation is GroupNorm (as in :mod:`world_models.pixel.svg`), so the imagined envs of a batch are
independent of each other and train / eval behave the same.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from world_models.base import conv_levels

Hidden = tuple[torch.Tensor, torch.Tensor]  # nn.LSTM layout: (layers, B, H) each


def _levels(size: int) -> int:
    return conv_levels(size, "epva")


def _block(conv: nn.Module, c_out: int) -> nn.Sequential:
    return nn.Sequential(conv, nn.GroupNorm(math.gcd(8, c_out), c_out), nn.LeakyReLU(0.2))


def _down_blocks(c_in: int, size: int, nf: int) -> nn.ModuleList:
    """Stride-2 conv blocks from (c_in, S, S) down to (nf * 2^(L-1), 4, 4), channels doubling."""
    chans = [nf * 2**i for i in range(_levels(size))]
    return nn.ModuleList(
        _block(nn.Conv2d(c_prev, c, 4, 2, 1), c) for c_prev, c in zip([c_in, *chans[:-1]], chans, strict=True)
    )


class StructureEncoder(nn.Module):
    """(B, C, S, S) -> structure (B, out_dim): conv blocks down to 4 x 4, dropout, a linear layer."""

    def __init__(self, c_in: int, size: int, nf: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.blocks = _down_blocks(c_in, size, nf)
        c_top = nf * 2 ** (len(self.blocks) - 1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(c_top * 16, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.fc(self.drop(x.flatten(1)))  # (B, c_top, 4, 4) -> (B, c_top*16) -> (B, out_dim)


class StructurePredictor(nn.Module):
    """[s_t, a_t, noise_t] (B, T, ...) -> s_{t+1} (B, T, D) and the top LSTM layer's output (B, T, R).

    The structure is predicted as a residual, ``s_{t+1} = s_t + W h_t``, then passed through
    ``post`` (the structure normalisation of the model, or the identity).
    """

    def __init__(
        self, struct_dim: int, n_actions: int, action_dim: int, noise_dim: int, rnn_size: int, layers: int
    ) -> None:
        super().__init__()
        self.action_embed = nn.Embedding(n_actions, action_dim)
        self.noise_dim = noise_dim
        self.inp = nn.Linear(struct_dim + action_dim + noise_dim, rnn_size)
        self.lstm = nn.LSTM(rnn_size, rnn_size, layers, batch_first=True)
        self.out = nn.Linear(rnn_size, struct_dim)

    def forward(
        self,
        s: torch.Tensor,
        actions: torch.Tensor,
        noise: torch.Tensor | None,
        hidden: Hidden | None,
        post: nn.Module,
    ) -> tuple[torch.Tensor, torch.Tensor, Hidden]:
        """``s`` (B, T, D), ``actions`` (B, T) int64, ``noise`` (B, T, N) or None when N = 0."""
        parts = [s, self.action_embed(actions)]
        if noise is not None:
            parts.append(noise)
        h, hidden = self.lstm(self.inp(torch.cat(parts, dim=-1)), hidden)  # (B, T, D+A+N) -> (B, T, R)
        return post(s + self.out(h)), h, hidden


class AnalogyNetwork(nn.Module):
    """The VAN: draws frame t from an anchor frame ``x_a``, its structure ``s_a`` and structure ``s_t``.

    The frame features of ``x_a`` at 4 x 4 get the structure change added, ``f_img(x_a) + f_s(s_t) -
    f_s(s_a)`` (the analogy ``s_a : x_a = s_t : x_t``), and a decoder with U-Net skips from ``x_a``
    draws a colour image and a mask that composites it with ``x_a``: ``m * x_a + (1 - m) * colour``.
    The mask starts near 1, so an untrained VAN copies its anchor frame.
    """

    def __init__(self, c: int, size: int, nf: int, struct_dim: int, dropout: float) -> None:
        super().__init__()
        self.image = _down_blocks(c, size, nf)
        chans = [nf * 2**i for i in range(len(self.image))]
        self.c_top = chans[-1]
        self.struct = nn.Sequential(
            nn.Linear(struct_dim, self.c_top * 4),
            nn.LeakyReLU(0.2),
            nn.Linear(self.c_top * 4, self.c_top * 16, bias=False),  # a bias would cancel in the difference
        )
        self.mix = _block(nn.Conv2d(self.c_top, self.c_top, 3, 1, 1), self.c_top)
        self.drop = nn.Dropout(dropout)
        self.up = nn.ModuleList(
            _block(nn.ConvTranspose2d(2 * chans[i], chans[i - 1], 4, 2, 1), chans[i - 1])
            for i in reversed(range(1, len(chans)))
        )
        self.out = nn.ConvTranspose2d(2 * chans[0], c + 1, 4, 2, 1)
        with torch.no_grad():
            self.out.bias[-1] = 3.0  # sigmoid(3) = 0.95: start by copying the anchor frame

    def anchor(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Anchor frame (B, C, S, S) -> its skips [(B, nf * 2^l, S / 2^(l+1), ...)], l = 0..L-1."""
        skips = []
        for block in self.image:
            x = block(x)
            skips.append(x)
        return skips

    def forward(
        self, skips: list[torch.Tensor], frame: torch.Tensor, s_anchor: torch.Tensor, s: torch.Tensor
    ) -> torch.Tensor:
        """Anchor skips and frame (B, C, S, S), structures (B, D) -> the drawn frame (B, C, S, S) in [0, 1]."""
        diff = (self.struct(s) - self.struct(s_anchor)).view(-1, self.c_top, 4, 4)  # (B, c_top*16) -> (B, c_top, 4, 4)
        x = self.drop(self.mix(skips[-1] + diff))
        for block, skip in zip(self.up, reversed(skips[1:]), strict=True):
            x = block(torch.cat([x, skip], dim=1))  # (B, 2c, s, s) -> (B, c/2, 2s, 2s)
        out = self.out(torch.cat([x, skips[0]], dim=1))  # (B, 2nf, S/2, S/2) -> (B, C+1, S, S)
        m = torch.sigmoid(out[:, -1:])  # (B, 1, S, S)
        return m * frame + (1 - m) * torch.sigmoid(out[:, :-1])


class SequenceCritic(nn.Module):
    """WGAN critic of structure transitions: (B, F+1, D) structures and (B, F) actions -> scores (B,).

    Each step's input is ``[s_k, one_hot(a_k), s_{k+1}]``; 1-D convolutions over time, then the mean
    over time and a linear layer. No normalisation (the gradient penalty is taken per sample).
    """

    def __init__(self, struct_dim: int, n_actions: int, hidden: int) -> None:
        super().__init__()
        self.n_actions = n_actions
        self.net = nn.Sequential(
            nn.Conv1d(2 * struct_dim + n_actions, hidden, 3, 1, 1),
            nn.LeakyReLU(0.2),
            nn.Conv1d(hidden, hidden, 3, 1, 1),
            nn.LeakyReLU(0.2),
        )
        self.out = nn.Linear(hidden, 1, bias=False)  # a bias cancels in the Wasserstein distance

    def forward(self, structs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        acts = F.one_hot(actions, self.n_actions).to(structs.dtype)  # (B, F) -> (B, F, A)
        x = torch.cat([structs[:, :-1], acts, structs[:, 1:]], dim=-1)  # (B, F, 2D+A)
        h = self.net(x.transpose(1, 2))  # (B, F, 2D+A) -> (B, 2D+A, F) -> (B, hidden, F)
        return self.out(h.mean(dim=2)).squeeze(-1)  # (B, hidden) -> (B,)
