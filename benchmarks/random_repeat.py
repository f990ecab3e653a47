"""Points random play scores with each random action held K steps (``create-dataset --agent random:K``, the
loop's ``random_repeat``): whether a frames-only loop's first data holds any reward to learn from.

    python benchmarks/random_repeat.py --game Freeway --repeats 1,8,16,32,64 --games 4
    python benchmarks/random_repeat.py --game Freeway --action 1 --games 10 --first-seed 1000   # always UP

Full games of the real game (ALE v5, sticky actions 0.25), game i seeded i; the agent is the library's
``RandomAgent`` seeded as collection seeds it. Prints one row per K: every game's score and their mean. ``--action A`` plays action A at every step
instead (a fixed policy to hold a learned agent against; Freeway's always-UP).
"""

from __future__ import annotations

import argparse

import numpy as np

from dataset_tools.games import EnvSettings, make_env, resolve_game
from dataset_tools.policy import RandomAgent


def play(game: str, repeat: int, seed: int, action: int | None = None) -> float:
    env = make_env(EnvSettings(game=game), obs_type="ram")
    agent = RandomAgent(env.action_space.n, seed=seed + 1, repeat=repeat)
    ram, _ = env.reset(seed=seed)
    score, done = 0.0, False
    while not done:
        a = action if action is not None else int(agent.act(np.zeros((1, 1)), ram[None])[0])
        ram, reward, terminated, truncated, _ = env.step(a)
        score, done = score + float(reward), terminated or truncated
    env.close()
    return score


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--game", default="Freeway")
    p.add_argument("--repeats", default="1,8,16,32,64", help="comma-separated K values")
    p.add_argument("--games", type=int, default=4)
    p.add_argument("--first-seed", type=int, default=0, help="game i is seeded first_seed + i")
    p.add_argument("--action", type=int, default=None, help="play this action at every step instead")
    args = p.parse_args()
    game = resolve_game(args.game)
    seeds = [args.first_seed + i for i in range(args.games)]
    where = f"{args.games} full games (seeds {seeds[0]}..{seeds[-1]}), ALE v5, sticky actions 0.25"
    if args.action is not None:
        scores = [play(game, 1, s, args.action) for s in seeds]
        print(f"{game}, action {args.action} at every step, {where}: {', '.join(f'{v:.0f}' for v in scores)}")
        print(f"mean {np.mean(scores):.2f}")
        return
    print(f"{game}, {where}, per K\n")
    print("| K (steps each random action is held) | scores | mean |")
    print("|---:|---|---:|")
    for k in (int(v) for v in args.repeats.split(",")):
        scores = [play(game, k, s) for s in seeds]
        print(f"| {k} | {', '.join(f'{s:.0f}' for s in scores)} | {np.mean(scores):.2f} |")


if __name__ == "__main__":
    main()
