"""``object_dynamics``: an object-level world model (Pong): it steps object states, not pixels.

The state is the last ``n_past`` object vectors ``[present, x, y]`` of the player, the enemy and the
ball (x, y in [-1, 1] over the raw 210 x 160 frame) and the actions between them. An MLP reads that
window (positions, their frame-to-frame differences, the ball relative to each paddle, the actions)
and the new action, and predicts each object's presence and the change of its move (objects keep
their velocity unless something happens), the reward sign and termination. The features for agents are
the object window itself, so a policy sees in the dream what :func:`frame_vectors` reads off real
frames in the real-env twin. Frames are drawn by :func:`world_models.objects.pong_objects.render`.

With ``move_classes`` (``LearnedPongObjects-v1``) each seen object's move is instead a choice among
its most common real moves (plus a regressed correction), trained by cross-entropy and drawn in
imagination, the ball's after the paddles' with ``joint_moves``: a ball is hit or missed at a real
speed, where a regressed move is the average of both.

Training targets come from the RAM (:func:`ram_vectors`; the frame detector agrees with them to
about 0.2 px on real frames), so training reads no frames at all; ``start`` reads the objects off
the context frames with the detector, as the twin does. Training is open loop: after the real
context the model's own predictions are fed back, as they are in the learned env.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dataset_tools.atari import game_spec
from dataset_tools.dataset import DatasetDir
from dataset_tools.preprocess import Preprocess, preprocess_for
from dataset_tools.sequences import SequenceBatch
from world_models.base import ModelConfig, State, StepResult, WorldModel, register, reward_classes, reward_from_logits
from world_models.blocks import mlp
from world_models.objects.moves import (  # object_moves: re-exported for its users
    draw_from_head,
    draw_presence,
    move_vocabulary,
    nearest_move,
    object_moves,  # noqa: F401
    raw_centres,
)
from world_models.objects.pong_objects import ENEMY_X, OBJECTS, PLAYER_X, frame_vectors, ram_vectors, render

N_OBJ = len(OBJECTS)
DECISION_PX = 16.0
"""Half-width (raw pixels) of the band around each paddle's column where ``decision_weight`` applies."""
PIXELS = (80.0, 105.0)
"""Raw pixels per normalised unit along x and y (for losses and logs in pixels)."""


def near_a_paddle(ball: torch.Tensor) -> torch.Tensor:
    """1 where the ball ``[present, x, y]`` (..., 3) is seen within :data:`DECISION_PX` of a paddle's column, else 0."""
    x = (ball[..., 1] + 1.0) * PIXELS[0]  # raw pixels
    near = torch.stack([(x - (lo + hi) / 2).abs() < DECISION_PX for lo, hi in (PLAYER_X, ENEMY_X)]).any(0)
    return (near & (ball[..., 0] > 0)).to(ball.dtype)


