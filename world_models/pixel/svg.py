"""``svg_lp`` / ``svg_fp``: Stochastic Video Generation (Denton & Fergus 2018), action-conditioned.

A DCGAN encoder turns each frame into ``g`` (plus skip features); a frame-predictor LSTM reads
``[g_{t-1}, z_t, a_{t-1}]`` and outputs the ``g`` the decoder turns into frame ``t``, with the skips
of the last context frame. Training (teacher forcing, as the reference): ``z_t`` is sampled from
the posterior LSTM, which sees frame ``t``; the loss is the MSE of frames 1..T-1 plus
``beta * KL(q || p)`` to the learned prior LSTM (which sees ``[g_{t-1}, a_{t-1}]``), or to N(0, 1)
for ``svg_fp``. Imagination feeds the model's own frames back and samples ``z`` from the prior.

Normalisation is GroupNorm rather than the reference's BatchNorm, so each imagined env in a batch
is independent of the others and train / eval behave the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from dataset_tools.sequences import SequenceBatch
from world_models.base import (
    ModelConfig,
    State,
    StepResult,
    WorldModel,
    conv_levels,
    register,
    reward_from_logits,
    stack_predecessors,
)
from world_models.losses import head_losses, recon_loss

Hidden = tuple[torch.Tensor, torch.Tensor]  # nn.LSTM layout: (layers, B, H) each


@dataclass
class SVGConfig(ModelConfig):
    g_dim: int = 128
    """Size of the frame encoding ``g`` (encoder output, decoder input)."""
    z_dim: int = 16
    """Size of the per-step latent ``z``."""
    rnn_size: int = 256
    """Cells per LSTM layer (frame predictor, posterior and prior)."""
    predictor_rnn_layers: int = 2
    """LSTM layers of the frame predictor."""
    posterior_rnn_layers: int = 1
    """LSTM layers of the posterior q(z_t | x_1..t)."""
    prior_rnn_layers: int = 1
    """LSTM layers of the learned prior p(z_t | x_1..t-1, a_1..t-1)."""
    beta: float = 1e-4
    """Weight of the KL term (per-sample KL summed over z, against per-pixel MSE)."""
    nf: int = 32
    """Channels of the first DCGAN conv block, doubling at each stride-2 block (the paper: 64)."""
    last_frame_skip: bool = False
    """False: skips from the last context frame (the paper); True: from the latest frame at each step."""
    action_mode: Literal["embed", "raw"] = "embed"
    """How actions enter the LSTMs: a learned embedding or the raw one-hot vector."""
    action_dim: int = 32
    """Size of the learned action embedding (``action_mode="embed"``)."""
    prior: Literal["learned", "fixed"] = "learned"
    """``learned``: SVG-LP; ``fixed``: SVG-FP, z ~ N(0, 1)."""
    change_weight: float = 0.0
    """Extra MSE weight of pixels that changed since the previous frame (0: plain MSE, as the reference)."""
    rollout_training: bool = False
    """Train on the model's own predictions after the context, as rollouts run (posterior z from the
    true frames, gradients through the fed-back frames), instead of teacher forcing every frame."""
    composite: bool = False
    """Draw each frame as ``m * previous + (1 - m) * generated`` with a decoded mask ``m`` (SAVP-style
    compositing with the previous frame); the mask starts near 1, so training starts from copy-last."""
    encoder_frames: int = 1
    """Frames the encoder sees at once: each frame stacked along channels with its ``encoder_frames - 1``
    predecessors (the first frame of a sequence repeated where there are none), so the skips carry the
    local motion, as the forward models of Oh et al. encode a stack of frames (1: the paper, one frame).
    ``init_from`` a model with fewer starts with zero weights on the older frames, i.e. as that model."""


@dataclass
class SVGFPConfig(SVGConfig):
    prior: Literal["learned", "fixed"] = "fixed"
    """SVG-FP: z ~ N(0, 1)."""


# ---------------------------------------------------------------------- frame encoder / decoder
def _levels(size: int) -> int:
    return conv_levels(size, "svg")


def _block(conv: nn.Module, c_out: int) -> nn.Sequential:
    return nn.Sequential(conv, nn.GroupNorm(math.gcd(8, c_out), c_out), nn.LeakyReLU(0.2))


class Encoder(nn.Module):
    """(B, C, S, S) -> g (B, g_dim) in [-1, 1] and the skips [(B, nf * 2^l, S / 2^(l+1), ...)] l = 0..L-1."""

    def __init__(self, c_in: int, size: int, nf: int, g_dim: int) -> None:
        super().__init__()
        chans = [nf * 2**i for i in range(_levels(size))]
        self.blocks = nn.ModuleList(
            _block(nn.Conv2d(c_prev, c, 4, 2, 1), c) for c_prev, c in zip([c_in, *chans[:-1]], chans, strict=True)
        )
        self.out = nn.Sequential(nn.Conv2d(chans[-1], g_dim, 4, 1, 0), nn.Tanh())  # 4 x 4 -> 1 x 1

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        for block in self.blocks:
            x = block(x)
            skips.append(x)
        return self.out(x).flatten(1), skips  # (B, g_dim, 1, 1) -> (B, g_dim)


class Decoder(nn.Module):
    """g (B, g_dim) and the encoder's skips -> (B, C, S, S) in [0, 1]; each block reads [up, skip]."""

    def __init__(self, g_dim: int, c_out: int, size: int, nf: int, mask: bool = False) -> None:
        super().__init__()
        chans = [nf * 2**i for i in range(_levels(size))]
        self.mask = mask
        self.inp = _block(nn.ConvTranspose2d(g_dim, chans[-1], 4, 1, 0), chans[-1])  # 1 x 1 -> 4 x 4
        self.blocks = nn.ModuleList(
            _block(nn.ConvTranspose2d(2 * chans[i], chans[i - 1], 4, 2, 1), chans[i - 1])
            for i in reversed(range(1, len(chans)))
        )
        if mask:  # one more channel: the compositing mask, biased to "keep the previous frame"
            conv = nn.ConvTranspose2d(2 * chans[0], c_out + 1, 4, 2, 1)
            with torch.no_grad():
                conv.bias[-1] = 6.0
            self.out = nn.Sequential(conv)
        else:
            self.out = nn.Sequential(nn.ConvTranspose2d(2 * chans[0], c_out, 4, 2, 1), nn.Sigmoid())

    def forward(self, g: torch.Tensor, skips: list[torch.Tensor], previous: torch.Tensor | None = None) -> torch.Tensor:
        x = self.inp(g[:, :, None, None])  # (B, g_dim) -> (B, g_dim, 1, 1) -> (B, c, 4, 4)
        for block, skip in zip(self.blocks, reversed(skips[1:]), strict=True):
            x = block(torch.cat([x, skip], dim=1))  # (B, 2c, s, s) -> (B, c/2, 2s, 2s)
        out = self.out(torch.cat([x, skips[0]], dim=1))  # (B, 2nf, S/2, S/2) -> (B, C(+1), S, S)
        if not self.mask:
            return out
        if previous is None:
            raise ValueError("a compositing decoder needs the previous frame")
        m = torch.sigmoid(out[:, -1:])  # (B, 1, S, S)
        return m * previous + (1 - m) * torch.sigmoid(out[:, :-1])


