"""``rssm``: a latent-recurrent pixel model, a recurrent state-space model in the DreamerV3 manner.

The state is a deterministic part ``h`` (a GRU) and a stochastic part ``z`` (``stoch`` categorical
variables of ``classes`` classes each, one-hot)::

    h_t = GRU(h_{t-1}, MLP([z_{t-1}, one_hot(a_{t-1})]))     the sequence model
    z_t ~ p(z_t | h_t)                                         the prior (imagination draws here)
    z_t ~ q(z_t | h_t, enc(x_t))                               the posterior (real frames)
    x_t = dec(h_t, z_t); reward and termination of the move into t from (h_t, z_t)

Imagination steps ``h`` and draws ``z`` from the prior: no frame is encoded or decoded, and ``decode``
draws a frame only when asked. Real context frames go through the posterior (``start``).

Training (Hafner et al. 2023, DreamerV3): the posterior filters the whole window; the loss is the squared
error of the decoded frames summed over their pixels (pixels that changed since the previous true frame
weigh ``1 + change_weight``, so Pong's one-pixel ball counts), the reward-sign and termination heads, and
KL balancing with free bits: ``dyn * max(free, KL(sg(q) || p)) + rep * max(free, KL(q || sg(p)))``, which
trains the prior towards the posterior five times harder than the other way round and stops pushing
below ``free`` nats, so the posterior keeps what the frames say instead of collapsing onto the prior.
The categorical draws pass gradients straight through and mix 1% of uniform into every distribution
(``unimix``), so no class has probability 0 and the KL stays finite.

A dream runs open loop (the prior alone after the context), while these terms train the prior one step ahead
of the posterior and the heads on posterior states. ``overshoot`` > 0 adds the model's own rollouts (latent
overshooting, Hafner et al. 2019, PlaNet): from the last context frame the prior steps alone with the real
actions to the window's end, and ``overshoot`` times (the KL term of the prior and the reward and
termination heads) is added for those open-loop states: the prior learns to predict the posterior up to
``n_future`` steps ahead, and the heads to call the real points from the states a dream would be in.
``open_recon`` > 0 decodes those open-loop states too and adds ``open_recon`` times their frames' squared error
against the real frames (weighted as the filtered frames'): the model's own rollouts judged in pixels, where a
ball that drifts off its course costs what it costs in the game. Its gradient reaches the sequence model and the
prior (through the straight-through draws), not the decoder, which stays the posterior's: the dynamics learn to
land on states that decode to the real frame, rather than the decoder learning to blur what they get wrong.

``object_weight`` > 0 (Pong only) adds a dynamics target the frames give without labels: from ``h_t``, made
before frame t is seen, a small head predicts where the project's frame detector
(:func:`~world_models.objects.pong_objects.find_objects`, which reads frames only) finds the ball and the two
paddles in frame t. A dream steps ``h`` and draws ``z`` from the prior; where ``h`` knows where the ball goes,
the draws need not decide it again. ``open_object`` > 0 puts the same head on the open-loop states (the prior
rolled out alone, as for ``overshoot``): a dream's ``h`` is asked where the detector finds the ball in the real
frames ahead, a target that says which way a ball that drifted should move (a misplaced one-pixel ball gives
the squared pixel error no direction once it no longer overlaps the real one).

``object_state`` (Pong) keeps the ball and paddles as numbers beside ``h`` and ``z``, stepped by drawn moves, with
the reward read from them and the frames drawn with them (:mod:`world_models.pixel.rssm_objects`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dataset_tools.atari import game_spec
from dataset_tools.preprocess import RAW_SHAPE, Preprocess, play_field, to_tensor_layout
from dataset_tools.sequences import SequenceBatch, SequenceDataset
from world_models.base import (
    ModelConfig,
    State,
    StepResult,
    WorldModel,
    register,
    reward_from_logits,
    stack_predecessors,
)
from world_models.blocks import norm_mlp
from world_models.losses import head_losses, recon_loss
from world_models.objects.moves import draw_choice
from world_models.pixel.rnn_deconv import ConvEncoder, DeconvDecoder
from world_models.pixel.rssm_objects import (
    FEATURES,
    FINE_GAIN,
    ObjectState,
    exit_points,
    fill_gaps,
    line_points,
    object_features,
    object_triples,
    object_windows,
    pass_points,
    with_mirrored,
)


@dataclass
class RSSMConfig(ModelConfig):
    n_past: int = 4
    """Real context frames the posterior filters before imagination starts."""
    n_future: int = 12
    """Further frames per training window (window = ``n_past + n_future`` frames, all filtered)."""
    deter: int = 256
    """Size of the deterministic state ``h`` (the GRU)."""
    stoch: int = 16
    """Categorical variables of ``z``."""
    classes: int = 16
    """Classes of each categorical variable."""
    hidden: int = 256
    """Width of the MLPs (sequence-model input, prior, posterior, heads)."""
    embed: int = 512
    """Size of the frame encoding the posterior reads."""
    nf: int = 16
    """Channels of the first conv layer of the encoder (and last of the decoder); doubles per level."""
    encoder_frames: int = 1
    """Frames the posterior's encoder reads at once: each frame stacked along channels with its
    ``encoder_frames - 1`` predecessors (latest first; the first frame repeated where there are none), so the
    frame's encoding carries the ball's motion, not only its place (its speed need not be worked out by the GRU
    from successive draws). The prior and the decoder are unchanged: a dream still decodes nothing and encodes
    nothing. ``init_from`` a model with fewer starts with zero weights on the older frames, i.e. as that model."""
    change_weight: float = 20.0
    """Extra weight of pixels that changed since the previous true frame (0: plain squared error)."""
    kl_dyn: float = 0.5
    """Weight of KL(sg(q) || p): trains the prior."""
    kl_rep: float = 0.1
    """Weight of KL(q || sg(p)): keeps the posterior predictable."""
    free_nats: float = 1.0
    """Free bits: each KL term is not pushed below this many nats per step."""
    overshoot: float = 0.0
    """Weight of the open-loop terms (the prior rolled out alone from the last context frame with the real
    actions; its KL to the posterior and the heads on its states): 0 trains on filtered states only."""
    open_recon: float = 0.0
    """Weight of the open-loop frames' reconstruction error (the same rollouts decoded, against the real frames;
    its gradient trains the dynamics, not the decoder): 0: off."""
    unimix: float = 0.01
    """Share of the uniform distribution mixed into every categorical."""
    temperature: float = 1.0
    """Temperature of the prior's draws in imagination (an imagination setting: 0 takes the most likely
    class of each variable)."""
    points_to_end: int = 0
    """Imagination setting: an imagined episode ends when one side has scored this many points in it (Pong: 21),
    counted from the drawn rewards. The game's rule, not learned: the frames are cropped below the score, so
    the termination head cannot see a game end. 0: only the termination head ends episodes."""
    object_weight: float = 0.0
    """Weight of the object term (Pong only; module docstring): ``h_t`` predicts the ball and paddles the frame
    detector finds in frame t (whether each is found, and its centre, in units of 4 raw pixels). 0: off."""
    open_object: float = 0.0
    """Weight of the object term on the open-loop states (Pong only): the rolled-out ``h`` predicts where the
    frame detector finds the objects in the real frames ahead. Needs ``object_weight`` > 0. 0: off."""
    object_state: bool = False
    """Pong only: the state holds the ball and paddles as numbers beside ``h`` and ``z`` (the frame detector's
    ``[found, x, y]`` of the last two frames), a dream steps them with drawn moves, the GRU and the prior read
    them, the reward head reads them alone, and frames are decoded with each object drawn where they say
    (:mod:`world_models.pixel.rssm_objects`). Trained teacher forced: not with ``overshoot``, ``open_recon`` or
    ``open_object``. ``init_from`` a model without starts the new parts with no effect on the old ones."""
    contact_weight: float = 0.0
    """``object_state``: the ball's moves where it may turn (within 12 raw px of a paddle's column or 10 px of the top
    or bottom edge) weigh ``1 + contact_weight`` in training. Hits, misses and bounces are a few percent of its moves,
    the ones a dream's points turn on (as ``object_dynamics``' ``contact_weight``)."""
    ball_moves: str = "h"
    """``object_state``: what the ball's move is drawn from. ``h``: the GRU's state and the objects (one hidden layer,
    one draw over the 2-D grid of moves). ``objects``: the objects and the action alone (two hidden layers; the
    horizontal move drawn first, the vertical one given it). Whether a ball comes back off a paddle turns on a few
    pixels between the ball and the paddle; a head that reads ``h`` learns it from what ``h`` knows of the real frames,
    which a dream's ``h``, made from prior draws, does not know (``rssm_os4``: the dream returned 0.11 of the balls the
    real player returned, 0.41 with the same head on the real frames' ``h``). ``relative``: as ``objects``, reading how
    the ball stands from each paddle instead of where each object is, and no action
    (:func:`~world_models.pixel.rssm_objects.relative_features`). Fitted alone on ``pong_mix``'s 37,000 training moves
    (``benchmarks/ball_head.py``: 20,000 steps, ``ball_noise=1.25``, seed 0), the ``objects`` head turned the held-out
    returns off the player's paddle back at 0.50 and still at 0.39 with the paddle moved 24 px away from the ball
    (without the noise 0.64 and 0.61); ``relative`` at 0.75, falling to 0.14. In a dream (``closed-loop``, 5,000 updates
    from v5, ``ball_mirror``, ``move_temperature=0``) the balls that reach the player's paddle within 0-4 / 4-8 / 8-12 /
    12-16 / 16-24 / > 24 px come back at 0.65 / 0.67 / 0.55 / 0.35 / 0.17 / 0.01 (``objects``: 0.56 / 0.29 / 0.30 / 0.35
    / 0.10 / 0.09; the game 1.00 / 1.00 / 0.66 / 0.27 / 0.07 / 0.00), but its ball drifts further in flight, and its
    agent lost (-20.9): the dream's enemy paddle does not follow the ball (its moves read ``h``). ``relative_x``: as
    ``relative`` and the ball's own x, so it knows how near a side it is: past a paddle the detector reads the ball
    clipped by the field's side, with moves of 0 px, and ``relative`` held such balls there in a dream."""
    ball_prefit: int = 0
    """``ball_moves=objects`` or ``relative``: before the first update the ball's head is fitted alone, this many steps
    of 256 moves (Adam, 3e-4), on every move the detector reads in the training split (it reads no ``h``, so it needs no
    other part), and then held: the whole model's training does not move it (its loss is logged). On ``pong_mix``,
    trained with the whole model for 1,500 updates it turned the ball back at 0.15 of the held-out returns off the
    player's paddle (teacher forced); fitted alone for 20,000-24,000 steps, 0.77-0.80. Trained on after its fit, it got
    worse (given the real paddles, its dream returned 0.59 of the real returns after 500 updates, 0.79 fitted alone):
    the model's batches draw windows that hold a point at ``point_share``, which over-represent balls let past a paddle.
    0: off (the head trains with the rest)."""
    ball_noise: float = 0.0
    """``ball_prefit``: every place the ball's head reads in its fit (each object in each frame, and the next
    paddles) is off by up to this many raw px, uniformly; the moves it is taught stay the true ones. The
    detector reads places on the lattice of a 64 x 64 frame, and fitted on them the head keys on exact readings
    at real contacts that a dream's places never repeat (``rssm_os8p``: on a made-up contact, the paddle level
    with the ball, it turns the ball at 0.03-0.07). With 1.25 px (``rssm_os8n``) it turns at 0.48-0.54, and in
    ``closed-loop``'s dreams the balls that reach the paddle within 4 px come back at 0.46 (``rssm_os8p``: 0.14;
    the game: 1.00); its agent still lost (-20.2). 0: the places as read."""
    ball_mirror: bool = False
    """``ball_prefit`` with ``ball_moves=relative``: the fit also reads every move mirrored left to right (each place's
    x negated, the player and the enemy swapped), so the enemy's returns teach the player's paddle too. Pong's field is
    symmetric (the detector reads the paddles' columns at 17.8 and 142.2 px of 160) and a return off either paddle is
    the same bounce; a training split holds a few hundred of each (``pong_mix``: 308 off the player's, 330 off the
    enemy's). Offline (``benchmarks/ball_head.py``, seed 0): with ``ball_noise=1.25`` no better than no mirror (the
    player's returns turned back at 0.78 and 0.75, at 0.17 and 0.14 with the paddle 24 px away; a scratch fit with other
    random draws gave 0.66 and 0.73, 0.12 and 0.26: the seeds differ by more than the mirror does); without the noise it
    falls further (0.27 against 0.34 at 24 px). The runs of BENCHMARKS used it."""
    enemy_moves: str = "h"
    """``object_state``: what the enemy paddle's vertical move is drawn from. ``h``: with the player's, from the GRU's
    state, the objects and the action. ``objects``: the objects alone as the enemy sees them (its height and last
    move, the ball's place from it and the ball's move;
    :func:`~world_models.pixel.rssm_objects.enemy_features`; two hidden layers). The game's enemy follows the ball by
    a rule of the objects (``benchmarks/ball_head.py --enemy``: gradient-boosted trees on these call its held-out next
    move to 0.06 px at the median), but a head that reads a dream's ``h`` lets it wander: in ``closed-loop``'s dreams of
    runs with ``ball_moves=relative`` its paddle met 132 of 172 balls more than 24 px away (the game's 149 of 170
    within 8 px), and random play won 6.5 points per 1,000 steps there (the game 0.7)."""
    enemy_prefit: int = 0
    """``enemy_moves=objects``: before the first update the enemy's head is fitted alone, this many steps of 256 of the
    detector's moves in the training split (Adam, 3e-4), and then held (its loss is logged as ``enemy_move_ce``), as
    ``ball_prefit`` does for the ball. 0: off (the head trains with the rest)."""
    enemy_serve: bool = False
    """``enemy_prefit``: at a serve (a ball appears) the enemy is placed level with the served ball, as far below it
    as the training split's serves show (their median; :func:`~world_models.pixel.rssm_objects.serve_steps`), and
    its head is fitted on the other moves; an enemy that appears stands in its column (the detector's; the
    appearing place's head, seldom taught an enemy's, put it 7 px off in ``e5ns``, at 0.031 of its steps). The game puts its paddle there, a jump of 32 raw px at the median and 72
    at the 90th percentile, past the moves' reach (26); fitted on those jumps as two-hot targets clamped to the
    reach, the head learned to jump 26 px whenever no ball was on the field and the enemy stood high, and
    ``e3``'s dreams cycled it between the top wall and 26 px below while a serve was awaited, so it met the served
    ball far off: the ball more than 24 px above or below it at 0.22 of the dreams' steps with both in the field
    (32 dreams x 1,000 steps of random play at ``move_temperature=0``; the detector on held-out real play:
    0.0007). Refitted with this (``e5s``): 0.026; with ``enemy_noise=1.25`` and ``enemy_shuffle=0.25`` too
    (``e5ns``): 0.0045, the gap's median / 90th / 99th percentile 4.7 / 10.7 / 20.7 px (real 5.1 / 13.1 / 21.4)."""
    enemy_noise: float = 0.0
    """``enemy_prefit``: every place the enemy's head reads in its fit is off by up to this many raw px, uniformly
    (as ``ball_noise`` for the ball); the moves it is taught stay the true ones. The detector reads places on the
    lattice of a 64 x 64 frame, and a head fitted on them meets other places in a dream (see ``enemy_serve`` for
    what it and ``enemy_shuffle`` did there). 0: the places as read."""
    enemy_shuffle: float = 0.0
    """``enemy_prefit``: this share of the fit's moves read the enemy's last move as another move's, drawn from the
    training split (:func:`~world_models.pixel.rssm_objects.shuffled_last_move`); the move it is taught stays the
    true one. In real play the enemy seldom moves away from a ball far from it, and a head fitted on real moves, met
    with that in a dream, may go on moving away (``benchmarks/ball_head.py --enemy``'s "last move reversed" column
    asks it offline; ``enemy_serve`` says what it did in a dream). 0: the last move as read."""
    move_temperature: float = 1.0
    """Imagination setting (``object_state``): temperature of the objects' drawn moves (0: the likeliest move).
    The detector reads places to a fraction of a pixel from 64 x 64 frames, so the moves it sees, and the
    model's distributions over them, are wider than the game's; below 1 the draws keep to the likeliest moves."""
    sample_presence: bool = True
    """Imagination setting (``object_state``): draw each object's presence from its probability, whatever
    ``move_temperature`` (as ``object_dynamics``' ``sample_presence``); false: present where the probability is
    over 0.5. A served ball appears after a wait the presence head spreads over several steps, each below 0.5:
    thresholded, the serve seldom comes (at ``move_temperature=0``, which thresholded the presence too before
    this setting, a 2,000-update object-state run showed a ball in 0.00-0.09 of its dreams' frames at every
    100th step, the game 0.22-0.81)."""
    keep_present: bool = True
    """Imagination setting (``object_state``): an object found in the last frame stays (the ball, once past a
    paddle's column, while its presence is over 0.5); only absent objects' presences are drawn
    (``sample_presence``), so a serve still comes after a drawn wait. The presence head is trained on batches
    where half the windows hold a point (``point_share``), where balls vanish, and it reads a dream's ``h``: drawn
    at every step, a flying ball vanished in 0.077 of the steps it was found in ``enm``'s dreams
    (``move_temperature=0``, random play; the detector on held-out real frames: 0.009, points included) and the
    enemy in 0.024 (real 0.004), coming back elsewhere; thresholded instead, a flying ball still vanished
    mid-field 8.6 times per 1,000 steps. Past a paddle the ball is out of play, and where the detector reads it
    clipped by the field's side a head may hold it there (``ball_moves=relative``: moves of 0 px), so there its
    presence decides. A ball past the field's left or right side is gone whatever this says. false: every
    presence drawn (or thresholded)."""
    exit_edge: float = 0.0
    """Imagination setting (``object_state`` with ``keep_present``): a ball past a paddle's column stays until it
    has been found at ``|x| >= exit_edge`` (field units, 1 the field's side) and is gone at the next step, whatever
    its presence; 0: its presence decides. In Pong a ball past a paddle flies on to the side: the detector last
    sees it at ``|x|`` 0.922 / 0.938 / 0.958 at the 5th / 10th / 50th percentile of ``pong_mix``'s 998 training
    exits past a paddle, 4 steps after it passed at 869 of them (2-3 at 117). Left to the presence head, ``e6``'s
    dreams let the ball go 1 step after it passed at 198 of 667 exits and 5 or more at 197; at 0.93, 4 steps at
    586 of 711, and the exit reward (``exit_reward``) at the exact step recalled 0.51 / precision 0.42 of held-out
    points (0.19 / 0.18 without; within one step 0.88 / 0.74, 0.63 / 0.60 without). Yet agents trained in those
    dreams scored worse on the real game (seeds 0-3: -8.7, -12.2, -6.8, -10.0, mean -9.4; without it +2.2, -0.5,
    -4.5, -12.1): ``LearnedPong-v6`` leaves it off."""
    reward_sample: bool = False
    """Imagination setting: draw each step's reward sign from the reward head's distribution instead of taking
    the most likely one. A point is rarely more likely than no point at any one step, so the most likely sign
    is almost always 0; drawn, the rewards average what the head expects."""
    exit_reward: bool = False
    """Imagination setting (``object_state``): the reward is read from the objects, not from the reward head: -1
    at the step the ball, past the player's paddle, is gone, +1 past the enemy's
    (:func:`~world_models.pixel.rssm_objects.exit_points`; Pong's rule, as ``points_to_end``, not learned). So a
    dream's every point is rewarded once, at its own ball's exit: in ``e6``'s dreams (32 x 1,000 random steps,
    ``move_temperature=0``) the head called 861 points for 675 exits, 0.68 of its calls within a step of an exit
    of their sign, and 0.70 of the exits called. ``filtered_rewards`` reads the rule on the detector's objects
    too."""
    pass_reward: bool = False
    """Imagination setting (``object_state``): the reward is read from the objects at the step the ball, found in
    both frames, first stands past a paddle's column (-1 past the player's, +1 past the enemy's;
    :func:`~world_models.pixel.rssm_objects.pass_points`), not at its exit; it overrides ``exit_reward`` and the
    reward head. The point is decided there and counted by the game 2-4 steps later (on ``pong_mix``'s 131
    held-out points: 4 steps at 58, 3 at 56, 2 at 17), so the reward comes while the paddle's last moves are still
    in an agent's recent past; read at the game's step it never matches. ``filtered_rewards`` reads it on the
    detector's objects too. Agents in ``e6``'s dreams with it scored +1.5, +3.9, +10.2, -9.8, -5.1 on the real
    game (seeds 0-4, mean +0.1; with the point at the exit, ``LearnedPong-v6``, -4.1; with ``exit_edge=0.93``
    too, -3.4): ``LearnedPong-v7`` sets it."""
    line_reward: bool = False
    """Imagination setting (``object_state``): the reward is read from the objects at the step the game counts the
    point: the move out of the first frame whose ball stands at or past a side's scoring line (-1 the right, the
    player's side; +1 the left; :func:`~world_models.pixel.rssm_objects.line_points`, lines measured on
    ``pong_mix``), or out of the last frame of a ball past a paddle that leaves before its line; it overrides
    ``exit_reward`` and the reward head (``pass_reward`` overrides it). On the detector's objects of ``pong_mix``'s
    131 held-out points it calls 0.95 at the exact step, precision 0.93 (``exit_reward`` 0.60 / 0.60), since the
    game counts a slow ball's point while the ball is still in sight; in ``e6``'s dreams from those episodes'
    contexts (open loop 1-10 steps, ``learned-envs closed-loop`` seeds 0-2) 0.83-0.85 / 0.65-0.67 (``exit_reward``
    0.16-0.19 / 0.15-0.18). Agents trained in those dreams scored -7.9 on the real game (seeds 0-4; with
    ``pass_reward`` +0.1): ``LearnedPong-v8`` sets it, for the reward at the game's step. ``filtered_rewards``
    reads it on the detector's objects too."""


