"""``space_time``: SPACE with SPACE-Time's motion and object-continuity losses, as a registered model.

SPACE-Time is an object *extractor*, not a dynamics model. It is registered with the other models
so that the one trainer, checkpoints, ``--resume`` and grid runs serve it unchanged (its
:meth:`SpaceTime.loss` is the SPACE-Time loss), and it answers the imagination half of the
contract as far as an extractor honestly can: :meth:`~SpaceTime.start` extracts the scene of the
last context frame, :meth:`~SpaceTime.decode` draws its reconstruction, :meth:`~SpaceTime.features`
are its object latents, and :meth:`~SpaceTime.step` raises: a learned env over objects needs a
dynamics model over these scenes (``scene_dynamics``), not this one.

Loss of a window of frames (B, T, 3, S, S), each frame alike::

    -ELBO (SPACE)  +  motion_weight * (z_pres BCE + motion_where_weight * z_where error)   [SPACE+M]
                   +  area_object_weight * object continuity of z_what over t -> t+1        [SPACE+MOC]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dataset_tools.motion import draw_boxes
from dataset_tools.preprocess import Preprocess
from dataset_tools.sequences import SequenceBatch
from world_models.base import Extractor, register
from world_models.space.bg import BgOutput, SpaceBg
from world_models.space.config import SpaceTimeConfig
from world_models.space.fg import FgOutput, SpaceFg
from world_models.space.losses import continuity_loss, log_likelihood, motion_loss
from world_models.space.scene import Classifier, Scene, scene_description, zwhere_to_box

log = logging.getLogger(__name__)

@dataclass
class Inference:
    """Per image, per cell (N = G * G): what :meth:`SpaceTime.infer` extracts."""

    z_pres: torch.Tensor  # (B, N) presence probability
    z_where: torch.Tensor  # (B, N, 4) [w, h, cx, cy]: size as a fraction of the frame, centre in (-1, 1)
    z_what: torch.Tensor  # (B, N, D) appearance (posterior mean)
    z_depth: torch.Tensor  # (B, N) depth (smaller is in front)
    boxes: torch.Tensor  # (B, N, 4) [x, y, w, h] in pixels of the model's (S x S) frame

    def to(self, device: torch.device | str) -> Inference:
        return Inference(**{k: v.to(device) for k, v in self.__dict__.items()})


@register
class SpaceTime(Extractor):
    name = "space_time"
    Config = SpaceTimeConfig
    stochastic = False

    def __init__(self, cfg: SpaceTimeConfig, frame_shape: tuple[int, int, int], n_actions: int) -> None:
        super().__init__(cfg, frame_shape, n_actions)
        if tuple(frame_shape) != (3, cfg.img_size, cfg.img_size):
            raise ValueError(
                f"space_time with img_size={cfg.img_size} needs RGB frames (3, {cfg.img_size}, "
                f"{cfg.img_size}), got {tuple(frame_shape)}"
            )
        self.cfg: SpaceTimeConfig = cfg
        self.fg = SpaceFg(cfg)
        self.bg = SpaceBg(cfg)
        self.global_step = 0

    # ------------------------------------------------------------------ trainer hooks
    @classmethod
    def data_options(cls, cfg: SpaceTimeConfig, preprocess: Preprocess) -> dict[str, Any]:  # type: ignore[override]
        """RGB frames of ``img_size`` x ``img_size`` (the dataset's crop kept), and motion targets on the
        model's grid when the motion loss is on."""
        frames = Preprocess(crop=preprocess.crop, size=(cfg.img_size, cfg.img_size), grayscale=False)
        options: dict[str, Any] = {"preprocess": frames}
        if cfg.motion_weight > 0:
            options["motion_grid"] = cfg.grid
        return options

    def on_step(self, step: int) -> None:
        self.global_step = int(step)

    # ------------------------------------------------------------------ SPACE
    def forward_frames(self, x: torch.Tensor) -> tuple[FgOutput, BgOutput]:
        """Foreground and background of frames ``x`` (B, 3, S, S) at the current step's schedules."""
        cfg, step = self.cfg, self.global_step
        fg = self.fg(x, cfg.tau(step), cfg.z_pres_prior(step), cfg.z_scale_prior(step))
        return fg, self.bg(x)

    @staticmethod
    def reconstruction(fg: FgOutput, bg: BgOutput) -> torch.Tensor:
        return fg.alpha * fg.fg + (1 - fg.alpha) * bg.image  # (B, 3, S, S)

    @torch.no_grad()
    def infer(self, x: torch.Tensor) -> Inference:
        """The scene of frames ``x`` (B, 3, S, S) RGB in [0, 1]: presence probabilities, boxes and latents
        of every cell (means, no sampling), whatever mode the model is in."""
        if x.dim() != 4 or x.shape[1:] != (3, self.cfg.img_size, self.cfg.img_size):
            raise ValueError(
                f"infer needs (B, 3, {self.cfg.img_size}, {self.cfg.img_size}) RGB frames, got {tuple(x.shape)}"
            )
        pres_logits, z_where, z_depth, z_what = self.fg.encode(x)
        s = self.cfg.img_size
        return Inference(
            z_pres=torch.sigmoid(pres_logits),
            z_where=z_where,
            z_what=z_what,
            z_depth=z_depth,
            boxes=zwhere_to_box(z_where, s, s),
        )

    def scene_description(
        self, x: torch.Tensor, z_classifier: Classifier | None = None, only_z_what: bool = True, **kwargs: Any
    ) -> Scene | list[Scene]:
        """``{label: [(x, y), ...]}`` of frame ``x``; see :func:`world_models.space.scene.scene_description`."""
        return scene_description(self, x, z_classifier=z_classifier, only_z_what=only_z_what, **kwargs)

    # ------------------------------------------------------------------ training
    def loss(self, batch: SequenceBatch) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        b, t = batch.frames.shape[:2]
        x = batch.frames.flatten(0, 1)  # (B, T, 3, S, S) -> (B*T, 3, S, S)
        fg, bg = self.forward_frames(x)
        ll = log_likelihood(x, fg, bg, cfg.fg_sigma, cfg.bg_sigma)  # (B*T,)
        elbo = (ll - fg.kl - bg.kl).mean()
        loss = -elbo
        p = fg.pres_prob.detach()
        logs: dict[str, float] = {
            "elbo": elbo.item(),
            "log_like": ll.mean().item(),
            "kl": (fg.kl + bg.kl).mean().item(),
            "kl_fg": fg.kl.mean().item(),
            "kl_bg": bg.kl.mean().item(),
            "objects": (p > 0.5).float().sum(1).mean().item(),
            "tau": cfg.tau(self.global_step),
        }
        with torch.no_grad():
            logs["recon"] = torch.mean((self.reconstruction(fg, bg) - x) ** 2).item()
        if cfg.motion_weight > 0:
            if batch.motion_pres is None or batch.motion_where is None:
                raise ValueError("motion_weight > 0 needs motion targets: read the data with motion_grid=grid")
            target_where = batch.motion_where.flatten(0, 1).flatten(1, 2)  # (B, T, G, G, 4) -> (B*T, N, 4)
            # A motion box far larger than the model can draw (e.g. a whole frame that differs from the
            # background) is no object to it: those cells get target 0.
            drawable = (target_where[..., :2] <= 2 * cfg.z_scale_max).all(-1)  # (B*T, N)
            target_pres = batch.motion_pres.flatten(0, 1).flatten(1) * drawable  # (B, T, G, G) -> (B*T, N)
            hint = cfg.motion_hint(self.global_step)
            pres, where = motion_loss(fg.pres_logits, fg.z_where, target_pres, target_where, hint, cfg.grid)
            loss = loss + cfg.motion_weight * (pres + cfg.motion_where_weight * where).mean()
            logs |= {"motion_pres": pres.mean().item(), "motion_where": where.mean().item(), "motion_hint": hint}
            logs["pres_agree"] = ((p > 0.5).float() == target_pres).float().mean().item()
            logs["motion_objects"] = target_pres.sum(1).mean().item()
        if cfg.area_object_weight > 0 and t > 1:
            n = fg.z_what_mean.shape[1]
            cont, matched = continuity_loss(
                fg.z_what_mean.view(b, t, n, -1),
                fg.z_where[..., 2:].view(b, t, n, 2),
                (p > 0.5).view(b, t, n),
                cfg.continuity_radius,
                cfg.continuity_temperature,
            )
            loss = loss + cfg.area_object_weight * cont.mean()
            logs |= {"continuity": cont.mean().item(), "matched": matched / b}
        return loss, logs

    # ------------------------------------------------------------------ images for the trainer
    @torch.no_grad()
    def summary_images(self, batch: SequenceBatch) -> torch.Tensor:
        """Columns: the first frame of each window; rows: input with boxes (z_pres > 0.5, red) and motion
        boxes (green), reconstruction, foreground (alpha * fg), background."""
        x = batch.frames[:, 0]  # (B, 3, S, S)
        was_training = self.training
        self.eval()
        try:
            fg, bg = self.forward_frames(x)
        finally:
            self.train(was_training)
        s = self.cfg.img_size
        boxes = zwhere_to_box(fg.z_where, s, s).cpu().numpy()  # (B, N, 4)
        pres = fg.pres_prob.cpu().numpy()
        drawn = []
        for i, frame in enumerate((x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()):
            if batch.motion_pres is not None and batch.motion_where is not None:
                hint = batch.motion_pres[i, 0].flatten().cpu().numpy() > 0.5
                where = batch.motion_where[i, 0].flatten(0, 1)[hint]  # (K, 4)
                frame = draw_boxes(frame, zwhere_to_box(where, s, s).cpu().numpy(), color=(0, 255, 0))
            frame = draw_boxes(frame, boxes[i][pres[i] > 0.5], color=(255, 0, 0))
            drawn.append(torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).float() / 255)
        rows = [torch.stack(drawn).to(x.device), self.reconstruction(fg, bg), fg.alpha * fg.fg, bg.image]
        grid = torch.stack(rows)  # (4, B, 3, S, S)
        return grid.permute(2, 0, 3, 1, 4).flatten(3).flatten(1, 2)  # -> (3, 4, S, B, S) -> (3, 4*S, B*S)
