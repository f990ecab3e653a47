"""``savp``: Stochastic Adversarial Video Prediction (Lee et al. 2018), action-conditioned.

Each step, a conv-LSTM encoder-decoder with skips (:class:`~world_models.pixel.savp_parts.Generator`) reads
the previous frame with the action embedding and the latent ``z_t`` (passed through an LSTM) tiled
over its pixels. The next frame is a per-pixel softmax-masked sum of: ``n_transformed`` CDNA / DNA /
flow transformations of the previous frame, the previous frame itself, the first context frame and
a generated ("scratch") image. After the ``n_past`` context frames the generator reads its own
predictions, at training time too, as in SAVP. Reward and termination heads read the step's feature
vector (a linear map of the pooled bottleneck), which is also the agents' latent observation.

Training (``mode``, SAVP's model and its ablations):

* ``savp``: ``z_t ~ q(z_t | x_t, x_t+1)`` (a conv encoder of each pair of true frames) for the L1
  reconstruction, plus ``kl_weight * KL(q || p)``; a second pass with ``z`` from the prior; a video
  discriminator (3D convs, spectral norm, LSGAN) judges each pass (``gan_weight`` on the prior pass,
  ``vae_gan_weight`` with its own discriminator on the posterior pass).
* ``vae``: the posterior pass with L1 and KL only.  ``gan``: one pass with ``z`` from the prior,
  L1 plus the LSGAN loss.  ``deterministic``: no latent, L1 only.

The prior is N(0, 1) (SAVP) or, with ``prior="learned"``, a conv encoder of the previous frame and
action. Imagination samples ``z`` from the prior with the caller's generator; the context
transitions of ``start`` use the posterior (``savp`` / ``vae``), whose frames are known.
The discriminators are :meth:`adversary`, trained by the trainer's second optimizer on the detached
fakes of the latest :meth:`loss` call (:meth:`adversary_loss`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from dataset_tools.sequences import SequenceBatch
from world_models.base import ModelConfig, State, StepResult, WorldModel, register, reward_from_logits
from world_models.losses import head_losses
from world_models.pixel.savp_parts import (
    Compositor,
    GaussianConvEncoder,
    Generator,
    Hidden,
    Transformation,
    VideoDiscriminator,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
)
from world_models.pixel.svg import ActionInput, gaussian_kl, gaussian_sample

Mode = Literal["savp", "vae", "gan", "deterministic"]


@dataclass
class SAVPConfig(ModelConfig):
    mode: Mode = "savp"
    """``savp`` (VAE + GAN), or the ablations ``vae``, ``gan`` (z from the prior in training) and
    ``deterministic`` (no latent); see the module docstring."""
    transformation: Literal["cdna", "dna", "flow"] = "cdna"
    """How the previous frame is transformed: per-sample kernels, per-pixel kernels or flow fields."""
    n_transformed: int = 4
    """Transformed copies of the previous frame among the composited images (kernels / flow fields)."""
    kernel_size: int = 5
    """Size of the CDNA / DNA kernels (odd)."""
    first_image_background: bool = True
    """Composite the first context frame too (a background that never moves)."""
    prev_image_background: bool = True
    """Composite the untransformed previous frame too."""
    generate_scratch_image: bool = True
    """Composite an image the generator draws from scratch (new content, e.g. a ball entering)."""
    prev_mask_bias: float = 2.0
    """Added to the initial mask logit of the previous frame (or of the first transformation):
    training starts near copy-last."""
    nf: int = 32
    """Generator channels at its first (half-resolution) level, doubling at each further level."""
    levels: int = 3
    """Stride-2 levels of the generator (64 x 64 -> 8 x 8 at 3); frames must divide by 2^levels."""
    feat_dim: int = 256
    """Size of the step's feature vector (CDNA kernels, reward / termination heads, agents' latent)."""
    action_dim: int = 16
    """Size of the learned action embedding tiled into the generator."""
    z_dim: int = 8
    """Size of the per-step latent ``z`` (unused in ``deterministic`` mode)."""
    prior: Literal["fixed", "learned"] = "fixed"
    """``fixed``: z ~ N(0, 1) (SAVP); ``learned``: a Gaussian conv encoder of the previous frame and action."""
    nef: int = 32
    """Channels of the first conv of the posterior (and learned prior) encoder, doubling twice."""
    ndf: int = 32
    """Channels of the first 3D conv of the video discriminator(s), doubling twice."""
    l1_weight: float = 1.0
    """Weight of the per-pixel L1 reconstruction loss (SAVP's)."""
    l2_weight: float = 0.0
    """Weight of a per-pixel MSE added to it."""
    change_weight: float = 0.0
    """Extra weight of pixels that changed since the previous true frame, in L1 and MSE (0: plain)."""
    kl_weight: float = 1e-3
    """Weight of the KL term (per-sample KL summed over z, averaged over steps) in ``savp`` / ``vae``."""
    gan_weight: float = 0.1
    """Weight of the LSGAN generator loss of the prior pass (``savp``) or the only pass (``gan``)."""
    vae_gan_weight: float = 0.1
    """Weight of the LSGAN generator loss of the posterior pass (``savp``, its own discriminator)."""


def _hidden_to_state(hidden: list[Hidden]) -> State:
    return {f"lstm{i}_{part}": t for i, hc in enumerate(hidden) for part, t in zip("hc", hc, strict=True)}


def _hidden_from_state(state: State, n: int) -> list[Hidden]:
    return [(state[f"lstm{i}_h"], state[f"lstm{i}_c"]) for i in range(n)]


@register
class SAVP(WorldModel):
    """SAVP and its ablations (``cfg.mode``); see the module docstring.

    ``stochastic`` and ``deterministic_start`` are set per instance from the mode. State keys:
    ``frame`` / ``first`` (B, C, H, W); ``feat`` (B, feat_dim); ``lstm{i}_h`` / ``lstm{i}_c``
    (B, ch, s, s) the generator's conv-LSTMs; ``zr_h`` / ``zr_c`` (B, z_dim) the latent's LSTM.
    """

    name = "savp"
    Config = SAVPConfig

    def __init__(self, cfg: SAVPConfig, frame_shape: tuple[int, int, int], n_actions: int) -> None:
        super().__init__(cfg, frame_shape, n_actions)
        c, h, w = frame_shape
        if cfg.mode not in ("savp", "vae", "gan", "deterministic"):
            raise ValueError(f"mode must be 'savp', 'vae', 'gan' or 'deterministic', got {cfg.mode!r}")
        if cfg.prior not in ("fixed", "learned"):
            raise ValueError(f"prior must be 'fixed' or 'learned', got {cfg.prior!r}")
        if h != w or cfg.levels < 2 or h % 2**cfg.levels or h >> cfg.levels < 2:
            raise ValueError(f"savp needs square frames divisible by 2^levels = {2**cfg.levels}, got {h} x {w}")
        images = ["transformed"] * cfg.n_transformed
        images += [k for k, on in [("first", cfg.first_image_background), ("prev", cfg.prev_image_background)] if on]
        if not images and not cfg.generate_scratch_image:
            raise ValueError("savp composites nothing: set n_transformed > 0 or a background / scratch image")
        self.cfg: SAVPConfig = cfg
        self.images = images
        self.stochastic = cfg.mode != "deterministic"  # per instance: the mode decides
        self.deterministic_start = cfg.mode == "deterministic"
        self.z_dim = cfg.z_dim if self.stochastic else 0
        self.action_embed = ActionInput(n_actions, "embed", cfg.action_dim)
        self.generator = Generator(c, cfg.nf, cfg.levels, cfg.action_dim + self.z_dim)
        self.bottleneck_fc = nn.Linear(self.generator.chans[-1] * 16, cfg.feat_dim)
        self.transform = (
            Transformation(cfg.transformation, cfg.n_transformed, cfg.kernel_size, cfg.nf, cfg.feat_dim, h)
            if cfg.n_transformed
            else None
        )
        bias_at = images.index("prev") if "prev" in images else 0
        self.compositor = Compositor(
            cfg.nf, c, len(images) + cfg.generate_scratch_image, cfg.generate_scratch_image, bias_at, cfg.prev_mask_bias
        )
        self.z_rnn = nn.LSTMCell(cfg.z_dim, cfg.z_dim) if self.stochastic else None
        self.posterior = GaussianConvEncoder(2 * c, cfg.nef, cfg.z_dim) if cfg.mode in ("savp", "vae") else None
        learned = self.stochastic and cfg.prior == "learned"
        self.learned_prior = GaussianConvEncoder(c, cfg.nef, cfg.z_dim, cfg.action_dim) if learned else None
        self.discriminators = nn.ModuleDict()
        if cfg.mode in ("savp", "gan"):
            self.discriminators["gan"] = VideoDiscriminator(c, cfg.ndf)
        if cfg.mode == "savp":
            self.discriminators["vae_gan"] = VideoDiscriminator(c, cfg.ndf)
        self.reward_head = nn.Sequential(nn.Linear(cfg.feat_dim, cfg.feat_dim), nn.SiLU(), nn.Linear(cfg.feat_dim, 3))
        self.term_head = nn.Sequential(nn.Linear(cfg.feat_dim, cfg.feat_dim), nn.SiLU(), nn.Linear(cfg.feat_dim, 1))
        self._fakes: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ one generator step
    def _zero_state(self, frames: torch.Tensor) -> State:
        """The recurrent state before any transition, for a batch like ``frames`` (B, P, C, H, W)."""
        b, size = frames.shape[0], frames.shape[-1]
        zeros = frames.new_zeros
        hidden = [(zeros(b, *s), zeros(b, *s)) for s in self.generator.hidden_shapes(size)]
        state = {
            "frame": frames[:, -1],
            "first": frames[:, 0],
            "feat": zeros(b, self.cfg.feat_dim),
            **_hidden_to_state(hidden),
        }
        if self.z_rnn is not None:
            state.update(zr_h=zeros(b, self.cfg.z_dim), zr_c=zeros(b, self.cfg.z_dim))
        return state

    def _prior(self, prev: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mu, logvar (B, z_dim) of p(z_t | x_t, a_t)."""
        if self.learned_prior is not None:
            return self.learned_prior(prev, a)
        zero = prev.new_zeros(prev.shape[0], self.cfg.z_dim)
        return zero, zero

    def _transition(self, state: State, prev: torch.Tensor, a: torch.Tensor, z: torch.Tensor | None) -> State:
        """Frame ``prev`` (B, C, H, W), action embedding ``a`` (B, A) and ``z`` (B, z_dim) -> next state."""
        new: State = {"first": state["first"]}
        cond = a
        if self.z_rnn is not None and z is not None:
            zr_h, zr_c = self.z_rnn(z, (state["zr_h"], state["zr_c"]))
            new.update(zr_h=zr_h, zr_c=zr_c)
            cond = torch.cat([a, zr_h], dim=-1)  # (B, A + Z)
        hidden = _hidden_from_state(state, len(self.generator.hidden_shapes(prev.shape[-1])))
        features, bottleneck, hidden = self.generator(prev, cond, hidden)
        pooled = F.adaptive_avg_pool2d(bottleneck, 4).flatten(1)  # (B, ch, s, s) -> (B, ch, 4, 4) -> (B, ch*16)
        feat = torch.tanh(self.bottleneck_fc(pooled))  # (B, feat_dim)
        images: list[torch.Tensor] = []
        if self.transform is not None:
            images += list(self.transform(prev, features, feat).unbind(1))  # (B, n, C, H, W) -> n x (B, C, H, W)
        if self.cfg.first_image_background:
            images.append(state["first"])
        if self.cfg.prev_image_background:
            images.append(prev)
        new.update(_hidden_to_state(hidden), frame=self.compositor(features, images), feat=feat)
        return new

    # ------------------------------------------------------------------ imagination
    def start(self, frames: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None) -> State:
        state = self._zero_state(frames)
        a = self.action_embed(actions)  # (B, P-1, A)
        for i in range(frames.shape[1] - 1):  # warm up on the context transitions, always from real frames
            z = None
            if self.posterior is not None:
                mu, logvar = self.posterior(torch.cat([frames[:, i], frames[:, i + 1]], dim=1))
                z = gaussian_sample(mu, logvar, generator)
            elif self.stochastic:
                z = gaussian_sample(*self._prior(frames[:, i], a[:, i]), generator)
            state = self._transition(state, frames[:, i], a[:, i], z)
        return {**state, "frame": frames[:, -1]}

    def step(self, state: State, actions: torch.Tensor, generator: torch.Generator | None = None) -> StepResult:
        a = self.action_embed(actions)  # (B, A)
        z = gaussian_sample(*self._prior(state["frame"], a), generator) if self.stochastic else None
        new = self._transition(state, state["frame"], a, z)
        reward = reward_from_logits(self.reward_head(new["feat"]))
        term = torch.sigmoid(self.term_head(new["feat"]).squeeze(-1))
        return StepResult(new, reward, term)

    def decode(self, state: State) -> torch.Tensor:
        return state["frame"]

    def features(self, state: State) -> torch.Tensor:
        return state["feat"]

    @property
    def feature_dim(self) -> int:
        return self.cfg.feat_dim

    # ------------------------------------------------------------------ training
    def adversary(self) -> nn.Module | None:
        return self.discriminators if len(self.discriminators) else None

    def _unroll(
        self, frames: torch.Tensor, a: torch.Tensor, posterior: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Predict frames 1..T-1 from ``frames`` (B, T, C, H, W), real inputs for the context and the
        model's own frames after it. ``z`` from ``posterior`` (mu, logvar (B, T-1, Z)), else the prior.
        Returns predictions (B, T-1, C, H, W), features (B, T-1, F) and the per-step KL (B, T-1)."""
        state = self._zero_state(frames[:, :1])
        preds, feats, kls = [], [], []
        for i in range(frames.shape[1] - 1):
            prev = frames[:, i] if i < max(self.cfg.n_past, 1) else preds[-1]
            z = None
            if self.stochastic:
                mu_p, logvar_p = self._prior(prev, a[:, i])
                if posterior is not None:
                    mu, logvar = posterior[0][:, i], posterior[1][:, i]
                    kls.append(gaussian_kl(mu, logvar, mu_p, logvar_p))
                    z = gaussian_sample(mu, logvar)
                else:
                    z = gaussian_sample(mu_p, logvar_p)
            state = self._transition(state, prev, a[:, i], z)
            preds.append(state["frame"])
            feats.append(state["feat"])
        kl = torch.stack(kls, dim=1) if kls else frames.new_zeros(frames.shape[0], frames.shape[1] - 1)
        return torch.stack(preds, dim=1), torch.stack(feats, dim=1), kl

    def _recon(self, pred: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        target, previous = frames[:, 1:], frames[:, :-1]
        weight = 1.0
        if self.cfg.change_weight > 0:
            changed = ((target - previous).abs().amax(dim=2, keepdim=True) > 0.02).to(pred.dtype)  # (B, T-1, 1, H, W)
            weight = 1.0 + self.cfg.change_weight * changed
        err = pred - target
        return (weight * (self.cfg.l1_weight * err.abs() + self.cfg.l2_weight * err**2)).mean()

    def loss(self, batch: SequenceBatch) -> tuple[torch.Tensor, dict[str, float]]:
        frames = batch.frames  # (B, T, C, H, W)
        a = self.action_embed(batch.actions)  # (B, T-1, A)
        posterior = None
        if self.posterior is not None:
            pairs = torch.cat([frames[:, :-1], frames[:, 1:]], dim=2).flatten(0, 1)  # -> (B*(T-1), 2C, H, W)
            mu, logvar = self.posterior(pairs)
            posterior = (mu.view(*a.shape[:2], -1), logvar.view(*a.shape[:2], -1))  # (B*(T-1), Z) -> (B, T-1, Z)
        pred, feats, kl_steps = self._unroll(frames, a, posterior)
        recon = self._recon(pred, frames)
        kl = kl_steps.mean()
        reward_ce, term_bce, logs = head_losses(
            self.reward_head(feats), self.term_head(feats).squeeze(-1), batch.rewards, batch.terminated
        )
        loss = recon + self.cfg.kl_weight * kl + self.cfg.reward_weight * reward_ce
        loss = loss + self.cfg.termination_weight * term_bce
        fakes = {}
        if self.cfg.mode == "savp":
            fakes["vae_gan"] = pred
            fakes["gan"] = self._unroll(frames, a, None)[0]  # a second pass, z from the prior
        elif self.cfg.mode == "gan":
            fakes["gan"] = pred
        weights = {"gan": self.cfg.gan_weight, "vae_gan": self.cfg.vae_gan_weight}
        for key, fake in fakes.items():
            video = torch.cat([frames[:, :1], fake], dim=1)  # the first real frame, then the predictions
            g_loss = lsgan_generator_loss(self.discriminators[key](video))
            loss = loss + weights[key] * g_loss
            logs[f"g_{key}"] = g_loss.item()
        self._fakes = {key: torch.cat([frames[:, :1], fake], dim=1).detach() for key, fake in fakes.items()}
        with torch.no_grad():
            logs["recon"] = torch.mean((pred - frames[:, 1:]) ** 2).item()
            logs["l1"] = (pred - frames[:, 1:]).abs().mean().item()
        logs.update(kl=kl.item(), weighted_recon=recon.item())
        return loss, logs

    def adversary_loss(self, batch: SequenceBatch) -> tuple[torch.Tensor, dict[str, float]]:
        if not self._fakes:
            raise RuntimeError("adversary_loss needs the fakes of a loss(batch) call first (and a GAN mode)")
        total = batch.frames.new_zeros(())
        logs: dict[str, float] = {}
        for key, fake in self._fakes.items():
            d = self.discriminators[key]
            real_scores, fake_scores = d(batch.frames), d(fake)
            d_loss = lsgan_discriminator_loss(real_scores, fake_scores)
            total = total + d_loss
            logs.update({f"d_{key}": d_loss.item(), f"d_{key}_real": real_scores.mean().item()})
            logs[f"d_{key}_fake"] = fake_scores.mean().item()
        return total, logs
