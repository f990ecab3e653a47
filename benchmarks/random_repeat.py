"""Points random play scores with each random action held K steps (``create-dataset --agent random:K``, the
loop's ``random_repeat``): whether a frames-only loop's first data holds any reward to learn from.

    python benchmarks/random_repeat.py --game Freeway --repeats 1,8,16,32,64 --games 4

Full games of the real game (ALE v5, sticky actions 0.25), game i seeded i; the agent is the library's
``RandomAgent`` seeded as collection seeds it. Prints one row per K: every game's score and their mean.
"""

from __future__ import annotations

import argparse

import numpy as np

from dataset_tools.games import EnvSettings, make_env, resolve_game
from dataset_tools.policy import RandomAgent


def play(game: str, repeat: int, seed: int) -> float:
    env = make_env(EnvSettings(game=game), obs_type="ram")
    agent = RandomAgent(env.action_space.n, seed=seed + 1, repeat=repeat)
    ram, _ = env.reset(seed=seed)
    score, done = 0.0, False
    while not done:
        ram, reward, terminated, truncated, _ = env.step(int(agent.act(np.zeros((1, 1)), ram[None])[0]))
        score, done = score + float(reward), terminated or truncated
    env.close()
    return score


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--game", default="Freeway")
    p.add_argument("--repeats", default="1,8,16,32,64", help="comma-separated K values")
    p.add_argument("--games", type=int, default=4)
    args = p.parse_args()
    game = resolve_game(args.game)
    print(f"{game}, {args.games} full games per K (game i seeded i), ALE v5, sticky actions 0.25\n")
    print("| K (steps each random action is held) | scores | mean |")
    print("|---:|---|---:|")
    for k in (int(v) for v in args.repeats.split(",")):
        scores = [play(game, k, i) for i in range(args.games)]
        print(f"| {k} | {', '.join(f'{s:.0f}' for s in scores)} | {np.mean(scores):.2f} |")


if __name__ == "__main__":
    main()
