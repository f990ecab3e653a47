"""Does the object-state dream's ball head read the paddle? Its returns off the player's paddle, offline.

    python benchmarks/ball_head.py --data data/pong_mix --steps 20000
    python benchmarks/ball_head.py --data data/pong_mix --heads objects relative --noise 0 1.25

``rssm`` with ``object_state`` draws the ball's move from a head that ``ball_prefit`` fits alone, before the rest
of the model, on every move the frame detector reads in the training split. In a dream the head decides whether
a ball that reaches the player's paddle comes back, and so whether the dream pays an agent for meeting the ball.
This script fits each head as ``ball_prefit`` does (``--steps`` steps of 256 moves, the places read off by up to
``--noise`` raw px, ``relative+mirror`` with ``ball_mirror``; no ``contact_weight``) and asks it, on the
held-out episodes' moves, at the steps where the real ball moving right at the player's paddle turns back next:
how likely it turns back (as read; with the player's paddle, now and next, moved 4 to 24 px further from the ball,
where the game turns none at 24; with the ball 2 px to either side), and how likely it turns back a ball that
goes on (false turns); and, away from the paddles and walls, how far its likeliest move (the one a dream at
``move_temperature=0`` takes) is from the ball's true move. The detector reads frames only; nothing here reads
the RAM.

It also asks how far the enemy's next vertical move is a function of the objects it sees (``--enemy``):
gradient-boosted trees fitted on the training split's moves (the ball's offset from the enemy's paddle, the
ball's move, the paddle's height and last move), scored on the held-out moves against repeating the last move,
and ``rssm``'s enemy head fitted with each ``--enemy-shuffle`` (``enemy_shuffle``): its errors, and where the ball
is far from the enemy, how often its likeliest move goes toward the ball, as read and with the enemy's last move
reversed (moving away from the ball, as a dream's enemy that overshoots does).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from dataset_tools.sequences import SequenceDataset
from world_models import build_model
from world_models.pixel.rssm import RSSMConfig, detector_moves
from world_models.pixel.rssm_objects import BALL_DX, PADDLE_DY, ObjectState, with_mirrored

HEADS = ("objects", "relative", "relative+mirror", "relative_x", "relative_x+mirror")
AWAY = (4, 8, 12, 16, 24)
"""Raw px the player's paddle is moved further from the ball."""
_READ: dict[tuple[Path, str], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}


