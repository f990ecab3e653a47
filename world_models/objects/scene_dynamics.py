"""``scene_dynamics``: an object-level world model over the scenes of a SPACE-Time extractor.

The extractor (a trained ``space_time`` checkpoint, by default the shipped Pong one) and its
few-shot z_what classifier turn every frame into one slot per labelled object (Pong: player, enemy,
ball)::

    slot = [present, cx, cy, w, h, z_what (D)]      z_where of the object's cell, centre in (-1, 1)

(per label, the present cell (``z_pres > threshold``) of that label with the highest ``z_pres``;
absent slots are zeros). The state is the last ``n_past`` slot frames and the actions between them;
an MLP predicts each object's presence, the change of its move, its new size and ``z_what``, the
reward sign and termination. Features for agents are the slot window itself, so a policy sees the
same numbers in the dream and on the real game, where the real twin runs the extractor on real
frames (``start`` is the extractor). Frames are drawn by the extractor's own glimpse decoder: each
object's ``z_what`` rendered at its box over the background of the start frame.

Nothing here reads the RAM: training targets are the extractor's slots of the dataset's frames,
extracted once and cached beside the episodes (``scene_<digest>.npy``, keyed by the extractor's and
the classifier's weights; :meth:`SceneDynamics.prepare_data`). The extractor's weights and
classifier are copied into this model's checkpoint, which is then self-contained.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from dataset_tools.dataset import DatasetDir
from dataset_tools.preprocess import Preprocess, to_tensor_layout
from dataset_tools.sequences import SequenceBatch
from world_models.base import (
    ModelConfig,
    State,
    StepResult,
    WorldModel,
    build_model,
    model_class,
    register,
    reward_classes,
    reward_from_logits,
)
from world_models.blocks import mlp
from world_models.checkpoint import CheckpointError, load_model, read_config, resolve_checkpoint
from world_models.objects.moves import draw_presence

log = logging.getLogger(__name__)

DEFAULT_CLASSIFIER = "z_what-classifier_4.json"
EXTRACT_BATCH = 64


@dataclass
class SceneDynamicsConfig(ModelConfig):
    n_past: int = 4
    """Slot frames in the state window (>= 2, so velocities can be read)."""
    n_future: int = 8
    """One-step predictions per training sequence (teacher forced: each from the true window)."""
    extractor: str = ""
    """A ``space_time`` checkpoint (dir or run dir); empty: the shipped Pong one
    (:data:`world_models.space.PONG_CHECKPOINT`)."""
    classifier: str = ""
    """Its z_what classifier (a ``z_what-classifier_{n}.json`` that ``learned-envs evaluate`` writes; an older
    ``*.joblib.pkl`` only with ``trust_pickle``); empty: the extractor's ``z_what-classifier_4.json``."""
    trust_pickle: bool = False
    """Let ``classifier`` be a joblib pickle: loading one runs any code its author put in it."""
    threshold: float = 0.5
    """A cell holds an object where ``z_pres`` exceeds this."""
    hidden: int = 256
    """Width of the MLP."""
    layers: int = 3
    """Hidden layers of the MLP."""
    move_scale: float = 0.1
    """Predicted changes of an object's move are the network's outputs times this (frame units)."""
    position_weight: float = 0.1
    """Weight of the position loss (smooth L1 in raw pixels, over objects present in the target)."""
    presence_weight: float = 1.0
    """Weight of the presence binary cross-entropy."""
    attribute_weight: float = 1.0
    """Weight of the squared error of the next size and ``z_what`` (over objects present in the target)."""
    attribute_scale: float = 0.1
    """The network's outputs for an object's size and ``z_what`` are its deviations from its label's
    learned prototype, times this."""
    event_weight: float = 10.0
    """Extra weight of the ``event_labels`` objects' losses on steps where they turn, appear or vanish."""
    event_labels: str = "ball"
    """Comma-separated labels whose rare events get ``event_weight`` (labels the game lacks are ignored)."""
    sample_presence: bool = True
    """In imagination, draw each object's presence from its predicted probability; False thresholds it."""
    hold_frames: int = 2
    """An object the extractor loses for at most this many frames in a row keeps moving as it last
    moved (and stays present), in the training targets and in ``start`` alike: the extractor often
    misses Pong's ball for a frame or two while it touches a paddle, just when a hit or a miss is
    decided. 0 keeps the slots as extracted."""
    open_loop: bool = False
    """Feed the model's own predictions back during training (presence as a probability), as
    imagination does, and backpropagate through the ``n_future`` steps; False: every step starts
    from the true window (one-step predictions)."""
    noise_px: float = 0.0
    """Standard deviation (raw pixels) of noise on the input positions and sizes of present objects
    in training (the targets stay true), so the model learns to pull a displaced object back."""
    what_noise: float = 0.0
    """Standard deviation of noise on the input ``z_what`` of present objects in training."""
    extractor_spec: dict[str, Any] = field(default_factory=dict)
    """Filled in automatically from ``extractor`` / ``classifier``: the extractor's config, preprocessing,
    game, labels and the digest of its weights, so a saved checkpoint is rebuilt without those files."""


