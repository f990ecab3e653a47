"""The SPACE-Time config (one dataclass: CLI, YAML file and checkpoint JSON) and its annealing schedules.

Schedules follow the global training step, which the trainer hands to the model before every
loss (:meth:`world_models.base.WorldModel.on_step`), so a resumed run anneals exactly as an
uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from world_models.base import ModelConfig
from world_models.config import ConfigError


def linear_anneal(step: int, start_step: int, end_step: int, start_value: float, end_value: float) -> float:
    """``start_value`` until ``start_step``, then linear to ``end_value`` at ``end_step``, constant after."""
    if step <= start_step or end_step <= start_step:
        return start_value if step <= start_step else end_value
    if step >= end_step:
        return end_value
    return start_value + (end_value - start_value) * (step - start_step) / (end_step - start_step)


@dataclass
class SpaceTimeConfig(ModelConfig):
    """SPACE (Lin et al. 2020) with SPACE-Time's motion and object-continuity losses (MOC)."""

    n_past: int = 1
    """SPACE-Time reads every frame of a window alike; ``n_past + n_future`` is the window length
    (2 or more for the object-continuity loss between consecutive frames)."""
    n_future: int = 1
    """See ``n_past``."""
    img_size: int = 128
    """Frames are the dataset's crop resized to ``img_size`` x ``img_size`` RGB (whatever size the
    dataset itself was preprocessed at), a power of two >= 2 * ``grid``."""
    grid: int = 16
    """G of the G x G foreground grid: one object slot (z_pres, z_where, z_depth, z_what) per cell."""
    fg_nf: int = 64
    """Channels of the foreground image encoder."""
    glimpse_size: int = 32
    """Side of the glimpse the spatial transformer cuts around each cell's box (a power of two >= 8)."""
    glimpse_hidden: int = 256
    """Width of the glimpse encoder / decoder MLPs."""
    z_what_dim: int = 32
    """Size of each object's appearance latent."""
    z_scale_max: float = 0.25
    """Largest box side as a fraction of the frame (``scale = z_scale_max * sigmoid(latent)``). It
    bounds the window each object is drawn into (objects render locally, not over the whole frame)."""
    bg_k: int = 5
    """Background components (GENESIS-like masks by stick-breaking, one appearance each)."""
    bg_nf: int = 32
    """Channels of the background encoders / decoders."""
    bg_downsample: int = 1
    """The background is encoded and drawn at ``img_size / bg_downsample`` and upsampled (bilinear):
    1 as SPACE; 2 or 4 for near-uniform backgrounds (Pong's), much cheaper on the CPU."""
    z_mask_dim: int = 32
    """Size of each background component's mask latent."""
    z_comp_dim: int = 32
    """Size of each background component's appearance latent."""
    fg_sigma: float = 0.15
    """Std of the foreground's Gaussian pixel likelihood."""
    bg_sigma: float = 0.15
    """Std of the background's Gaussian pixel likelihood."""
    tau_start: float = 2.5
    """Temperature of the relaxed Bernoulli z_pres at ``tau_start_step`` ..."""
    tau_end: float = 0.5
    """... annealed linearly to this at ``tau_end_step``."""
    tau_start_step: int = 0
    """Step where the tau annealing starts."""
    tau_end_step: int = 10000
    """Step where the tau annealing ends."""
    z_pres_prior_start: float = 0.1
    """Prior probability of an object in a cell, at ``z_pres_prior_start_step`` ..."""
    z_pres_prior_end: float = 0.01
    """... annealed linearly to this at ``z_pres_prior_end_step``."""
    z_pres_prior_start_step: int = 4000
    """Step where the z_pres prior annealing starts."""
    z_pres_prior_end_step: int = 10000
    """Step where the z_pres prior annealing ends."""
    z_scale_prior_start: float = -1.0
    """Prior mean of the scale latent (before the sigmoid), at ``z_scale_prior_start_step`` ..."""
    z_scale_prior_end: float = -2.0
    """... annealed linearly to this at ``z_scale_prior_end_step``."""
    z_scale_prior_start_step: int = 10000
    """Step where the z_scale prior annealing starts."""
    z_scale_prior_end_step: int = 20000
    """Step where the z_scale prior annealing ends."""
    z_scale_prior_std: float = 0.1
    """Prior std of the scale latent (z_shift, z_depth and z_what have N(0, 1) priors)."""
    motion_weight: float = 10.0
    """Weight of the motion loss (z_pres binary cross-entropy plus z_where error against the dataset's
    motion targets, summed over cells); 0: plain SPACE, no motion targets are read."""
    motion_where_weight: float = 1.0
    """Weight of the z_where part of the motion loss relative to the z_pres part."""
    motion_cooling_start_step: int = 5000
    """Until this step the z_pres target is the motion hint ...."""
    motion_cooling_end_step: int = 10000
    """... then it moves linearly to the model's own (thresholded, detached) z_pres, reached at this
    step; the z_where part is scaled down the same way."""
    area_object_weight: float = 10.0
    """Weight of the object-continuity loss on z_what between consecutive frames: 0 gives SPACE+M,
    > 0 SPACE+MOC (the SPACE-Time reference trains both)."""
    continuity_radius: float = 0.2
    """An object at frame t is matched with the nearest object at t+1 whose centre is at most this far
    (in the (-1, 1) frame coordinates); unmatched objects take no part in the continuity loss."""
    continuity_temperature: float = 0.1
    """Temperature of the contrastive continuity loss (cosine similarities / temperature)."""

    def __post_init__(self) -> None:
        if self.n_past + self.n_future < 1:
            raise ConfigError("n_past + n_future must be >= 1")
        if self.area_object_weight > 0 and self.n_past + self.n_future < 2:
            raise ConfigError("area_object_weight > 0 needs windows of 2+ frames (n_past + n_future >= 2)")
        for name, value in (("img_size", self.img_size), ("glimpse_size", self.glimpse_size)):
            if value < 8 or 2 ** round(math.log2(value)) != value:
                raise ConfigError(f"{name} must be a power of two >= 8, got {value}")
        if self.grid < 1 or self.img_size % self.grid or self.img_size // self.grid < 2:
            raise ConfigError(f"grid must divide img_size into cells of 2+ pixels, got {self.grid} for {self.img_size}")
        if 2 ** round(math.log2(self.img_size // self.grid)) != self.img_size // self.grid:
            raise ConfigError(f"img_size / grid must be a power of two, got {self.img_size} / {self.grid}")
        if not 0 < self.z_scale_max <= 1:
            raise ConfigError(f"z_scale_max must be in (0, 1], got {self.z_scale_max}")
        if self.bg_downsample < 1 or 2 ** round(math.log2(self.bg_downsample)) != self.bg_downsample:
            raise ConfigError(f"bg_downsample must be a power of two, got {self.bg_downsample}")
        if self.img_size // self.bg_downsample < 8:
            raise ConfigError(f"img_size / bg_downsample must be >= 8, got {self.img_size} / {self.bg_downsample}")
        if self.bg_k < 1:
            raise ConfigError(f"bg_k must be >= 1, got {self.bg_k}")

    # ------------------------------------------------------------------ schedules
    def tau(self, step: int) -> float:
        return linear_anneal(step, self.tau_start_step, self.tau_end_step, self.tau_start, self.tau_end)

    def z_pres_prior(self, step: int) -> float:
        return linear_anneal(
            step,
            self.z_pres_prior_start_step,
            self.z_pres_prior_end_step,
            self.z_pres_prior_start,
            self.z_pres_prior_end,
        )

    def z_scale_prior(self, step: int) -> float:
        return linear_anneal(
            step,
            self.z_scale_prior_start_step,
            self.z_scale_prior_end_step,
            self.z_scale_prior_start,
            self.z_scale_prior_end,
        )

    def motion_hint(self, step: int) -> float:
        """Share of the motion hint in the z_pres target: 1 before cooling, 0 after."""
        return linear_anneal(step, self.motion_cooling_start_step, self.motion_cooling_end_step, 1.0, 0.0)
