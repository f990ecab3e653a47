"""Does the dream play Pong by Pong's rules? Long random-action rollouts of an object-level learned
env against real episodes of a random agent.

    python benchmarks/dream_fidelity.py --checkpoint learned_envs/assets/LearnedPongObjects-v0 --data data/pong_wm

Per 1,000 steps: points lost and won, and "returns" (the ball turning back on the player's side);
for each return, how far the ball was from the player's paddle (a real return needs the paddle
within about 10 px; a dream that turns the ball back without the paddle is one an agent can
exploit without learning to play). Real figures come from the dataset's random-agent episodes.

A second table looks at one step at a time: on the dataset's real windows where the ball flies
towards the player near its column, how often the model turns the ball at the next step, split by
whether it really turned and by how far the paddle was (a faithful model turns it when it turns
and never before).

With ``--agent AGENT`` a dream-trained agent plays instead of random actions, in the dream and in
``--real-episodes`` real games through the twin (objects read off the frames in both): a dream
that is faithful for that agent gives it the same points lost and won per 1,000 steps as the game.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from dataset_tools.dataset import DatasetDir
from learned_envs.env import LearnedVectorEnv
from world_models.objects.pong_objects import ram_vectors


def returns(h: np.ndarray) -> list[float]:
    """Object vectors (T, 3, 3) of one episode -> ball-paddle y distance (raw px) at each return."""
    out = []
    for t in range(2, len(h)):
        seen = h[t - 2 : t + 1, 2, 0].all()
        if seen and h[t - 1, 2, 1] > h[t - 2, 2, 1] and h[t, 2, 1] < h[t - 1, 2, 1] and h[t - 1, 2, 1] > 0.5:
            out.append(abs(h[t - 1, 2, 2] - h[t - 1, 0, 2]) * 105)
    return out


def summary(lost: float, won: float, steps: int, dist: list[float]) -> str:
    d = np.array(dist) if dist else np.array([np.nan])
    k = 1000 / steps
    return f"{lost * k:>6.1f}{won * k:>6.1f}{len(dist) * k:>9.1f}{np.median(d):>13.1f}{np.mean(d > 12):>12.2f}"


def one_step_turns(venv: LearnedVectorEnv, ds: DatasetDir, samples: int = 5) -> str:
    """The one-step table: predicted turn rate on real windows (ball moving right, x > 128 px)."""
    model, k = venv.model, venv.model.cfg.n_past
    windows, actions, nxt = [], [], []
    for i in ds.episode_indices():
        ep = ds.load(i)
        v, a = ram_vectors(np.asarray(ep.ram)), np.asarray(ep.actions)
        for t in range(k, len(v) - 1):
            ball = v[t - 1 : t + 1, 2]
            if ball[:, 0].all() and ball[1, 1] > ball[0, 1] and (ball[1, 1] + 1) * 80 > 128:
                windows.append(v[t - k + 1 : t + 1])
                actions.append(a[t - k + 1 : t + 1])
                nxt.append(v[t + 1])
    w, a, n = torch.from_numpy(np.array(windows)), torch.from_numpy(np.array(actions)), np.array(nxt)
    cur = w[:, -1].numpy()
    with torch.no_grad():
        turned = [
            (p[:, 2, 0] > 0) & (p[:, 2, 1] < cur[:, 2, 1])
            for p in (
                model.step({"window": w, "actions": a[:, :-1]}, a[:, -1], generator=torch.Generator().manual_seed(s))
                .state["window"][:, -1]
                .numpy()
                for s in range(samples)
            )
        ]
    predicted = np.mean(turned, axis=0)
    real_turn = (n[:, 2, 0] > 0) & (n[:, 2, 1] < cur[:, 2, 1])
    dist = np.abs(cur[:, 2, 2] - cur[:, 0, 2]) * 105
    lines = [
        f"{'one step, real windows':<24}{'paddle <12px':>14}{'12-30px':>14}{'>30px':>14}   (share turned by the model)"
    ]
    for name, sel in (("ball really turns", real_turn), ("ball flies on", ~real_turn)):
        cells = []
        for lo, hi in ((0, 12), (12, 30), (30, 1e9)):
            m = sel & (dist >= lo) & (dist < hi)
            cells.append(f"{predicted[m].mean():.2f} ({m.sum()})" if m.any() else "-")
        lines.append(f"{name:<24}{cells[0]:>14}{cells[1]:>14}{cells[2]:>14}")
    ball_x = (cur[:, 2, 1] + 1) * 80
    lines.append(f"by ball x (paddle <12px): {'x px':>8}{'windows':>9}{'real':>7}{'model':>7}   (share that turn)")
    for lo in range(134, 148, 2):
        m = (ball_x >= lo) & (ball_x < lo + 2) & (dist < 12)
        if m.sum() >= 20:
            lines.append(
                f"{'':<25}{f'{lo}-{lo + 2}':>8}{m.sum():>9}{real_turn[m].mean():>7.2f}{predicted[m].mean():>7.2f}"
            )
    return "\n".join(lines)


def agent_in_real_game(
    policy, checkpoint: str, episodes: int, seed: int, k: int
) -> tuple[float, float, int, list[float]]:
    """The agent's real games through the twin: points lost, won, steps, and its returns' distances."""
    from agents.evaluate import PROTOCOL
    from learned_envs.twin import make_real_twin

    lost, won, steps, dist = 0.0, 0.0, 0, []
    for i in range(episodes):
        twin = make_real_twin(checkpoint, obs_type="latent", **PROTOCOL)
        obs, _ = twin.reset(seed=seed + 1000 + i)
        seen, done = [obs.reshape(k, 3, 3)[-1].copy()], False
        while not done:
            action, _ = policy.predict(obs[None], deterministic=True)
            obs, r, terminated, truncated, _ = twin.step(int(np.asarray(action).reshape(-1)[0]))
            seen.append(obs.reshape(k, 3, 3)[-1].copy())
            lost, won, steps, done = lost + (r < 0), won + (r > 0), steps + 1, terminated or truncated
        dist += returns(np.stack(seen))
    return lost, won, steps, dist


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="learned_envs/assets/LearnedPongObjects-v0")
    p.add_argument("--data", required=True, help="a Pong dataset with random-agent episodes")
    p.add_argument("--envs", type=int, default=128)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--agent",
        help="play this dream-trained agent (deterministic) instead of random actions, "
        "in the dream and in --real-episodes real games",
    )
    p.add_argument("--real-episodes", type=int, default=3)
    args = p.parse_args()
    venv = LearnedVectorEnv(args.checkpoint, args.envs, device="cpu", obs_type="latent", max_episode_steps=10**9)
    k = venv.model.cfg.n_past
    rng = np.random.default_rng(args.seed)
    policy = None
    if args.agent:
        from agents.evaluate import load_agent

        policy, _ = load_agent(args.agent)
    obs, _ = venv.reset(seed=args.seed)
    frames, rewards = [], []
    for _ in range(args.steps):
        if policy is not None:
            actions = np.asarray(policy.predict(obs, deterministic=True)[0]).reshape(-1)
        else:
            actions = rng.integers(0, venv.single_action_space.n, args.envs)
        obs, r, *_ = venv.step(actions)
        frames.append(obs.reshape(args.envs, k, 3, 3)[:, -1].copy())
        rewards.append(r)
    h, r = np.stack(frames), np.array(rewards)  # (T, N, 3, 3), (T, N)
    dream = sum((returns(h[:, e]) for e in range(args.envs)), [])
    if policy is not None:
        lost, won, steps, real = agent_in_real_game(policy, args.checkpoint, args.real_episodes, args.seed, k)
        print(f"checkpoint {args.checkpoint}; agent {args.agent}; per 1,000 steps")
        print(f"{'':<22}{'lost':>6}{'won':>6}{'returns':>9}{'dist median':>13}{'dist > 12px':>12}")
        print(f"{'dream (' + str(args.envs) + ' envs)':<22}" + summary((r < 0).sum(), (r > 0).sum(), r.size, dream))
        print(f"{'real (' + str(args.real_episodes) + ' games)':<22}" + summary(lost, won, max(steps, 1), real))
        return
    ds = DatasetDir(args.data)
    real, lost, won, steps = [], 0.0, 0.0, 0
    for i in ds.episode_indices():
        ep = ds.load(i)
        if ep.meta.get("agent", {}).get("name") != "random":
            continue
        real += returns(ram_vectors(np.asarray(ep.ram)))
        rew = np.asarray(ep.rewards)
        lost, won, steps = lost + (rew < 0).sum(), won + (rew > 0).sum(), steps + len(rew)
    print(f"checkpoint {args.checkpoint}; random actions; per 1,000 steps")
    print(f"{'':<22}{'lost':>6}{'won':>6}{'returns':>9}{'dist median':>13}{'dist > 12px':>12}")
    print(f"{'dream (' + str(args.envs) + ' envs)':<22}" + summary((r < 0).sum(), (r > 0).sum(), r.size, dream))
    print(f"{'real (random agent)':<22}" + summary(lost, won, max(steps, 1), real))
    print()
    print(one_step_turns(venv, ds))


if __name__ == "__main__":
    main()