def split_moves(objects: ObjectState, data: Path, split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The detector's moves of one split of ``data`` (read once per run: every head reads the same frames)."""
    if (data, split) not in _READ:
        split_data = SequenceDataset(data, seq_len=2, split="train" if split == "train" else "val")
        moves = detector_moves(objects, split_data, progress=False)
        if moves is None:
            raise SystemExit(f"{data}: no {split} episode of three frames or more")
        _READ[data, split] = moves
    return _READ[data, split]


def _objects(data: Path, cfg: RSSMConfig, seed: int) -> ObjectState:
    """``rssm``'s object state for ``data``'s frames, its initial weights drawn with ``seed``."""
    torch.manual_seed(seed)
    train = SequenceDataset(data, seq_len=2, split="train")
    h, w, c = train.preprocess.shape
    model = build_model("rssm", cfg, (c, h, w), len(train.ds.read_manifest()["action_meanings"]))
    model.bind_data("Pong", train.preprocess)
    return model.objects


def fit_head(data: Path, head: str, noise: float, steps: int, seed: int, hidden: int) -> tuple[ObjectState, float]:
    """A fitted ball head (``objects``, ``relative``, ``relative_x``, each relative one ``+mirror`` too) and its
    fit's seconds."""
    objects = _objects(data, RSSMConfig(hidden=hidden, object_state=True, ball_moves=head.split("+")[0]), seed)
    window, action, target = split_moves(objects, data, "train")
    if head.endswith("+mirror"):
        window, action, target = with_mirrored(window, action, target)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    objects.prefit_ball(window, action, target, steps, progress=False, noise=noise)
    return objects.eval(), time.perf_counter() - t0


@torch.no_grad()
def returns_table(objects: ObjectState, data: Path) -> dict[str, float]:
    """The held-out figures of the module docstring for one fitted head."""
    window, action, target = split_moves(objects, data, "val")
    half, centre = objects._half(), objects._centre()
    column = float((window[:, 0, 0, 1][window[:, 0, 0, 0] > 0] * half[0] + centre[0]).median())  # player's x
    ball_x = window[:, 0, 2, 1] * half[0] + centre[0]
    seen = (window[:, 0, 2, 0] > 0) & (window[:, 1, 2, 0] > 0) & (target[:, 2, 0] > 0)
    coming = seen & (window[:, 0, 2, 1] > window[:, 1, 2, 1]) & (ball_x > column - 14)
    turns, goes_on = coming & (target[:, 2, 1] < window[:, 0, 2, 1]), coming & (target[:, 2, 1] > window[:, 0, 2, 1])

    def back(w: torch.Tensor, t: torch.Tensor, sel: torch.Tensor) -> float:
        log_probs = objects._ball_x(objects._ball_input(w[sel], action[sel], t[sel, :2]))
        return float(log_probs[:, :BALL_DX].exp().sum(-1).mean())  # a move to the left

    out = {
        "turns": float(turns.sum()),
        "as read": back(window, target, turns),
        "false turns": back(window, target, goes_on),
    }
    above = torch.where(window[:, 0, 2, 2] > window[:, 0, 0, 2], -1.0, 1.0)  # away from the ball
    for px in AWAY:
        w, t = window.clone(), target.clone()
        w[:, :, 0, 2] += above[:, None] * px / half[1]
        t[:, 0, 2] += above * px / half[1]
        out[f"{px} px"] = back(w, t, turns)
    across = []
    for px in (-2.0, 2.0):
        w, t = window.clone(), target.clone()
        w[:, :, 2, 1] += px / half[0] * w[:, :, 2, 0]
        t[:, 2, 1] += px / half[0] * t[:, 2, 0]
        across.append(back(w, t, turns))
    out["ball 2 px across"] = min(across)
    flying = seen & (objects._contact(window[:, 0]) == 0)
    inputs = objects._ball_input(window[flying], action[flying], target[flying, :2])
    true = (target[flying, 2, 1:] - window[flying, 0, 2, 1:]) * half
    off = (objects.draw_ball_move(inputs) - true).norm(dim=-1)  # the likeliest move
    out["in flight"], out["in flight p90"] = float(off.median()), float(off.quantile(0.9))
    return out


def enemy_head(
    data: Path, steps: int, seed: int, hidden: int, shuffle: float = 0.0, noise: float = 0.0
) -> tuple[ObjectState, float]:
    """``rssm``'s objects-only enemy head (``enemy_moves=objects``) fitted as ``enemy_prefit`` fits it with
    ``enemy_serve`` (the serves left out), ``enemy_shuffle`` and ``enemy_noise``, and its fit's seconds."""
    config = RSSMConfig(hidden=hidden, object_state=True, enemy_moves="objects", enemy_prefit=1, enemy_serve=True)
    objects = _objects(data, config, seed)
    window, _, target = split_moves(objects, data, "train")
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    objects.prefit_enemy(window, target, steps, progress=False, shuffle=shuffle, noise=noise)
    return objects.eval(), time.perf_counter() - t0


FAR = 16.0
"""Raw px between the ball and the enemy's centre past which the enemy is far from it (``enemy_turns``)."""


def enemy_turns(head: ObjectState, window: torch.Tensor) -> dict[str, float]:
    """At held-out states where the ball is more than ``FAR`` px above or below the enemy (both found, the enemy in
    both frames): the share of the head's likeliest moves that go toward the ball, as read and with the enemy's
    last move set to go away from the ball (by its size, at least 4 px): a state a dream makes when its enemy
    overshoots and real play seldom shows."""
    half = head._half()
    ball, enemy = window[:, 0, 2], window[:, 0, 1]
    gap = (ball[:, 2] - enemy[:, 2]) * half[1]
    far = (ball[:, 0] > 0) & (enemy[:, 0] > 0) & (window[:, 1, 1, 0] > 0) & (gap.abs() > FAR)
    window, toward = window[far], gap[far].sign()
    away = window.clone()
    size = ((window[:, 0, 1, 2] - window[:, 1, 1, 2]) * half[1]).abs().clamp(min=4.0)
    away[:, 1, 1, 2] = window[:, 0, 1, 2] + toward * size / half[1]  # came from the ball's side: moved away
    out = {"far states": float(len(window))}
    with torch.no_grad():
        for name, w in (("far, as read", window), ("far, last move reversed", away)):
            move = head._enemy_logits(w).argmax(-1) - PADDLE_DY
            out[name] = float((move.sign() == toward).float().mean())
    return out


def enemy_fit(
    objects: ObjectState, data: Path, seed: int, steps: int, hidden: int, shuffles: list[float], noise: float
) -> dict[str, float]:
    """The enemy's next vertical move (raw px) from the objects: held-out median and 90th-percentile errors of
    gradient-boosted trees, of ``rssm``'s enemy head fitted with each ``enemy_shuffle`` in ``shuffles`` (its
    expected move, and its likeliest as a dream at ``move_temperature=0`` takes it; and :func:`enemy_turns`), of
    repeating the last move, and of no move."""
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingRegressor

    def rows(split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        window, _, target = split_moves(objects, data, split)
        across, down = objects._half().tolist()  # raw px a field unit
        ball, before, enemy, was = window[:, 0, 2], window[:, 1, 2], window[:, 0, 1], window[:, 1, 1]
        ok = (enemy[:, 0] > 0) & (was[:, 0] > 0) & (target[:, 1, 0] > 0)
        seen, moved = ball[:, 0], ball[:, 0] * before[:, 0]
        x = torch.stack(
            [
                seen,
                (ball[:, 1] - enemy[:, 1]) * across * seen,
                (ball[:, 2] - enemy[:, 2]) * down * seen,
                (ball[:, 1] - before[:, 1]) * across * moved,
                (ball[:, 2] - before[:, 2]) * down * moved,
                enemy[:, 2] * down,
                (enemy[:, 2] - was[:, 2]) * down,
            ],
            1,
        )
        move = (target[:, 1, 2] - enemy[:, 2]) * down
        return x[ok].numpy(), move[ok].numpy(), x[ok, 6].numpy()

    x, y, _ = rows("train")
    xv, yv, last = rows("val")
    trees = HistGradientBoostingRegressor(max_iter=300, random_state=seed).fit(x, y)
    window, _, target = split_moves(objects, data, "val")
    kept = window[(window[:, 0, 1, 0] > 0) & (window[:, 1, 1, 0] > 0) & (target[:, 1, 0] > 0)]
    grid = torch.arange(-PADDLE_DY, PADDLE_DY + 1.0)
    out = {"moves": float(len(yv))}
    guesses = {"trees": trees.predict(xv)}
    for shuffle in shuffles:
        head, out[f"head seconds, shuffle {shuffle:g}"] = enemy_head(data, steps, seed, hidden, shuffle, noise)
        with torch.no_grad():
            logits = head._enemy_logits(kept)
        guesses[f"head, shuffle {shuffle:g}, expected"] = (logits.softmax(-1) @ grid).numpy()
        guesses[f"head, shuffle {shuffle:g}, likeliest"] = (logits.argmax(-1) - PADDLE_DY).float().numpy()
        out.update({f"{k}, shuffle {shuffle:g}": v for k, v in enemy_turns(head, kept).items()})
    guesses.update({"last move": last, "no move": np.zeros_like(yv)})
    for name, guess in guesses.items():
        error = np.abs(guess - yv)
        out[name] = float(np.median(error))
        out[name + " p90"] = float(np.quantile(error, 0.9))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a Pong dataset directory")
    parser.add_argument("--heads", nargs="+", default=["objects", "relative", "relative+mirror"])
    parser.add_argument("--noise", nargs="+", type=float, default=[1.25], help="ball_noise values (raw px)")
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--hidden", type=int, default=256, help="the head's width (rssm's hidden; v5's 256)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--enemy", action="store_true", help="also: the enemy's move from the objects")
    parser.add_argument(
        "--enemy-shuffle", nargs="+", type=float, default=[0.0], help="with --enemy: enemy_shuffle values"
    )
    parser.add_argument("--enemy-noise", type=float, default=0.0, help="with --enemy: enemy_noise (raw px)")
    args = parser.parse_args()
    for head in args.heads:
        if head not in HEADS:
            raise SystemExit(f"--heads: {head!r} is not one of {', '.join(HEADS)}")
    rows = []
    for head in args.heads:
        for noise in args.noise:
            objects, seconds = fit_head(args.data, head, noise, args.steps, args.seed, args.hidden)
            rows.append((head, noise, seconds, returns_table(objects, args.data)))
            print(f"fitted {head}, noise {noise}: {seconds:.0f} s", flush=True)
    n = int(rows[0][3]["turns"])
    print(f"\nReturns off the player's paddle, {n} held-out turns ", end="")
    print(f"({args.data}, {args.steps} fit steps, seed {args.seed}):\n")
    away = " / ".join(f"{px}" for px in AWAY)
    print(f"| head | noise (px) | turned back, as read | the paddle {away} px further ", end="")
    print("| ball 2 px across (worse side) | false turns | in flight: likeliest move off (px, median / p90) |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for head, noise, _, r in rows:
        moved = " / ".join(f"{r[f'{px} px']:.2f}" for px in AWAY)
        across, false, flight = (
            r["ball 2 px across"],
            r["false turns"],
            f"{r['in flight']:.2f} / {r['in flight p90']:.2f}",
        )
        print(f"| {head} | {noise:g} | {r['as read']:.2f} | {moved} | {across:.2f} | {false:.2f} | {flight} |")

    if args.enemy:
        shuffles = args.enemy_shuffle
        e = enemy_fit(objects, args.data, args.seed, args.steps, args.hidden, shuffles, args.enemy_noise)
        print(f"\nThe enemy's next vertical move, {int(e['moves'])} held-out moves: error (raw px, median / 90th pct)")
        print(f"(the head: rssm's enemy_moves=objects, {args.steps} enemy_prefit steps, enemy_serve, ", end="")
        print(f"enemy_noise {args.enemy_noise:g})")
        names = ["trees"] + [f"head, shuffle {v:g}, {k}" for v in shuffles for k in ("expected", "likeliest")]
        for name in names + ["last move", "no move"]:
            print(f"- {name}: {e[name]:.2f} / {e[name + ' p90']:.2f}")
        n = int(e[f"far states, shuffle {shuffles[0]:g}"])
        print(f"\nThe enemy far from the ball (> {FAR:g} px, {n} held-out states): share of likeliest moves toward it")
        print("\n| enemy_shuffle | fit (s) | as read | its last move reversed (away from the ball) |")
        print("|---:|---:|---:|---:|")
        for v in shuffles:
            fit, read, away = (
                e[f"{k}, shuffle {v:g}"] for k in ("head seconds", "far, as read", "far, last move reversed")
            )
            print(f"| {v:g} | {fit:.0f} | {read:.2f} | {away:.2f} |")


if __name__ == "__main__":
    main()