# ---------------------------------------------------------------------- recurrent parts
class LSTMNet(nn.Module):
    """Linear embedding -> stacked LSTM -> head; runs a whole (B, T, in) sequence at once."""

    def __init__(self, in_dim: int, rnn_size: int, layers: int) -> None:
        super().__init__()
        self.embed = nn.Linear(in_dim, rnn_size)
        self.lstm = nn.LSTM(rnn_size, rnn_size, layers, batch_first=True)

    def run(self, x: torch.Tensor, hidden: Hidden | None) -> tuple[torch.Tensor, Hidden]:
        out, hidden = self.lstm(self.embed(x), hidden)  # (B, T, in) -> (B, T, rnn_size)
        return out, hidden


class FramePredictor(LSTMNet):
    """[g_{t-1}, z_t, a_{t-1}] (B, T, in) -> g_t (B, T, g_dim) in [-1, 1]."""

    def __init__(self, in_dim: int, rnn_size: int, layers: int, g_dim: int) -> None:
        super().__init__(in_dim, rnn_size, layers)
        self.out = nn.Linear(rnn_size, g_dim)

    def forward(self, x: torch.Tensor, hidden: Hidden | None = None) -> tuple[torch.Tensor, Hidden]:
        out, hidden = self.run(x, hidden)
        return torch.tanh(self.out(out)), hidden


