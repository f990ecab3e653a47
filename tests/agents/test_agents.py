from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from agents import AgentLoadError, RandomAgent, SB3Agent, ScriptedPongAgent, make_agent
from dataset_tools.collect import CollectConfig, collect
from dataset_tools.dataset import DatasetDir
from dataset_tools.games import EnvSettings, make_env
from dataset_tools.preprocess import Preprocess


def test_random_agent_is_batched_and_seeded() -> None:
    frames, ram = np.zeros((5, 210, 160, 3), np.uint8), np.zeros((5, 128), np.uint8)
    a, b = RandomAgent(6, seed=1), RandomAgent(6, seed=1)
    out = a.act(frames, ram)
    assert out.shape == (5,) and out.dtype == np.int64 and ((0 <= out) & (out < 6)).all()
    np.testing.assert_array_equal(out, b.act(frames, ram))


def test_a_random_agent_may_hold_each_action(tmp_path: Path) -> None:
    frames, ram = np.zeros((1, 210, 160, 3), np.uint8), np.zeros((1, 128), np.uint8)
    agent = make_agent("random:5", "Pong", 6, seed=0)
    actions = np.concatenate([agent.act(frames, ram) for _ in range(2000)])
    runs = np.split(actions, np.nonzero(np.diff(actions))[0] + 1)
    assert all(len(r) % 5 == 0 for r in runs[:-1]) and len(set(actions.tolist())) == 6  # held 5 steps each
    assert agent.describe()["repeat"] == 5 and "repeat" not in make_agent("random", "Pong", 6).describe()
    fresh = RandomAgent(6, seed=0)
    plain = np.concatenate([fresh.act(frames, ram) for _ in range(50)])
    assert (np.diff(plain) != 0).mean() > 0.6  # a new action every step, as before
    for bad in ("random:0", "random:x", "random:"):
        with pytest.raises(ValueError, match=r"expected random:K"):
            make_agent(bad, "Pong", 6)
    out = tmp_path / "held"
    collect(CollectConfig(out=out, env=EnvSettings(max_episode_steps=60), frames=60, agent="random:20"), progress=False)
    recorded = DatasetDir(out).load(0).actions
    assert len(np.unique(recorded[:20])) == 1 and DatasetDir(out).read_manifest()["runs"][0]["agent"] == "random:20"


def _play_points(noise: float, steps: int = 3000) -> tuple[int, int]:
    env = make_env(EnvSettings(repeat_action_probability=0.0))
    agent = ScriptedPongAgent(noise=noise, seed=0)
    obs, _ = env.reset(seed=0)
    won = lost = 0
    for _ in range(steps):
        ram = env.unwrapped.ale.getRAM()
        obs, reward, term, trunc, _ = env.step(int(agent.act(obs[None], ram[None])[0]))
        won += reward > 0
        lost += reward < 0
        if term or trunc:
            break
    env.close()
    return won, lost


def test_scripted_pong_agent_wins_and_loses_points() -> None:
    won, lost = _play_points(noise=0.1)
    assert won >= 1 and lost >= 1  # hits, won and lost points: not only misses
    with pytest.raises(ValueError):
        ScriptedPongAgent(noise=1.5)


def test_scripted_agent_is_pong_only() -> None:
    with pytest.raises(AgentLoadError, match=r"no scripted agent plays Breakout \(only Pong\)"):
        make_agent("scripted", "Breakout", 4)
    with pytest.raises(AgentLoadError, match="unknown agent"):
        make_agent("clever", "Pong", 6)


class _SmallPong(gym.ObservationWrapper):
    """Real Pong with 64 x 64 grayscale observations, to train a tiny SB3 policy."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.pre = Preprocess(size=(64, 64), grayscale=True)
        self.observation_space = gym.spaces.Box(0, 255, (64, 64, 1), np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return self.pre(observation)


def test_sb3_policy_zip_drives_collection(tmp_path: Path) -> None:
    from stable_baselines3 import PPO

    env = _SmallPong(make_env(EnvSettings(max_episode_steps=50)))
    model = PPO(
        "CnnPolicy",
        env,
        n_steps=32,
        batch_size=32,
        n_epochs=1,
        seed=0,
        device="cpu",
        policy_kwargs={"normalize_images": True, "features_extractor_kwargs": {"features_dim": 16}},
    )
    model.learn(32)
    path = tmp_path / "policy.zip"
    model.save(path)
    with pytest.raises(AgentLoadError, match="--trust-pickle"):  # loading an SB3 zip runs code: only if trusted
        make_agent(str(path), "Pong", 6)
    agent = make_agent(str(path), "Pong", 6, trust_pickle=True)
    assert isinstance(agent, SB3Agent) and agent.preprocess == Preprocess(size=(64, 64), grayscale=True)
    actions = agent.act(np.zeros((3, 210, 160, 3), np.uint8), np.zeros((3, 128), np.uint8))
    assert actions.shape == (3,)
    collect(
        CollectConfig(
            out=tmp_path / "ds",
            env=EnvSettings(max_episode_steps=30),
            episodes=1,
            agent=str(path),
            make_agent=make_agent,
            trust_pickle=True,
        ),
        progress=False,
    )
    ds = DatasetDir(tmp_path / "ds")
    assert ds.load(0).meta["agent"]["name"] == "sb3" and len(ds.load(0)) == 30
    with pytest.raises(AgentLoadError, match="6 actions"):
        make_agent(str(path), "Breakout", 4, trust_pickle=True)
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(AgentLoadError, match="not a Stable-Baselines3"):
        make_agent(str(bad), "Pong", 6, trust_pickle=True)
    with pytest.raises(AgentLoadError, match="no such policy"):
        SB3Agent(tmp_path / "missing.zip")