def _extractor_path(cfg: SceneDynamicsConfig) -> Path:
    if cfg.extractor:
        return resolve_checkpoint(cfg.extractor)
    from world_models.space import PONG_CHECKPOINT

    return PONG_CHECKPOINT


def _classifier_path(cfg: SceneDynamicsConfig, extractor: Path) -> Path:
    path = Path(cfg.classifier) if cfg.classifier else extractor / DEFAULT_CLASSIFIER
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no z_what classifier; pass classifier=PATH (learned-envs evaluate on the extractor "
            f"writes z_what-classifier_{{n}}.json files)"
        )
    return path


def _load_classifier(
    path: Path, labels: tuple[str, ...], dim: int, trust_pickle: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """A linear classifier of ``dim``-d z_what: its weights (C, D) and biases (C,) with rows in ``labels`` order."""
    from world_models.space.classifier import ClassifierError, load_classifier

    try:
        weight, bias = load_classifier(path, trust_pickle).rows(list(labels))
    except ClassifierError as err:
        raise ValueError(f"{path}: {err}" if str(path) not in str(err) else str(err)) from None
    if weight.shape[-1] != dim:
        raise ValueError(f"{path}: a classifier of {weight.shape[-1]}-d inputs; the extractor's z_what has {dim}")
    return weight, bias


def _digest(*files: Path) -> str:
    h = hashlib.sha1()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def resolve_extractor(cfg: SceneDynamicsConfig) -> dict[str, Any]:
    """Fill ``cfg.extractor_spec`` from the extractor checkpoint and classifier (once) and return it."""
    if cfg.extractor_spec:
        return cfg.extractor_spec
    from world_models.space.scene import label_list

    path = _extractor_path(cfg)
    config = read_config(path)
    if config.model != "space_time":
        raise ValueError(f"extractor={path}: a {config.model} checkpoint, not a space_time one")
    labels = label_list(str(config.game))
    classifier = _classifier_path(cfg, path)
    _load_classifier(classifier, labels, int(config.model_config["z_what_dim"]), cfg.trust_pickle)  # fail now
    cfg.extractor_spec = {
        "model_config": config.model_config,
        "frame_shape": list(config.frame_shape),
        "n_actions": config.n_actions,
        "preprocess": config.preprocess,
        "game": config.game,
        "labels": list(labels),
        "digest": _digest(path / "model.pt", classifier),
        "threshold": cfg.threshold,
    }
    return cfg.extractor_spec


def cache_name(spec: dict[str, Any]) -> str:
    """The per-episode cache file of an extractor's slots (its weights' digest, and the presence
    threshold where it is not the default)."""
    threshold = float(spec.get("threshold", 0.5))
    return f"scene_{spec['digest']}.npy" if threshold == 0.5 else f"scene_{spec['digest']}_t{threshold:g}.npy"


@register
class SceneDynamics(WorldModel):
    name = "scene_dynamics"
    Config = SceneDynamicsConfig
    stochastic = True
    deterministic_start = True
    default_obs = "latent"
    needs_frames: ClassVar[bool] = False  # training reads the cached slots, not the frames

    def __init__(self, cfg: SceneDynamicsConfig, frame_shape: tuple[int, int, int], n_actions: int) -> None:
        super().__init__(cfg, frame_shape, n_actions)
        if cfg.n_past < 2:
            raise ValueError(f"scene_dynamics needs n_past >= 2 to read velocities, got {cfg.n_past}")
        self.cfg: SceneDynamicsConfig = cfg
        spec = resolve_extractor(cfg)
        if tuple(frame_shape) != tuple(spec["frame_shape"]):
            raise ValueError(f"the extractor reads {tuple(spec['frame_shape'])} frames, this model got {frame_shape}")
        self.labels: tuple[str, ...] = tuple(spec["labels"])
        space_cfg = model_class("space_time").Config(**spec["model_config"])
        self.space = build_model("space_time", space_cfg, tuple(spec["frame_shape"]), int(spec["n_actions"]))
        self.space.requires_grad_(False)
        d, n_obj = space_cfg.z_what_dim, len(self.labels)
        self.slot_dim = 5 + d
        self.register_buffer("clf_weight", torch.zeros(n_obj, d))
        self.register_buffer("clf_bias", torch.zeros(n_obj))
        # 1 once the extractor's weights are in (from its files, or from this model's checkpoint)
        self.register_buffer("extractor_ready", torch.zeros(()))
        events = {label.strip() for label in cfg.event_labels.split(",") if label.strip()}
        self.register_buffer(
            "event_mask", torch.tensor([float(label in events) for label in self.labels]), persistent=False
        )

        k, a, f = cfg.n_past, n_actions, self.slot_dim
        pairs = n_obj * (n_obj - 1) // 2
        n_in = k * n_obj * f + (k - 1) * n_obj * 2 + k * pairs * 2 + k * a
        self.trunk = mlp(n_in, cfg.hidden, cfg.layers)
        self.objects_head = nn.Linear(cfg.hidden, n_obj * (1 + 2 + 2 + d))  # presence, move change, size, z_what
        # each label's typical size and z_what; the network predicts an object's deviation from it
        self.prototypes = nn.Parameter(torch.zeros(n_obj, 2 + d))
        summary = cfg.hidden + n_obj * 3  # the trunk and the next objects' presence and positions
        self.reward_head = mlp(summary, 128, 1, out=3)
        self.term_head = mlp(summary, 128, 1, out=1)
        first, second = torch.triu_indices(n_obj, n_obj, offset=1)
        self.register_buffer("pair_first", first, persistent=False)
        self.register_buffer("pair_second", second, persistent=False)

    def _load_extractor(self) -> None:
        """Copy the extractor's weights and the classifier (rows in label order) into this model, if those
        files are here and are the ones of ``extractor_spec``; otherwise leave ``extractor_ready`` at 0 (a
        saved checkpoint brings its own copy, and :meth:`require_extractor` stops anything else)."""
        try:
            path = _extractor_path(self.cfg)
            classifier = _classifier_path(self.cfg, path)
            if _digest(path / "model.pt", classifier) != self.cfg.extractor_spec["digest"]:
                return
            space, _ = load_model(path)
            weight, bias = _load_classifier(classifier, self.labels, self.space.cfg.z_what_dim, self.cfg.trust_pickle)
        except (OSError, ValueError, CheckpointError) as err:
            log.debug("extractor files not loaded (%s); the checkpoint's copy is expected", err)
            return
        except Exception as err:  # e.g. a classifier pickled by another scikit-learn version
            log.warning("could not load the z_what classifier (%s); the checkpoint's copy is expected", err)
            return
        self.space.load_state_dict(space.state_dict())
        self.clf_weight.copy_(torch.from_numpy(weight))
        self.clf_bias.copy_(torch.from_numpy(bias))
        self.extractor_ready.fill_(1.0)

    def require_extractor(self) -> None:
        """Raise unless the extractor's weights are in (a fresh model whose extractor files are gone or
        changed since ``extractor_spec`` was written would extract with random weights)."""
        if not bool(self.extractor_ready):
            spec = self.cfg.extractor_spec
            raise ValueError(
                f"the extractor {self.cfg.extractor or 'shipped Pong one'} (digest {spec.get('digest')}) and its "
                "classifier could not be loaded from their files (missing, changed since the run began, or "
                "unreadable), so no slots can be extracted with them; restore those files, or start a new run "
                "with extractor= / classifier= pointing at the ones you have"
            )

    # ------------------------------------------------------------------ data
    @classmethod
    def prepare_data(cls, cfg: SceneDynamicsConfig, data: Path, progress: bool = True) -> None:  # type: ignore[override]
        """Extract and cache the slots of every episode of ``data`` that has no cache for this extractor."""
        spec = resolve_extractor(cfg)
        ds = DatasetDir(data)
        manifest = ds.read_manifest()
        game = manifest.get("game")
        if game != spec["game"]:
            raise ValueError(f"the extractor was trained on {spec['game']}, this dataset holds {game}")
        name = cache_name(spec)
        todo = [ep for ep in ds.episode_indices() if not (ds.episodes_dir / f"ep_{ep:06d}" / name).exists()]
        if not todo:
            return
        model = cls(cfg, tuple(spec["frame_shape"]), len(manifest["action_meanings"])).eval()
        model._load_extractor()
        model.require_extractor()
        preprocess = Preprocess.from_dict(spec["preprocess"])
        frames_total = sum(int(ds.load(ep).frames.shape[0]) for ep in todo)
        log.info("extracting the scenes of %d episodes (%d frames) into %s", len(todo), frames_total, name)
        with tqdm(total=frames_total, desc="extract scenes", unit="frame", disable=not progress) as bar:
            for ep in todo:
                frames = ds.load(ep, mmap=True).frames
                out = np.zeros((frames.shape[0], len(model.labels), model.slot_dim), dtype=np.float32)
                for t in range(0, frames.shape[0], EXTRACT_BATCH):
                    chunk = preprocess(np.asarray(frames[t : t + EXTRACT_BATCH]))  # (n, S, S, 3) uint8
                    x = torch.from_numpy(to_tensor_layout(chunk))  # (n, 3, S, S) float in [0, 1]
                    out[t : t + len(chunk)] = model.extract(x).numpy()
                    bar.update(len(chunk))
                target = ds.episodes_dir / f"ep_{ep:06d}" / name
                tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp.npy")
                np.save(tmp, out)
                os.replace(tmp, target)

    @classmethod
    def data_options(cls, cfg: SceneDynamicsConfig, preprocess: Preprocess) -> dict[str, Any]:  # type: ignore[override]
        """The extractor's preprocessing (contexts and the real twin give it its frames) and the cached slots."""
        spec = resolve_extractor(cfg)
        return {"preprocess": Preprocess.from_dict(spec["preprocess"]), "objects": cache_name(spec)}

    def bind_data(self, game: str | None, preprocess: Preprocess) -> None:
        if not bool(self.extractor_ready):  # a new run reads the extractor's files; a checkpoint holds a copy
            self._load_extractor()
        self.require_extractor()
        if game != self.cfg.extractor_spec["game"]:
            raise ValueError(
                f"the extractor was trained on {self.cfg.extractor_spec['game']}; this dataset holds {game}"
            )

    # ------------------------------------------------------------------ the extractor
    @torch.no_grad()
    def extract(self, x: torch.Tensor) -> torch.Tensor:
        """Frames ``x`` (B, 3, S, S) RGB in [0, 1] -> slots (B, n_labels, 5 + D), one per label."""
        inference = self.space.infer(x)
        present = inference.z_pres > float(self.cfg.extractor_spec.get("threshold", 0.5))  # (B, N)
        label = (inference.z_what @ self.clf_weight.T + self.clf_bias).argmax(-1)  # (B, N, D) -> (B, N)
        slots = []
        for i in range(len(self.labels)):
            score = torch.where(present & (label == i), inference.z_pres, torch.full_like(inference.z_pres, -1.0))
            best = score.argmax(dim=1)  # (B,)
            found = (score.gather(1, best[:, None]) > 0).to(x.dtype)  # (B, 1)
            where = inference.z_where[torch.arange(len(x)), best]  # (B, 4) [w, h, cx, cy]
            what = inference.z_what[torch.arange(len(x)), best]  # (B, D)
            slots.append(torch.cat([found, where[:, 2:], where[:, :2], what], dim=1) * found)
        return torch.stack(slots, dim=1)

    # ------------------------------------------------------------------ the network
    def _predict(
        self, slots: torch.Tensor, past_actions: torch.Tensor, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``slots`` (B, K, O, F), ``past_actions`` (B, K-1), ``action`` (B,) -> the trunk's hidden state
        (B, hidden), presence logits (B, O), next positions (B, O, 2) and next attributes (B, O, F-3)."""
        b, n_obj = slots.shape[0], len(self.labels)
        pres, pos = slots[..., :1], slots[..., 1:3]
        moves = (pos[:, 1:] - pos[:, :-1]) * (pres[:, 1:] * pres[:, :-1])  # (B, K-1, O, 2) of objects seen twice
        seen = pres[:, :, self.pair_first] * pres[:, :, self.pair_second]  # (B, K, pairs, 1)
        relative = (pos[:, :, self.pair_second] - pos[:, :, self.pair_first]) * seen  # (B, K, pairs, 2)
        acts = F.one_hot(torch.cat([past_actions, action[:, None]], dim=1), self.n_actions).to(slots.dtype)
        x = torch.cat(
            [slots.flatten(1), moves.flatten(1) / self.cfg.move_scale, relative.flatten(1) * 4.0, acts.flatten(1)],
            dim=1,
        )
        hidden = self.trunk(x)
        out = self.objects_head(hidden).view(b, n_obj, -1)  # (B, O, 1 + 2 + 2 + D)
        positions = pos[:, -1] + moves[:, -1] + out[..., 1:3] * self.cfg.move_scale  # objects keep their move
        # size and z_what: the label's prototype plus a predicted deviation, never the last frame's plus a
        # change (that random-walks in long dreams: z_what ran off to ~700 RMS in a 300-step dream)
        attributes = self.prototypes + out[..., 3:] * self.cfg.attribute_scale
        return hidden, out[..., 0], positions, attributes

    def _heads(
        self, hidden: torch.Tensor, prob: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        summary = torch.cat([hidden, prob, positions.flatten(1)], dim=1)
        return self.reward_head(summary), self.term_head(summary).squeeze(-1)

    # ------------------------------------------------------------------ imagination
    def start(self, frames: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None) -> State:
        b, k = frames.shape[:2]
        self.space.eval()
        slots = self._hold(self.extract(frames.flatten(0, 1)).view(b, k, len(self.labels), self.slot_dim))
        with torch.no_grad():
            background = self.space.bg(frames[:, -1]).image  # (B, 3, S, S)
        return {"slots": slots, "actions": actions.to(torch.int64), "background": background}

    def step(self, state: State, actions: torch.Tensor, generator: torch.Generator | None = None) -> StepResult:
        slots, past = state["slots"], state["actions"]
        hidden, logits, positions, attributes = self._predict(slots, past, actions)
        prob = torch.sigmoid(logits)
        r_logits, t_logit = self._heads(hidden, prob, positions)
        present = draw_presence(prob, self.cfg.sample_presence, generator).to(slots.dtype)[..., None]  # (B, O, 1)
        new = torch.cat([present, positions.clamp(-1.0, 1.0), self._clamp(attributes)], dim=-1) * present  # absent: 0
        slots = torch.cat([slots[:, 1:], new[:, None]], dim=1)
        past = torch.cat([past[:, 1:], actions[:, None].to(past.dtype)], dim=1)
        state = {"slots": slots, "actions": past, "background": state["background"]}
        return StepResult(state, reward_from_logits(r_logits), torch.sigmoid(t_logit))

    def decode(self, state: State) -> torch.Tensor:
        """Each present object's ``z_what`` drawn by the extractor's glimpse decoder at its box, over the
        start frame's background (B, 3, S, S); objects are drawn one by one in label order (Pong: the
        ball over the paddles), so objects in one grid cell do not mix."""
        slots = state["slots"][:, -1]  # (B, O, F)
        b = slots.shape[0]
        fg, g = self.space.fg, self.space.cfg.grid
        image = state["background"]
        rgb, alpha = fg.glimpse_decoder(slots[..., 5:].flatten(0, 1))  # (B*O, 3, g, g), (B*O, 1, g, g)
        rgb, alpha = rgb.view(b, -1, *rgb.shape[1:]), alpha.view(b, -1, *alpha.shape[1:])
        rows = torch.arange(b, device=slots.device)
        empty = torch.cat([torch.full_like(fg.cell_centres, 1.0 / g), fg.cell_centres], -1).to(rgb.dtype)  # (1, N, 4)
        for i in range(slots.shape[1]):
            # the renderer draws a glimpse near its own cell: put the object in the cell holding its centre
            col = ((slots[:, i, 1] + 1) / 2 * g).long().clamp(0, g - 1)
            row = ((slots[:, i, 2] + 1) / 2 * g).long().clamp(0, g - 1)
            cell = row * g + col  # (B,)
            z_pres = rgb.new_zeros(b, g * g)
            z_pres[rows, cell] = slots[:, i, 0].to(rgb.dtype)  # absent objects draw nothing
            z_where = empty.repeat(b, 1, 1)
            z_where[rows, cell] = torch.cat([slots[:, i, 3:5], slots[:, i, 1:3]], dim=-1).to(rgb.dtype)
            patches = rgb.new_zeros(b, g * g, 4, *rgb.shape[-2:])
            patches[rows, cell] = torch.cat([rgb[:, i], alpha[:, i]], dim=1)
            drawn, a = fg.composite(patches[:, :, :3], patches[:, :, 3:], z_pres, torch.zeros_like(z_pres), z_where)
            image = a * drawn + (1 - a) * image
        return image

    def features(self, state: State) -> torch.Tensor:
        return state["slots"].flatten(1)  # (B, K, O, F) -> (B, K*O*F)

    @property
    def feature_dim(self) -> int:
        return self.cfg.n_past * len(self.labels) * self.slot_dim

    def _hold(self, slots: torch.Tensor) -> torch.Tensor:
        """Slots (B, T, O, F) with objects lost for at most ``hold_frames`` frames kept, moving on as they
        last moved, from the past only (within the frames given: ``start`` holds within its window, and
        so do the training inputs; the targets are held over their whole sequence)."""
        n = self.cfg.hold_frames
        if n <= 0 or slots.shape[1] < 2:
            return slots
        out = [slots[:, 0]]
        lost = torch.zeros(slots.shape[0], slots.shape[2], device=slots.device)  # (B, O) frames held so far
        for t in range(1, slots.shape[1]):
            cur, prev = slots[:, t], out[-1]
            before = out[-2] if t >= 2 else prev
            move = (prev[..., 1:3] - before[..., 1:3]) * (prev[..., :1] * before[..., :1])
            held = torch.cat([prev[..., :1], (prev[..., 1:3] + move).clamp(-1.0, 1.0), prev[..., 3:]], dim=-1)
            hold = (cur[..., 0] == 0) & (prev[..., 0] > 0) & (lost < n)  # (B, O)
            out.append(torch.where(hold[..., None], held, cur))
            lost = torch.where(hold, lost + 1, torch.zeros_like(lost))
        return torch.stack(out, dim=1)

    def _clamp(self, attributes: torch.Tensor) -> torch.Tensor:
        """Sizes within what the extractor can draw (0 to ``z_scale_max``); ``z_what`` as predicted."""
        size = attributes[..., :2].clamp(0.0, self.space.cfg.z_scale_max)
        return torch.cat([size, attributes[..., 2:]], dim=-1)

    # ------------------------------------------------------------------ training
    def _noisy(self, window: torch.Tensor) -> torch.Tensor:
        """``window`` (B, K, O, F) with ``noise_px`` on the positions and sizes and ``what_noise`` on the
        ``z_what`` of present objects (one draw per object and frame)."""
        cfg = self.cfg
        if cfg.noise_px <= 0 and cfg.what_noise <= 0:
            return window
        scale = torch.ones(window.shape[-1] - 1, device=window.device, dtype=window.dtype) * cfg.what_noise
        scale[:2] = cfg.noise_px / 80.0  # positions: raw pixels over the 160-pixel field in (-1, 1)
        scale[2:4] = cfg.noise_px / 160.0  # sizes: fractions of the field
        noise = torch.randn_like(window[..., 1:]) * scale * window[..., :1]
        return torch.cat([window[..., :1], window[..., 1:] + noise], dim=-1)

    def loss(self, batch: SequenceBatch) -> tuple[torch.Tensor, dict[str, float]]:
        if batch.objects is None:
            raise ValueError("scene_dynamics trains on cached slots: read the data with its data_options")
        p, cfg = self.cfg.n_past, self.cfg
        raw = batch.objects  # (B, T, O, F) as extracted
        truth = self._hold(raw)  # the targets: lost objects held, from the whole past of the sequence
        pixels = 80.0  # raw pixels per frame unit: the extractor sees the 160-pixel-wide field
        present_all = truth[..., 0]  # (B, T, O)
        pos = truth[..., 1:3]
        move = (pos[:, 1:] - pos[:, :-1]) * (present_all[:, 1:] * present_all[:, :-1])[..., None]  # (B, T-1, O, 2)
        # events on the transitions t -> t+1 (B, T-1, O): appearing, vanishing, or turning (at [:, t] for t >= 1)
        event = present_all[:, 1:] != present_all[:, :-1]
        event[:, 1:] |= ((move[:, 1:] * move[:, :-1]) < 0).any(-1)
        weight = 1.0 + cfg.event_weight * event.to(truth.dtype) * self.event_mask  # (B, T-1, O)
        state_loss, r_logits, t_logits, errors = [], [], [], []
        window, past = self._hold(raw[:, :p]), batch.actions[:, : p - 1]
        for t in range(p - 1, truth.shape[1] - 1):
            action = batch.actions[:, t]
            if not cfg.open_loop and t > p - 1:  # as start() sees it: only the window's own frames held
                window = self._hold(raw[:, t - p + 1 : t + 1])
            seen = self._noisy(window) if self.training else window
            hidden, logits, positions, attributes = self._predict(seen, past, action)
            target = truth[:, t + 1]  # (B, O, F)
            present = target[..., 0]
            presence = F.binary_cross_entropy_with_logits(logits, present, reduction="none")
            err = (positions - target[..., 1:3]) * pixels
            position = F.smooth_l1_loss(err, torch.zeros_like(err), reduction="none").sum(-1)
            attribute = (attributes - target[..., 3:]).pow(2).mean(-1)
            per_object = (
                cfg.presence_weight * presence
                + (cfg.position_weight * position + cfg.attribute_weight * attribute) * present
            )
            state_loss.append((per_object * weight[:, t]).sum(-1))
            errors.append(err.detach().norm(dim=-1) * present)
            prob = torch.sigmoid(logits)
            r_logit, t_logit = self._heads(hidden, prob, positions)
            r_logits.append(r_logit)
            t_logits.append(t_logit)
            if cfg.open_loop:  # the prediction, as imagination feeds it back (presence soft, so it trains)
                moved = torch.cat([positions.clamp(-1.0, 1.0), self._clamp(attributes)], dim=-1)
                new = torch.cat([prob[..., None], moved * prob[..., None]], dim=-1)
                window = torch.cat([window[:, 1:], new[:, None]], dim=1)
            past = torch.cat([past[:, 1:], action[:, None]], dim=1)
        states = torch.stack(state_loss, 1).mean()
        r_logits_t, t_logits_t = torch.stack(r_logits, 1), torch.stack(t_logits, 1)  # (B, F, 3), (B, F)
        rewards, terminated = batch.rewards[:, p - 1 :], batch.terminated[:, p - 1 :]
        reward_ce = F.cross_entropy(r_logits_t.reshape(-1, 3), reward_classes(rewards).reshape(-1))
        term_bce = F.binary_cross_entropy_with_logits(t_logits_t, terminated)
        loss = states + cfg.reward_weight * reward_ce + cfg.termination_weight * term_bce
        with torch.no_grad():
            err = torch.stack(errors, 1)  # (B, F, O)
            per_obj = err.sum(dim=(0, 1)) / present_all[:, p:].sum(dim=(0, 1)).clamp(min=1.0)
            points = rewards != 0
            hit = (r_logits_t.argmax(-1) - 1).float() == torch.sign(rewards)
            logs = {
                "state": states.item(),
                "reward_ce": reward_ce.item(),
                "term_bce": term_bce.item(),
                "reward_acc": hit.float().mean().item(),
                "point_recall": hit[points].float().mean().item() if points.any() else float("nan"),
                **{f"{name}_px": per_obj[i].item() for i, name in enumerate(self.labels)},
            }
        return loss, logs