class GaussianLSTM(LSTMNet):
    """(B, T, in) -> mu, logvar (B, T, z_dim) of a diagonal Gaussian."""

    def __init__(self, in_dim: int, rnn_size: int, layers: int, z_dim: int) -> None:
        super().__init__(in_dim, rnn_size, layers)
        self.mu = nn.Linear(rnn_size, z_dim)
        self.logvar = nn.Linear(rnn_size, z_dim)

    def forward(self, x: torch.Tensor, hidden: Hidden | None = None) -> tuple[torch.Tensor, torch.Tensor, Hidden]:
        out, hidden = self.run(x, hidden)
        return self.mu(out), self.logvar(out), hidden


class ActionInput(nn.Module):
    """Actions (...) int64 -> (..., out_dim): a learned embedding or the raw one-hot vector."""

    def __init__(self, n_actions: int, mode: Literal["embed", "raw"], dim: int) -> None:
        super().__init__()
        if mode not in ("embed", "raw"):
            raise ValueError(f"action_mode must be 'embed' or 'raw', got {mode!r}")
        self.n_actions = n_actions
        self.embed = nn.Embedding(n_actions, dim) if mode == "embed" else None
        self.out_dim = dim if mode == "embed" else n_actions

    def forward(self, actions: torch.Tensor) -> torch.Tensor:
        if self.embed is not None:
            return self.embed(actions)
        return F.one_hot(actions, self.n_actions).float()


