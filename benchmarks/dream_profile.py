"""Where a dream step's time goes, and where agent training's time goes (PPO in the dream).

    python benchmarks/dream_profile.py --checkpoint learned_envs/assets/LearnedPong-v2

1. ``LearnedVectorEnv.step`` at ``--envs`` envs (latent observations, random actions) under torch's profiler:
   each group's share of the step's CPU time (the network's matrix products and activations, the random
   draws, indexing and copies, the other operations; Python between the operations is not counted).
2. ``learn()`` of PPO at ``--ppo-envs`` envs with the dream's settings (``ppo_settings``, MlpPolicy 128 x 128)
   under cProfile: the share of the dream's steps, of the policy during the rollouts, and of PPO's updates,
   and the dream steps per second with the updates.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import time

import numpy as np
import torch

GROUPS = {
    "network (matrix products, activations)": ("aten::addmm", "aten::mm", "aten::bmm", "aten::silu", "aten::tanh"),
    "random draws (uniform, Gumbel logs, argmax)": ("aten::uniform_", "aten::log", "aten::argmax", "aten::neg"),
    "indexing and copies": ("aten::index", "aten::copy_", "aten::cat", "aten::gather", "aten::_to_copy"),
}


def step_breakdown(checkpoint: str, envs: int, steps: int) -> tuple[float, dict[str, float]]:
    from torch.profiler import ProfilerActivity, profile

    from learned_envs.env import LearnedVectorEnv

    venv = LearnedVectorEnv(checkpoint, envs, obs_type="latent")
    rng = np.random.default_rng(0)
    venv.reset(seed=0)
    for _ in range(10):
        venv.step(rng.integers(0, venv.single_action_space.n, envs))
    t0 = time.perf_counter()
    for _ in range(steps):
        venv.step(rng.integers(0, venv.single_action_space.n, envs))
    rate = steps * envs / (time.perf_counter() - t0)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            venv.step(rng.integers(0, venv.single_action_space.n, envs))
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    shares = {g: sum(e.self_cpu_time_total for e in events if e.key in names) / total for g, names in GROUPS.items()}
    shares["other tensor operations"] = 1.0 - sum(shares.values())
    return rate, shares


def ppo_breakdown(checkpoint: str, envs: int, steps: int) -> tuple[float, dict[str, float]]:
    import gymnasium as gym  # noqa: F401  (the SB3 import below wants it first)
    from stable_baselines3 import PPO

    from learned_envs.env import LearnedVectorEnv
    from learned_envs.sb3 import SB3VecEnv, ppo_settings

    env = SB3VecEnv(LearnedVectorEnv(checkpoint, envs, obs_type="latent", max_episode_steps=100))
    agent = PPO("MlpPolicy", env, seed=0, policy_kwargs={"net_arch": [128, 128]}, **ppo_settings(envs))
    agent.learn(total_timesteps=2 * 8192)  # warm-up
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.enable()
    agent.learn(total_timesteps=steps, reset_num_timesteps=False)
    profiler.disable()
    wall = time.perf_counter() - t0
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]

    def cumulative(file_end: str, name: str) -> float:
        return sum(v[3] for (f, _, n), v in stats.items() if f.endswith(file_end) and n == name)

    total = cumulative("on_policy_algorithm.py", "learn")
    rollouts = cumulative("on_policy_algorithm.py", "collect_rollouts")
    dream = cumulative("learned_envs/sb3.py", "step_wait")
    update = cumulative("ppo/ppo.py", "train")
    shares = {
        "dream steps (the model)": dream / total,
        "policy and rollout buffer during rollouts": (rollouts - dream) / total,
        "PPO updates": update / total,
    }
    shares["other"] = 1.0 - sum(shares.values())
    return steps / wall, shares


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="learned_envs/assets/LearnedPong-v2")
    p.add_argument("--envs", type=int, default=256, help="envs of the profiled dream step")
    p.add_argument("--steps", type=int, default=100, help="profiled dream steps")
    p.add_argument("--ppo-envs", type=int, default=64, help="envs of the profiled PPO training (0: skip it)")
    p.add_argument("--ppo-steps", type=int, default=81920, help="profiled dream steps of PPO training")
    args = p.parse_args()
    print(
        f"checkpoint {args.checkpoint}, {platform.machine()} {os.cpu_count()} cores, "
        f"torch threads {torch.get_num_threads()}"
    )
    rate, shares = step_breakdown(args.checkpoint, args.envs, args.steps)
    print(f"\ndream step, {args.envs} envs, latent: {rate:.0f} env steps/s")
    print(f"{'where the step goes':<48}{'share':>7}")
    for name, share in shares.items():
        print(f"{name:<48}{share:>7.0%}")
    if args.ppo_envs > 0:
        rate, shares = ppo_breakdown(args.checkpoint, args.ppo_envs, args.ppo_steps)
        print(f"\nPPO in the dream, {args.ppo_envs} envs: {rate:.0f} dream steps/s with its updates")
        print(f"{'where training goes':<48}{'share':>7}")
        for name, share in shares.items():
            print(f"{name:<48}{share:>7.0%}")


if __name__ == "__main__":
    main()
