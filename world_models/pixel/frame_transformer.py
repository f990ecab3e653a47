"""``frame_transformer``: predict how the current frame transforms, not the frame itself (reference 003).

Reference 003 learns frame transformations "instead of compressing the state like the RNN does":
*action + precondition (the last few frames) -> a transformation vector T; T transforms the current
frame into the next one*. Here T is a set of ``n_kernels`` translation kernels in the manner of CDNA
(Finn et al. 2016), each the outer product of a vertical and a horizontal normalised 1-D kernel of
``kernel_size`` taps: a (blurred) shift by up to ``kernel_size // 2`` pixels, which moves what it
is applied to but draws nothing new. The next frame composites, with per-pixel softmax masks, the
current frame unchanged, its ``n_kernels`` shifted copies and one generated image (for pixels no
shift explains: a served ball, a new score). The "keep" mask starts dominant, so training starts
from copy-last.

The precondition (the last ``n_past`` frames stacked on channels) goes through svg's DCGAN encoder,
whose code ``g`` is joined with the action embedding; the kernels and the reward / termination
heads read that joint code, and a decoder with the encoder's skips draws the masks and the
generated image. The state is the window of the last ``n_past`` frames (imagined ones included):
there is no recurrent memory, and the context actions are not needed (the frames show their effect).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from dataset_tools.sequences import SequenceBatch
from world_models.base import ModelConfig, State, StepResult, WorldModel, conv_levels, register, reward_from_logits
from world_models.config import ConfigError
from world_models.losses import head_losses, recon_loss
from world_models.pixel.svg import Encoder


@dataclass
class FrameTransformerConfig(ModelConfig):
    g_dim: int = 128
    """Size of the precondition code ``g`` and of the joint (precondition, action) code."""
    nf: int = 32
    """Channels of the first encoder conv block, doubling at each stride-2 block (mirrored by the decoder)."""
    action_dim: int = 32
    """Size of the learned action embedding."""
    n_kernels: int = 4
    """Translation kernels in T (shifted copies of the current frame the masks choose from)."""
    kernel_size: int = 19
    """Taps of each 1-D kernel (odd): shifts reach ``kernel_size // 2`` pixels per step. Pong at 64 x 64
    moves the ball up to ~5 px and the player's paddle up to ~10 px per (4-frame) step."""
    keep_bias: float = 4.0
    """Initial logit bias of the "keep the current frame" mask: training starts near copy-last."""
    change_weight: float = 20.0
    """Extra MSE weight of pixels that changed since the previous frame (0: plain MSE)."""
    rollout_training: bool = True
    """Feed the model's own predictions back into the window during training, as imagination does
    (gradients flow through them); False: teacher forcing, every window holds true frames."""

    def __post_init__(self) -> None:
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be odd and positive, got {self.kernel_size}")
        if self.n_kernels < 1:
            raise ConfigError(f"n_kernels must be >= 1, got {self.n_kernels}")


def _up(c_in: int, c_out: int, stride: int = 2, padding: int = 1) -> nn.Sequential:
    conv = nn.ConvTranspose2d(c_in, c_out, 4, stride, padding)
    return nn.Sequential(conv, nn.GroupNorm(math.gcd(8, c_out), c_out), nn.LeakyReLU(0.2))