def gaussian_sample(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """mu + sigma * eps, eps drawn with ``generator`` (on its own device) for reproducible rollouts."""
    device = generator.device if generator is not None else mu.device
    eps = torch.randn(mu.shape, generator=generator, device=device, dtype=mu.dtype).to(mu.device)
    return mu + eps * torch.exp(0.5 * logvar)


def gaussian_kl(mu1: torch.Tensor, logvar1: torch.Tensor, mu2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mu1, var1) || N(mu2, var2)) summed over the last dim: (..., Z) -> (...)."""
    kl = 0.5 * (logvar2 - logvar1) + (logvar1.exp() + (mu1 - mu2) ** 2) / (2 * logvar2.exp()) - 0.5
    return kl.sum(-1)


def _to_state(hidden: Hidden, prefix: str) -> State:
    h, c = hidden
    return {f"{prefix}_h": h.transpose(0, 1), f"{prefix}_c": c.transpose(0, 1)}  # (L, B, H) -> (B, L, H)


def _from_state(state: State, prefix: str) -> Hidden:
    h, c = state[f"{prefix}_h"], state[f"{prefix}_c"]
    return h.transpose(0, 1).contiguous(), c.transpose(0, 1).contiguous()  # (B, L, H) -> (L, B, H)


# ---------------------------------------------------------------------- the model
@register
class SVG(WorldModel):
    """SVG-LP (``cfg.prior="learned"``) or SVG-FP (``"fixed"``); see the module docstring.

    State keys: ``frame`` (B, C, H, W); ``g`` (B, g_dim) and ``z`` (B, z_dim) of the last step;
    ``pred_h`` / ``pred_c`` (B, layers, rnn_size), ``prior_h`` / ``prior_c`` (learned prior);
    ``skip0``.. (B, c, s, s) the context skips (``last_frame_skip=False``).
    """

    name = "svg_lp"
    Config = SVGConfig
    stochastic = True

    def __init__(self, cfg: SVGConfig, frame_shape: tuple[int, int, int], n_actions: int) -> None:
        super().__init__(cfg, frame_shape, n_actions)
        c, h, w = frame_shape
        if h != w:
            raise ValueError(f"svg needs square frames, got {h} x {w}")
        if cfg.prior not in ("learned", "fixed"):
            raise ValueError(f"prior must be 'learned' or 'fixed', got {cfg.prior!r}")
        if cfg.encoder_frames < 1:
            raise ValueError(f"encoder_frames must be >= 1, got {cfg.encoder_frames}")
        self.cfg: SVGConfig = cfg
        self.levels = _levels(h)
        self.action_embed = ActionInput(n_actions, cfg.action_mode, cfg.action_dim)
        a_dim = self.action_embed.out_dim
        self.encoder = Encoder(c * cfg.encoder_frames, h, cfg.nf, cfg.g_dim)
        self.decoder = Decoder(cfg.g_dim, c, h, cfg.nf, mask=cfg.composite)
        self.frame_predictor = FramePredictor(
            cfg.g_dim + cfg.z_dim + a_dim, cfg.rnn_size, cfg.predictor_rnn_layers, cfg.g_dim
        )
        self.posterior = GaussianLSTM(cfg.g_dim, cfg.rnn_size, cfg.posterior_rnn_layers, cfg.z_dim)
        self.prior = (
            GaussianLSTM(cfg.g_dim + a_dim, cfg.rnn_size, cfg.prior_rnn_layers, cfg.z_dim)
            if cfg.prior == "learned"
            else None
        )
        self.reward_head = nn.Sequential(nn.Linear(cfg.g_dim, cfg.g_dim), nn.SiLU(), nn.Linear(cfg.g_dim, 3))
        self.term_head = nn.Sequential(nn.Linear(cfg.g_dim, cfg.g_dim), nn.SiLU(), nn.Linear(cfg.g_dim, 1))

    # ------------------------------------------------------------------ encoder input
    def _stacked(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) -> (B, T, k*C, H, W): each frame, then its k-1 predecessors (latest first)."""
        return stack_predecessors(frames, self.cfg.encoder_frames)

    def _encode_latest(self, frame: torch.Tensor, older: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Encode ``frame`` (B, C, H, W) with its predecessors ``older`` (latest first), stacked as
        :meth:`_stacked` stacks the last frame of a sequence."""
        sequence = torch.stack([*reversed(older), frame], dim=1)  # (B, n, C, H, W), oldest first
        return self.encoder(self._stacked(sequence)[:, -1])  # (B, k*C, H, W)

    # ------------------------------------------------------------------ imagination
    def start(self, frames: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None) -> State:
        b, p = frames.shape[:2]
        stacked = self._stacked(frames)  # (B, P, k*C, H, W)
        g_all, skips_all = self.encoder(stacked.flatten(0, 1))  # (B, P, kC, H, W) -> (B*P, kC, H, W)
        g_all = g_all.view(b, p, -1)  # (B*P, g_dim) -> (B, P, g_dim)
        state: State = {"frame": frames[:, -1]}
        if self.cfg.encoder_frames > 1:  # the frames before the latest one, latest first
            state["history"] = stacked[:, -1, frames.shape[2] :].unflatten(1, (self.cfg.encoder_frames - 1, -1))
        if not self.cfg.last_frame_skip:
            for i, s in enumerate(skips_all):
                state[f"skip{i}"] = s.view(b, p, *s.shape[1:])[:, -1]  # (B*P, c, s, s) -> (B, P, c, s, s) -> last
        if p > 1:  # warm the LSTMs up on the context, z from the posterior (as the reference's generation)
            a = self.action_embed(actions)  # (B, P-1, A)
            mu, logvar, _ = self.posterior(g_all[:, 1:])
            z = gaussian_sample(mu, logvar, generator)  # (B, P-1, z_dim)
            g, pred_hidden = self.frame_predictor(torch.cat([g_all[:, :-1], z, a], dim=-1))
            state.update(_to_state(pred_hidden, "pred"), g=g[:, -1], z=z[:, -1])
            if self.prior is not None:
                _, _, prior_hidden = self.prior(torch.cat([g_all[:, :-1], a], dim=-1))
                state.update(_to_state(prior_hidden, "prior"))
        else:  # no context transitions: zero LSTM states
            zeros = frames.new_zeros
            state.update(g=zeros(b, self.cfg.g_dim), z=zeros(b, self.cfg.z_dim))
            layers = {"pred": self.cfg.predictor_rnn_layers, "prior": self.cfg.prior_rnn_layers}
            for prefix in ("pred", "prior") if self.prior is not None else ("pred",):
                for part in "hc":
                    state[f"{prefix}_{part}"] = zeros(b, layers[prefix], self.cfg.rnn_size)
        return state

    def step(self, state: State, actions: torch.Tensor, generator: torch.Generator | None = None) -> StepResult:
        history = list(state["history"].unbind(1)) if "history" in state else []  # (B, k-1, C, H, W)
        g_in, new_skips = self._encode_latest(state["frame"], history)  # the model's own previous frame
        skips = new_skips if self.cfg.last_frame_skip else [state[f"skip{i}"] for i in range(self.levels)]
        a = self.action_embed(actions)  # (B, A)
        new_state = {k: v for k, v in state.items() if k.startswith("skip")}
        if history:
            new_state["history"] = torch.stack([state["frame"], *history[:-1]], dim=1)
        if self.prior is not None:
            mu, logvar, prior_hidden = self.prior(torch.cat([g_in, a], -1)[:, None], _from_state(state, "prior"))
            z = gaussian_sample(mu[:, 0], logvar[:, 0], generator)  # (B, 1, z_dim) -> (B, z_dim)
            new_state.update(_to_state(prior_hidden, "prior"))
        else:
            zero = g_in.new_zeros(g_in.shape[0], self.cfg.z_dim)
            z = gaussian_sample(zero, zero, generator)
        x = torch.cat([g_in, z, a], -1)[:, None]  # (B, g+z+A) -> (B, 1, g+z+A)
        g, pred_hidden = self.frame_predictor(x, _from_state(state, "pred"))
        g = g[:, 0]  # (B, 1, g_dim) -> (B, g_dim)
        new_state.update(_to_state(pred_hidden, "pred"), frame=self.decoder(g, skips, state["frame"]), g=g, z=z)
        reward = reward_from_logits(self.reward_head(g))
        term = torch.sigmoid(self.term_head(g).squeeze(-1))
        return StepResult(new_state, reward, term)

    def decode(self, state: State) -> torch.Tensor:
        return state["frame"]

    def features(self, state: State) -> torch.Tensor:
        return torch.cat([state["g"], state["z"]], dim=-1)

    @property
    def feature_dim(self) -> int:
        return self.cfg.g_dim + self.cfg.z_dim

    # ------------------------------------------------------------------ training
    def loss(self, batch: SequenceBatch) -> tuple[torch.Tensor, dict[str, float]]:
        if self.cfg.rollout_training:
            return self._rollout_loss(batch)
        frames, actions = batch.frames, batch.actions  # (B, T, C, H, W), (B, T-1)
        b, t = frames.shape[:2]
        g_all, skips_all = self.encoder(self._stacked(frames).flatten(0, 1))  # (B, T, kC, H, W) -> (B*T, kC, H, W)
        g_all = g_all.view(b, t, -1)  # (B*T, g_dim) -> (B, T, g_dim)
        g_in, g_target = g_all[:, :-1], g_all[:, 1:]  # (B, T-1, g_dim) each
        a = self.action_embed(actions)  # (B, T-1, A)
        mu, logvar, _ = self.posterior(g_target)  # (B, T-1, z_dim)
        z = gaussian_sample(mu, logvar)
        if self.prior is not None:
            mu_p, logvar_p, _ = self.prior(torch.cat([g_in, a], dim=-1))
        else:
            mu_p, logvar_p = torch.zeros_like(mu), torch.zeros_like(logvar)
        kl = gaussian_kl(mu, logvar, mu_p, logvar_p).mean()  # (B, T-1) -> per-sample, per-step KL
        g, _ = self.frame_predictor(torch.cat([g_in, z, a], dim=-1))  # (B, T-1, g_dim)

        # Frame i (1..T-1) is drawn with the skips of frame i-1, or of the last context frame once
        # i-1 is past it. (The reference code keeps those of frame n_past-2; the paper, and we, n_past-1.)
        src = torch.arange(t - 1, device=frames.device)
        if not self.cfg.last_frame_skip:
            src = src.clamp(max=max(self.cfg.n_past - 1, 0))
        skips = [s.view(b, t, *s.shape[1:])[:, src].flatten(0, 1) for s in skips_all]  # -> (B*(T-1), c, s, s)
        previous = frames[:, :-1].flatten(0, 1)  # (B, T-1, C, H, W) -> (B*(T-1), C, H, W): teacher forcing
        pred = self.decoder(g.flatten(0, 1), skips, previous).view(b, t - 1, *frames.shape[2:])  # -> (B, T-1, C, H, W)
        return self._total(pred, frames, g, kl, batch)

    def _total(
        self, pred: torch.Tensor, frames: torch.Tensor, g: torch.Tensor, kl: torch.Tensor, batch: SequenceBatch
    ) -> tuple[torch.Tensor, dict[str, float]]:
        target = frames[:, 1:]
        recon = recon_loss(pred, target, frames[:, :-1], self.cfg.change_weight)
        reward_ce, term_bce, logs = head_losses(
            self.reward_head(g), self.term_head(g).squeeze(-1), batch.rewards, batch.terminated
        )
        loss = recon + self.cfg.beta * kl + self.cfg.reward_weight * reward_ce + self.cfg.termination_weight * term_bce
        with torch.no_grad():
            logs["recon"] = torch.mean((pred - target) ** 2).item()
        logs.update(kl=kl.item(), weighted_recon=recon.item())
        return loss, logs

    def _rollout_loss(self, batch: SequenceBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Like ``loss``, but after the context each step sees the model's own previous frame."""
        frames, actions = batch.frames, batch.actions  # (B, T, C, H, W), (B, T-1)
        b, t = frames.shape[:2]
        p = max(self.cfg.n_past, 1)
        g_true, skips_true = self.encoder(self._stacked(frames).flatten(0, 1))  # (B, T, kC, H, W) -> (B*T, kC, H, W)
        g_true = g_true.view(b, t, -1)  # (B*T, g_dim) -> (B, T, g_dim)
        skips_true = [s.view(b, t, *s.shape[1:]) for s in skips_true]  # (B*T, c, s, s) -> (B, T, c, s, s)
        a = self.action_embed(actions)  # (B, T-1, A)
        mu, logvar, _ = self.posterior(g_true[:, 1:])  # q(z_t | x_1..t) on the true frames
        z = gaussian_sample(mu, logvar)  # (B, T-1, z_dim)
        pred_hidden = prior_hidden = None
        preds, gs, kls = [], [], []
        seen: list[torch.Tensor] = []  # the frames fed so far, real then the model's own
        for i in range(t - 1):
            if i < p:  # context: the real frame i
                previous, g_in, skips = frames[:, i], g_true[:, i], [s[:, i] for s in skips_true]
            else:  # the model's own frame
                previous = preds[-1]
                g_in, own_skips = self._encode_latest(previous, seen[::-1])
                skips = own_skips if self.cfg.last_frame_skip else [s[:, p - 1] for s in skips_true]
            if self.prior is not None:
                mu_p, logvar_p, prior_hidden = self.prior(torch.cat([g_in, a[:, i]], -1)[:, None], prior_hidden)
                kls.append(gaussian_kl(mu[:, i], logvar[:, i], mu_p[:, 0], logvar_p[:, 0]))
            else:
                zero = torch.zeros_like(mu[:, i])
                kls.append(gaussian_kl(mu[:, i], logvar[:, i], zero, zero))
            g, pred_hidden = self.frame_predictor(torch.cat([g_in, z[:, i], a[:, i]], -1)[:, None], pred_hidden)
            g = g[:, 0]  # (B, 1, g_dim) -> (B, g_dim)
            preds.append(self.decoder(g, skips, previous))
            gs.append(g)
            seen = (seen + [previous])[-(self.cfg.encoder_frames - 1) :] if self.cfg.encoder_frames > 1 else []
        pred = torch.stack(preds, dim=1)  # (B, T-1, C, H, W)
        kl = torch.stack(kls, dim=1).mean()
        return self._total(pred, frames, torch.stack(gs, dim=1), kl, batch)


@register
class SVGFP(SVG):
    """SVG-FP: the same model with z ~ N(0, 1) (no prior network)."""

    name = "svg_fp"
    Config = SVGFPConfig

    def __init__(self, cfg: SVGConfig, frame_shape: tuple[int, int, int], n_actions: int) -> None:
        if cfg.prior != "fixed":
            raise ValueError("svg_fp has a fixed prior; use svg_lp for a learned one")
        super().__init__(cfg, frame_shape, n_actions)
