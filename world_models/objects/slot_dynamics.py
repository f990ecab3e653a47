"""``slot_dynamics``: a world model over objects extracted from frames alone, with drawn moves.

The objects come from a frames-only :class:`~world_models.objects.extractor.ObjectExtractor`
(SPACE-Time's objects made pixel-exact by the foreground components, in classes found without
labels): per frame one slot per class, ``[present, x, y, w, h]``. The state is the last ``n_past``
slot frames and the actions between them. An MLP reads them (positions, moves, every pair of objects'
offsets, the actions) and the new action, and predicts:

* each object's **move**, drawn from the ``move_classes`` moves that object's class makes most often
  in the data (counted on the extracted slots) plus a regressed correction; classes are drawn in
  **tiers** of similar size, largest first, each tier given where the earlier tiers went (Pong: the
  paddles, then the ball given the paddles' moves, so a ball is never returned by a paddle that the
  same step moved away); an object that appears is placed by regression;
* each object's presence (drawn in imagination) and size (its class's prototype plus a deviation);
* the reward sign and termination, from the trunk and the next objects.

This is what made ``LearnedPongObjects-v1`` work, with every training target, the move vocabulary,
the start states and the real twin's observations taken from the extractor run on frames: nothing
reads the RAM. Training is teacher forced (each step from the true window), all steps of a window in
one batched pass. The features for agents are the slot window itself; frames are drawn from the
slots with each class's sprite over the background the extractor fitted.

Train it on a dataset with a fitted extractor (``extractor=DIR``) or a ``space_time`` run
(``extractor=RUN``: the first training fits the extractor on the data into ``DATA/extractors/``).
Either way the first training extracts every episode once and caches the slots beside it
(``slots_<digest>_x<version>.npy``); the extractor's weights are part of this model's checkpoint.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from dataset_tools.dataset import DatasetDir
from dataset_tools.preprocess import Preprocess
from dataset_tools.sequences import SequenceBatch
from world_models.base import ModelConfig, State, StepResult, WorldModel, register, reward_classes, reward_from_logits
from world_models.objects.extractor import (
    TRACK_PX,
    ExtractorError,
    ObjectExtractor,
    fit_extractor,
    is_extractor_dir,
    load_extractor,
    read_spec,
    require_space,
    slot_classes,
)
from world_models.objects.moves import UNITS, draw_presence, move_vocabulary, nearest_move, raw_centres
from world_models.objects.slot_core import SlotCore, gaps_to_others

log = logging.getLogger(__name__)

EXTRACT_BATCH = 64
SLOT = 5  # [present, x, y, w, h]


@dataclass
class SlotDynamicsConfig(ModelConfig):
    n_past: int = 4
    """Slot frames in the state window (>= 2, so moves can be read)."""
    n_future: int = 8
    """One-step predictions per training window (teacher forced)."""
    extractor: str = ""
    """A fitted extractor directory (``extractor.json``), or a ``space_time`` checkpoint / run: then the
    first training fits an extractor around it on the dataset's frames (into ``DATA/extractors/``)."""
    classes: int = 0
    """When fitting the extractor: the number of object classes (0: chosen by the silhouette score)."""
    max_classes: int = 8
    """When fitting the extractor with ``classes=0``: the most classes the silhouette score may choose from
    (Freeway's ten cars come in nine colours: with 8 two colours share a class and cars flip between
    classes; with 14 it chose 11, measured)."""
    fit_frames: int = 3000
    """When fitting the extractor: frames sampled from the training episodes."""
    hidden: int = 256
    """Width of the MLP."""
    layers: int = 3
    """Hidden layers of the MLP."""
    move_classes: int = 128
    """Moves each object chooses from: its class's most common moves in the data (raw pixels)."""
    move_vocab: list[list[list[float]]] = field(default_factory=list)
    """The moves to choose from, per class ``move_classes`` pairs ``[dx, dy]`` in raw pixels, most common
    first. Filled by ``learned-envs train`` from the extracted slots of every episode; kept in the checkpoint."""
    move_weight: float = 1.0
    """Weight of the move choice's cross-entropy."""
    position_weight: float = 0.1
    """Weight of the position error (smooth L1 in raw pixels: the chosen move's correction, the
    regressed place of an appearing object) and of the size error."""
    presence_weight: float = 1.0
    """Weight of the presence binary cross-entropy."""
    event_weight: float = 0.0
    """Extra weight of an object's losses on steps where it turns, appears or vanishes, for the classes
    after the first tier (as ``LearnedPongObjects-v1``'s ``event_weight``). It weighs an outcome, so the
    model learns those outcomes as more likely than they are: a ball turned where a hit is uncertain
    (measured: from real windows driven by the real actions, the dream returned 84-100% of the balls the
    real game missed). ``contact_weight`` weighs the states instead."""
    contact_weight: float = 10.0
    """Extra weight of an object's losses on steps that start with it within ``contact_px`` of another
    object, for the classes after the first tier (Pong: the ball near a paddle), whatever happens next:
    the steps that decide a hit or a miss get more of the model's attention without biasing the outcome."""
    contact_px: float = 16.0
    """Box gap (raw pixels, the larger of the x and y gaps) within which ``contact_weight`` applies."""
    features: Literal["slots", "positions"] = "slots"
    """What agents observe: the slot window (``slots``: ``[present, x, y, w, h]`` per object and frame) or only
    ``[present, x, y]`` (``positions``, as ``LearnedPongObjects-v1``'s agents see)."""
    snap: bool = True
    """In imagination, put each new object on the pixel grid the extractor reports on: centres to the half
    pixel, sizes to the pixel (boxes of whole pixels). The drawn moves' corrections otherwise slide objects
    off it, to places no training frame showed: from such places the dream turned Pong's ball one step
    before it met the paddle (measured: 40% of balls at x 136-138 px, where the game turns none)."""
    members: int = 1
    """Networks in the ensemble, each trained on its own bootstrap weighting of the data; every dream step
    draws one member per env (PETS' trajectory sampling), so an agent cannot live off one member's
    mistakes. The dream step costs about one member's compute; training costs ``members`` times one."""
    reward_memory: bool = True
    """The network also reads the reward signs of the steps between the window's frames: in the data a
    point is never followed by another within a few steps, and without them the reward head scored one
    point on two or three steps in a row while the ball left the field (measured in a dream)."""
    contact_geometry: bool = True
    """The later tiers' heads also read how far each of their objects' box overlaps (or misses) each earlier
    object's box, now and after the earlier objects' drawn moves with their own objects flying on as they
    were: the numbers that decide a hit, which the network otherwise composes from positions and sizes."""
    tier_each_slot: bool = False
    """Draw every object's move in a tier of its own, one after the other in the extractor's order (largest
    class first), each given where the earlier objects went (``contact_geometry``), instead of a tier's
    objects side by side. Objects of one size (Boxing's two boxers) are otherwise drawn independently, and
    both may step into the same place (measured: under its agent, Boxing's dream showed the boxers' boxes
    overlapping by more than half in 43% of frames, the real game's collected frames in 15%). It did not stop
    that (42% of frames, BENCHMARKS.md's Boxing section) nor make its agents better. Costs one head per
    object; ``contact_weight`` and ``event_weight`` still follow the extractor's tiers."""
    reward_disagreement: float = 0.0
    """In imagination with ``members`` > 1: each step's reward minus this times the spread (standard deviation)
    of the members' expected rewards for that step (MOPO's penalty), so an agent gains nothing from states
    where the members disagree about a point. Every member then runs on every env (``members`` times the
    compute); the next state is still the drawn member's. 0: off. An imagination setting: a learned env or
    ``dream model_settings=`` may change it on a trained checkpoint."""
    move_temperature: float = 1.0
    """Temperature of the move draws in imagination (1: as learned)."""
    sample_presence: bool = True
    """In imagination, draw each object's presence from its probability; False thresholds it at 0.5."""
    extractor_spec: dict[str, Any] = field(default_factory=dict)
    """Filled in by ``learned-envs train``: the fitted extractor's spec (its classes, tiers, crop and the
    digest of its weights) and where it was fitted, so a checkpoint is rebuilt without those files."""


