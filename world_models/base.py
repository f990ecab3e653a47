"""The model contracts and the model registry.

Every registered model is a :class:`Model` (what the trainer needs: a config, data hooks, ``loss``). Two
kinds build on it: a :class:`WorldModel` imagines a game (``start`` / ``step`` / ``decode`` / ``features``;
learned envs step it), an :class:`Extractor` finds objects in frames (``infer``; object dynamics models
read its objects). Code that needs one kind asks ``isinstance``; neither kind has methods that raise.

Tensor conventions (batch first everywhere, frames in [0, 1])::

    frames   (B, T, C, H, W) float32      actions (B, T-1) int64: action t leads from frame t to t+1
    state    dict[str, Tensor], every tensor batch-first (B, ...)

Imagination: ``start`` from ``n_past`` real frames (and the ``n_past - 1`` actions between them),
then ``step`` with one action per env -> next state plus reward and termination from the model's
own heads; ``decode`` draws the state's current frame; ``features`` is the agents' latent vector.
Rewards are predicted as their sign (-1, 0, +1), as DQN-style agents clip them.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, TypeVar

import torch
from torch import nn

from dataset_tools.preprocess import Preprocess
from dataset_tools.sequences import SequenceBatch, SequenceDataset

State = dict[str, torch.Tensor]
REWARD_VALUES = (-1.0, 0.0, 1.0)


@dataclass
class ModelConfig:
    """Fields every model config has; each model subclasses it with its own fields."""

    n_past: int = 2
    """Real context frames a rollout starts from."""
    n_future: int = 8
    """Frames predicted per training sequence (sequence length = n_past + n_future)."""
    reward_weight: float = 1.0
    """Weight of the reward-sign cross-entropy in the loss."""
    termination_weight: float = 1.0
    """Weight of the termination binary cross-entropy in the loss."""


class StepResult(NamedTuple):
    state: State
    reward: torch.Tensor  # (B,) float in {-1, 0, 1}
    terminated: torch.Tensor  # (B,) float probability of termination


class Model(nn.Module, ABC):
    """What the trainer needs of every registered model. Subclass :class:`WorldModel` or :class:`Extractor`,
    set ``name`` and ``Config``, and register."""

    name: ClassVar[str]
    Config: ClassVar[type[ModelConfig]]
    stochastic: ClassVar[bool] = False
    needs_frames: ClassVar[bool] = True
    """False for models that train on the RAM alone: the trainer then reads no frames."""

    def __init__(self, cfg: ModelConfig, frame_shape: tuple[int, int, int], n_actions: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.frame_shape = tuple(frame_shape)  # (C, H, W)
        self.n_actions = n_actions

    @classmethod
    def data_options(cls, cfg: ModelConfig, preprocess: Preprocess) -> dict[str, Any]:
        """Optional hook: extra :class:`SequenceDataset` keyword arguments the model needs, given its
        config and the dataset's preprocessing, e.g. ``{"preprocess": ...}`` for another frame size
        (the checkpoint then records that one) or ``{"motion_grid": G}`` for motion targets. The
        default asks for nothing."""
        return {}

    @classmethod
    def prepare_data(cls, cfg: ModelConfig, data: Path, progress: bool = True) -> None:  # noqa: B027  (optional hook)
        """Optional hook, called by the trainer before :meth:`data_options` (and before the model is built):
        write what the model needs beside the dataset ``data`` (e.g. cached object states) and complete
        ``cfg`` in place. Must be idempotent: every run and ``--resume`` calls it. The default does nothing."""

    def prefit(self, data: SequenceDataset, progress: bool = True) -> dict[str, float]:
        """Optional hook, called by the trainer once before the first update of a run that does not resume
        (after :meth:`bind_data`): fit the parts that can be fitted from the training split ``data`` alone, before
        the whole model trains. Returns logs (empty: nothing fitted). The default fits nothing."""
        return {}

    def on_step(self, step: int) -> None:  # noqa: B027  (optional hook)
        """Called by the trainer with the global step (1, 2, ...) before every training loss, for
        models with annealed schedules; a resumed run continues the count. The default does nothing."""

    def summary_images(self, batch: SequenceBatch) -> torch.Tensor | None:
        """Optional hook: a (3, H, W) image in [0, 1] the trainer logs every ``image_every`` steps
        instead of its open-loop rollout of ``batch`` (for models that cannot roll out). Default: None."""
        return None

    def bind_data(self, game: str | None, preprocess: Preprocess) -> None:  # noqa: B027  (optional hook)
        """Called by the trainer with the dataset's game and preprocessing before training (and on
        resume). Models that need them keep what they need in buffers; raise ValueError if the data
        does not suit the model. The default does nothing."""

    # ------------------------------------------------------------------ training
    @abstractmethod
    def loss(self, batch: SequenceBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss of a batch of sequences (T = n_past + n_future frames) and scalar logs.

        ``logs`` should include ``"recon"`` (per-pixel MSE of predicted frames) and, for latent
        variable models, ``"kl"``.
        """

    def adversary(self) -> nn.Module | None:
        """The discriminator, trained by the trainer's second optimizer; None for models without one.

        The trainer's main optimizer covers every other parameter and drops the gradients that
        :meth:`loss` (which includes the generator's adversarial term) leaves on these.
        """
        return None

    def adversary_loss(self, batch: SequenceBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Discriminator loss on the fakes of the latest ``loss(batch)`` call (kept detached by the
        model) and the batch's real frames, and scalar logs. Only called when :meth:`adversary` is set."""
        raise NotImplementedError(f"{type(self).__name__} has no adversary")

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per top-level module and ``total`` (printed at the start of training)."""
        counts = {name: sum(p.numel() for p in mod.parameters()) for name, mod in self.named_children()}
        counts["total"] = sum(p.numel() for p in self.parameters())
        return counts


class Extractor(Model):
    """An object extractor (``space_time``): finds objects in frames instead of imagining a game.
    ``learned-envs evaluate`` scores its boxes and latents against RAM truth
    (:mod:`world_models.space.evaluate`), as the trainer's ``eval_every`` does; object dynamics models
    (``slot_dynamics``, ``scene_dynamics``) learn over what it finds. It cannot make a learned env."""

    @abstractmethod
    def infer(self, frames: torch.Tensor) -> Any:
        """``frames`` (B, 3, H, W) in [0, 1] -> what it finds per image (``space_time``: per grid cell,
        presence, box and appearance; :class:`world_models.space.model.Inference`)."""


class WorldModel(Model):
    """A model that imagines a game: learned envs start it from real frames and step it."""

    deterministic_start: ClassVar[bool] = False
    """True when ``start`` draws nothing: learned envs then start each of their fixed real contexts
    once and reuse the states at every reset."""
    default_obs: ClassVar[str] = "frames"
    """The observation agents train on in this model's learned env when none is asked for: ``"latent"`` for
    the object models (their features are the objects), ``"frames"`` for the pixel models."""
    feature_bound: ClassVar[float] = 10.0
    """:meth:`features` lie in ``[-feature_bound, feature_bound]`` (learned envs clip them there, so the
    latent observation space has finite bounds that hold); object models set their coordinates' range."""
    imagination_settings: ClassVar[tuple[str, ...]] = ()
    """Config fields that only change how the model imagines (no weights depend on them): a learned env may
    set them on a trained checkpoint (``LearnedVectorEnv(settings=...)``, ``dream model_settings=``,
    ``closed-loop --settings``); see :meth:`set_imagination`."""

    def set_imagination(self, settings: dict[str, Any] | list[str], source: str | Path = "") -> None:
        """Set imagination ``settings`` (``{"temperature": 0.8}`` or ``["temperature=0.8"]``) on this model's
        config, in place (its parts share it), refusing any other field: those change what the weights mean.
        ``source`` (the checkpoint) starts the error messages (ValueError)."""
        from world_models.config import ConfigError, apply_overrides, parse_pairs

        pairs = parse_pairs(settings) if isinstance(settings, list) else {k: str(v) for k, v in settings.items()}
        allowed = type(self).imagination_settings
        for key in pairs:
            if key not in allowed:
                raise ValueError(
                    f"{source}: {key!r} is not an imagination setting of {type(self).name} "
                    f"(those a trained checkpoint may change: {', '.join(allowed) or 'none'})"
                )
        try:
            new = apply_overrides([self.cfg], pairs)[0]
        except ConfigError as e:
            raise ValueError(f"{source}: {e}") from None
        for key in pairs:
            setattr(self.cfg, key, getattr(new, key))

    # ------------------------------------------------------------------ imagination
    @abstractmethod
    def start(self, frames: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None) -> State:
        """``frames`` (B, n_past, C, H, W), ``actions`` (B, n_past - 1) -> the state at the last frame."""

    @abstractmethod
    def step(self, state: State, actions: torch.Tensor, generator: torch.Generator | None = None) -> StepResult:
        """``actions`` (B,) int64 -> next state, reward (B,) in {-1, 0, 1}, termination probability (B,).

        Stochastic models sample their latent with ``generator`` (reproducible rollouts).
        """

    @abstractmethod
    def decode(self, state: State) -> torch.Tensor:
        """The state's current frame, (B, C, H, W) in [0, 1]."""

    @abstractmethod
    def features(self, state: State) -> torch.Tensor:
        """The latent observation for agents, (B, feature_dim)."""

    @property
    @abstractmethod
    def feature_dim(self) -> int:
        """Length of :meth:`features` vectors."""

    @property
    def object_dim(self) -> int:
        """Length of :meth:`object_features` vectors; 0: the model holds no objects beside its latent."""
        return 0

    def object_features(self, state: State) -> torch.Tensor:
        """The objects the state holds as numbers, (B, object_dim): the ``"objects"`` observation (``rssm`` with
        ``object_state``: the ball and paddles, as its dreams step them and as the frame detector reads them in
        real frames). Models without (``object_dim`` 0) refuse it."""
        raise ValueError(
            f"{type(self).name} holds no objects beside its latent: obs_type 'objects' needs one that does "
            "(rssm object_state=true); object models' 'latent' observation is their objects"
        )

    def observation(self, state: State, obs_type: str = "latent") -> torch.Tensor:
        """:meth:`features` (``obs_type`` ``"latent"``) or :meth:`object_features` (``"objects"``) in float32,
        clipped to ``[-feature_bound, feature_bound]``: the vector observation of learned envs and of the real
        twin."""
        vector = self.object_features(state) if obs_type == "objects" else self.features(state)
        return vector.float().clamp(-self.feature_bound, self.feature_bound)

    def observation_dim(self, obs_type: str = "latent") -> int:
        """Length of :meth:`observation` vectors of ``obs_type``."""
        return self.object_dim if obs_type == "objects" else self.feature_dim

    # ------------------------------------------------------------------ generic helpers
    @torch.no_grad()
    def rollout(
        self,
        frames: torch.Tensor,
        actions: torch.Tensor,
        future_actions: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Open-loop prediction: context ``frames`` (B, n_past, C, H, W), ``actions`` (B, n_past-1),
        ``future_actions`` (B, K) -> frames (B, K, C, H, W), rewards (B, K), terminated (B, K)."""
        state = self.start(frames, actions, generator=generator)
        out_frames, rewards, terms = [], [], []
        for k in range(future_actions.shape[1]):
            state, reward, term = self.step(state, future_actions[:, k], generator=generator)
            out_frames.append(self.decode(state))
            rewards.append(reward)
            terms.append(term)
        return {
            "frames": torch.stack(out_frames, dim=1),
            "rewards": torch.stack(rewards, dim=1),
            "terminated": torch.stack(terms, dim=1),
        }


def pick_device(name: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available, else the CPU; anything else as torch reads it."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def cpus_busy(seconds: float = 0.5, read: Callable[[], list[int]] | None = None) -> float | None:
    """How many CPUs other work keeps busy now: the share of all CPUs' time that was not idle over ``seconds``,
    times the CPU count, from Linux's ``/proc/stat`` (``read`` returns its ``cpu`` line's counters; a test
    passes its own). None where there is no ``/proc/stat``."""
    import os
    import time

    def from_proc() -> list[int]:
        with open("/proc/stat") as f:
            return [int(v) for v in f.readline().split()[1:]]

    read = read or from_proc
    try:
        first = read()
        time.sleep(seconds)
        second = read()
    except (OSError, ValueError):
        return None
    delta = [b - a for a, b in zip(first, second, strict=False)]
    total = sum(delta[:8])  # user nice system idle iowait irq softirq steal (guest time is within user)
    if total <= 0:
        return 0.0
    idle = delta[3] + (delta[4] if len(delta) > 4 else 0)
    return (os.cpu_count() or 1) * (total - idle) / total


def pick_threads(env: dict[str, str] | None = None) -> tuple[int, str]:
    """Set torch's CPU threads for a long job and say why: the user's ``OMP_NUM_THREADS`` if set, else the
    CPUs not busy with other work (measured over half a second, :func:`cpus_busy`; where it cannot be, the
    1-minute load average), at least 1. torch's default (every core) makes its threads wait on each other
    when another process holds a core: on the shared 2-core machine here training steps ran 5-50x slower.
    The load average lags by a minute: right after a test run ended it still counted it, and the quick start
    ran on 1 thread of the idle machine (8.0 min; 5.6 on 2 threads in an earlier idle run). Returns (threads,
    a line saying how they were chosen)."""
    import os

    env = os.environ if env is None else env
    cpus = os.cpu_count() or 1
    asked = env.get("OMP_NUM_THREADS", "").strip()
    if asked.isdigit() and int(asked) > 0:
        threads, why = int(asked), f"OMP_NUM_THREADS={asked}"
    else:
        busy = cpus_busy()
        how = "now"
        if busy is None:
            busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
            how = "load average"
        threads = max(1, min(cpus, round(cpus - busy)))
        why = f"{cpus} CPU(s), {busy:.1f} busy with other work ({how}); set OMP_NUM_THREADS to choose"
    torch.set_num_threads(threads)
    return threads, f"torch uses {threads} CPU thread(s) ({why})"


def conv_levels(size: int, model: str) -> int:
    """Stride-2 conv blocks that take a ``size`` x ``size`` frame down to 4 x 4 (log2(size) - 2)."""
    levels = int(math.log2(size)) - 2 if size > 0 else 0
    if size != 2 ** (levels + 2) or levels < 2:
        raise ValueError(f"{model} needs square frames of a power-of-two size >= 16, got {size}")
    return levels


def stack_predecessors(frames: torch.Tensor, k: int) -> torch.Tensor:
    """(B, T, C, H, W) -> (B, T, k*C, H, W): each frame, then its k-1 predecessors (latest first), the first frame
    repeated where a sequence has none (the input of encoders that read ``encoder_frames`` frames at once)."""
    if k == 1:
        return frames
    t = frames.shape[1]
    idx = (torch.arange(t, device=frames.device)[:, None] - torch.arange(k, device=frames.device)).clamp(min=0)
    return frames[:, idx].flatten(2, 3)  # (B, T, k, C, H, W) -> (B, T, k*C, H, W)


def reward_classes(rewards: torch.Tensor) -> torch.Tensor:
    """Rewards -> class index of their sign: -1 -> 0, 0 -> 1, +1 -> 2."""
    return (torch.sign(rewards) + 1).long()


def reward_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """(..., 3) logits -> the most likely reward sign in {-1, 0, 1}."""
    return logits.argmax(dim=-1).to(logits.dtype) - 1.0


def select_state(mask: torch.Tensor, new: State, old: State) -> State:
    """Per-env choice between two states: ``new`` where ``mask`` (B,) is true, else ``old``."""
    out = {}
    for key, value in old.items():
        m = mask.view(-1, *([1] * (value.dim() - 1)))  # (B,) -> (B, 1, ..., 1)
        out[key] = torch.where(m, new[key], value)
    return out


# ---------------------------------------------------------------------- registry
MODELS: dict[str, type[Model]] = {}

M = TypeVar("M", bound=Model)


def register(cls: type[M]) -> type[M]:
    """Class decorator: makes a model available to the trainer under ``cls.name``."""
    MODELS[cls.name] = cls
    return cls


def model_class(name: str) -> type[Model]:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def build_model(
    name: str, cfg: ModelConfig | dict[str, Any], frame_shape: tuple[int, int, int], n_actions: int
) -> Model:
    cls = model_class(name)
    if isinstance(cfg, dict):
        cfg = cls.Config(**cfg)
    return cls(cfg, frame_shape, n_actions)
