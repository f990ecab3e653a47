"""``epva``: hierarchical video prediction (Wichers et al. 2018, reference 004), action-conditioned.

An encoder maps a frame to a high-level *structure* vector ``s``; an LSTM predictor steps the
structure forward, reading the action (``s_{t+1} = s_t + W h_t``); a visual analogy network (VAN)
draws frame ``t`` from the anchor frame (the last real context frame ``x_a``), its structure ``s_a``
and the predicted ``s_t`` (see :class:`~world_models.pixel.epva_nets.AnalogyNetwork`). Reward-sign and
termination heads read the predictor's LSTM output and the predicted structure. Training runs the
predictor open loop after the context (its own predictions fed back, as imagination does).

Modes (``mode``, the reference's ``--model_mode``):

* ``e2e``: one loss, the frames drawn from the predicted structure; gradients flow through all three.
* ``epva``: the encoder and predictor minimise the *EP* loss (predicted vs encoded structure of the
  true future frames), so the structure is easy to predict; the encoder and VAN minimise the *EV*
  loss (frames drawn from the *encoded* structure), so it is informative enough to draw the frame.
  The EP weight ramps linearly from 0 to ``enc_pred_loss_scale`` over ``enc_pred_loss_scale_delay``
  training steps. At imagination time the VAN draws from the predicted structure.
* ``epva_gan``: ``epva`` plus Gaussian noise into the predictor (it becomes stochastic) and a
  WGAN-GP critic (:meth:`EPVA.adversary`) telling encoded from predicted structure transitions;
  the predictor (and encoder) are also trained to fool it (``adv_weight``). The critic is trained
  by a second optimizer on :meth:`EPVA.adversary_loss`.
* ``individual``: the structure is the pose, here Pong's object vectors from the RAM (player, enemy,
  ball as ``[present, x, y]``, 9 values; :func:`~world_models.objects.pong_objects.ram_vectors`), and each
  network is trained alone: the encoder regresses the pose from the frame, the predictor predicts
  the true pose sequence (context from the true poses), the VAN draws frames from true poses.
* ``e2e_with_pose``: ``e2e`` plus pose supervision: the first 9 of the ``enc_dim`` structure values
  are regressed to the RAM pose, by the encoder on every frame and by the predictor on its predictions.

Imagination never reads the RAM: in the pose modes the encoder, trained to regress the pose from
frames, gives the context structure at :meth:`EPVA.start` (the reference's pose modes do the same
with an encoder trained on ground-truth pose); the predictor steps it and the VAN draws from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from dataset_tools.atari import game_spec
from dataset_tools.preprocess import Preprocess
from dataset_tools.sequences import SequenceBatch
from world_models.base import ModelConfig, State, StepResult, WorldModel, register, reward_from_logits
from world_models.losses import head_losses, recon_loss
from world_models.objects.pong_objects import ram_vectors
from world_models.pixel.epva_nets import AnalogyNetwork, Hidden, SequenceCritic, StructureEncoder, StructurePredictor

Mode = Literal["e2e", "epva", "epva_gan", "individual", "e2e_with_pose"]
MODES: tuple[str, ...] = ("e2e", "epva", "epva_gan", "individual", "e2e_with_pose")
POSE_MODES = ("individual", "e2e_with_pose")
POSE_DIM = 9
"""Pose values: (player, enemy, ball) x [present, x, y] from the RAM."""


@dataclass
class EPVAConfig(ModelConfig):
    mode: Mode = "epva"
    """How the encoder, predictor and VAN are trained: ``e2e``, ``epva``, ``epva_gan``, ``individual``
    (structure = RAM object positions) or ``e2e_with_pose``; see the module docstring."""
    enc_dim: int = 64
    """Size of the structure vector (the reference's ``--enc_size_set``); ``individual`` uses the 9 pose
    values instead, ``e2e_with_pose`` needs at least 9 (the first 9 are the pose)."""
    nf: int = 32
    """Channels of the first conv block of the encoder and VAN, doubling at each stride-2 block."""
    rnn_size: int = 256
    """Cells per LSTM layer of the structure predictor."""
    rnn_layers: int = 2
    """LSTM layers of the structure predictor."""
    action_dim: int = 32
    """Size of the learned action embedding the predictor reads."""
    enc_dropout: float = 0.0
    """Dropout before the encoder's last layer (the reference: 0.35, ``--enc_keep_prob .65``)."""
    van_dropout: float = 0.0
    """Dropout of the VAN's analogy features (the reference: 0.1, ``--van_keep_prob .9``)."""
    normalize: bool = True
    """Layer-normalise (no affine) the encoder's and predictor's structure vectors in ``e2e``, ``epva``
    and ``epva_gan``: with a fixed scale the encoder cannot shrink the structure to make the EP loss small
    (the part the reference's ``--enc_pred_use_l2norm`` plays). Ignored in the pose modes."""
    enc_pred_loss_scale: float = 0.1
    """Final weight of the EP loss (``epva``, ``epva_gan``; the reference: 0.1 single-GPU, 10 for the GAN)."""
    enc_pred_loss_scale_delay: int = 1000
    """Training steps over which the EP weight ramps up from 0 (0: full weight at once); the reference
    used 2e4 of 1.2e5 steps."""
    pose_weight: float = 1.0
    """Weight of the pose regression losses (``individual``, ``e2e_with_pose``)."""
    noise_dim: int = 16
    """Size of the Gaussian noise the predictor reads at each step (``epva_gan`` only)."""
    noise_std: float = 1.0
    """Standard deviation of that noise (the reference's ``--pred_noise_std``)."""
    adv_weight: float = 0.1
    """Weight of the adversarial term of the predictor's loss (``epva_gan``)."""
    critic_hidden: int = 128
    """Channels of the critic's 1-D convolutions (``epva_gan``)."""
    gp_weight: float = 10.0
    """Weight of the critic's gradient penalty (WGAN-GP, ``epva_gan``)."""
    change_weight: float = 20.0
    """Extra MSE weight of pixels that changed since the previous true frame (0: plain MSE)."""


@register
class EPVA(WorldModel):
    """Encoder, predictor, VAN (+ critic in ``epva_gan``); see the module docstring.

    State keys: ``struct`` (B, D) the current structure; ``anchor_struct`` (B, D) and ``frame``
    (B, C, H, W) the anchor (last context) frame's; ``skip0``.. (B, c, s, s) the anchor's VAN
    features; ``h`` / ``c`` (B, layers, rnn_size) the predictor's LSTM; ``stepped`` (B,) bool:
    until the first step ``decode`` shows the real anchor frame.
    """

    name = "epva"
    Config = EPVAConfig
    stochastic = False
    deterministic_start = True

    def __init__(self, cfg: EPVAConfig, frame_shape: tuple[int, int, int], n_actions: int) -> None:
        super().__init__(cfg, frame_shape, n_actions)
        c, h, w = frame_shape
        if h != w:
            raise ValueError(f"epva needs square frames, got {h} x {w}")
        if cfg.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}; got {cfg.mode!r}")
        if cfg.mode == "e2e_with_pose" and cfg.enc_dim < POSE_DIM:
            raise ValueError(f"e2e_with_pose needs enc_dim >= {POSE_DIM} (the pose), got {cfg.enc_dim}")
        self.cfg: EPVAConfig = cfg
        gan = cfg.mode == "epva_gan"
        # instance attributes: in epva_gan the predictor reads noise, at start() too
        self.stochastic = gan  # type: ignore[misc]
        self.deterministic_start = not gan  # type: ignore[misc]
        self.struct_dim = POSE_DIM if cfg.mode == "individual" else cfg.enc_dim
        d = self.struct_dim
        self.noise_dim = cfg.noise_dim if gan else 0
        self.encoder = StructureEncoder(c, h, cfg.nf, d, cfg.enc_dropout)
        self.predictor = StructurePredictor(d, n_actions, cfg.action_dim, self.noise_dim, cfg.rnn_size, cfg.rnn_layers)
        self.van = AnalogyNetwork(c, h, cfg.nf, d, cfg.van_dropout)
        learned = cfg.mode not in POSE_MODES
        self.post: nn.Module = nn.LayerNorm(d, elementwise_affine=False) if cfg.normalize and learned else nn.Identity()
        head_in = cfg.rnn_size + d
        self.reward_head = nn.Sequential(nn.Linear(head_in, 128), nn.SiLU(), nn.Linear(128, 3))
        self.term_head = nn.Sequential(nn.Linear(head_in, 128), nn.SiLU(), nn.Linear(128, 1))
        self.critic = SequenceCritic(d, n_actions, cfg.critic_hidden) if gan else None
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))  # training steps seen (EP ramp)
        self._fakes: torch.Tensor | None = None  # (B, F+1, D) predicted transitions of the last loss(), detached

    def bind_data(self, game: str | None, preprocess: Preprocess) -> None:
        if self.cfg.mode in POSE_MODES and not game_spec(game).paddle_rally:
            raise ValueError(f"epva mode {self.cfg.mode} reads Pong's objects from the RAM; this dataset holds {game}")

    # ------------------------------------------------------------------ pieces
    def _encode(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) -> structures (B, T, D)."""
        b, t = frames.shape[:2]
        return self.post(self.encoder(frames.flatten(0, 1))).view(b, t, -1)  # (B*T, D) -> (B, T, D)

    def _noise(self, b: int, t: int, ref: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor | None:
        if self.noise_dim == 0:
            return None
        device = generator.device if generator is not None else ref.device
        eps = torch.randn((b, t, self.noise_dim), generator=generator, device=device, dtype=ref.dtype)
        return eps.to(ref.device) * self.cfg.noise_std

    def _warm_up(
        self, context: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None
    ) -> Hidden | None:
        """The predictor's LSTM state after the context transitions: ``context`` (B, P, D), ``actions`` (B, P-1)."""
        b, p = context.shape[:2]
        if p < 2:
            return None
        noise = self._noise(b, p - 1, context, generator)
        _, _, hidden = self.predictor(context[:, :-1], actions[:, : p - 1], noise, None, self.post)
        return hidden

    def _predict(self, context: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Open loop after the context: ``context`` (B, P, D), all ``actions`` (B, T-1) -> predicted
        structures (B, F, D) of frames P..T-1 and the LSTM outputs (B, F, R) that predicted them."""
        p = context.shape[1]
        hidden = self._warm_up(context, actions)
        s, preds, tops = context[:, -1:], [], []
        for k in range(p - 1, actions.shape[1]):
            noise = self._noise(s.shape[0], 1, s, None)
            s, top, hidden = self.predictor(s, actions[:, k : k + 1], noise, hidden, self.post)  # (B, 1, D)
            preds.append(s)
            tops.append(top)
        return torch.cat(preds, dim=1), torch.cat(tops, dim=1)

    def _heads(self, top: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([top, s], dim=-1)
        return self.reward_head(x), self.term_head(x).squeeze(-1)

    def _draw(self, anchor: torch.Tensor, s_anchor: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Anchor frame (B, C, H, W) and structure (B, D), structures (B, F, D) -> frames (B, F, C, H, W)."""
        b, f = s.shape[:2]
        skips = [x[:, None].expand(b, f, *x.shape[1:]).flatten(0, 1) for x in self.van.anchor(anchor)]  # (B*F, ...)
        frame = anchor[:, None].expand(b, f, *anchor.shape[1:]).flatten(0, 1)  # (B, C, H, W) -> (B*F, C, H, W)
        s_a = s_anchor[:, None].expand(b, f, -1).flatten(0, 1)
        out = self.van(skips, frame, s_a, s.flatten(0, 1))  # (B*F, C, H, W)
        return out.view(b, f, *anchor.shape[1:])

    def _pose(self, batch: SequenceBatch) -> torch.Tensor:
        """The RAM pose of every frame, (B, T, 9)."""
        vectors = ram_vectors(batch.ram.cpu().numpy())  # (B, T, 128) -> (B, T, 3, 3)
        return torch.from_numpy(vectors).to(batch.frames.device, batch.frames.dtype).flatten(2)

    # ------------------------------------------------------------------ imagination
    def start(self, frames: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None) -> State:
        context = self._encode(frames)  # (B, P, D)
        b = frames.shape[0]
        hidden = self._warm_up(context, actions, generator)
        if hidden is None:
            zeros = context.new_zeros(self.cfg.rnn_layers, b, self.cfg.rnn_size)
            hidden = (zeros, zeros)
        anchor = frames[:, -1]
        state: State = {
            "struct": context[:, -1],
            "anchor_struct": context[:, -1],
            "frame": anchor,
            "h": hidden[0].transpose(0, 1),  # (L, B, R) -> (B, L, R)
            "c": hidden[1].transpose(0, 1),
            "stepped": torch.zeros(b, dtype=torch.bool, device=frames.device),
        }
        for i, skip in enumerate(self.van.anchor(anchor)):
            state[f"skip{i}"] = skip
        return state

    def step(self, state: State, actions: torch.Tensor, generator: torch.Generator | None = None) -> StepResult:
        s = state["struct"][:, None]  # (B, D) -> (B, 1, D)
        hidden = (state["h"].transpose(0, 1).contiguous(), state["c"].transpose(0, 1).contiguous())  # -> (L, B, R)
        noise = self._noise(s.shape[0], 1, s, generator)
        s, top, (h, c) = self.predictor(s, actions[:, None], noise, hidden, self.post)
        s, top = s[:, 0], top[:, 0]  # (B, 1, .) -> (B, .)
        r_logits, t_logit = self._heads(top, s)
        new_state = dict(state)
        new_state.update(struct=s, h=h.transpose(0, 1), c=c.transpose(0, 1), stepped=torch.ones_like(state["stepped"]))
        return StepResult(new_state, reward_from_logits(r_logits), torch.sigmoid(t_logit))

    def decode(self, state: State) -> torch.Tensor:
        stepped = state["stepped"]
        if not stepped.any():
            return state["frame"]
        skips = [state[f"skip{i}"] for i in range(len(self.van.image))]
        drawn = self.van(skips, state["frame"], state["anchor_struct"], state["struct"])
        if stepped.all():
            return drawn
        return torch.where(stepped.view(-1, 1, 1, 1), drawn, state["frame"])  # (B,) -> (B, 1, 1, 1)

    def features(self, state: State) -> torch.Tensor:
        return torch.cat([state["struct"], state["h"][:, -1]], dim=-1)  # structure and the top LSTM layer

    @property
    def feature_dim(self) -> int:
        return self.struct_dim + self.cfg.rnn_size

    # ------------------------------------------------------------------ training
    def ep_scale(self) -> float:
        """The EP loss weight now: ramps from 0 to ``enc_pred_loss_scale`` over the delay."""
        delay = self.cfg.enc_pred_loss_scale_delay
        ramp = min(1.0, int(self.updates) / delay) if delay > 0 else 1.0
        return self.cfg.enc_pred_loss_scale * ramp

    def loss(self, batch: SequenceBatch) -> tuple[torch.Tensor, dict[str, float]]:
        p, mode = self.cfg.n_past, self.cfg.mode
        frames, actions = batch.frames, batch.actions  # (B, T, C, H, W), (B, T-1)
        target, previous, anchor = frames[:, p:], frames[:, p - 1 : -1], frames[:, p - 1]
        logs: dict[str, float] = {}
        pose = self._pose(batch) if mode in POSE_MODES else None  # (B, T, 9)
        encoded = self._encode(frames if mode != "e2e" else frames[:, :p])  # (B, T or P, D)
        extra = encoded.new_zeros(())
        if mode == "individual":
            assert pose is not None
            pred, top = self._predict(pose[:, :p], actions)  # the predictor alone, on the true poses
            drawn = self._draw(anchor, pose[:, p - 1], pose[:, p:])  # the VAN alone, from the true poses
            enc_pose = F.mse_loss(encoded, pose)
            pred_pose = F.mse_loss(pred, pose[:, p:])
            extra = self.cfg.pose_weight * (enc_pose + pred_pose)
            logs.update(pose_enc=enc_pose.item(), pose_pred=pred_pose.item())
        else:
            pred, top = self._predict(encoded[:, :p], actions)
            if mode in ("e2e", "e2e_with_pose"):
                drawn = self._draw(anchor, encoded[:, p - 1], pred)
                if pose is not None:
                    enc_pose = F.mse_loss(encoded[..., :POSE_DIM], pose)
                    pred_pose = F.mse_loss(pred[..., :POSE_DIM], pose[:, p:])
                    extra = self.cfg.pose_weight * (enc_pose + pred_pose)
                    logs.update(pose_enc=enc_pose.item(), pose_pred=pred_pose.item())
            else:  # epva / epva_gan: EV on the encoded structure, EP between predicted and encoded
                drawn = self._draw(anchor, encoded[:, p - 1], encoded[:, p:])
                ep = F.mse_loss(pred, encoded[:, p:])
                scale = self.ep_scale()
                extra = scale * ep
                logs.update(ep=ep.item(), ep_scale=scale)
                if self.critic is not None:
                    fakes = torch.cat([encoded[:, p - 1 : p], pred], dim=1)  # (B, F+1, D)
                    params = {k: v.detach() for k, v in self.critic.named_parameters()}  # no critic gradients here
                    score = torch.func.functional_call(self.critic, params, (fakes, actions[:, p - 1 :]))
                    adv = -score.mean()
                    extra = extra + self.cfg.adv_weight * adv
                    self._fakes = fakes.detach()
                    logs["adv"] = adv.item()
        frame_loss = recon_loss(drawn, target, previous, self.cfg.change_weight)
        r_logits, t_logits = self._heads(top, pred)
        reward_ce, term_bce, head_logs = head_losses(
            r_logits, t_logits, batch.rewards[:, p - 1 :], batch.terminated[:, p - 1 :]
        )
        loss = frame_loss + extra + self.cfg.reward_weight * reward_ce + self.cfg.termination_weight * term_bce
        logs.update(head_logs)
        with torch.no_grad():
            if mode in ("e2e", "e2e_with_pose"):
                imagined = drawn
            else:  # the frames imagination would draw: from the predicted structure
                s_anchor = pose[:, p - 1] if pose is not None else encoded[:, p - 1]
                imagined = self._draw(anchor, s_anchor, pred)
            logs["recon"] = torch.mean((imagined - target) ** 2).item()
            logs["frame_loss"] = frame_loss.item()
        if self.training:
            self.updates += 1
        return loss, logs

    # ------------------------------------------------------------------ the adversary (epva_gan)
    def adversary(self) -> nn.Module | None:
        """The critic in ``epva_gan`` mode (trained by its own optimizer on :meth:`adversary_loss`), else None."""
        return self.critic

    def adversary_loss(self, batch: SequenceBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """WGAN-GP critic loss: the predicted transitions of the latest :meth:`loss` call (fakes) against
        the encoded structure of ``batch``'s true frames (reals), plus ``gp_weight`` times the gradient penalty."""
        if self.critic is None:
            raise RuntimeError(f"epva mode {self.cfg.mode!r} has no adversary; only epva_gan has one")
        if self._fakes is None:
            raise RuntimeError("adversary_loss needs the fakes of a loss(batch) call; call loss first")
        p = self.cfg.n_past
        fakes, actions = self._fakes, batch.actions[:, p - 1 :]
        with torch.no_grad():
            reals = self._encode(batch.frames[:, p - 1 :])  # (B, F+1, D)
        if reals.shape != fakes.shape:
            raise ValueError(
                f"batch structures {tuple(reals.shape)} differ from the last loss() fakes {tuple(fakes.shape)}"
            )
        fakes = fakes.to(reals.dtype)
        d_real, d_fake = self.critic(reals, actions), self.critic(fakes, actions)
        eps = torch.rand(reals.shape[0], 1, 1, device=reals.device, dtype=reals.dtype)
        mixed = (eps * reals + (1 - eps) * fakes).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.critic(mixed, actions).sum(), mixed, create_graph=True)
        penalty = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
        distance = d_real.mean() - d_fake.mean()
        loss = -distance + self.cfg.gp_weight * penalty
        return loss, {"critic_loss": loss.item(), "wasserstein": distance.item(), "gradient_penalty": penalty.item()}