class SkipDecoder(nn.Module):
    """Code (B, g_dim) and the encoder's skips -> (B, n_out, S, S) raw logits; each block reads [up, skip]."""

    def __init__(self, g_dim: int, n_out: int, size: int, nf: int) -> None:
        super().__init__()
        chans = [nf * 2**i for i in range(conv_levels(size, "frame_transformer"))]
        self.inp = _up(g_dim, chans[-1], stride=1, padding=0)  # 1 x 1 -> 4 x 4
        self.blocks = nn.ModuleList(_up(2 * chans[i], chans[i - 1]) for i in reversed(range(1, len(chans))))
        self.out = nn.ConvTranspose2d(2 * chans[0], n_out, 4, 2, 1)

    def forward(self, g: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        x = self.inp(g[:, :, None, None])  # (B, g_dim) -> (B, g_dim, 1, 1) -> (B, c, 4, 4)
        for block, skip in zip(self.blocks, reversed(skips[1:]), strict=True):
            x = block(torch.cat([x, skip], dim=1))  # (B, 2c, s, s) -> (B, c/2, 2s, 2s)
        return self.out(torch.cat([x, skips[0]], dim=1))  # (B, 2nf, S/2, S/2) -> (B, n_out, S, S)


def kernel_matrices(kernels: torch.Tensor, size: int) -> torch.Tensor:
    """1-D kernels (..., k) -> the (..., size, size) matrices that correlate a length-``size`` axis with them.

    Row ``i`` of a matrix takes ``sum_t kernel[t] * x[clamp(i + t - k // 2)]``: borders are replicated,
    so content shifted in from outside looks like the frame's edge. ``M @ x`` filters the rows of
    ``x``, ``x @ M.mT`` its columns (matrix products are far faster on the CPU than grouped convs).
    """
    taps = kernels.shape[-1]
    t = torch.arange(taps, device=kernels.device)[:, None, None]
    i = torch.arange(size, device=kernels.device)[None, :, None]
    j = torch.arange(size, device=kernels.device)[None, None, :]
    one_hot = (j == (i + t - taps // 2).clamp(0, size - 1)).to(kernels.dtype)  # (k, size, size)
    return torch.einsum("...t,tij->...ij", kernels, one_hot)


def shift_copies(frame: torch.Tensor, vertical: torch.Tensor, horizontal: torch.Tensor) -> torch.Tensor:
    """Apply K separable kernels to each frame: frame (B, C, H, W), kernels (B, K, k) -> (B, K, C, H, W)."""
    rows = kernel_matrices(vertical, frame.shape[-2])[:, :, None]  # (B, K, 1, H, H)
    cols = kernel_matrices(horizontal, frame.shape[-1])[:, :, None]  # (B, K, 1, W, W)
    return rows @ frame[:, None] @ cols.mT  # (B, K, 1, H, H) @ (B, 1, C, H, W) @ (B, K, 1, W, W)


@register
class FrameTransformer(WorldModel):
    name = "frame_transformer"
    Config = FrameTransformerConfig
    stochastic = False
    deterministic_start = True

    def __init__(self, cfg: FrameTransformerConfig, frame_shape: tuple[int, int, int], n_actions: int) -> None:
        super().__init__(cfg, frame_shape, n_actions)
        c, h, w = frame_shape
        if h != w:
            raise ValueError(f"frame_transformer needs square frames, got {h} x {w}")
        self.cfg: FrameTransformerConfig = cfg
        k = cfg.n_kernels
        self.encoder = Encoder(c * cfg.n_past, h, cfg.nf, cfg.g_dim)
        self.action_embed = nn.Embedding(n_actions, cfg.action_dim)
        self.joint = nn.Sequential(nn.Linear(cfg.g_dim + cfg.action_dim, cfg.g_dim), nn.Tanh())
        self.kernels = nn.Linear(cfg.g_dim, k * 2 * cfg.kernel_size)
        self.decoder = SkipDecoder(cfg.g_dim, k + 2 + c, h, cfg.nf)  # masks [keep, K shifts, generated] + image
        with torch.no_grad():
            self.decoder.out.bias[0] = cfg.keep_bias
        self.reward_head = nn.Sequential(nn.Linear(cfg.g_dim, 128), nn.SiLU(), nn.Linear(128, 3))
        self.term_head = nn.Sequential(nn.Linear(cfg.g_dim, 128), nn.SiLU(), nn.Linear(128, 1))

    # ------------------------------------------------------------------ one transition
    def _encode(self, window: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, p, c, h, w = window.shape
        return self.encoder(window.reshape(b, p * c, h, w))  # (B, P, C, H, W) -> (B, P*C, H, W)

    def _transition(self, window: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Window (B, P, C, H, W) and actions (B,) -> next frame (B, C, H, W) and the joint code (B, g_dim)."""
        g, skips = self._encode(window)
        joint = self.joint(torch.cat([g, self.action_embed(actions)], dim=-1))
        b, k, taps = joint.shape[0], self.cfg.n_kernels, self.cfg.kernel_size
        kernels = torch.softmax(self.kernels(joint).view(b, k, 2, taps), dim=-1)  # (B, K*2*k) -> (B, K, 2, k)
        current = window[:, -1]
        shifted = shift_copies(current, kernels[:, :, 0], kernels[:, :, 1])  # (B, K, C, H, W)
        out = self.decoder(joint, skips)  # (B, K+2+C, H, W)
        masks = torch.softmax(out[:, : k + 2], dim=1)  # (B, K+2, H, W)
        generated = torch.sigmoid(out[:, k + 2 :])  # (B, C, H, W)
        candidates = torch.cat([current[:, None], shifted, generated[:, None]], dim=1)  # (B, K+2, C, H, W)
        frame = (masks[:, :, None] * candidates).sum(dim=1)  # (B, K+2, 1, H, W) * (B, K+2, C, H, W) -> (B, C, H, W)
        return frame, joint

    # ------------------------------------------------------------------ imagination
    def start(self, frames: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None) -> State:
        return {"frames": frames}

    def step(self, state: State, actions: torch.Tensor, generator: torch.Generator | None = None) -> StepResult:
        window = state["frames"]
        frame, joint = self._transition(window, actions)
        reward = reward_from_logits(self.reward_head(joint))
        term = torch.sigmoid(self.term_head(joint).squeeze(-1))
        return StepResult({"frames": torch.cat([window[:, 1:], frame[:, None]], dim=1)}, reward, term)

    def decode(self, state: State) -> torch.Tensor:
        return state["frames"][:, -1]

    def features(self, state: State) -> torch.Tensor:
        return self._encode(state["frames"])[0]

    @property
    def feature_dim(self) -> int:
        return self.cfg.g_dim

    # ------------------------------------------------------------------ training
    def loss(self, batch: SequenceBatch) -> tuple[torch.Tensor, dict[str, float]]:
        p = self.cfg.n_past
        frames, actions = batch.frames, batch.actions  # (B, T, C, H, W), (B, T-1)
        window = frames[:, :p]
        preds, r_logits, t_logits = [], [], []
        for t in range(p - 1, frames.shape[1] - 1):
            frame, joint = self._transition(window, actions[:, t])
            preds.append(frame)
            r_logits.append(self.reward_head(joint))
            t_logits.append(self.term_head(joint).squeeze(-1))
            following = frame if self.cfg.rollout_training else frames[:, t + 1]
            window = torch.cat([window[:, 1:], following[:, None]], dim=1)
        pred = torch.stack(preds, dim=1)  # (B, F, C, H, W)
        target, previous = frames[:, p:], frames[:, p - 1 : -1]
        recon = recon_loss(pred, target, previous, self.cfg.change_weight)
        reward_ce, term_bce, logs = head_losses(
            torch.stack(r_logits, 1), torch.stack(t_logits, 1), batch.rewards[:, p - 1 :], batch.terminated[:, p - 1 :]
        )
        loss = recon + self.cfg.reward_weight * reward_ce + self.cfg.termination_weight * term_bce
        with torch.no_grad():
            logs["recon"] = torch.mean((pred - target) ** 2).item()
            logs["copy_recon"] = torch.mean((previous[:, :1] - target) ** 2).item()
        logs["weighted_recon"] = recon.item()
        return loss, logs