def _kl(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """KL(q || p) of (..., S, K) categoricals, summed over the S variables: (...) nats."""
    return (q * (q.log() - p.log())).sum((-2, -1))


def _stacked(hs: list[torch.Tensor], zs: list[torch.Tensor]) -> torch.Tensor:
    """The features ``[h, z]`` of a filtered sequence, per frame (B, deter) and (B, S*K): (B, T, deter + S*K)."""
    return torch.stack([torch.cat([h, z], -1) for h, z in zip(hs, zs, strict=True)], 1)


def detector_moves(
    objects: ObjectState, data: SequenceDataset, progress: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Every move the frame detector reads in ``data``'s episodes (one-frame misses filled, as training reads
    them): the windows it moved from (N, 2, 3, 3), the actions (N,) and the objects it moved to (N, 3, 3); None
    where no episode has three frames. ``ball_prefit`` fits on them (and ``benchmarks/ball_head.py``)."""
    from tqdm import tqdm

    windows, actions, targets = [], [], []
    for index in tqdm(data.episodes, desc="detector", disable=not progress, dynamic_ncols=True):
        episode = data.ds.load(index)
        frames = torch.from_numpy(to_tensor_layout(data.preprocess(np.asarray(episode.frames))))
        found = torch.cat([objects.detect(chunk) for chunk in frames.split(2048)])
        found = fill_gaps(found[None].float())[0]  # (T + 1, 3, 3)
        if len(found) < 3:
            continue
        windows.append(object_windows(found[None])[0, 1:-1])  # the windows of frames 1 .. T - 1
        targets.append(found[2:])
        actions.append(torch.as_tensor(np.array(episode.actions[1 : len(found) - 1], dtype=np.int64)))
    if not windows:
        return None
    return torch.cat(windows), torch.cat(actions), torch.cat(targets)


@register
class RSSM(WorldModel):
    name = "rssm"
    Config = RSSMConfig
    stochastic = True
    default_obs = "latent"  # agents read the state, as DreamerV3's do; frames are decoded only when asked for
    feature_bound = 1.0  # h from a GRU lies in [-1, 1], z is one-hot
    imagination_settings = (
        "temperature",
        "reward_sample",
        "points_to_end",
        "move_temperature",
        "sample_presence",
        "keep_present",
        "exit_reward",
        "exit_edge",
        "pass_reward",
        "line_reward",
    )

    def __init__(self, cfg: RSSMConfig, frame_shape: tuple[int, int, int], n_actions: int) -> None:
        super().__init__(cfg, frame_shape, n_actions)
        c, h, w = frame_shape
        if h != w:
            raise ValueError(f"rssm needs square frames, got {h} x {w}")
        if cfg.open_object > 0 and cfg.object_weight <= 0:
            raise ValueError("rssm's open_object needs object_weight > 0 (the object head it trains)")
        if cfg.encoder_frames < 1:
            raise ValueError(f"rssm's encoder_frames must be >= 1, got {cfg.encoder_frames}")
        if cfg.stoch < 1 or cfg.classes < 2:
            raise ValueError(f"rssm needs stoch >= 1 and classes >= 2, got {cfg.stoch} and {cfg.classes}")
        if cfg.ball_noise and not cfg.ball_prefit:
            raise ValueError("rssm's ball_noise is the ball_prefit fit's: set ball_prefit too")
        if cfg.ball_mirror and not (cfg.ball_prefit and cfg.ball_moves in ("relative", "relative_x")):
            raise ValueError(
                "rssm's ball_mirror is the ball_prefit fit's of ball_moves=relative or relative_x: set both"
            )
        if cfg.enemy_shuffle and not cfg.enemy_prefit:
            raise ValueError("rssm's enemy_shuffle is the enemy_prefit fit's: set enemy_prefit too")
        if cfg.enemy_serve and not cfg.enemy_prefit:
            raise ValueError("rssm's enemy_serve is fitted by enemy_prefit: set enemy_prefit too")
        if not 0.0 <= cfg.exit_edge <= 1.0:
            raise ValueError(f"rssm's exit_edge is a place in field units in [0, 1], got {cfg.exit_edge}")
        if cfg.exit_reward and not cfg.object_state:
            raise ValueError("rssm's exit_reward reads the ball of the object state: set object_state=true")
        if cfg.pass_reward and not cfg.object_state:
            raise ValueError("rssm's pass_reward reads the ball of the object state: set object_state=true")
        if cfg.line_reward and not cfg.object_state:
            raise ValueError("rssm's line_reward reads the ball of the object state: set object_state=true")
        if cfg.enemy_noise and not cfg.enemy_prefit:
            raise ValueError("rssm's enemy_noise is the enemy_prefit fit's: set enemy_prefit too")
        if not 0 <= cfg.enemy_shuffle <= 1:
            raise ValueError(f"rssm's enemy_shuffle is a share in [0, 1], got {cfg.enemy_shuffle}")
        if cfg.enemy_prefit and cfg.enemy_moves != "objects":
            raise ValueError(
                "rssm's enemy_prefit needs enemy_moves=objects (a head that reads h cannot be fitted alone)"
            )
        if cfg.ball_prefit and cfg.ball_moves == "h":
            raise ValueError(
                "rssm's ball_prefit needs ball_moves=objects or relative (a head that reads h cannot be fitted alone)"
            )
        if cfg.object_state and (cfg.overshoot > 0 or cfg.open_recon > 0 or cfg.open_object > 0):
            raise ValueError("rssm's object_state trains teacher forced: set overshoot, open_recon, open_object to 0")
        self.cfg: RSSMConfig = cfg
        if cfg.object_state:  # agents read the ball and paddles alone: they beat those that read the state
            self.default_obs = "objects"  # (BENCHMARKS, "The enemy at the serve": -8.5 over 5 seeds against -16.6)
        z_dim = cfg.stoch * cfg.classes
        self.encoder = ConvEncoder(c * cfg.encoder_frames, h, cfg.nf, cfg.embed)
        self.decoder = DeconvDecoder(cfg.deter + z_dim, c, h, cfg.nf)
        self.img_in = nn.Sequential(nn.Linear(z_dim + n_actions, cfg.hidden), nn.LayerNorm(cfg.hidden), nn.SiLU())
        self.gru = nn.GRUCell(cfg.hidden, cfg.deter)
        self.prior = norm_mlp(cfg.deter, cfg.hidden, z_dim)
        self.posterior = norm_mlp(cfg.deter + cfg.embed, cfg.hidden, z_dim)
        self.reward_head = norm_mlp(cfg.deter + z_dim, cfg.hidden, 3)
        self.term_head = norm_mlp(cfg.deter + z_dim, cfg.hidden, 1)
        # per object (player, enemy, ball): [found logit, x, y] from h alone
        self.object_head = norm_mlp(cfg.deter, cfg.hidden, 9) if cfg.object_weight > 0 else None
        self._detector: Preprocess | None = None  # the data's preprocessing, for the frame detector
        self.objects: ObjectState | None = None
        if cfg.object_state:  # the object state's heads, its inputs to the GRU and prior, and its reward head
            crop = play_field("Pong")  # bind_data sets the data's
            self.objects = ObjectState(
                cfg.deter,
                cfg.hidden,
                n_actions,
                frame_shape,
                crop,
                cfg.contact_weight,
                cfg.ball_moves,
                cfg.ball_prefit > 0,
                cfg.enemy_moves,
                cfg.enemy_prefit > 0,
                cfg.enemy_serve,
            )
            self.obj_in = nn.Linear(FEATURES, cfg.hidden)
            self.obj_prior = nn.Linear(FEATURES, z_dim)
            self.obj_reward = norm_mlp(FEATURES, cfg.hidden, 3)  # the reward from the objects (_reward_logits)
            for layer in (self.obj_in, self.obj_prior):  # start as the model without them
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def bind_data(self, game: str | None, preprocess: Preprocess) -> None:
        readers = [key for key, on in (("object_state", self.objects), ("object_weight", self.object_head)) if on]
        if readers and not game_spec(game).paddle_rally:
            raise ValueError(f"rssm's {readers[0]} reads Pong's objects with the frame detector; the data is {game}")
        if self.objects is not None:
            crop = preprocess.crop or (0, RAW_SHAPE[0], 0, RAW_SHAPE[1])
            self.objects.crop.copy_(torch.tensor([float(v) for v in crop]))
        if self.object_head is not None:
            self._detector = preprocess

    def prefit(self, data: SequenceDataset, progress: bool = True) -> dict[str, float]:
        """``ball_prefit``, ``enemy_prefit``: the detector reads every frame of the training split (one-frame misses
        filled, as training reads them) and the objects-only ball and enemy heads are fitted on the moves."""
        if self.objects is None or (self.cfg.ball_prefit <= 0 and self.cfg.enemy_prefit <= 0):
            return {}
        moves = detector_moves(self.objects, data, progress)
        if moves is None:
            return {}
        window, actions, target = [part.to(next(self.parameters()).device) for part in moves]
        logs = {}
        if self.cfg.enemy_prefit > 0:
            logs.update(
                self.objects.prefit_enemy(
                    window, target, self.cfg.enemy_prefit, progress, self.cfg.enemy_shuffle, self.cfg.enemy_noise
                )
            )
        if self.cfg.ball_prefit > 0:
            if self.cfg.ball_mirror:
                window, actions, target = with_mirrored(window, actions, target)
            logs.update(
                self.objects.prefit_ball(window, actions, target, self.cfg.ball_prefit, progress, self.cfg.ball_noise)
            )
        return logs

    # ------------------------------------------------------------------ pieces
    def _probs(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, stoch * classes) logits -> (B, stoch, classes) probabilities with ``unimix`` of uniform."""
        probs = logits.view(logits.shape[0], self.cfg.stoch, self.cfg.classes).float().softmax(-1)
        return (1.0 - self.cfg.unimix) * probs + self.cfg.unimix / self.cfg.classes

    def _draw(
        self, probs: torch.Tensor, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> torch.Tensor:
        """One class per variable of (B, S, K) ``probs``, one-hot (B, S*K), with straight-through gradients in
        training; drawn by :func:`~world_models.objects.moves.draw_choice` (one uniform number per variable)."""
        if temperature <= 0:
            index = probs.argmax(-1)
        else:
            index = draw_choice(probs.log(), temperature, generator)
        one_hot = F.one_hot(index, self.cfg.classes).to(probs.dtype)
        if probs.requires_grad:  # training: the gradient of the probabilities, the value of the draw
            one_hot = one_hot + probs - probs.detach()
        return one_hot.flatten(1)

    def _next_h(
        self, h: torch.Tensor, z: torch.Tensor, actions: torch.Tensor, objs: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The sequence model's step; with ``object_state`` it reads the objects' features ``objs`` (B, 24) too
        (:func:`~world_models.pixel.rssm_objects.object_features` of the window it steps from)."""
        a = F.one_hot(actions.long(), self.n_actions).to(z.dtype)
        x = self.img_in[0](torch.cat([z, a], -1))
        if objs is not None:
            x = x + self.obj_in(objs.to(x.dtype))
        return self.gru(self.img_in[1:](x), h)

    def _prior(self, h: torch.Tensor, objs: torch.Tensor | None = None) -> torch.Tensor:
        """The prior's probabilities (B, S, K) at ``h``; with ``object_state`` given the objects' features
        ``objs`` (B, 24) too."""
        logits = self.prior(h)
        if objs is not None:
            logits = logits + self.obj_prior(objs.to(logits.dtype))
        return self._probs(logits)

    def _reward_logits(self, feats: torch.Tensor, objs: torch.Tensor | None = None) -> torch.Tensor:
        """The reward head on ``feats`` (..., deter + S*K); with ``object_state`` the objects' reward head on
        their features ``objs`` (..., 24) instead: a point is the ball leaving the field, which the objects' places
        and moves say exactly, where ``h`` and a drawn ``z`` say it only roughly (the h-based head, on the states
        of real frames, gave the true sign probability 0.23-0.49 at some points whose ball was at the same places
        as at points it called at 0.99)."""
        if objs is not None:
            return self.obj_reward(objs.to(feats.dtype) * FINE_GAIN)
        return self.reward_head(feats)

    def _frames(self, feats: torch.Tensor, windows: torch.Tensor | None = None) -> torch.Tensor:
        """Frames decoded from ``feats`` (N, deter + S*K); with ``object_state`` the objects of ``windows``
        (N, 2, 3, 3) drawn in."""
        if windows is None:
            return self.decoder(feats)
        assert self.objects is not None
        return torch.sigmoid(self.decoder.logits(feats) + self.objects.heat_logits(windows))

    def _posterior_z(
        self, h: torch.Tensor, embed: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        probs = self._probs(self.posterior(torch.cat([h, embed], -1)))
        return self._draw(probs, generator), probs

    def _filter(
        self,
        frames: torch.Tensor,
        actions: torch.Tensor,
        generator: torch.Generator | None = None,
        fill: bool = False,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], torch.Tensor | None]:
        """The posterior over ``frames`` (B, T, C, H, W) with ``actions`` (B, T-1): per frame h, z, and the
        posterior's and prior's probabilities (the prior's of frame 0 is that of the empty history), and with
        ``object_state`` the objects' windows (B, T, 2, 3, 3) the detector reads (else None; ``fill``: with its
        one-frame misses filled, :func:`~world_models.pixel.rssm_objects.fill_gaps`, as training reads them)."""
        b, t = frames.shape[:2]
        stacked = stack_predecessors(frames, self.cfg.encoder_frames)  # (B, T, k*C, H, W)
        embeds = self.encoder(stacked.flatten(0, 1)).view(b, t, -1)  # (B*T, k*C, H, W) -> (B, T, embed)
        windows = None
        if self.objects is not None:
            found = self.objects.detect(frames)  # (B, T, 3, 3)
            if fill:
                found = fill_gaps(found)
            windows = object_windows(found)
        h = embeds.new_zeros(b, self.cfg.deter)
        objs = None if windows is None else object_features(windows)  # (B, T, 24)
        hs, zs, posts, priors = [], [], [], []
        z = None
        for i in range(t):
            if i > 0:
                h = self._next_h(h, z, actions[:, i - 1], None if objs is None else objs[:, i - 1])  # type: ignore[arg-type]
            priors.append(self._prior(h, None if objs is None else objs[:, i]))
            z, post = self._posterior_z(h, embeds[:, i], generator)
            hs.append(h)
            zs.append(z)
            posts.append(post)
        return hs, zs, posts, priors, windows

    # ------------------------------------------------------------------ imagination
    def start(self, frames: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None) -> State:
        hs, zs, _, _, windows = self._filter(frames, actions, generator)
        state = {"h": hs[-1], "z": zs[-1]}
        if windows is not None:
            state["obj"] = windows[:, -1]
        if self.cfg.encoder_frames > 1:  # the latest frames, latest first, for the real twin's next observe_step
            k = self.cfg.encoder_frames - 1
            state["past"] = stack_predecessors(frames[:, -k:], k)[:, -1]  # (B, k*C, H, W)
        if self.cfg.points_to_end > 0:  # points scored in this imagined episode: (the player, the enemy)
            state["points"] = hs[-1].new_zeros(hs[-1].shape[0], 2)
        return state

    def step(self, state: State, actions: torch.Tensor, generator: torch.Generator | None = None) -> StepResult:
        window = before = state.get("obj")
        objs = None if window is None else object_features(window)  # read once by the GRU and the objects' heads
        h = self._next_h(state["h"], state["z"], actions, objs)
        if window is not None:
            assert self.objects is not None
            window = self.objects.step(
                h,
                window,
                actions,
                generator,
                self.cfg.move_temperature,
                self.cfg.sample_presence,
                self.cfg.keep_present,
                objs,
                self.cfg.exit_edge,
            )
            objs = object_features(window)  # the new window's, read by the prior and the reward head
        z = self._draw(self._prior(h, objs), generator, self.cfg.temperature)
        feat = torch.cat([h, z], -1)
        rule = self._reward_rule()
        if rule is not None and window is not None:
            reward = rule(torch.cat([window[:, :1], before], 1))  # frames t + 1, t, t - 1
        else:
            reward = self._reward(self._reward_logits(feat, objs), generator)
        term = torch.sigmoid(self.term_head(feat).squeeze(-1))
        new: State = {"h": h, "z": z}
        if window is not None:
            new["obj"] = window
        if self.cfg.points_to_end > 0:
            points = state.get("points", torch.zeros_like(h[:, :2]))
            points = points + torch.stack([reward > 0, reward < 0], -1).to(points.dtype)
            over = (points >= self.cfg.points_to_end).any(-1)
            term = torch.where(over, torch.ones_like(term), term)
            new["points"] = torch.where(over[:, None], torch.zeros_like(points), points)  # a new game's count
        return StepResult(new, reward, term)

    def observe_step(
        self, state: State, actions: torch.Tensor, frames: torch.Tensor, generator: torch.Generator | None = None
    ) -> State:
        """The posterior one real step on: ``state`` at frame t, ``actions`` (B,) from t to t + 1, ``frames``
        (B, C, H, W) the real frames t + 1. The real twin filters a whole game this way (as ``start`` filters
        its context), so an agent sees the state its dream would carry, not one restarted every step. With
        ``encoder_frames`` > 1 the state carries the latest real frames (``past``, from ``start`` or the last
        ``observe_step``; a dream's step drops them, and a state without them repeats ``frames``, as a sequence's
        first frame is)."""
        window = state.get("obj")
        h = self._next_h(state["h"], state["z"], actions, None if window is None else object_features(window))
        k = self.cfg.encoder_frames
        seen = frames
        if k > 1:
            past = state.get("past", frames.repeat(1, k - 1, 1, 1))
            seen = torch.cat([frames, past], 1)  # (B, k*C, H, W), latest first
        z, _ = self._posterior_z(h, self.encoder(seen), generator)
        new: State = {"h": h, "z": z}
        if k > 1:
            new["past"] = seen[:, : (k - 1) * frames.shape[1]]
        if self.objects is not None:  # the detector reads the real frame
            new["obj"] = torch.stack([self.objects.detect(frames), state["obj"][:, 0]], 1)
        return new

    @torch.no_grad()
    def filtered_rewards(
        self, frames: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The reward signs the head gives on the posterior states of real ``frames`` (B, T, C, H, W) with
        ``actions`` (B, T-1), as it is trained: (B, T-1), the moves into frames 1..T-1 (the most likely sign,
        or a drawn one with ``reward_sample``; with ``exit_reward``, ``pass_reward`` or ``line_reward`` the rule on
        the detector's objects). A dream gives its rewards from prior states instead."""
        rule = self._reward_rule()
        if rule is not None and self.objects is not None:  # the detector's objects alone: no posterior to run
            return rule(object_triples(self.objects.detect(frames))[:, 1:])
        hs, zs, _, _, windows = self._filter(frames, actions, generator)
        objs = None if windows is None else object_features(windows[:, 1:])
        logits = self._reward_logits(_stacked(hs[1:], zs[1:]), objs)
        return self._reward(logits, generator)

    def _reward_rule(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The rule that reads the reward of the move t -> t + 1 from the objects of frames (..., 3, 3, 3) t + 1, t
        and t - 1 instead of the reward head (``pass_reward``, else ``line_reward``, else ``exit_reward``), or None:
        the head's."""
        if self.cfg.pass_reward:
            return lambda frames: pass_points(frames[..., :2, :, :])
        if self.cfg.line_reward:
            return line_points
        return (lambda frames: exit_points(frames[..., :2, :, :])) if self.cfg.exit_reward else None

    def _reward(self, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Reward signs from the reward head's logits (..., 3): drawn with ``reward_sample``, else the most likely."""
        if self.cfg.reward_sample:
            return draw_choice(logits, 1.0, generator).to(logits.dtype) - 1.0  # class 0, 1, 2 -> sign -1, 0, +1
        return reward_from_logits(logits)

    def decode(self, state: State) -> torch.Tensor:
        return self._frames(torch.cat([state["h"], state["z"]], -1), state.get("obj"))

    def features(self, state: State) -> torch.Tensor:
        """``[h, z]``, and with ``object_state`` the objects' features (places and moves, within [-1, 1])."""
        if "obj" in state:
            return torch.cat([state["h"], state["z"], object_features(state["obj"]).to(state["h"].dtype)], -1)
        return torch.cat([state["h"], state["z"]], -1)

    @property
    def feature_dim(self) -> int:
        return self.cfg.deter + self.cfg.stoch * self.cfg.classes + (FEATURES if self.cfg.object_state else 0)

    @property
    def object_dim(self) -> int:
        return FEATURES if self.cfg.object_state else 0

    def object_features(self, state: State) -> torch.Tensor:
        """With ``object_state``: the objects' features alone (places and moves of the last two frames), without
        ``h`` and ``z``; the real twin reads them from the frame detector, a dream from its drawn moves."""
        if "obj" not in state:
            return super().object_features(state)
        return object_features(state["obj"]).float()

    # ------------------------------------------------------------------ training
    def loss(self, batch: SequenceBatch) -> tuple[torch.Tensor, dict[str, float]]:
        frames, actions = batch.frames, batch.actions  # (B, T, C, H, W), (B, T-1)
        hs, zs, posts, priors, windows = self._filter(frames, actions, fill=True)
        feats = _stacked(hs, zs)  # (B, T, deter + S*K)
        pred = self._frames(feats.flatten(0, 1), None if windows is None else windows.flatten(0, 1)).view(frames.shape)
        previous = torch.cat([frames[:, :1], frames[:, :-1]], 1)  # frame 0 has no previous: no change weight
        pixels = frames[0, 0].numel()
        recon = recon_loss(pred, frames, previous, self.cfg.change_weight) * pixels  # per frame, summed over pixels
        q = torch.stack(posts, 1)  # (B, T, S, K)
        p = torch.stack(priors, 1)
        dyn = _kl(q.detach(), p)  # (B, T) nats
        rep = _kl(q, p.detach())
        kl_loss = (
            self.cfg.kl_dyn * dyn.clamp(min=self.cfg.free_nats).mean()
            + self.cfg.kl_rep * rep.clamp(min=self.cfg.free_nats).mean()
        )
        heads, logs = self._head_terms(
            feats[:, 1:], batch.rewards, batch.terminated, None if windows is None else windows[:, 1:]
        )
        loss = recon + kl_loss + heads
        if windows is not None:
            assert self.objects is not None
            moves, move_logs = self.objects.loss(torch.stack(hs[1:], 1), windows[:, :-1], actions, windows[:, 1:, 0])
            loss = loss + moves
            logs.update(move_logs)
        targets = None
        if self.object_head is not None:
            targets = self._object_targets(frames[:, 1:])
            objects, object_logs = self._object_loss(torch.stack(hs[1:], 1), targets)
            loss = loss + self.cfg.object_weight * objects
            logs.update(object_logs)
        if self.cfg.overshoot > 0 or self.cfg.open_recon > 0 or self.cfg.open_object > 0:
            open_targets = None if targets is None else targets[:, self.cfg.n_past - 1 :]
            open_loss, open_logs = self._open_loop_loss(hs, zs, q, actions, batch, open_targets)
            loss = loss + open_loss
            logs.update(open_logs)
        with torch.no_grad():
            logs["recon"] = torch.mean((pred - frames) ** 2).item()
            logs["kl"] = dyn.mean().item()
            prior_entropy = -(p * p.log()).sum((-2, -1)).mean().item()
            logs["prior_entropy"] = prior_entropy
        logs["weighted_recon"] = recon.item() / pixels
        return loss, logs

    def _object_targets(self, frames: torch.Tensor) -> torch.Tensor:
        """Where the frame detector finds the player, the enemy and the ball in ``frames`` (B, T, C, H, W):
        (B, T, object, [found, x, y]), raw pixels."""
        from world_models.objects.pong_objects import find_objects

        if self._detector is None:
            raise RuntimeError("rssm's object_weight needs the data's preprocessing: call bind_data(game, preprocess)")
        found = find_objects(frames.detach().flatten(0, 1).float().cpu(), self._detector)
        target = torch.from_numpy(np.stack([found[k] for k in ("player", "enemy", "ball")], 1)).to(frames.device)
        return target.view(*frames.shape[:2], 3, 3)

    def _object_loss(self, h: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The object term: ``h`` (B, T, deter) against the detector's ``target`` (B, T, 3, 3) from
        :meth:`_object_targets`: binary cross-entropy of each object being found, plus the Huber loss of found
        objects' centres (from the field's centre, in units of 4 raw pixels)."""
        assert self._detector is not None  # _object_targets read the frames with it
        pred = self.object_head(h).view(*h.shape[:2], 3, 3).float()  # type: ignore[misc]
        top, bottom, left, right = self._detector.crop or (0, 210, 0, 160)
        centre = torch.tensor([(left + right) / 2.0, (top + bottom) / 2.0], device=h.device)
        half = torch.tensor([(right - left) / 8.0, (bottom - top) / 8.0], device=h.device)
        place_target = (target[..., 1:] - centre) / 4.0  # from the field's centre, in units of 4 raw pixels
        place_pred = pred[..., 1:] * half  # the head says where in [-1, 1] of the field
        seen = target[..., 0]
        bce = F.binary_cross_entropy_with_logits(pred[..., 0], seen)
        # Huber: squared within 4 pixels, linear beyond, so a fresh head cannot swamp the other terms
        error = F.smooth_l1_loss(place_pred, place_target, reduction="none").sum(-1) * seen  # (B, T, 3)
        place = error.sum() / seen.sum().clamp(min=1.0)
        with torch.no_grad():
            ball = seen[..., 2] > 0
            miss = ((place_pred[..., 2, :] - place_target[..., 2, :]) * 4.0).norm(dim=-1)[ball]
            ball_px = float(miss.median()) if len(miss) else float("nan")
        return bce + place, {"object_bce": bce.item(), "object_place": place.item(), "object_ball_px": ball_px}

    def _head_terms(
        self, feats: torch.Tensor, rewards: torch.Tensor, terminated: torch.Tensor, windows: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The reward and termination heads on ``feats`` (B, T, deter + S*K) (and the objects' ``windows``
        (B, T, 2, 3, 3) with ``object_state``) against ``rewards`` and ``terminated`` (B, T), weighted by
        ``reward_weight`` and ``termination_weight``, and their logs."""
        objs = None if windows is None else object_features(windows)
        reward_ce, term_bce, logs = head_losses(
            self._reward_logits(feats, objs), self.term_head(feats).squeeze(-1), rewards, terminated
        )
        return self.cfg.reward_weight * reward_ce + self.cfg.termination_weight * term_bce, logs

    def _open_loop_loss(
        self,
        hs: list[torch.Tensor],
        zs: list[torch.Tensor],
        q: torch.Tensor,
        actions: torch.Tensor,
        batch: SequenceBatch,
        object_targets: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The prior rolled out alone from the last context frame's posterior state with the real actions:
        ``overshoot`` times (the KL of each open-loop prior to the (fixed) posterior of the same frame, and the
        heads on the open-loop states against the real rewards and ends), plus ``open_recon`` times the squared
        error of the open-loop states' frames, decoded with the decoder's weights held fixed, plus ``open_object``
        times the object term of the open-loop ``h`` against ``object_targets`` (B, n_future, 3, 3), the
        detector's reading of the real frames ahead. ``q`` (B, T, S, K) are the posteriors of :meth:`loss`."""
        first = self.cfg.n_past - 1
        h, z = hs[first], zs[first]
        priors, feats, open_hs = [], [], []
        for i in range(first + 1, len(hs)):
            h = self._next_h(h, z, actions[:, i - 1])
            probs = self._probs(self.prior(h))
            z = self._draw(probs)
            priors.append(probs)
            feats.append(torch.cat([h, z], -1))
            open_hs.append(h)
        open_feats = torch.stack(feats, 1)  # (B, n_future, deter + S*K)
        loss = open_feats.new_zeros(())
        logs = {}
        if self.cfg.overshoot > 0:
            p = torch.stack(priors, 1)  # (B, n_future, S, K)
            kl = _kl(q[:, first + 1 :].detach(), p)  # (B, n_future) nats
            heads, head_logs = self._head_terms(open_feats, batch.rewards[:, first:], batch.terminated[:, first:])
            loss = loss + self.cfg.overshoot * (self.cfg.kl_dyn * kl.clamp(min=self.cfg.free_nats).mean() + heads)
            logs.update(
                open_kl=kl.mean().item(),
                open_reward_ce=head_logs["reward_ce"],
                open_term_bce=head_logs["term_bce"],
            )
        if self.cfg.open_recon > 0:
            frames = batch.frames[:, first + 1 :]
            fixed = {name: weight.detach() for name, weight in self.decoder.named_parameters()}
            pred = torch.func.functional_call(self.decoder, fixed, (open_feats.flatten(0, 1),)).view(frames.shape)
            previous = batch.frames[:, first:-1]
            weighted = recon_loss(pred, frames, previous, self.cfg.change_weight)
            loss = loss + self.cfg.open_recon * weighted * frames[0, 0].numel()  # per frame, summed over pixels
            with torch.no_grad():
                logs["open_recon"] = torch.mean((pred - frames) ** 2).item()
            logs["open_weighted_recon"] = weighted.item()
        if self.cfg.open_object > 0:
            if object_targets is None:
                raise ValueError("rssm's open_object needs the object targets of the frames ahead")
            objects, object_logs = self._object_loss(torch.stack(open_hs, 1), object_targets)
            loss = loss + self.cfg.open_object * objects
            logs.update({f"open_{key}": value for key, value in object_logs.items()})
        return loss, logs
