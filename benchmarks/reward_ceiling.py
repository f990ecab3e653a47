"""How far ahead can anything call Pong's points? The real game as its own model, scored as ``closed-loop``
scores a world model's reward head.

    python benchmarks/reward_ceiling.py --games 4 --player random
    python benchmarks/reward_ceiling.py --games 4 --player scripted:0.2

``learned-envs closed-loop`` gives a model real contexts and the real actions that followed, steps it open
loop 1 to 10 steps, and counts the points it calls at the right step with the right sign (recall) and the
calls that were such points (precision). The best any model can do there is bounded by what the real state
decides: sticky actions (0.25 per emulator frame) repeat the previous action by chance, so the same chosen
actions can move the paddle differently. This script plays real games (ALE v5 defaults), keeps the emulator's
state at every step, and for windows of ``--horizon`` steps one after the other (as ``closed-loop`` takes them)
restores the state at the window's start and replays the same chosen actions; the sticky-action draws are
new ones (the random generator is not part of the saved state). The replay's points are scored against the
game's, by steps since the start, and the frame detector (what ``closed-loop``'s ``tracking`` reads) gives how
far apart the replay's ball and player's paddle are from the game's: the spread the game itself has. The RAM
is read only by the scripted player (``--player scripted:NOISE``, the player of the project's data sets);
random play reads nothing.
"""

from __future__ import annotations

import argparse

import numpy as np

from dataset_tools.atari.pong import ScriptedPongAgent
from dataset_tools.games import EnvSettings, make_env
from dataset_tools.preprocess import default_preprocess, to_tensor_layout


def replay_windows(
    games: int, player: str, horizon: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Points of the games (N,), of their replays (N,), steps since the window's start (N,), and the preprocessed
    frames after each of those steps, the game's and the replay's (N, C, H, W) each, every window."""
    env = make_env(EnvSettings(game="Pong"), obs_type="ram")
    ale = env.unwrapped.ale  # type: ignore[attr-defined]
    pre = default_preprocess("Pong")

    def screen() -> np.ndarray:
        return to_tensor_layout(pre(ale.getScreenRGB()[None]))[0]  # (C, H, W) in [0, 1]

    rng = np.random.default_rng(seed)
    scripted = ScriptedPongAgent(noise=float(player.split(":")[1]), seed=seed) if player != "random" else None
    true, replayed, ahead, seen, seen_again = [], [], [], [], []
    for game in range(games):
        ram, _ = env.reset(seed=seed + game)
        states, actions, rewards, frames, done = [], [], [], [], False
        while not done:
            states.append(ale.cloneState())
            if scripted is None:
                action = int(rng.integers(env.action_space.n))
            else:
                action = int(scripted.act(np.zeros((1, 1)), ram[None])[0])
            ram, reward, terminated, truncated, _ = env.step(action)
            actions.append(action)
            rewards.append(np.sign(reward))
            frames.append(screen())
            done = terminated or truncated
        for start in range(0, len(actions) - horizon + 1, horizon):
            ale.restoreState(states[start])
            for k in range(horizon):
                _, reward, *_ = env.step(actions[start + k])
                true.append(rewards[start + k])
                replayed.append(np.sign(reward))
                ahead.append(k + 1)
                seen.append(frames[start + k])
                seen_again.append(screen())
    env.close()
    return np.array(true), np.array(replayed), np.array(ahead), np.stack(seen), np.stack(seen_again)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--games", type=int, default=4)
    p.add_argument("--player", default="random", help="random | scripted:NOISE (the data sets' player: 0.2)")
    p.add_argument("--horizon", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.player != "random" and not args.player.startswith("scripted:"):
        p.error(f"--player must be random or scripted:NOISE, got {args.player!r}")
    from world_models.evaluation.closed_loop import _num, _recall_precision, _tracking
    from world_models.objects.pong_objects import find_objects

    true, replayed, ahead, seen, seen_again = replay_windows(args.games, args.player, args.horizon, args.seed)
    pre = default_preprocess("Pong")
    tracking = _tracking(find_objects(seen_again, pre), find_objects(seen, pre), ahead, true, replayed, args.horizon)
    print(f"real Pong replayed with new sticky-action draws, {args.games} games of {args.player} play")
    print("| steps since the window's start | points | recall | precision | ball px apart | player px apart |")
    print("|---|---:|---:|---:|---:|---:|")
    for k in [*range(1, args.horizon + 1), None]:
        rows = ahead == k if k is not None else np.ones_like(ahead, dtype=bool)
        r = _recall_precision(true[rows], replayed[rows])
        t = tracking["by_step"][k - 1] if k is not None else {"ball_px": None, "player_px": None}
        print(
            f"| {k if k is not None else 'all'} | {r['points']} | {r['recall']:.2f} | {r['precision']:.2f} "
            f"| {_num(t['ball_px'], 1)} | {_num(t['player_px'], 1)} |"
        )


if __name__ == "__main__":
    main()
