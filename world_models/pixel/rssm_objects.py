"""The object state of ``rssm`` with ``object_state`` (Pong): the ball and paddles as numbers, stepped by drawn moves.

Measured on ``LearnedPong-v5``, the pixel dream's failure is in one place: the GRU's ball drifts ~2 px a step off
the real one, so at the paddle its hit or miss is a coin flip. Learning kinematics from ~20k CPU updates is
what the GRU fails at; the object models (``LearnedPong-v2``) do not, because their state holds the ball's place
and speed as numbers and their dynamics draw a move. This module gives ``rssm`` that state beside ``h`` and
``z``, the idea of keypoint world models (Minderer et al. 2019, Struct-VRNN) with the keypoints read by the
project's frame detector (:func:`~world_models.objects.pong_objects.find_objects`, frames only, no labels):

* the state holds, for the last two frames, each object's ``[found, x, y]`` (player, enemy, ball; the field
  spans [-1, 1]); the GRU and the prior read it, so ``h`` and ``z`` keep what the numbers do not say, and the
  reward head reads it alone (a point is the ball leaving the field);
* a dream step draws each object's presence, then the paddles' vertical moves, then the ball's move given
  where the paddles went (as ``slot_dynamics``' tiers), from fixed grids of 1-raw-pixel moves; an object that
  appears is placed by regression, a ball past the field's left or right edge is gone (one drawn past the top or
  bottom wall stays at the wall). Moves are trained with two-hot targets
  (DreamerV3's two-hot, here over the neighbouring grid moves), so a drawn move averages to the true one, not to
  the nearest grid move; the heads read the objects in field units and finer (``FINE_GAIN``);
* frames are decoded with each object drawn at its place: its Gaussian heat map, through a learned 5 x 5 conv,
  adds to the decoder's logits, so the drawn ball is where the state says.

Real frames (``start``, the real twin) are read by the detector; a dream never reads a frame. Training fills
the detector's one-frame misses (:func:`fill_gaps`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dataset_tools.preprocess import Preprocess, preprocess_for
from world_models.blocks import norm_mlp
from world_models.objects.moves import draw_choice, draw_presence
from world_models.objects.pong_objects import ENEMY_X

OBJECTS = ("player", "enemy", "ball")
PADDLE_DY = 26
"""Paddle moves: vertical, -26..26 raw pixels a step (the player's reach 24 at frameskip 4)."""
BALL_DX, BALL_DY = 13, 10
"""Ball moves: -13..13 x -10..10 raw pixels a step (the detector's moves reach 12.5 and 9.1 on Pong data)."""
FEATURES = 24
"""Length of :func:`object_features`: 2 frames x 3 objects x [found, x, y], and 3 objects' [dx, dy]."""
SPEED_SCALE = 5.0
"""Moves in the features are scaled by this (a fast ball's 12 px is 0.15 field units: 0.75)."""
SIGMA = ((0.8, 2.5), (0.8, 2.5), (0.5, 0.8))
"""Heat-map widths (x, y) in pixels of a 64-pixel frame per object (a paddle is 1.6 x 6.4 there, a ball 0.8 x 1.6)."""
FINE_GAIN = 20.0
"""The objects' features enter the reward and move heads also times this (places in units of 4 raw pixels).
What they decide turns on a few pixels: a point is the ball 3 px further at the field's edge (0.04 field
units), a wall bounce or a paddle's return the ball a few pixels from the wall or the paddle's end. Reading
field units, the reward head called no point of 11 after 500 updates at 1e-4, and dreamed balls ran on into the
corners; the move heads read both scales (the fine one added after the first runs, at zero weight)."""
BALL_MOVES = ("h", "objects", "relative", "relative_x")
"""What the ball's move is drawn from (``rssm``'s ``ball_moves``): ``h`` and the objects, one hidden layer, one
draw over the 2-D grid; or the objects alone, two hidden layers, the horizontal move drawn first and the vertical
one given it (:class:`ObjectState`); ``relative``: as ``objects``, reading where the ball is from each paddle
instead of where each object is (:func:`relative_features`); ``relative_x``: as ``relative`` and the ball's own x
(how near the field's sides it is, where the detector reads a ball clipped by the side)."""
RELATIVE = 17
"""Length of :func:`relative_features`."""
ENEMY_MOVES = ("h", "objects")
"""What the enemy paddle's vertical move is drawn from (``rssm``'s ``enemy_moves``): with the player's, from ``h``,
the objects and the action (one head); or the objects alone as the enemy sees them (:func:`enemy_features`; two
hidden layers). The game's enemy follows the ball by a rule of what is on the field."""
ENEMY = 10
"""Length of :func:`enemy_features`."""
FINE_CLIP = 5.0
"""``relative_features`` at the fine scale are clipped to this (0.25 field units, 20 raw px either way on Pong):
a ball further from a paddle looks the same to the fine inputs wherever it is."""
PREFIT_BATCH, PREFIT_LR = 256, 3e-4
"""``ball_prefit``'s moves a step and learning rate (Adam)."""
HEAT_GAIN = 10.0
"""The heat maps' peak: their conv starts at zero, and at this gain a few hundred updates of ~1e-4 give it the
logits a sprite needs over the background (at peak 1 it would take thousands)."""


def object_features(window: torch.Tensor) -> torch.Tensor:
    """``window`` (..., 2, 3, 3): the latest and previous frame's ``[found, x, y]`` per object -> (..., 24)."""
    found = window[..., 0:1]
    placed = torch.cat([found, window[..., 1:] * found], -1)  # (..., 2, 3, 3), zero where not found
    both = window[..., 0, :, 0:1] * window[..., 1, :, 0:1]  # (..., 3, 1)
    speed = (window[..., 0, :, 1:] - window[..., 1, :, 1:]) * both * SPEED_SCALE  # (..., 3, 2)
    return torch.cat([placed.flatten(-3), speed.flatten(-2)], -1)


def relative_features(window: torch.Tensor, paddles: torch.Tensor) -> torch.Tensor:
    """The ball as the paddles see it (``ball_moves=relative``), in the manner of interaction networks' pairwise
    relations (Battaglia et al. 2016): ``window`` (..., 2, 3, 3) the state's objects, ``paddles`` (..., 2, 3) the
    paddles' next ``[found, x, y]`` -> (..., 17): whether the ball was found in each frame, its move and height
    (the walls are at fixed heights), and for each paddle whether it is found next, the ball's place from it now
    and next, and the paddle's vertical move. Nothing says where a contact happens, only how the ball and the
    paddle stand, so every place along a paddle's column reads alike."""
    last, before = window[..., 0, :, :], window[..., 1, :, :]
    ball, seen = last[..., 2, 1:], last[..., 2, :1]
    moved = seen * before[..., 2, :1]
    speed = (ball - before[..., 2, 1:]) * moved * SPEED_SCALE
    now = last[..., :2, :]  # (..., 2, 3) the paddles now
    both_now = now[..., :1] * seen[..., None, :]
    both_next = paddles[..., :1] * seen[..., None, :]
    from_now = (ball[..., None, :] - now[..., 1:]) * both_now  # (..., 2, 2)
    from_next = (ball[..., None, :] - paddles[..., 1:]) * both_next
    paddle_move = (paddles[..., 2:] - now[..., 2:]) * paddles[..., :1] * now[..., :1] * SPEED_SCALE  # (..., 2, 1)
    pairs = torch.cat([paddles[..., :1], from_now, from_next, paddle_move], -1)  # (..., 2, 6)
    return torch.cat([seen, moved, speed, ball[..., 1:] * seen, pairs.flatten(-2)], -1)


def enemy_features(window: torch.Tensor) -> torch.Tensor:
    """The field as the enemy's paddle sees it (``enemy_moves=objects``): ``window`` (..., 2, 3, 3) the state's
    objects -> (..., 10): whether the enemy is found now and in both frames, whether the ball is found now and in
    both, the ball's place from the enemy, the ball's move, the enemy's height and its last move."""
    last, before = window[..., 0, :, :], window[..., 1, :, :]
    enemy, ball = last[..., 1, :], last[..., 2, :]
    seen, ball_seen = enemy[..., :1], ball[..., :1]
    kept, moved = seen * before[..., 1, :1], ball_seen * before[..., 2, :1]
    offset = (ball[..., 1:] - enemy[..., 1:]) * seen * ball_seen
    speed = (ball[..., 1:] - before[..., 2, 1:]) * moved * SPEED_SCALE
    step = (enemy[..., 2:] - before[..., 1, 2:]) * kept * SPEED_SCALE
    return torch.cat([seen, kept, ball_seen, moved, offset, speed, enemy[..., 2:] * seen, step], -1)


def serve_steps(window: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The moves (N, 2, 3, 3) -> (N, 3, 3) where a ball is served (absent in the window's last frame, found next)
    and the enemy is found before and after -> (N,) bool. At a Pong serve the game puts the enemy level with the
    served ball: ``pong_mix``'s 511 training serves show it 4.7 raw px below the ball at the median (3.7-6.0 for
    0.90 of them), after a jump of 32 px at the median, 72 at the 90th percentile, past the moves' reach."""
    return (window[:, 0, 2, 0] == 0) & (target[:, 2, 0] > 0) & (window[:, 0, 1, 0] > 0) & (target[:, 1, 0] > 0)


def past_paddles(frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Objects ``frame`` (..., 3, 3) -> whether the ball is past the player's column and past the enemy's (each
    (...) bool, the paddle found): out of play, a point to come."""
    ball_x = frame[..., 2, 1]
    return (ball_x > frame[..., 0, 1]) & (frame[..., 0, 0] > 0), (ball_x < frame[..., 1, 1]) & (frame[..., 1, 0] > 0)


def exit_points(window: torch.Tensor) -> torch.Tensor:
    """``exit_reward``: the points a window (..., 2, 3, 3) shows, as reward signs (...): -1 where the ball, found
    past the player's column in the previous frame, is gone in the latest (the enemy scores), +1 past the enemy's,
    else 0. On held-out real play the game's point lands one step before (49 of 131), at (78) or after (3) the step
    the detector loses the ball."""
    before, now = window[..., 1, :, :], window[..., 0, :, :]
    gone = (before[..., 2, 0] > 0) & (now[..., 2, 0] == 0)
    past_player, past_enemy = past_paddles(before)
    return (gone & past_enemy).to(window.dtype) - (gone & past_player).to(window.dtype)


def pass_points(window: torch.Tensor) -> torch.Tensor:
    """``pass_reward``: the points a window (..., 2, 3, 3) shows, as reward signs (...), at the step the ball,
    found in both frames, first stands past a paddle's column: -1 past the player's (the enemy will score), +1 past
    the enemy's, else 0. In Pong a ball past a paddle is out of play, so the point is decided there; the game
    counts it 2-4 steps later, when the ball has flown to the side (:func:`exit_points` scores it then)."""
    before, now = window[..., 1, :, :], window[..., 0, :, :]
    seen = (before[..., 2, 0] > 0) & (now[..., 2, 0] > 0)
    was_player, was_enemy = past_paddles(before)
    now_player, now_enemy = past_paddles(now)
    return (seen & now_enemy & ~was_enemy).to(window.dtype) - (seen & now_player & ~was_player).to(window.dtype)


SCORE_LINES = (-0.90625, 0.91875)
"""Where Pong counts a point (field units; 7.5 and 153.5 raw px of its 160-px field): a ball the detector finds at
or past the left line (+1, the enemy's side) or the right one (-1) scores at that very step, the game's point
landing on the move out of the first frame that shows it there. Read off the detector's ball x against the step
of the game's point on ``pong_mix``'s 48 training episodes (its 5 held-out ones not used): on the player's side
balls found at 153.12-153.32 px scored a step later (67 of 67), at 153.75-156.25 px at once (859 of 859); on the
enemy's side at 8.75-11.25 px a step later (24 of 26), at 3.75-6.87 px at once. :func:`line_points` on those
episodes: recall 0.962, precision 0.961; with the left line at 8.5 px, where balls at 8.1-8.3 px scored at once
at 9 frames and a step later at 4, 0.958 / 0.957."""


def line_points(frames: torch.Tensor) -> torch.Tensor:
    """``line_reward``: the points of the move out of frame t, from the objects of frames (..., 3, 3, 3) t + 1, t
    and t - 1 (latest first), as reward signs (...): -1 where the ball is found in frame t at or past the right
    :data:`SCORE_LINES` line and was not in frame t - 1 (the enemy scores), +1 at or past the left one; where a
    ball past a paddle's column in frame t never reached its line and is gone in frame t + 1, the point is counted
    at that exit (as :func:`exit_points`). Timed like the game's: on ``pong_mix``'s 131 held-out points, the rule
    on the detector's objects calls 0.947 of them at the exact step with precision 0.932 (:func:`exit_points`
    0.595 / 0.600), because the game counts a slow ball's point while the ball is still in sight."""
    now, ball, before = frames[..., 0, 2, :], frames[..., 1, 2, :], frames[..., 2, 2, :]
    left, right = SCORE_LINES

    def beyond(b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (b[..., 0] > 0) & (b[..., 1] <= left), (b[..., 0] > 0) & (b[..., 1] >= right)

    at_left, at_right = beyond(ball)
    was_left, was_right = beyond(before)
    gone = (ball[..., 0] > 0) & (now[..., 0] == 0) & ~at_left & ~at_right
    past_player, past_enemy = past_paddles(frames[..., 1, :, :])
    plus = (at_left & ~was_left) | (gone & past_enemy)
    minus = (at_right & ~was_right) | (gone & past_player)
    return plus.to(frames.dtype) - minus.to(frames.dtype)


def jittered(objects: torch.Tensor, noise: float, half: torch.Tensor) -> torch.Tensor:
    """``objects`` (..., 3) ``[found, x, y]`` (field units) with each found object's place off by up to ``noise``
    raw px (``half``: raw px a field unit, x and y), uniformly (``ball_noise``, ``enemy_noise``); as is at 0."""
    if noise <= 0:
        return objects
    out = objects.clone()
    out[..., 1:] += (torch.rand_like(out[..., 1:]) * 2 - 1) * noise / half * out[..., :1]
    return out


def shuffled_last_move(window: torch.Tensor, share: float) -> torch.Tensor:
    """``enemy_shuffle``: ``window`` (N, 2, 3, 3) with, in about ``share`` of the rows where the enemy is found in
    both frames, the enemy's earlier place set so that its last move is another such row's (drawn), the latest
    frame unchanged. A head fitted on real moves only, where the enemy seldom moves away from a ball far from it,
    goes on moving away when a dream puts it there; with the last move at times unrelated to the field, the
    ball's place must decide."""
    if share <= 0:
        return window
    kept = torch.nonzero((window[:, 0, 1, 0] > 0) & (window[:, 1, 1, 0] > 0)).squeeze(-1)
    if not len(kept):
        return window
    out = window.clone()
    last_move = window[kept, 0, 1, 2] - window[kept, 1, 1, 2]
    drawn = last_move[torch.randint(0, len(kept), (len(kept),), device=window.device)]
    swap = torch.rand(len(kept), device=window.device) < share
    out[kept, 1, 1, 2] = torch.where(swap, window[kept, 0, 1, 2] - drawn, window[kept, 1, 1, 2])
    return out


def mirrored(objects: torch.Tensor) -> torch.Tensor:
    """Objects (..., 3, 3) as the field mirrored left to right would show them (``ball_mirror``): each x negated
    (zero stays zero where an object is not found) and the player and the enemy swapped."""
    out = objects.clone()
    out[..., 1] = -out[..., 1]
    return out[..., [1, 0, 2], :]


def with_mirrored(
    window: torch.Tensor, actions: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Moves (N, 2, 3, 3), (N,), (N, 3, 3) and the same moves mirrored left to right after them (``ball_mirror``;
    the actions repeated: the ``relative`` head does not read them)."""
    return torch.cat([window, mirrored(window)]), actions.repeat(2), torch.cat([target, mirrored(target)])


def object_windows(found: torch.Tensor) -> torch.Tensor:
    """Detected objects over sequences (B, T, 3, 3) -> each frame's window (B, T, 2, 3, 3): the frame's objects
    and the previous frame's (frame 0's repeated)."""
    return torch.stack([found, torch.cat([found[:, :1], found[:, :-1]], 1)], 2)


def object_triples(found: torch.Tensor) -> torch.Tensor:
    """Detected objects over sequences (B, T, 3, 3) -> each frame with the two before it (B, T, 3, 3, 3), latest
    first (frame 0's repeated before it): what :func:`line_points` reads."""
    windows = object_windows(found)
    return torch.cat([windows, object_windows(windows[:, :, 1])[:, :, 1:]], 2)


def fill_gaps(found: torch.Tensor) -> torch.Tensor:
    """Detected objects over sequences (B, T, 3, 3) with one-frame misses filled: an object found in the frames
    before and after one where it is not is placed halfway between them. The detector misses the ball, blended
    into one or two pixels of a 64 x 64 frame, in ~0.4% of its frames (single frames, where a point's absence
    lasts 15 or more); left in, the model learns that a ball in flight may vanish, and a dream's vanished ball
    comes back at the serve. Training only: a real twin reads one frame at a time and cannot look ahead."""
    if found.shape[1] < 3:
        return found
    seen = found[..., 0] > 0  # (B, T, 3)
    gap = seen[:, :-2] & ~seen[:, 1:-1] & seen[:, 2:]  # (B, T-2, 3)
    between = (found[:, :-2] + found[:, 2:]) / 2  # found = 1 where both are
    middle = torch.where(gap[..., None], between, found[:, 1:-1])
    return torch.cat([found[:, :1], middle, found[:, -1:]], 1)


def drawn_grid_move(values: torch.Tensor, reach: int) -> torch.Tensor:
    """Moves (...) in raw px -> grid indices (...) of -reach..reach, each one of the two neighbours drawn with its
    :func:`two_hot` weight: the move as a dream draws it, one grid move. The ball's vertical move is trained given
    the horizontal one in this form, as a dream gives it (one-hot): given the two-hot weights instead, the head
    read the weights' fraction, which a dream's one-hot never has, and at one-hot inputs it came to call a
    flying ball flat (after a 20,000-step fit, the likeliest vertical move of held-out flying balls was 0 in 0.43
    of them, the true one in 0.15; after 2,000 steps 0.14)."""
    x = values.clamp(-reach, reach) + reach
    below = x.floor().clamp(max=2 * reach - 1)
    return (below + (torch.rand_like(x) < x - below).to(x.dtype)).long()


def two_hot(values: torch.Tensor, low: int, high: int) -> torch.Tensor:
    """Values (...) on the integer grid low..high -> (..., high - low + 1) weights on the two neighbours (clamped)."""
    x = values.clamp(low, high) - low
    below = x.floor().clamp(max=high - low - 1)
    above_w = x - below
    n = high - low + 1
    out = F.one_hot(below.long(), n).to(values.dtype) * (1 - above_w)[..., None]
    return out + F.one_hot(below.long() + 1, n).to(values.dtype) * above_w[..., None]


class ServeOffset(nn.Module):
    """``enemy_serve``: how far below a served ball the game puts the enemy paddle (raw px; ``prefit_enemy`` fits it).
    A module of its own, so that ``init_from`` a checkpoint without it starts it fresh."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("offset", torch.zeros(1))


class ObjectState(nn.Module):
    """The object state's heads: presence, moves and appearing places from ``[h, features, action]``, and the
    heat maps the decoder draws the objects with. Positions are in field units, moves in raw pixels."""

    def __init__(
        self,
        deter: int,
        hidden: int,
        n_actions: int,
        frame_shape: tuple[int, int, int],
        crop: tuple[int, ...],
        contact_weight: float = 0.0,
        ball_moves: str = "h",
        ball_held: bool = False,
        enemy_moves: str = "h",
        enemy_held: bool = False,
        enemy_serve: bool = False,
    ) -> None:
        super().__init__()
        if ball_moves not in BALL_MOVES:
            raise ValueError(f"rssm's ball_moves must be one of {', '.join(BALL_MOVES)}, not {ball_moves!r}")
        if enemy_moves not in ENEMY_MOVES:
            raise ValueError(f"rssm's enemy_moves must be one of {', '.join(ENEMY_MOVES)}, not {enemy_moves!r}")
        self.n_actions = n_actions
        self.contact_weight = contact_weight
        self.ball_moves = ball_moves
        self.ball_held = ball_held  # fitted alone first (ball_prefit), then not trained with the rest
        self.enemy_held = enemy_held  # fitted alone first (enemy_prefit), then not trained with the rest
        self.frame_shape = frame_shape
        self.register_buffer("crop", torch.tensor([float(v) for v in crop]))  # (top, bottom, left, right) raw
        d_in = deter + 2 * FEATURES + n_actions
        n_paddle = 2 * PADDLE_DY + 1
        # per object: found logit, appearing place (x, y); the two paddles' vertical moves
        self.paddle_head = norm_mlp(d_in, hidden, 3 * 3 + 2 * n_paddle)
        # the ball's move given the paddles' next [found, x, y]
        if ball_moves == "h":
            self.ball_head = norm_mlp(d_in + 12, hidden, (2 * BALL_DX + 1) * (2 * BALL_DY + 1))
        else:  # the objects (or the ball from the paddles) at both scales, and the horizontal move when drawn
            n_in = 2 * FEATURES + n_actions + 2 * 6 if ball_moves == "objects" else 2 * RELATIVE
            n_in += 2 if ball_moves == "relative_x" else 0
            n_in += 2 * BALL_DX + 1
            self.ball_net = norm_mlp(n_in, hidden, 2 * BALL_DX + 1 + 2 * BALL_DY + 1, depth=2)
        # the enemy's vertical move from the objects alone (its part of paddle_head unused)
        self.enemy_net = norm_mlp(2 * ENEMY, hidden, n_paddle, depth=2) if enemy_moves == "objects" else None
        self.serve = ServeOffset() if enemy_serve else None
        self.heat = nn.Conv2d(3, frame_shape[0], 5, padding=2)
        nn.init.zeros_(self.heat.weight)
        nn.init.zeros_(self.heat.bias)

    # ------------------------------------------------------------------ units
    def _half(self) -> torch.Tensor:
        """Raw pixels per field unit (x, y)."""
        top, bottom, left, right = self.crop.tolist()
        return self.crop.new_tensor([(right - left) / 2.0, (bottom - top) / 2.0])

    def _centre(self) -> torch.Tensor:
        top, bottom, left, right = self.crop.tolist()
        return self.crop.new_tensor([(left + right) / 2.0, (top + bottom) / 2.0])

    def preprocess(self) -> Preprocess:
        return preprocess_for(self.crop.tolist(), self.frame_shape)

    @torch.no_grad()
    def detect(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames (..., C, H, W) in [0, 1] -> (..., 3, 3) ``[found, x, y]`` per object in field units."""
        from world_models.objects.pong_objects import find_objects

        found = find_objects(frames.detach().reshape(-1, *frames.shape[-3:]).float().cpu(), self.preprocess())
        raw = torch.from_numpy(np.stack([found[k] for k in OBJECTS], 1)).to(frames.device)  # (N, 3, 3)
        place = (raw[..., 1:] - self._centre()) / self._half() * raw[..., :1]
        return torch.cat([raw[..., :1], place], -1).view(*frames.shape[:-3], 3, 3).to(frames.dtype)

    # ------------------------------------------------------------------ the heads
    def _paddle_out(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.paddle_head(x).float()
        found, place = out[..., :3], torch.tanh(out[..., 3:9]).unflatten(-1, (3, 2))
        return found, place, out[..., 9:].unflatten(-1, (2, 2 * PADDLE_DY + 1))

    def _paddle_logits(self, out: torch.Tensor, window: torch.Tensor, grad: bool = True) -> torch.Tensor:
        """The paddles' move logits (..., 2, n): ``paddle_head``'s ``out``, the enemy's from :meth:`_enemy_logits`
        with ``enemy_moves=objects`` (without gradients unless ``grad``)."""
        if self.enemy_net is None:
            return out
        with torch.set_grad_enabled(torch.is_grad_enabled() and grad):
            enemy = self._enemy_logits(window)
        return torch.stack([out[..., 0, :], enemy], -2)

    def _enemy_logits(self, window: torch.Tensor) -> torch.Tensor:
        """``enemy_moves=objects``: the enemy's vertical move logits (..., n) from :func:`enemy_features` of
        ``window`` (..., 2, 3, 3) at both scales (the fine one clipped to ``FINE_CLIP``)."""
        e = enemy_features(window.float())
        return self.enemy_net(
            torch.cat([e, e[..., :4], (e[..., 4:] * FINE_GAIN).clamp(-FINE_CLIP, FINE_CLIP)], -1)
        ).float()

    def _head_input(
        self, h: torch.Tensor, window: torch.Tensor, actions: torch.Tensor, objs: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The heads' inputs: ``[h, features, action]`` and the features at the fine scale (``FINE_GAIN``);
        ``objs``: :func:`object_features` of ``window`` where the caller has them."""
        a = F.one_hot(actions.long(), self.n_actions).to(h.dtype)
        f = (object_features(window) if objs is None else objs).to(h.dtype)
        return torch.cat([h, f, a], -1), f * FINE_GAIN

    def _ball_logits(self, x: torch.Tensor, fine: torch.Tensor, paddles: torch.Tensor) -> torch.Tensor:
        """The ball's move logits given the paddles' next ``[found, x, y]`` (..., 2, 3), at both scales
        (``ball_moves=h``)."""
        p = paddles.flatten(-2).to(x.dtype)
        return self.ball_head(torch.cat([x, p, fine, p * FINE_GAIN], -1)).float()

    def _ball_input(self, window: torch.Tensor, actions: torch.Tensor, paddles: torch.Tensor) -> torch.Tensor:
        """``ball_moves=objects``: the objects' features, the action and the next paddles, at both scales;
        ``relative``: :func:`relative_features` at both scales (the fine one of the paddles' columns clipped to
        ``FINE_CLIP``), no action (it moves the ball only through the player's next place, which is read);
        ``relative_x``: and the ball's x at both scales."""
        if self.ball_moves in ("relative", "relative_x"):
            r = relative_features(window.float(), paddles.float())
            parts = [r, r[..., :5] * FINE_GAIN, (r[..., 5:] * FINE_GAIN).clamp(-FINE_CLIP, FINE_CLIP)]
            if self.ball_moves == "relative_x":
                x = window[..., 0, 2, 1:2].float() * window[..., 0, 2, 0:1].float()
                parts += [x, x * FINE_GAIN]
            return torch.cat(parts, -1)
        f = object_features(window).float()
        p = paddles.flatten(-2).float()
        return torch.cat([f, F.one_hot(actions.long(), self.n_actions).float(), p, f * FINE_GAIN, p * FINE_GAIN], -1)

    def _ball_x(self, inputs: torch.Tensor) -> torch.Tensor:
        """``ball_moves=objects``: the horizontal move's log-probabilities (..., 2 * BALL_DX + 1)."""
        nx = 2 * BALL_DX + 1
        out = self.ball_net(torch.cat([inputs, inputs.new_zeros(*inputs.shape[:-1], nx)], -1)).float()
        return out[..., :nx].log_softmax(-1)

    def _ball_y(self, inputs: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
        """``ball_moves=objects``: the vertical move's log-probabilities given the horizontal one, ``dx``
        (..., 2 * BALL_DX + 1) one-hot on its grid (in training drawn from the true move's two-hot weights,
        :func:`drawn_grid_move`)."""
        out = self.ball_net(torch.cat([inputs, dx.to(inputs.dtype)], -1)).float()
        return out[..., 2 * BALL_DX + 1 :].log_softmax(-1)

    def draw_ball_move(
        self, inputs: torch.Tensor, temperature: float = 0.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``ball_moves`` other than ``h``: the ball's move (..., 2) in raw px from :meth:`_ball_input`'s
        ``inputs``, the horizontal one drawn at ``temperature`` (0: the likeliest), then the vertical one given it."""
        mx = _choose(self._ball_x(inputs), temperature, generator)
        my = _choose(self._ball_y(inputs, F.one_hot(mx, 2 * BALL_DX + 1)), temperature, generator)
        return torch.stack([mx - BALL_DX, my - BALL_DY], -1)

    def step(
        self,
        h: torch.Tensor,
        window: torch.Tensor,
        actions: torch.Tensor,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        sample_presence: bool = True,
        keep_present: bool = False,
        objs: torch.Tensor | None = None,
        exit_edge: float = 0.0,
    ) -> torch.Tensor:
        """One dream step of the objects: ``h`` (B, deter) the new ``h``, ``window`` (B, 2, 3, 3) the state's,
        ``actions`` (B,) the move's -> the new window (B, 2, 3, 3). The moves are drawn at ``temperature`` (0: the
        likeliest), the presences drawn (``sample_presence``) or thresholded at 0.5; with ``keep_present`` the
        objects found in the last frame stay (a ball past a paddle's column while its presence is over 0.5), only
        the absent ones drawn; there, with ``exit_edge`` > 0, a ball past a paddle stays until it has been found at
        ``|x| >= exit_edge`` and leaves at the next step, whatever its presence. ``objs``: :func:`object_features`
        of ``window`` where the caller has them."""
        x, fine = self._head_input(h, window, actions, objs)
        found_logits, appear, paddle_logits = self._paddle_out(torch.cat([x, fine], -1))
        prob = torch.sigmoid(found_logits)
        found = draw_presence(prob, sample_presence, generator)  # (B, 3)
        last = window[:, 0]  # (B, 3, 3)
        if keep_present:  # the ball past a paddle's column, out of play, leaves where its presence (or exit_edge) says
            past_player, past_enemy = past_paddles(last)
            past = past_player | past_enemy
            held = last[:, 2, 1].abs() < exit_edge if exit_edge > 0 else prob[:, 2] > 0.5
            stay = torch.stack([torch.ones_like(past), torch.ones_like(past), ~past | held], -1)
            found = torch.where(last[..., 0] > 0, stay, found)
        found = found.to(window.dtype)
        paddle_logits = self._paddle_logits(paddle_logits, window)
        half = self._half()
        dy = _choose(paddle_logits, temperature, generator).to(window.dtype) - PADDLE_DY  # (B, 2) raw px
        paddles = last[:, :2, 1:] + torch.stack([torch.zeros_like(dy), dy / half[1]], -1)
        if self.serve is not None:  # a ball served: the enemy stands level with it (enemy_serve)
            served = (last[:, 2, 0] == 0) & (found[:, 2] > 0) & (last[:, 1, 0] > 0)
            level = appear[:, 2, 1].to(window.dtype) + self.serve.offset.to(window.dtype) / half[1]
            paddles[:, 1, 1] = torch.where(served, level, paddles[:, 1, 1])
        paddles = torch.where(last[:, :2, :1] > 0, paddles, appear[:, :2].to(window.dtype)).clamp(-1.0, 1.0)
        if self.serve is not None:  # an enemy that appears stands in its column (the game's paddles move up and down)
            column = (sum(ENEMY_X) / 2 - self._centre()[0]) / half[0]
            paddles[:, 1, 0] = torch.where(last[:, 1, 0] > 0, paddles[:, 1, 0], column)
        new_paddles = torch.cat([found[:, :2, None], paddles * found[:, :2, None]], -1)  # (B, 2, 3)
        if self.ball_moves != "h":
            inputs = self._ball_input(window, actions, new_paddles)
            ball_move = self.draw_ball_move(inputs, temperature, generator)
        else:
            move = _choose(self._ball_logits(x, fine, new_paddles), temperature, generator)
            ball_move = torch.stack([move // (2 * BALL_DY + 1) - BALL_DX, move % (2 * BALL_DY + 1) - BALL_DY], -1)
        ball = last[:, 2, 1:] + ball_move.to(window.dtype) / half
        ball = torch.where(last[:, 2, :1] > 0, ball, appear[:, 2].to(window.dtype))
        ball = torch.stack([ball[:, 0], ball[:, 1].clamp(-1.0, 1.0)], -1)  # the walls: it bounces, it stays
        seen = found[:, 2:] * (ball[:, :1].abs() <= 1)  # a ball past the field's left or right edge is not seen
        new_ball = torch.cat([seen, ball * seen], -1)[:, None]  # (B, 1, 3)
        return torch.stack([torch.cat([new_paddles, new_ball], 1), last], 1)

    def loss(
        self, h: torch.Tensor, window: torch.Tensor, actions: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Teacher forced: ``h`` (B, T, deter) the new ``h`` of each move, ``window`` (B, T, 2, 3, 3) the window
        it moved from, ``actions`` (B, T), ``target`` (B, T, 3, 3) the detector's next objects. Presence
        cross-entropy, the moves' two-hot cross-entropy (objects found in both frames; the ball's ``1 +
        contact_weight`` times where it may turn, :meth:`_contact`) and the appearing places' Huber error (objects
        found only in the next). With ``ball_held`` the ball's term is logged, not trained."""
        x, fine = self._head_input(h, window, actions)
        found_logits, appear, paddle_logits = self._paddle_out(torch.cat([x, fine], -1))
        now, last = target, window[..., 0, :, :]  # (B, T, 3, 3)
        seen = now[..., 0]
        found_bce = F.binary_cross_entropy_with_logits(found_logits, seen)
        both = seen * last[..., 0]  # (B, T, 3)
        move = (now[..., 1:] - last[..., 1:]) * self._half()  # raw px
        paddle_target = two_hot(move[..., :2, 1], -PADDLE_DY, PADDLE_DY)  # (B, T, 2, n)
        paddle_logits = self._paddle_logits(paddle_logits, window, not self.enemy_held)
        each_ce = -(paddle_target * paddle_logits.log_softmax(-1)).sum(-1)  # (B, T, 2)
        paddle_ce = (each_ce * both[..., :2]).sum() / both[..., :2].sum().clamp(min=1.0)  # a held enemy's: no grad
        enemy_ce = (each_ce[..., 1] * both[..., 1]).sum() / both[..., 1].sum().clamp(min=1.0)
        if self.ball_moves == "h":
            ball_logits = self._ball_logits(x, fine, now[..., :2, :])  # given the true next paddles
            ball_ce, ball_px = self._ball_ce(ball_logits.log_softmax(-1), window, target)
        else:
            moves = (window.reshape(-1, 2, 3, 3), actions.reshape(-1), target.reshape(-1, 3, 3))
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.ball_held):
                ball_ce, ball_px = self._ball_objects_ce(*moves)
        appears = seen * (1 - last[..., 0])  # (B, T, 3)
        place = F.smooth_l1_loss(appear, now[..., 1:].float(), reduction="none", beta=0.05).sum(-1)
        place = (place * appears).sum() / appears.sum().clamp(min=1.0)
        logs = {
            "object_found_bce": found_bce.item(),
            "paddle_move_ce": paddle_ce.item(),
            "enemy_move_ce": enemy_ce.item(),
            "ball_move_ce": ball_ce.item(),
            "appear_place": place.item(),
            "ball_move_px": ball_px,
        }
        trained = 0.0 if self.ball_held else ball_ce  # a held head's loss is logged, not trained
        return found_bce + paddle_ce + trained + place, logs

    def _ball_ce(
        self, log_probs: torch.Tensor, window: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, float]:
        """The ball's two-hot cross-entropy from its move's ``log_probs`` (..., grid) where it is found in both
        frames, ``1 + contact_weight`` times where it may turn, and the median pixels between the expected and
        the true move (a log)."""
        last, now = window[..., 0, :, :], target
        both = now[..., 2, 0] * last[..., 2, 0]
        move = (now[..., 2, 1:] - last[..., 2, 1:]) * self._half()  # raw px
        tx, ty = two_hot(move[..., 0], -BALL_DX, BALL_DX), two_hot(move[..., 1], -BALL_DY, BALL_DY)
        ce = -((tx[..., :, None] * ty[..., None, :]).flatten(-2) * log_probs).sum(-1)  # bilinear over the grid
        weight = both * (1 + self.contact_weight * self._contact(last))
        with torch.no_grad():
            grid = torch.stack(
                torch.meshgrid(
                    torch.arange(-BALL_DX, BALL_DX + 1.0), torch.arange(-BALL_DY, BALL_DY + 1.0), indexing="ij"
                ),
                -1,
            ).flatten(0, 1)  # (n, 2) raw px
            expected = log_probs.exp() @ grid.to(log_probs.device)
            error = (expected - move).norm(dim=-1)[both > 0]
            ball_px = float(error.median()) if len(error) else float("nan")
        return (ce * weight).sum() / both.sum().clamp(min=1.0), ball_px

    def _ball_objects_ce(
        self, window: torch.Tensor, actions: torch.Tensor, target: torch.Tensor, noise: float = 0.0
    ) -> tuple[torch.Tensor, float]:
        """``ball_moves=objects``: :meth:`_ball_ce` of the horizontal move and of the vertical one given the true
        horizontal one (a grid move drawn from its two-hot weights, :func:`drawn_grid_move`), on moves (N, 2, 3, 3),
        (N,), (N, 3, 3). ``noise`` > 0: every place the head reads (each object in each frame, and the next
        paddles) is off by up to that many raw px, uniformly; the moves it is taught stay the true ones."""
        half = self._half()  # given the true next paddles
        inputs = self._ball_input(jittered(window, noise, half), actions, jittered(target[:, :2], noise, half))
        dx = (target[:, 2, 1] - window[:, 0, 2, 1]) * half[0] * target[:, 2, 0] * window[:, 0, 2, 0]
        y = self._ball_y(inputs, F.one_hot(drawn_grid_move(dx, BALL_DX), 2 * BALL_DX + 1))
        log_probs = (self._ball_x(inputs)[:, :, None] + y[:, None, :]).flatten(-2)
        return self._ball_ce(log_probs, window, target)

    def prefit_ball(
        self,
        window: torch.Tensor,
        actions: torch.Tensor,
        target: torch.Tensor,
        steps: int,
        progress: bool = True,
        noise: float = 0.0,
    ) -> dict[str, float]:
        """``ball_prefit``: fit the objects-only ball head alone on the detector's moves (N, 2, 3, 3), (N,),
        (N, 3, 3) for ``steps`` steps of ``PREFIT_BATCH`` drawn moves, the places it reads off by up to ``noise``
        raw px (``ball_noise``) -> logs (the last 100 steps' mean loss)."""
        moved = (window[:, 0, 2, 0] > 0) & (target[:, 2, 0] > 0)
        window, actions, target = window[moved], actions[moved], target[moved]
        if not len(window):
            return {}
        logs = _fit(
            self.ball_net,
            lambda pick: self._ball_objects_ce(window[pick], actions[pick], target[pick], noise)[0],
            len(window),
            steps,
            "ball prefit",
            progress,
        )
        return {"prefit_ball_move_ce": logs, "prefit_moves": float(len(window))}

    def enemy_ce(
        self, window: torch.Tensor, target: torch.Tensor, noise: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``enemy_moves=objects``: the enemy's two-hot cross-entropy on moves (N, 2, 3, 3) -> (N, 3, 3) where it is
        found in both frames (their mean), and the raw px between the expected and the true move (N,). ``noise`` >
        0: every place the head reads is off by up to that many raw px (:func:`jittered`); the moves it is taught
        stay the true ones."""
        half = self._half()
        logits = self._enemy_logits(jittered(window, noise, half))
        move = (target[:, 1, 2] - window[:, 0, 1, 2]) * half[1]
        log_probs = logits.log_softmax(-1)
        ce = -(two_hot(move, -PADDLE_DY, PADDLE_DY) * log_probs).sum(-1)
        grid = torch.arange(-PADDLE_DY, PADDLE_DY + 1.0, device=logits.device)
        return ce.mean(), (log_probs.exp() @ grid - move).abs().detach()

    def prefit_enemy(
        self,
        window: torch.Tensor,
        target: torch.Tensor,
        steps: int,
        progress: bool = True,
        shuffle: float = 0.0,
        noise: float = 0.0,
    ) -> dict[str, float]:
        """``enemy_prefit``: fit the objects-only enemy head alone on the detector's moves (N, 2, 3, 3) -> (N, 3, 3)
        where the enemy is found in both, ``steps`` steps of ``PREFIT_BATCH`` drawn moves, that share (``shuffle``,
        ``enemy_shuffle``) of them reading another move's last enemy move (:func:`shuffled_last_move`), the places
        it reads off by up to ``noise`` raw px (``enemy_noise``) -> logs (the last 100 steps' mean loss). With
        ``enemy_serve`` the serves (:func:`serve_steps`) are left out of the fit and give :class:`ServeOffset`: the
        median of how far below the served ball the enemy stands then (raw px)."""
        kept = (window[:, 0, 1, 0] > 0) & (target[:, 1, 0] > 0)
        logs = {}
        if self.serve is not None:  # the serves' offset, and the moves without them (their jumps pass the reach)
            served = serve_steps(window, target)
            if served.any():
                offset = (target[served, 1, 2] - target[served, 2, 2]).median() * self._half()[1]
                self.serve.offset.fill_(float(offset))
            logs = {"prefit_serves": float(served.sum()), "prefit_serve_offset": float(self.serve.offset)}
            kept &= ~served
        window, target = window[kept], target[kept]
        if self.enemy_net is None or not len(window):
            return logs
        fit = _fit(
            self.enemy_net,
            lambda pick: self.enemy_ce(shuffled_last_move(window[pick], shuffle), target[pick], noise)[0],
            len(window),
            steps,
            "enemy prefit",
            progress,
        )
        return {**logs, "prefit_enemy_move_ce": fit, "prefit_enemy_moves": float(len(window))}

    def _contact(self, objects: torch.Tensor) -> torch.Tensor:
        """Where the ball of ``objects`` (..., 3, 3) may turn: within 12 raw px of a found paddle's column or 10 px
        of the top or bottom edge -> (...) 0 / 1."""
        half = self._half()
        ball = objects[..., 2, 1:]
        near_paddle = ((ball[..., None, 0] - objects[..., :2, 1]).abs() < 12 / half[0]) & (objects[..., :2, 0] > 0)
        near_wall = (1 - ball[..., 1].abs()) < 10 / half[1]
        return ((near_paddle.any(-1) | near_wall) & (objects[..., 2, 0] > 0)).to(objects.dtype)

    def heat_logits(self, window: torch.Tensor) -> torch.Tensor:
        """The objects of the latest frame drawn for the decoder: (B, 2, 3, 3) -> (B, C, H, W) logits to add."""
        return self.heat(self.heat_maps(window).to(self.heat.weight.dtype))

    def heat_maps(self, window: torch.Tensor) -> torch.Tensor:
        """Each object of the latest frame as a Gaussian at its place: (B, 2, 3, 3) -> (B, 3, H, W), peak
        ``HEAT_GAIN`` (zero for an object not found)."""
        _, hgt, wid = self.frame_shape
        last = window[:, 0].float()  # (B, 3, 3)
        px = (last[..., 1] + 1) / 2 * wid - 0.5  # pixel centres of the frame
        py = (last[..., 2] + 1) / 2 * hgt - 0.5
        sigma = last.new_tensor(SIGMA)  # (3, 2)
        xs = torch.arange(wid, device=last.device, dtype=last.dtype)
        ys = torch.arange(hgt, device=last.device, dtype=last.dtype)
        gx = torch.exp(-0.5 * ((xs - px[..., None]) / sigma[:, 0, None]) ** 2)  # (B, 3, W)
        gy = torch.exp(-0.5 * ((ys - py[..., None]) / sigma[:, 1, None]) ** 2)  # (B, 3, H)
        return gy[..., :, None] * gx[..., None, :] * last[..., 0, None, None] * HEAT_GAIN  # (B, 3, H, W)


def _fit(net: nn.Module, loss, n: int, steps: int, desc: str, progress: bool) -> float:
    """Fit ``net`` alone (``ball_prefit``, ``enemy_prefit``): ``steps`` Adam steps (``PREFIT_LR``) of ``loss(pick)``
    on ``PREFIT_BATCH`` indices drawn from ``n`` > 0 moves -> the last 100 steps' mean loss."""
    from tqdm import tqdm

    optim = torch.optim.Adam(net.parameters(), lr=PREFIT_LR)
    last: list[float] = []
    device = next(net.parameters()).device
    for _ in tqdm(range(steps), desc=desc, disable=not progress, dynamic_ncols=True):
        ce = loss(torch.randint(0, n, (PREFIT_BATCH,), device=device))
        optim.zero_grad(set_to_none=True)
        ce.backward()
        optim.step()
        last = [*last[-99:], ce.item()]
    optim.zero_grad(set_to_none=True)
    return float(np.mean(last))


def _choose(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """A drawn move (..., K) -> (...), or the likeliest at temperature 0 (as ``rssm``'s latent draws)."""
    if temperature <= 0:
        return logits.argmax(-1)
    return draw_choice(logits, temperature, generator)