def resolve_extractor(cfg: SlotDynamicsConfig, data: Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Fill ``cfg.extractor_spec`` (once): read a fitted extractor, or fit one on ``data`` around a
    ``space_time`` checkpoint. Returns the spec."""
    if cfg.extractor_spec:
        return cfg.extractor_spec
    if not cfg.extractor:
        raise ExtractorError(
            "slot_dynamics needs extractor=DIR: a fitted extractor, or a space_time run trained on your frames "
            "(learned-envs train --model space_time ...)"
        )
    path = Path(cfg.extractor)
    if not is_extractor_dir(path):
        space = require_space(path)
        if data is None:
            raise ExtractorError(
                f"extractor={path} is a space_time checkpoint: it is fitted on a dataset when training"
            )
        ds = DatasetDir(data)
        most = "" if cfg.max_classes == 8 else f"_m{cfg.max_classes}"
        path = (
            ds.root / "extractors" / f"{space.parent.parent.name}_{space.name}_k{cfg.classes}{most}_n{cfg.fit_frames}"
        )
        if not is_extractor_dir(path):
            log.info("fitting an object extractor around %s on %s into %s", space, data, path)
            fit_extractor(
                space,
                data,
                path,
                classes=cfg.classes,
                max_classes=cfg.max_classes,
                frames=cfg.fit_frames,
                progress=progress,
            )
    cfg.extractor_spec = {**read_spec(path), "path": str(path.resolve())}
    return cfg.extractor_spec


EXTRACTION = 3
"""Version of the extraction code: a change that alters the slots of the same weights bumps it, so caches
written by older code are not read."""


def cache_name(spec: dict[str, Any]) -> str:
    """The per-episode file of an extractor's slots (its weights' digest and the extraction version; with
    classes of several slots, their numbers and the tracking distance)."""
    counts = [int(c.get("slots", 1)) for c in spec["classes"]]
    sets = "" if max(counts, default=1) == 1 else f"_s{'-'.join(map(str, counts))}_t{spec.get('track_px', TRACK_PX):g}"
    return f"slots_{spec['digest']}_x{EXTRACTION}{sets}.npy"


@register
class SlotDynamics(WorldModel):
    name = "slot_dynamics"
    Config = SlotDynamicsConfig
    stochastic = True
    deterministic_start = True
    default_obs = "latent"
    feature_bound = 2.0  # presence, positions in [-1, 1], sizes in [0, 2] (the frame is 2 x 2 units)
    needs_frames: ClassVar[bool] = False  # training reads the cached slots
    imagination_settings: ClassVar[tuple[str, ...]] = (
        "reward_disagreement",
        "move_temperature",
        "sample_presence",
        "snap",
    )

    def __init__(self, cfg: SlotDynamicsConfig, frame_shape: tuple[int, int, int], n_actions: int) -> None:
        super().__init__(cfg, frame_shape, n_actions)
        if cfg.n_past < 2:
            raise ValueError(f"slot_dynamics needs n_past >= 2 to read moves, got {cfg.n_past}")
        self.cfg: SlotDynamicsConfig = cfg
        spec = resolve_extractor(cfg)
        self.object_extractor = ObjectExtractor(spec)
        if tuple(frame_shape) != (3, self.object_extractor.height, self.object_extractor.width):
            raise ValueError(
                f"the extractor reads ({self.object_extractor.height}, {self.object_extractor.width}) RGB crops, the model got {frame_shape}"
            )
        # the digest of the extractor weights loaded (a number), 0 until they are
        self.register_buffer("extractor_loaded", torch.zeros((), dtype=torch.int64))
        n_classes, s = self.object_extractor.n_classes, self.object_extractor.n_slots
        self.n_slots = s
        class_tiers = [list(t) for t in spec["tiers"]]
        if sorted(sum(class_tiers, [])) != list(range(n_classes)):
            raise ValueError(f"extractor tiers {class_tiers} do not cover its {n_classes} classes")
        slot_class = self.object_extractor.slot_class
        # a class's slots are drawn in its tier (a tier of slots: every slot of its classes)
        self.tiers: list[list[int]] = [[j for j in range(s) if slot_class[j] in t] for t in class_tiers]
        events = [c for tier in (self.tiers[1:] or self.tiers) for c in tier]
        if cfg.tier_each_slot:
            self.tiers = [[j] for tier in self.tiers for j in tier]
        k = cfg.move_classes
        if k < 1:
            raise ValueError(f"move_classes must be >= 1, got {k}")
        vocab = torch.tensor(cfg.move_vocab, dtype=torch.float32) if cfg.move_vocab else torch.zeros(n_classes, k, 2)
        if vocab.shape != (n_classes, k, 2):
            raise ValueError(
                f"move_vocab must hold {k} [dx, dy] moves per class ({n_classes} classes), got "
                f"{tuple(vocab.shape)}: learned-envs train fills it from the data (SlotDynamics.prepare_data)"
            )
        self.register_buffer("vocab", vocab)  # (C, K, 2) raw pixels, per class: a class's slots share it
        self.register_buffer("slot_class", torch.from_numpy(slot_class).long(), persistent=False)  # (S,)
        for j, tier in enumerate(self.tiers):  # each tier's slots' classes, ready for the step's vocabulary lookup
            self.register_buffer(f"tier_classes_{j}", torch.from_numpy(slot_class[tier]).long(), persistent=False)
        self.register_buffer("units", torch.tensor(UNITS))
        first, second = torch.triu_indices(s, s, offset=1)
        self.register_buffer("pair_first", first, persistent=False)
        self.register_buffer("pair_second", second, persistent=False)
        self.register_buffer("event_mask", torch.tensor([float(c in events) for c in range(s)]), persistent=False)

        if cfg.members < 1:
            raise ValueError(f"members must be >= 1, got {cfg.members}")
        sizes = torch.tensor([c["size"] for c in spec["classes"]], dtype=torch.float32)[slot_class] / self.units
        self.cores = nn.ModuleList(
            SlotCore(cfg, s, n_actions, self.tiers, sizes, len(first)) for _ in range(cfg.members)
        )

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:  # type: ignore[override]
        """Also reads checkpoints written before the networks moved into ``cores`` (one member)."""
        moved = ("trunk.", "objects_head.", "prototypes", "move_heads.", "reward_head.", "term_head.")
        state = {(f"cores.0.{k}" if k.startswith(moved) else k): v for k, v in state_dict.items()}
        return super().load_state_dict(state, strict=strict, assign=assign)

    # ------------------------------------------------------------------ data
    @classmethod
    def prepare_data(cls, cfg: SlotDynamicsConfig, data: Path, progress: bool = True) -> None:  # type: ignore[override]
        """Fit or read the extractor, cache the slots of every episode that lacks them, fill the move vocabulary."""
        spec = resolve_extractor(cfg, data, progress)
        ds = DatasetDir(data)
        game = ds.read_manifest().get("game")
        if game != spec["space"].get("game"):
            raise ValueError(f"the extractor was trained on {spec['space'].get('game')}, this dataset holds {game}")
        name = cache_name(spec)
        episodes = ds.episode_indices()
        todo = [ep for ep in episodes if not (ds.episodes_dir / f"ep_{ep:06d}" / name).exists()]
        if todo:
            extract_episodes(ds, todo, load_extractor(spec["path"]), name, progress)
        if not cfg.move_vocab:
            slots = [np.load(ds.episodes_dir / f"ep_{ep:06d}" / name, allow_pickle=False) for ep in episodes]
            slot_class = slot_classes(spec)
            groups = [np.nonzero(slot_class == c)[0].tolist() for c in range(len(spec["classes"]))]
            cfg.move_vocab = move_vocabulary(slots, cfg.move_classes, groups)

    @classmethod
    def data_options(cls, cfg: SlotDynamicsConfig, preprocess: Preprocess) -> dict[str, Any]:  # type: ignore[override]
        """Frames are the extractor's crop at full resolution (contexts and the real twin), and the cached slots."""
        spec = resolve_extractor(cfg)
        top, bottom, left, right = spec["crop"]
        crop = Preprocess(crop=(top, bottom, left, right), size=(bottom - top, right - left), grayscale=False)
        return {"preprocess": crop, "objects": cache_name(spec)}

    def bind_data(self, game: str | None, preprocess: Preprocess) -> None:
        """Check the game, load the fitted extractor's weights unless these are in already, and keep the
        config's move vocabulary that of the weights (``init_from`` brings the source's, which its move
        heads were trained on)."""
        if self.vocab.tolist() != self.cfg.move_vocab:
            log.info("slot_dynamics: keeping the move vocabulary of the weights it starts from")
            self.cfg.move_vocab = self.vocab.tolist()
        spec = self.cfg.extractor_spec
        if game != spec["space"].get("game"):
            raise ValueError(f"the extractor was trained on {spec['space'].get('game')}; this dataset holds {game}")
        digest = int(spec["digest"], 16)
        if int(self.extractor_loaded) != digest:
            fitted = load_extractor(spec["path"], device=self.vocab.device)
            if fitted.spec.get("digest") != spec["digest"]:
                raise ValueError(f"{spec['path']}: the extractor there changed since this run began")
            self.object_extractor.load_state_dict(fitted.state_dict())
            self.extractor_loaded.fill_(digest)

    # ------------------------------------------------------------------ extraction
    def _crops(self, frames: torch.Tensor) -> np.ndarray:
        """Frames (N, 3, H, W) in [0, 1] -> uint8 crops (N, H, W, 3) for the extractor."""
        return (frames.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

    def encode_frames(self, frames: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
        """Each frame's slots: (N, 3, H, W) in [0, 1] -> (N, S, 5) (the real twin caches them per frame).
        The frames may come from separate games: ``previous`` (N, S, 5) holds the slots of the frame before
        each (a class with several slots tracks its objects from there); None: each frame afresh."""
        if not bool(self.extractor_loaded):
            raise ValueError("this slot_dynamics model has no extractor weights yet (train it, or load a checkpoint)")
        ex = self.object_extractor
        before = previous.detach().cpu().numpy() if previous is not None and ex.tracks else None
        out = []
        for i in range(0, len(frames), EXTRACT_BATCH):
            objects = ex.objects(self._crops(frames[i : i + EXTRACT_BATCH]))
            out.append(ex.slots_after(objects, None if before is None else before[i : i + EXTRACT_BATCH]))
        return torch.from_numpy(np.concatenate(out)).to(frames.device)

    def start_encoded(self, slots: torch.Tensor, actions: torch.Tensor) -> State:
        """The state from encoded frames (B, n_past, S, 5) and the actions between them (B, n_past - 1)."""
        rewards = torch.zeros(actions.shape, device=slots.device, dtype=slots.dtype)  # no point seen in a context
        return {"window": slots, "actions": actions.to(torch.int64), "rewards": rewards}

    def start(self, frames: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None) -> State:
        b, k = frames.shape[:2]
        if not self.object_extractor.tracks:  # every frame on its own: one batch of B*K, -> (B, K, S, 5)
            slots = self.encode_frames(frames.flatten(0, 1)).view(b, k, self.n_slots, SLOT)
        else:  # each window's frames in order, each tracked from the one before
            steps: list[torch.Tensor] = []
            for t in range(k):
                steps.append(self.encode_frames(frames[:, t], steps[-1] if steps else None))
            slots = torch.stack(steps, dim=1)
        return self.start_encoded(slots, actions)

    # ------------------------------------------------------------------ the network
    def _move_of(self, j: int, choice: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The chosen moves (B, n, 2) in raw pixels of tier ``j``'s objects: ``choice`` (B, n), ``out`` (B, n, K, 3)."""
        index = choice[..., None, None].expand(-1, -1, 1, 2)  # (B, n, 1, 2)
        classes = getattr(self, f"tier_classes_{j}")
        vocab = self.vocab[classes].to(out.dtype).expand(choice.shape[0], -1, -1, -1)  # (B, n, K, 2)
        return (vocab.gather(2, index) + out[..., 1:].gather(2, index)).squeeze(2)

    # ------------------------------------------------------------------ imagination
    def step(self, state: State, actions: torch.Tensor, generator: torch.Generator | None = None) -> StepResult:
        window, past, rewards = state["window"], state["actions"], state["rewards"]
        penalty = None
        if len(self.cores) == 1:
            new, r_logits, t_logit = self._transition(self.cores[0], window, past, rewards, actions, generator)
        elif self.cfg.reward_disagreement > 0:  # every member on every env: their spread, and the drawn one's step
            member = torch.randint(len(self.cores), (window.shape[0],), device=window.device, generator=generator)
            outs = [self._transition(core, window, past, rewards, actions, generator) for core in self.cores]
            rows = torch.arange(window.shape[0], device=window.device)
            new, r_logits, t_logit = (torch.stack([o[i] for o in outs])[member, rows] for i in range(3))
            signs = torch.tensor([-1.0, 0.0, 1.0], device=window.device)
            expected = torch.stack([torch.softmax(o[1].float(), -1) @ signs for o in outs])  # (M, B)
            penalty = self.cfg.reward_disagreement * expected.std(0, unbiased=False)
        else:  # each env's step from one member drawn for it
            member = torch.randint(len(self.cores), (window.shape[0],), device=window.device, generator=generator)
            new = torch.zeros_like(window[:, -1])
            r_logits = window.new_zeros(window.shape[0], 3)
            t_logit = window.new_zeros(window.shape[0])
            for m, core in enumerate(self.cores):
                rows = torch.nonzero(member == m).squeeze(1)
                if len(rows) == 0:
                    continue
                sub = self._transition(core, window[rows], past[rows], rewards[rows], actions[rows], generator)
                new[rows], r_logits[rows], t_logit[rows] = (v.to(new.dtype) for v in sub)
        window = torch.cat([window[:, 1:], new[:, None]], dim=1)
        past = torch.cat([past[:, 1:], actions[:, None].to(past.dtype)], dim=1)
        reward = reward_from_logits(r_logits)
        rewards = torch.cat([rewards[:, 1:], reward[:, None].to(rewards.dtype)], dim=1)  # the signs, unpenalised
        if penalty is not None:
            reward = reward - penalty.to(reward.dtype)
        return StepResult({"window": window, "actions": past, "rewards": rewards}, reward, torch.sigmoid(t_logit))

    def _transition(
        self,
        core: SlotCore,
        window: torch.Tensor,
        past: torch.Tensor,
        rewards: torch.Tensor,
        actions: torch.Tensor,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One member's next slots (B, S, 5) (moves drawn tier by tier), reward logits (B, 3), termination logit (B,)."""
        hidden, logits, regressed, size = core.predict(window, past, rewards, actions, self._pairs())
        last = window[:, -1]
        flight = (last[..., 1:3] - window[:, -2, :, 1:3]) * (last[..., :1] * window[:, -2, :, :1])
        moves = torch.zeros(window.shape[0], self.n_slots, 2, device=window.device, dtype=window.dtype)
        drawn: list[torch.Tensor] = []
        for j, tier in enumerate(self.tiers):
            earlier = torch.cat(drawn, dim=1) if drawn else None
            choice, correction = core.tier_draw(j, hidden, last, earlier, flight, generator)
            vocab = self.vocab[getattr(self, f"tier_classes_{j}")]  # (n, K, 2)
            chosen = vocab[torch.arange(len(tier), device=choice.device)[None, :], choice].to(correction.dtype)
            move = (chosen + correction) * last[:, tier, :1]  # objects not seen do not move
            drawn.append(move)
            moves[:, tier] = move.to(moves.dtype)
        positions = torch.where(last[..., :1] > 0, last[..., 1:3] + moves / self.units, regressed)
        prob = torch.sigmoid(logits)
        r_logits, t_logit = core.heads(hidden, prob, positions)
        present = draw_presence(prob, self.cfg.sample_presence, generator).to(window.dtype)[..., None]
        positions, size = positions.clamp(-1.0, 1.0), size.clamp(min=0.0)
        if self.cfg.snap:  # centres to the half pixel, sizes to the pixel, in raw pixels
            positions = torch.round((positions + 1.0) * self.units * 2.0) / (2.0 * self.units) - 1.0
            size = torch.round(size * self.units).clamp(min=1.0) / self.units
        new = torch.cat([present, positions, size], dim=-1) * present  # absent: 0
        return new, r_logits, t_logit

    def _pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pair_first, self.pair_second

    def decode(self, state: State) -> torch.Tensor:
        return self.object_extractor.render(state["window"][:, -1])

    def features(self, state: State) -> torch.Tensor:
        window = state["window"] if self.cfg.features == "slots" else state["window"][..., :3]
        return window.flatten(1)  # (B, K, S, F) -> (B, K*S*F)

    def object_centres(self, state: State) -> torch.Tensor:
        """The current objects' ``[present, x, y]`` (B, O, 3), centres in raw-frame pixels (for scoring)."""
        return raw_centres(state["window"][:, -1])

    @property
    def feature_dim(self) -> int:
        return self.cfg.n_past * self.n_slots * (SLOT if self.cfg.features == "slots" else 3)

    # ------------------------------------------------------------------ training
    def loss(self, batch: SequenceBatch) -> tuple[torch.Tensor, dict[str, float]]:
        if batch.objects is None:
            raise ValueError("slot_dynamics trains on cached slots: read the data with its data_options")
        cfg, p = self.cfg, self.cfg.n_past
        truth = batch.objects  # (B, T, S, 5)
        b, t_len = truth.shape[:2]
        f = t_len - p  # predicted steps per window
        # every step of the window at once, each from its true past: (B, F, ...) -> (B*F, ...)
        window = truth.unfold(1, p, 1)[:, :f].permute(0, 1, 4, 2, 3).flatten(0, 1)  # (B*F, p, S, 5)
        acts = batch.actions.unfold(1, p, 1).flatten(0, 1)  # (B*F, p): p-1 past actions and the new one
        past_rewards = batch.rewards.unfold(1, p, 1).flatten(0, 1)[:, :-1]  # (B*F, p-1) those of the past actions
        target = truth[:, p:].flatten(0, 1)  # (B*F, S, 5)
        last, before = window[:, -1], window[:, -2]
        both = last[..., 0] * target[..., 0]  # (N, S) a move to learn
        true_move = (target[..., 1:3] - last[..., 1:3]) * self.units * both[..., None]  # (N, S, 2) raw pixels
        prev_move = (last[..., 1:3] - before[..., 1:3]) * (last[..., :1] * before[..., :1])  # slot units
        turned = ((true_move * prev_move) < 0).any(-1).to(truth.dtype) * before[..., 0] * both
        event = torch.maximum(turned, (last[..., 0] != target[..., 0]).to(truth.dtype))
        near = (gaps_to_others(last) <= cfg.contact_px).any(-1).to(truth.dtype)  # (N, S) near another object
        weight = 1.0 + (cfg.event_weight * event + cfg.contact_weight * near) * self.event_mask  # (N, S)
        rewards, terminated = batch.rewards[:, p - 1 :].flatten(), batch.terminated[:, p - 1 :].flatten()
        data = {
            "window": window, "past": acts[:, :-1], "past_rewards": past_rewards, "action": acts[:, -1],
            "target": target, "both": both, "true_move": true_move, "prev_move": prev_move, "weight": weight,
            "choice": nearest_move(self.vocab[self.slot_class], true_move), "rewards": rewards, "terminated": terminated,
        }  # fmt: skip
        total, logs = truth.new_zeros(()), {}
        for m, core in enumerate(self.cores):
            # each member's own bootstrap of the windows (Poisson(1) counts); a single network sees them all once
            boot = (
                torch.poisson(torch.ones(b, device=truth.device))
                if len(self.cores) > 1
                else torch.ones(b, device=truth.device)
            )
            loss_m, logs_m = self._member_loss(core, data, boot.repeat_interleave(f))
            total = total + loss_m / len(self.cores)
            if m == 0:
                logs = logs_m
        logs["events"] = event.sum().item() / b
        return total, logs

    def _member_loss(
        self, core: SlotCore, d: dict[str, torch.Tensor], boot: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """One member's loss on the prepared windows ``d`` (see :meth:`loss`), each weighted by ``boot`` (N,)."""
        cfg = self.cfg
        window, target, both, true_move = d["window"], d["target"], d["both"], d["true_move"]
        last = window[:, -1]
        hidden, logits, regressed, size = core.predict(window, d["past"], d["past_rewards"], d["action"], self._pairs())
        appear = (1 - last[..., 0]) * target[..., 0]
        moves_ce = torch.zeros_like(both)
        likely_move = torch.zeros_like(true_move)
        chosen_move = torch.zeros_like(true_move)
        for j, tier in enumerate(self.tiers):
            earlier = true_move[:, [c for t in self.tiers[:j] for c in t]] if j else None  # teacher forcing
            out = core.tier_choices(j, hidden, last, earlier, d["prev_move"])
            ce = F.cross_entropy(out[..., 0].flatten(0, 1), d["choice"][:, tier].flatten(), reduction="none")
            moves_ce[:, tier] = ce.view(-1, len(tier))
            chosen_move[:, tier] = self._move_of(j, d["choice"][:, tier], out)
            likely_move[:, tier] = self._move_of(j, out[..., 0].detach().argmax(-1), out.detach())
        correction_err = (chosen_move - true_move) * both[..., None]  # raw pixels
        place_err = (regressed - target[..., 1:3]) * self.units * appear[..., None]
        size_err = (size - target[..., 3:]) * self.units * target[..., :1]
        position = sum(
            F.smooth_l1_loss(e, torch.zeros_like(e), reduction="none").sum(-1)
            for e in (correction_err, place_err, size_err)
        )
        presence = F.binary_cross_entropy_with_logits(logits, target[..., 0], reduction="none")
        per_object = cfg.presence_weight * presence + cfg.position_weight * position + cfg.move_weight * moves_ce * both
        states = ((per_object * d["weight"]).sum(-1) * boot).mean()
        positions = torch.where(last[..., :1] > 0, last[..., 1:3] + chosen_move / self.units, regressed)
        r_logits, t_logits = core.heads(hidden, torch.sigmoid(logits), positions)
        rewards = d["rewards"]
        reward_ce = (F.cross_entropy(r_logits, reward_classes(rewards), reduction="none") * boot).mean()
        term_bce = (F.binary_cross_entropy_with_logits(t_logits, d["terminated"], reduction="none") * boot).mean()
        loss = states + cfg.reward_weight * reward_ce + cfg.termination_weight * term_bce
        with torch.no_grad():
            guess = torch.where(last[..., :1] > 0, last[..., 1:3] + likely_move / self.units, regressed)
            err = ((guess - target[..., 1:3]) * self.units).norm(dim=-1) * target[..., 0]  # (N, S) raw pixels
            acc = ((likely_move - true_move).abs().amax(-1) < 0.5).to(err.dtype) * both
            n_classes = self.vocab.shape[0]  # per class: the sums over its slots

            def by_class(v: torch.Tensor) -> torch.Tensor:
                return v.sum(0).new_zeros(n_classes).index_add_(0, self.slot_class, v.sum(0))

            per_class = by_class(err) / by_class(target[..., 0]).clamp(min=1.0)
            class_acc = by_class(acc) / by_class(both).clamp(min=1.0)
            points = rewards != 0
            hit = (r_logits.argmax(-1) - 1).float() == torch.sign(rewards)
            logs = {
                "state": states.item(),
                "move_ce": (moves_ce * both).sum().item() / both.sum().clamp(min=1.0).item(),
                "reward_ce": reward_ce.item(),
                "term_bce": term_bce.item(),
                "reward_acc": hit.float().mean().item(),
                "point_recall": hit[points].float().mean().item() if points.any() else float("nan"),
                **{f"class{c}_px": per_class[c].item() for c in range(len(per_class))},
                **{f"class{c}_move_acc": class_acc[c].item() for c in range(len(class_acc))},
            }
        return loss, logs


def extract_episodes(
    ds: DatasetDir, episodes: list[int], extractor: ObjectExtractor, name: str, progress: bool
) -> None:
    """Run ``extractor`` over every frame of ``episodes`` and save each episode's slots (T, S, 5) as ``name``."""
    top, bottom, left, right = extractor.crop
    total = sum(int(ds.load(ep).frames.shape[0]) for ep in episodes)
    log.info("extracting the objects of %d episodes (%d frames) into %s", len(episodes), total, name)
    with tqdm(total=total, desc="extract objects", unit="frame", disable=not progress) as bar:
        for ep in episodes:
            frames = ds.load(ep, mmap=True).frames
            out = np.zeros((frames.shape[0], extractor.n_slots, SLOT), dtype=np.float32)
            for t in range(0, frames.shape[0], EXTRACT_BATCH):
                chunk = np.asarray(frames[t : t + EXTRACT_BATCH])[:, top:bottom, left:right]
                out[t : t + len(chunk)] = extractor.slots(np.ascontiguousarray(chunk), out[t - 1] if t else None)
                bar.update(len(chunk))
            target = ds.episodes_dir / f"ep_{ep:06d}" / name
            tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp.npy")
            np.save(tmp, out)
            os.replace(tmp, target)
