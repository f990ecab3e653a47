"""``rnn_deconv``: the deterministic forward-model baseline (reference 003).

A conv encoder reads the ``n_past`` context frames (stacked on channels) into the initial state of
a GRU; each step feeds a learned action embedding to the GRU, and a deconv renderer draws the
frame from the GRU state alone. Reward and termination heads read the same state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dataset_tools.sequences import SequenceBatch
from world_models.base import ModelConfig, State, StepResult, WorldModel, conv_levels, register, reward_from_logits
from world_models.losses import head_losses, recon_loss


@dataclass
class RNNDeconvConfig(ModelConfig):
    hidden: int = 256
    """Size of the recurrent state (the latent observation)."""
    nf: int = 32
    """Channels of the first conv layer; doubles at every stride-2 layer."""
    action_dim: int = 32
    """Size of the learned action embedding."""
    change_weight: float = 20.0
    """Extra weight of pixels that changed since the previous frame (0: plain MSE)."""


def _levels(size: int) -> int:
    return conv_levels(size, "rnn_deconv")


class ConvEncoder(nn.Module):
    """(B, C_in, S, S) -> (B, out_dim) with stride-2 convs down to 4 x 4."""

    def __init__(self, c_in: int, size: int, nf: int, out_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = c_in
        for i in range(_levels(size)):
            c_out = nf * 2**i
            layers += [nn.Conv2d(c, c_out, 4, 2, 1), nn.GroupNorm(8, c_out), nn.SiLU()]
            c = c_out
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Linear(c * 16, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).flatten(1))  # (B, c, 4, 4) -> (B, c*16) -> (B, out_dim)


class DeconvDecoder(nn.Module):
    """(B, in_dim) -> (B, C, S, S) in [0, 1] with stride-2 transposed convs up from 4 x 4."""

    def __init__(self, in_dim: int, c_out: int, size: int, nf: int) -> None:
        super().__init__()
        levels = _levels(size)
        self.c0 = nf * 2 ** (levels - 1)
        self.fc = nn.Linear(in_dim, self.c0 * 16)
        layers: list[nn.Module] = []
        c = self.c0
        for i in reversed(range(levels - 1)):
            layers += [nn.ConvTranspose2d(c, nf * 2**i, 4, 2, 1), nn.GroupNorm(8, nf * 2**i), nn.SiLU()]
            c = nf * 2**i
        layers += [nn.ConvTranspose2d(c, c_out, 4, 2, 1), nn.Sigmoid()]
        self.deconv = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.fc(h).view(-1, self.c0, 4, 4))  # (B, c0*16) -> (B, c0, 4, 4) -> (B, C, S, S)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """The frame before its sigmoid: (B, in_dim) -> (B, C, S, S)."""
        return self.deconv[:-1](self.fc(h).view(-1, self.c0, 4, 4))


@register
class RNNDeconv(WorldModel):
    name = "rnn_deconv"
    Config = RNNDeconvConfig
    stochastic = False
    deterministic_start = True
    feature_bound = 1.0  # a GRU state

    def __init__(self, cfg: RNNDeconvConfig, frame_shape: tuple[int, int, int], n_actions: int) -> None:
        super().__init__(cfg, frame_shape, n_actions)
        c, h, w = frame_shape
        if h != w:
            raise ValueError(f"rnn_deconv needs square frames, got {h} x {w}")
        self.cfg: RNNDeconvConfig = cfg
        self.encoder = ConvEncoder(c * cfg.n_past, h, cfg.nf, cfg.hidden)
        self.action_embed = nn.Embedding(n_actions, cfg.action_dim)
        self.context_actions = nn.Linear(cfg.action_dim * max(cfg.n_past - 1, 1), cfg.hidden)
        self.rnn = nn.GRUCell(cfg.action_dim, cfg.hidden)
        self.decoder = self._build_decoder(c, h)
        self.reward_head = nn.Sequential(nn.Linear(cfg.hidden, 128), nn.SiLU(), nn.Linear(128, 3))
        self.term_head = nn.Sequential(nn.Linear(cfg.hidden, 128), nn.SiLU(), nn.Linear(128, 1))

    def _build_decoder(self, channels: int, size: int) -> nn.Module:
        """The renderer ``h`` (B, hidden) -> frame (B, C, S, S) in [0, 1]; subclasses draw frames otherwise."""
        return DeconvDecoder(self.cfg.hidden, channels, size, self.cfg.nf)

    # ------------------------------------------------------------------ imagination
    def _initial(self, frames: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = frames.shape
        state = self.encoder(frames.reshape(b, t * c, h, w))  # (B, T, C, H, W) -> (B, T*C, H, W)
        if self.cfg.n_past > 1:
            state = state + self.context_actions(self.action_embed(actions).flatten(1))  # (B, T-1, A) -> (B, (T-1)*A)
        return torch.tanh(state)

    # The state is the GRU state ``h``; frames are drawn only when ``decode`` is called, so latent
    # rollouts never run the decoder. Until the first step, ``decode`` shows the last context frame.
    def start(self, frames: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None) -> State:
        h = self._initial(frames, actions)
        stepped = torch.zeros(h.shape[0], dtype=torch.bool, device=h.device)
        return {"h": h, "context_frame": frames[:, -1], "stepped": stepped}

    def step(self, state: State, actions: torch.Tensor, generator: torch.Generator | None = None) -> StepResult:
        h = self.rnn(self.action_embed(actions), state["h"])
        reward = reward_from_logits(self.reward_head(h))
        term = torch.sigmoid(self.term_head(h).squeeze(-1))
        new_state = {"h": h, "context_frame": state["context_frame"], "stepped": torch.ones_like(state["stepped"])}
        return StepResult(new_state, reward, term)

    def decode(self, state: State) -> torch.Tensor:
        stepped = state["stepped"]
        if not stepped.any():
            return state["context_frame"]
        drawn = self.decoder(state["h"])
        if stepped.all():
            return drawn
        return torch.where(stepped.view(-1, 1, 1, 1), drawn, state["context_frame"])  # (B,) -> (B, 1, 1, 1)

    def features(self, state: State) -> torch.Tensor:
        return state["h"]

    @property
    def feature_dim(self) -> int:
        return self.cfg.hidden

    # ------------------------------------------------------------------ training
    def loss(self, batch: SequenceBatch) -> tuple[torch.Tensor, dict[str, float]]:
        p = self.cfg.n_past
        frames, actions = batch.frames, batch.actions  # (B, T, C, H, W), (B, T-1)
        h = self._initial(frames[:, :p], actions[:, : p - 1])
        preds, r_logits, t_logits = [], [], []
        for t in range(p - 1, frames.shape[1] - 1):
            h = self.rnn(self.action_embed(actions[:, t]), h)
            preds.append(self.decoder(h))
            r_logits.append(self.reward_head(h))
            t_logits.append(self.term_head(h).squeeze(-1))
        pred = torch.stack(preds, dim=1)  # (B, F, C, H, W)
        target, previous = frames[:, p:], frames[:, p - 1 : -1]
        recon = recon_loss(pred, target, previous, self.cfg.change_weight)
        reward_ce, term_bce, logs = head_losses(
            torch.stack(r_logits, 1), torch.stack(t_logits, 1), batch.rewards[:, p - 1 :], batch.terminated[:, p - 1 :]
        )
        loss = recon + self.cfg.reward_weight * reward_ce + self.cfg.termination_weight * term_bce
        with torch.no_grad():
            logs["recon"] = torch.mean((pred - target) ** 2).item()
        logs["weighted_recon"] = recon.item()
        return loss, logs