@dataclass
class ObjectDynamicsConfig(ModelConfig):
    n_past: int = 4
    """Object frames in the state window (>= 2, so velocities can be read)."""
    n_future: int = 8
    """Steps predicted open loop per training sequence."""
    hidden: int = 256
    """Width of the MLP."""
    layers: int = 3
    """Hidden layers of the MLP."""
    move_scale: float = 0.1
    """Predicted moves are ``tanh``-free outputs times this (normalised units per step)."""
    position_weight: float = 0.1
    """Weight of the position loss (smooth L1 in raw pixels, over objects present in the target)."""
    presence_weight: float = 1.0
    """Weight of the presence binary cross-entropy."""
    sample_presence: bool = True
    """In imagination, draw each object's presence from its predicted probability (a served ball
    appears after a random wait, as in the game); False thresholds it at 0.5."""
    modes: int = 1
    """Alternative next states predicted per object (winner-takes-all: each training sample trains
    the mode closest to the truth, a classifier learns which one wins, imagination draws one). With
    one mode, a ball that may be hit or missed is predicted as the average: it slows down and turns
    back without a paddle; with two, it is hit or it is missed."""
    event_weight: float = 10.0
    """Extra weight of the ball's loss on steps where it turns (a bounce off a paddle or a wall),
    appears or vanishes (a point): rare steps that decide whether the dream plays by Pong's rules."""
    bounce: bool = False
    """A classifier of the ball turning (x: a paddle, y: a wall), sampled in imagination, so that a
    ball that may be hit or missed is hit or missed, never the average of both (experimental: in a
    first trial its dream gave worse agents than without; with paddle noise and ``contact`` its
    one-step turns are close to the real rates, but in long dreams the ball slows down and stalls
    near the paddle, and the agent scored -21)."""
    flip_weight: float = 1.0
    """Weight of the bounce classifier's binary cross-entropy (with ``bounce``)."""
    open_loop: bool = False
    """Feed the model's own predictions back during training (as in imagination); False (the
    default) feeds the true objects back: every step is a one-step prediction. Open-loop training
    made the model hedge more between a hit and a miss (worse long rollouts in our trials)."""
    wta_relax: float = 0.05
    """Share of the loss spread over the losing modes, so that no mode is left untrained."""
    noise_px: float = 0.0
    """Teacher forcing with noise on the paddles: each training window's paddles are shifted by a
    random offset (this standard deviation, raw pixels, one per paddle and window) while the targets
    stay true, so the model learns to pull a displaced paddle back to its column. The ball is left
    exact: noise on it blurs whether it meets the paddle, and the model then hedges between a hit and
    a miss more (measured with benchmarks/dream_fidelity.py)."""
    jitter_px: float = 0.0
    """Independent per-frame noise on the paddles (raw pixels, standard deviation): the paddles then
    show sideways moves in training that the targets do not continue. This is what stops the drift
    of long dreams (a paddle never moves sideways in the data, so without it the model keeps any
    small sideways move it makes: 73% of dream steps had the player >3 px off its column, 1% with
    ``noise_px=2 jitter_px=1``). A more faithful paddle did not give a better agent, though: PPO
    trained in that dream scored -18.0 on real Pong against -13.1 for the shipped model (seed 0,
    10 episodes, the same 4M dream steps; BENCHMARKS.md)."""
    contact: bool = False
    """Give the MLP, per paddle, when the ball reaches the paddle's column at its current velocity
    (in steps, capped at ``contact_horizon``) and how far (y) from the paddle it would be then:
    the two numbers that decide a hit or a miss, which the MLP otherwise has to compose itself from
    positions and moves (it learned it only blurrily: the ball turned early or without the paddle).
    Measured: it did not sharpen the one-step turns, and its dream gave a worse agent (-19.7 with
    the paddle noise, seed 0, against -18.0 without it)."""
    contact_horizon: float = 8.0
    """Cap of the time-to-contact feature, in steps."""
    move_classes: int = 0
    """If > 0: each object's move between two frames where it is seen is a choice among this many
    moves (the most common moves of that object in the data, in raw pixels) plus a small regressed
    correction per choice (e.g. a ball stopped short by a wall), instead of a regressed move. Trained
    by cross-entropy and drawn in imagination, a ball that may be hit or missed is hit or missed at a
    real speed: regression predicts the average of both, which slows the ball down and turns it
    without a paddle. Objects that appear are placed by regression as before. Needs ``modes=1``."""
    move_vocab: list[list[list[float]]] = field(default_factory=list)
    """The moves to choose from (with ``move_classes``): per object, ``move_classes`` pairs
    ``[dx, dy]`` in raw pixels, most common first. Filled by ``learned-envs train`` from the RAM of
    every episode of the dataset (a count of moves, nothing learned); kept in the checkpoint."""
    decision_weight: float = 0.0
    """Extra weight of the ball's loss on steps that start with the ball within ``DECISION_PX`` of a
    paddle's column, whether it is then hit or missed. ``event_weight`` weighs only the turns, so a
    move classifier learns to turn the ball too often where a hit is uncertain; this weighs both
    outcomes alike (use it with ``event_weight=0`` and ``move_classes``). Measured against the shipped
    LearnedPongObjects-v1 (``event_weight=10``): one-step turn rates a little closer to the game's,
    random-action returns 4.2 per 1,000 steps (v1 5.0, the game 2.1), but more points lost (30.7
    against 23.2), and agents no better: -9.7 over 3 seeds against v1's -7.8 (BENCHMARKS.md)."""
    joint_moves: bool = False
    """With ``move_classes``: draw the paddles' moves first, then the ball's given where the paddles
    went (its head reads their moves and the ball's offset from the moved paddles). Drawn
    independently, a ball can bounce off a paddle that the same step moved away."""
    move_weight: float = 1.0
    """Weight of the move choice's cross-entropy (with ``move_classes``)."""
    move_temperature: float = 1.0
    """Temperature of the move choice in imagination (1: as learned; below 1: more often the likeliest)."""


@register
class ObjectDynamics(WorldModel):
    name = "object_dynamics"
    Config = ObjectDynamicsConfig
    stochastic = True
    deterministic_start = True
    default_obs = "latent"
    feature_bound = 1.0  # positions in [-1, 1], presence in {0, 1}
    needs_frames: ClassVar[bool] = False
    imagination_settings: ClassVar[tuple[str, ...]] = ("move_temperature", "sample_presence")

    def __init__(self, cfg: ObjectDynamicsConfig, frame_shape: tuple[int, int, int], n_actions: int) -> None:
        super().__init__(cfg, frame_shape, n_actions)
        if cfg.n_past < 2:
            raise ValueError(f"object_dynamics needs n_past >= 2 to read velocities, got {cfg.n_past}")
        self.cfg: ObjectDynamicsConfig = cfg
        k = cfg.n_past
        # window, moves, ball relative to both paddles, actions (+ the new one)
        n_in = k * N_OBJ * 3 + (k - 1) * N_OBJ * 2 + k * 2 * 2 + k * n_actions + (6 if cfg.contact else 0)
        self.trunk = mlp(n_in, cfg.hidden, cfg.layers)
        if cfg.modes < 1:
            raise ValueError(f"modes must be >= 1, got {cfg.modes}")
        # per mode: presence logit, dx, dy per object; then per object one logit per mode
        self.objects_head = nn.Linear(cfg.hidden, cfg.modes * N_OBJ * 3 + N_OBJ * cfg.modes)
        # does the ball turn (x: a paddle, y: a wall or the paddle's edge)? sampled in imagination, so a
        # ball that may be hit or missed is hit or missed, never the average of both
        self.flip_head = nn.Linear(cfg.hidden, 2) if cfg.bounce else None  # the ball turns in x, in y
        self.move_head: nn.Linear | None = None
        if cfg.move_classes > 0:
            if cfg.modes != 1 or cfg.bounce:
                raise ValueError("move_classes needs modes=1 and bounce=false (the move choice replaces both)")
            vocab = torch.tensor(cfg.move_vocab, dtype=torch.float32)
            if vocab.shape != (N_OBJ, cfg.move_classes, 2):
                raise ValueError(
                    f"move_vocab must hold {cfg.move_classes} [dx, dy] moves per object ({N_OBJ} objects), "
                    f"got shape {tuple(vocab.shape)}: `learned-envs train` fills it from the data "
                    "(ObjectDynamics.prepare_data)"
                )
            self.register_buffer("vocab", vocab)  # (3, K, 2) raw pixels
            # per object and move: a logit and a correction (dx, dy) in raw pixels; with joint_moves the
            # ball's come from a second head that also reads where the paddles went
            n_first = N_OBJ - 1 if cfg.joint_moves else N_OBJ
            self.move_head = nn.Linear(cfg.hidden, n_first * cfg.move_classes * 3)
        if cfg.joint_moves and cfg.move_classes <= 0:
            raise ValueError("joint_moves needs move_classes > 0")
        self.ball_move_head = mlp(cfg.hidden + 8, cfg.hidden, 1, out=cfg.move_classes * 3) if cfg.joint_moves else None
        # reward and termination read the trunk and the predicted next objects (a point is the ball leaving)
        self.reward_head = mlp(cfg.hidden + N_OBJ * 3, 128, 1, out=3)
        self.term_head = mlp(cfg.hidden + N_OBJ * 3, 128, 1, out=1)
        # (top, bottom, left, right) crop of the frames the detector and renderer work on; set by bind_data
        self.register_buffer("crop", torch.tensor([34.0, 194.0, 0.0, 160.0]))

    @classmethod
    def prepare_data(cls, cfg: ObjectDynamicsConfig, data: Path, progress: bool = True) -> None:  # type: ignore[override]
        """With ``move_classes``: fill ``cfg.move_vocab`` with each object's most common moves in ``data``."""
        if cfg.move_classes <= 0 or cfg.move_vocab:
            return
        ds = DatasetDir(data)
        if not game_spec(ds.read_manifest().get("game")).paddle_rally:
            raise ValueError("object_dynamics reads Pong's objects; this dataset holds another game")
        cfg.move_vocab = move_vocabulary(
            [ram_vectors(np.asarray(ds.load(ep).ram)) for ep in ds.episode_indices()], cfg.move_classes
        )

    def bind_data(self, game: str | None, preprocess: Preprocess) -> None:
        if not game_spec(game).paddle_rally:
            raise ValueError(f"object_dynamics reads Pong's objects; this dataset holds {game}")
        crop = preprocess.crop if preprocess.crop is not None else (0, 210, 0, 160)
        self.crop.copy_(torch.tensor([float(v) for v in crop]))
        if tuple(preprocess.shape) != (self.frame_shape[1], self.frame_shape[2], self.frame_shape[0]):
            raise ValueError(
                f"preprocessing makes {preprocess.shape} frames, the model was built for {self.frame_shape}"
            )

    def _preprocess(self) -> Preprocess:
        return preprocess_for(self.crop.tolist(), self.frame_shape)

    # ------------------------------------------------------------------ the network
    def _predict(
        self, window: torch.Tensor, past_actions: torch.Tensor, action: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """``window`` (B, K, 3, 3), ``past_actions`` (B, K-1), ``action`` (B,) -> the trunk's hidden
        state (B, hidden), presence logits (B, M, 3), next positions before the last move (B, M, 3, 2),
        the last move (B, 3, 2), mode logits (B, 3, M) and the ball's flip logits (B, 2)."""
        b, m = window.shape[0], self.cfg.modes
        diffs = window[:, 1:, :, 1:] - window[:, :-1, :, 1:]  # (B, K-1, 3, 2) moves between frames
        # where the ball is relative to each paddle decides a bounce: (B, K, 2 paddles, 2), 0 unless both are seen
        seen = window[:, :, 2:3, 0:1] * window[:, :, :2, 0:1]  # (B, K, 2, 1)
        relative = (window[:, :, 2:3, 1:] - window[:, :, :2, 1:]) * seen
        acts = F.one_hot(torch.cat([past_actions, action[:, None]], dim=1), self.n_actions).to(window.dtype)
        parts = [window.flatten(1), diffs.flatten(1) / self.cfg.move_scale, relative.flatten(1) * 4.0, acts.flatten(1)]
        if self.cfg.contact:
            parts.append(self._contact(window, diffs))
        x = torch.cat(parts, dim=1)
        hidden = self.trunk(x)
        head = self.objects_head(hidden)
        out = head[:, : m * N_OBJ * 3].view(b, m, N_OBJ, 3)  # (B, M*9) -> (B, M, 3, [logit, dx, dy])
        # objects keep their last move unless the network changes it (absent objects sit at 0)
        last = window[:, -1, :, 1:]  # (B, 3, 2)
        last_move = diffs[:, -1] * (window[:, -1, :, :1] * window[:, -2, :, :1])  # moves of objects seen twice
        positions = last[:, None] + out[..., 1:] * self.cfg.move_scale
        mode_logits = head[:, m * N_OBJ * 3 :].view(b, N_OBJ, m)
        flip_logits = self.flip_head(hidden) if self.flip_head is not None else None
        return hidden, out[..., 0], positions, last_move, mode_logits, flip_logits

    def _contact(self, window: torch.Tensor, diffs: torch.Tensor) -> torch.Tensor:
        """Per paddle: [ball approaching, steps until the ball reaches its column / horizon, the ball's
        y relative to the paddle then * 4] from the last frame and move (B, 6); zeros unless the ball
        and the paddle are seen and the ball was seen twice."""
        horizon = self.cfg.contact_horizon
        ball, paddles = window[:, -1, 2], window[:, -1, :2]  # (B, 3), (B, 2, 3)
        vx, vy = diffs[:, -1, 2, 0:1], diffs[:, -1, 2, 1:2]  # (B, 1) each
        gap = paddles[..., 1] - ball[:, 1:2]  # (B, 2) x distance from the ball to each paddle's column
        approaching = (gap * vx > 0).to(window.dtype)
        steps = torch.where(approaching > 0, gap / torch.where(vx == 0, torch.ones_like(vx), vx), horizon)
        steps = steps.clamp(0.0, horizon)
        miss = (ball[:, 2:3] + vy * steps - paddles[..., 2]).clamp(-1.0, 1.0)  # (B, 2)
        seen = ball[:, :1] * window[:, -2, 2, :1] * paddles[..., 0]  # (B, 2)
        return torch.cat([approaching * seen, steps / horizon * seen, miss * 4.0 * seen], dim=1)

    @staticmethod
    def _move(positions: torch.Tensor, last_move: torch.Tensor, flip: torch.Tensor | None) -> torch.Tensor:
        """Add the last move, the ball's turned where ``flip`` (B, 2) is 1: (B, M, 3, 2) -> (B, M, 3, 2)."""
        if flip is None:
            return positions + last_move[:, None]
        sign = torch.ones_like(last_move)
        sign[:, 2] = 1.0 - 2.0 * flip
        return positions + (last_move * sign)[:, None]

    def _choices(
        self, hidden: torch.Tensor, window: torch.Tensor, paddle_moves: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """With ``move_classes``: move logits (B, n, K) and per-move corrections (B, n, K, 2) in raw
        pixels, from the trunk's hidden state (B, hidden): of all 3 objects, or with ``joint_moves`` of
        the paddles alone unless their moves ``paddle_moves`` (B, 2, 2) (raw pixels) are given."""
        assert self.move_head is not None
        out = self.move_head(hidden).view(hidden.shape[0], -1, self.cfg.move_classes, 3)
        if self.ball_move_head is not None and paddle_moves is not None:
            out = torch.cat([out, self._ball_choices(hidden, window, paddle_moves)], dim=1)
        return out[..., 0], out[..., 1:]

    def _ball_choices(self, hidden: torch.Tensor, window: torch.Tensor, paddle_moves: torch.Tensor) -> torch.Tensor:
        """With ``joint_moves``: the ball's [logit, dx, dy] per move (B, 1, K, 3) given the paddles' moves
        ``paddle_moves`` (B, 2, 2) in raw pixels."""
        assert self.ball_move_head is not None
        out = self.ball_move_head(self._ball_input(hidden, window, paddle_moves))
        return out.view(hidden.shape[0], 1, -1, 3)

    def _ball_input(self, hidden: torch.Tensor, window: torch.Tensor, paddle_moves: torch.Tensor) -> torch.Tensor:
        """What the ball's move head reads: the trunk's ``hidden`` state, the paddles' moves (B, 2, 2) in raw
        pixels and the ball's offset from the moved paddles."""
        pixels = torch.tensor(PIXELS, device=hidden.device, dtype=hidden.dtype)
        last = window[:, -1]  # (B, 3, 3)
        moved = last[:, :2, 1:] + paddle_moves / pixels  # (B, 2, 2) where the paddles went
        offset = (last[:, 2:3, 1:] - moved) * 4.0 * last[:, 2:3, :1] * last[:, :2, :1]  # 0 unless both seen
        extra = torch.cat([paddle_moves.flatten(1) / 8.0, offset.flatten(1)], dim=1).to(hidden.dtype)
        return torch.cat([hidden, extra], dim=1)

    def _move_of(self, choice: torch.Tensor, correction: torch.Tensor, objects: slice) -> torch.Tensor:
        """The chosen moves (B, n, 2) in raw pixels of ``objects``: ``choice`` (B, n), ``correction`` (B, n, K, 2)."""
        index = choice[..., None, None].expand(-1, -1, 1, 2)  # (B, n, 1, 2)
        vocab = self.vocab[objects].to(correction.dtype).expand(choice.shape[0], -1, -1, -1)  # (B, n, K, 2)
        return (vocab.gather(2, index) + correction.gather(2, index)).squeeze(2)

    def _draw_moves(
        self, hidden: torch.Tensor, window: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Imagination: each object's drawn move (B, 3, 2) in raw pixels, its correction included; with
        ``joint_moves`` the paddles' first, then the ball's given theirs. Only the logits and the drawn moves'
        corrections are computed (:func:`draw_from_head`)."""
        assert self.move_head is not None
        k, temperature = self.cfg.move_classes, self.cfg.move_temperature
        n_first = N_OBJ - 1 if self.ball_move_head is not None else N_OBJ
        choice, correction = draw_from_head(self.move_head, hidden, n_first, k, temperature, generator)
        rows = torch.arange(N_OBJ, device=hidden.device)[None, :]
        move = self.vocab[rows[:, :n_first], choice].to(correction.dtype) + correction  # (B, n_first, 2)
        if self.ball_move_head is None:
            return move
        paddle_moves = move * window[:, -1, :2, :1]  # seen paddles only
        x = self.ball_move_head[:-1](self._ball_input(hidden, window, paddle_moves))
        last = self.ball_move_head[-1]
        assert isinstance(last, nn.Linear)
        ball, ball_correction = draw_from_head(last, x, 1, k, temperature, generator)
        ball_move = self.vocab[2:3][rows[:, :1], ball].to(correction.dtype) + ball_correction  # (B, 1, 2)
        return torch.cat([move, ball_move], dim=1)

    def _chosen(
        self, window: torch.Tensor, regressed: torch.Tensor, choice: torch.Tensor, correction: torch.Tensor
    ) -> torch.Tensor:
        """Next positions (B, 3, 2): objects seen in the last frame of ``window`` (B, K, 3, 3) make
        their chosen move ``choice`` (B, 3) plus its correction (B, 3, K, 2); the others (appearing
        objects) take the ``regressed`` positions (B, 3, 2)."""
        return self._placed(window, regressed, self._move_of(choice, correction, slice(0, N_OBJ)))

    def _placed(self, window: torch.Tensor, regressed: torch.Tensor, move: torch.Tensor) -> torch.Tensor:
        """Next positions (B, 3, 2): objects seen in the last frame of ``window`` make their ``move`` (B, 3, 2)
        in raw pixels; the others (appearing objects) take the ``regressed`` positions (B, 3, 2)."""
        pixels = torch.tensor(PIXELS, device=window.device, dtype=move.dtype)
        moved = window[:, -1, :, 1:] + move / pixels
        return torch.where(window[:, -1, :, :1] > 0, moved, regressed)

    @staticmethod
    def _pick(logits: torch.Tensor, positions: torch.Tensor, mode: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each object's chosen mode ``mode`` (B, 3): (B, M, 3), (B, M, 3, 2) -> (B, 3), (B, 3, 2)."""
        chosen = logits.gather(1, mode[:, None]).squeeze(1)  # (B, M, 3) -> (B, 3)
        index = mode[:, None, :, None].expand(-1, 1, -1, 2)  # (B, 1, 3, 2)
        return chosen, positions.gather(1, index).squeeze(1)

    def _heads(
        self, hidden: torch.Tensor, presence: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reward logits (B, 3) and termination logit (B,) of the chosen next state: presence
        probabilities (B, 3) and positions (B, 3, 2) (a point is the ball leaving the field)."""
        summary = torch.cat([hidden, presence, positions.flatten(1)], dim=1)
        return self.reward_head(summary), self.term_head(summary).squeeze(-1)

    # ------------------------------------------------------------------ imagination
    def start(self, frames: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None) -> State:
        b, k = frames.shape[:2]
        vectors = frame_vectors(frames.flatten(0, 1), self._preprocess())  # (B*K, C, H, W) -> (B*K, 3, 3)
        window = torch.from_numpy(vectors).to(frames.device).view(b, k, N_OBJ, 3)
        return {"window": window, "actions": actions.to(torch.int64)}

    def step(self, state: State, actions: torch.Tensor, generator: torch.Generator | None = None) -> StepResult:
        window, past = state["window"], state["actions"]
        hidden, logits, positions, last_move, mode_logits, flip_logits = self._predict(window, past, actions)
        b = window.shape[0]
        if self.move_head is not None:
            move = self._draw_moves(hidden, window, generator)
            logits, positions = logits[:, 0], self._placed(window, positions[:, 0], move)
        else:
            flip = None
            if flip_logits is not None:
                drawn = torch.rand(flip_logits.shape, device=window.device, generator=generator)
                flip = (drawn < torch.sigmoid(flip_logits)).to(window.dtype)
            positions = self._move(positions, last_move, flip)
            if self.cfg.modes > 1:
                probs = torch.softmax(mode_logits.float(), dim=-1).flatten(0, 1)  # (B, 3, M) -> (B*3, M)
                mode = torch.multinomial(probs, 1, generator=generator).view(b, N_OBJ)
            else:
                mode = torch.zeros(b, N_OBJ, dtype=torch.long, device=window.device)
            logits, positions = self._pick(logits, positions, mode)
        prob = torch.sigmoid(logits)
        r_logits, t_logit = self._heads(hidden, prob, positions)
        present = draw_presence(prob, self.cfg.sample_presence, generator).to(window.dtype)
        positions = positions.clamp(-1.0, 1.0) * present[..., None]  # absent objects sit at 0, as the detector says
        new = torch.cat([present[..., None], positions], dim=-1)  # (B, 3, 3)
        window = torch.cat([window[:, 1:], new[:, None]], dim=1)  # drop the oldest frame
        past = torch.cat([past[:, 1:], actions[:, None].to(past.dtype)], dim=1)
        reward = reward_from_logits(r_logits)
        return StepResult({"window": window, "actions": past}, reward, torch.sigmoid(t_logit))

    def decode(self, state: State) -> torch.Tensor:
        return render(state["window"][:, -1], self._preprocess())

    def features(self, state: State) -> torch.Tensor:
        return state["window"].flatten(1)  # (B, K, 3, 3) -> (B, K*9)

    def object_centres(self, state: State) -> torch.Tensor:
        """The current objects' ``[present, x, y]`` (B, O, 3), centres in raw-frame pixels (for scoring)."""
        return raw_centres(state["window"][:, -1])

    @property
    def feature_dim(self) -> int:
        return self.cfg.n_past * N_OBJ * 3

    # ------------------------------------------------------------------ training
    def _noisy(self, window: torch.Tensor) -> torch.Tensor:
        """``window`` (B, K, 3, 3) with the positions of present paddles shifted by ``noise_px`` (one
        offset per paddle) and ``jitter_px`` (per frame), both in raw pixels; the ball is kept."""
        if self.cfg.noise_px <= 0 and self.cfg.jitter_px <= 0:
            return window
        scale = 1.0 / torch.tensor(PIXELS, device=window.device, dtype=window.dtype)  # px -> normalised
        b, k = window.shape[:2]
        offset = torch.randn(b, 1, N_OBJ, 2, device=window.device, dtype=window.dtype) * self.cfg.noise_px
        jitter = torch.randn(b, k, N_OBJ, 2, device=window.device, dtype=window.dtype) * self.cfg.jitter_px
        paddles = torch.tensor([1.0, 1.0, 0.0], device=window.device, dtype=window.dtype)[:, None]  # (3, 1)
        shift = (offset + jitter) * scale * paddles * window[..., :1]  # the ball and absent objects stay
        return torch.cat([window[..., :1], (window[..., 1:] + shift).clamp(-1.0, 1.0)], dim=-1)

    def loss(self, batch: SequenceBatch) -> tuple[torch.Tensor, dict[str, float]]:
        p = self.cfg.n_past
        truth = torch.from_numpy(ram_vectors(batch.ram.cpu().numpy())).to(batch.actions.device)  # (B, T, 3, 3)
        window, past = truth[:, :p], batch.actions[:, : p - 1]
        pixels = torch.tensor(PIXELS, device=truth.device)
        m, relax = self.cfg.modes, (self.cfg.wta_relax if self.cfg.modes > 1 else 0.0)
        ball = truth[:, :, 2]  # (B, T, 3)
        move = ball[:, 1:, 1:] - ball[:, :-1, 1:]  # (B, T-1, 2) ball moves into frames 1..T-1
        # did the ball turn (per axis) between the moves into and out of frame t: (B, T-2, 2), at [:, t-1]
        seen3 = (ball[:, :-2, 0] * ball[:, 1:-1, 0] * ball[:, 2:, 0] > 0)[..., None]
        flips = (move[:, 1:] * move[:, :-1] < 0).to(truth.dtype)
        flip_valid = seen3 & (move[:, :-1] != 0)
        # ball events (turns, appearing, vanishing) on the transitions t -> t+1: (B, T-1)
        event = ball[:, 1:, 0] != ball[:, :-1, 0]
        event[:, 1:] |= (flips > 0).any(-1) & seen3[..., 0]
        object_weight = torch.ones(truth.shape[0], truth.shape[1] - 1, 1, N_OBJ, device=truth.device)  # (B, T-1, 1, 3)
        object_weight[..., 2] += self.cfg.event_weight * event.to(truth.dtype)[..., None]
        object_weight[..., 2] += self.cfg.decision_weight * near_a_paddle(ball[:, :-1])[..., None]
        state_loss, mode_ce, flip_bce, r_logits, t_logits, errors = [], [], [], [], [], []
        move_ce: list[torch.Tensor] = []
        move_hits: list[torch.Tensor] = []
        move_counts: list[torch.Tensor] = []
        for t in range(p - 1, truth.shape[1] - 1):
            action = batch.actions[:, t]
            seen = self._noisy(window) if self.training else window
            hidden, logits, positions, last_move, mode_logits, flip_logits = self._predict(seen, past, action)
            target = truth[:, t + 1, None]  # (B, 1, 3, 3) against every mode (B, M, ...)
            guess = None
            if self.move_head is not None:  # the true move's nearest choice (teacher forcing), and the likeliest
                last = window[:, -1]  # (B, 3, 3) the frame the move starts from (true, noise-free)
                both = ((last[..., 0] > 0) & (target[:, 0, :, 0] > 0)).to(truth.dtype)  # (B, 3) a move to learn
                true_move = (target[:, 0, :, 1:] - last[..., 1:]) * pixels  # (B, 3, 2) raw pixels
                # the ball's choice given the paddles' true moves (teacher forcing), with joint_moves
                move_logits, correction = self._choices(hidden, window, true_move[:, :2] * both[:, :2, None])
                choice = nearest_move(self.vocab, true_move)  # (B, 3)
                ce = F.cross_entropy(move_logits.flatten(0, 1), choice.flatten(), reduction="none").view_as(choice)
                move_ce.append((ce * both * object_weight[:, t, 0]).sum(-1))
                likeliest = move_logits.detach().argmax(-1)
                move_hits.append(((likeliest == choice).to(truth.dtype) * both).sum(0))
                move_counts.append(both.sum(0))
                guess = self._chosen(window, positions[:, 0].detach(), likeliest, correction.detach())
                positions = self._chosen(window, positions[:, 0], choice, correction)[:, None]
            else:
                flip = None
                if flip_logits is not None:
                    true_flip, valid = flips[:, t - 1], flip_valid[:, t - 1].to(truth.dtype)  # (B, 2)
                    bce = F.binary_cross_entropy_with_logits(flip_logits, true_flip, reduction="none")
                    flip_bce.append((bce * valid).sum(-1))
                    flip = true_flip * valid  # the true turn (teacher forcing)
                positions = self._move(positions, last_move, flip)
            present = target[..., 0]
            presence = F.binary_cross_entropy_with_logits(logits, present.expand_as(logits), reduction="none")
            err = (positions - target[..., 1:]) * pixels  # (B, M, 3, 2) in raw pixels
            position = F.smooth_l1_loss(err, torch.zeros_like(err), reduction="none").sum(-1) * present
            per_mode = self.cfg.presence_weight * presence + self.cfg.position_weight * position  # (B, M, 3)
            per_mode = per_mode * object_weight[:, t]
            best = per_mode.detach().argmin(dim=1)  # (B, 3) per object, the mode closest to the truth wins
            won = F.one_hot(best, m).transpose(1, 2).to(per_mode.dtype)  # (B, 3, M) -> (B, M, 3)
            weights = won * (1 - relax) + (1 - won) * relax / max(m - 1, 1)
            state_loss.append((per_mode * weights).sum(dim=(1, 2)))
            if m > 1:
                mode_ce.append(F.cross_entropy(mode_logits.flatten(0, 1), best.flatten(), reduction="none"))
            logits, positions = self._pick(logits, positions, best)
            logged = positions.detach() if guess is None else guess
            errors.append((logged - target[:, 0, :, 1:]).mul(pixels).norm(dim=-1) * present[:, 0])
            prob = torch.sigmoid(logits)
            r_logit, t_logit = self._heads(hidden, prob, positions)
            r_logits.append(r_logit)
            t_logits.append(t_logit)
            # feed the winning prediction back, softly, as imagination does (or the truth: teacher forcing)
            new = (
                torch.cat([prob[..., None], positions * prob[..., None]], dim=-1)
                if self.cfg.open_loop
                else target[:, 0]
            )
            window = torch.cat([window[:, 1:], new[:, None]], dim=1)
            past = torch.cat([past[:, 1:], action[:, None]], dim=1)
        present_all = truth[:, p:, :, 0]  # (B, F, 3)
        states = torch.stack(state_loss, 1).mean()
        modes = torch.stack(mode_ce, 1).mean() if mode_ce else torch.zeros((), device=truth.device)
        flip = torch.stack(flip_bce, 1).mean() if flip_bce else torch.zeros((), device=truth.device)
        moves = torch.stack(move_ce, 1).mean() if move_ce else torch.zeros((), device=truth.device)
        r_logits_t, t_logits_t = torch.stack(r_logits, 1), torch.stack(t_logits, 1)  # (B, F, 3), (B, F)
        rewards, terminated = batch.rewards[:, p - 1 :], batch.terminated[:, p - 1 :]
        reward_ce = F.cross_entropy(r_logits_t.reshape(-1, 3), reward_classes(rewards).reshape(-1))
        term_bce = F.binary_cross_entropy_with_logits(t_logits_t, terminated)
        loss = (
            states
            + modes
            + self.cfg.flip_weight * flip
            + self.cfg.move_weight * moves
            + self.cfg.reward_weight * reward_ce
            + self.cfg.termination_weight * term_bce
        )
        with torch.no_grad():
            err = torch.stack(errors, 1)  # (B, F, 3)
            per_obj = err.sum(dim=(0, 1)) / present_all.sum(dim=(0, 1)).clamp(min=1.0)
            points = rewards != 0
            hit = (r_logits_t.argmax(-1) - 1).float() == torch.sign(rewards)
            logs = {
                "state": states.item(),
                "mode_ce": modes.item(),
                "flip_bce": flip.item(),
                "move_ce": moves.item(),
                "reward_ce": reward_ce.item(),
                "term_bce": term_bce.item(),
                "reward_acc": hit.float().mean().item(),
                "point_recall": hit[points].float().mean().item() if points.any() else float("nan"),
                **{f"{name}_px": per_obj[i].item() for i, name in enumerate(OBJECTS)},
                "ball_px_step1": (err[:, 0, 2].sum() / present_all[:, 0, 2].sum().clamp(min=1.0)).item(),
            }
            if move_hits:  # share of moves whose likeliest choice is the true one, per object
                acc = torch.stack(move_hits).sum(0) / torch.stack(move_counts).sum(0).clamp(min=1.0)
                logs |= {f"{name}_move_acc": acc[i].item() for i, name in enumerate(OBJECTS)}
        return loss, logs
