"""Agent files run no code on load: a crafted Stable-Baselines3 zip is refused unless pickle is trusted."""

from __future__ import annotations

import base64
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from agents.evaluate import load_agent
from agents.factory import make_agent
from agents.policy_io import convert_zip
from agents.sb3 import AgentLoadError
from dataset_tools.cli import main as create_dataset
from learned_envs.cli import main as cli_main


class _Touch:
    """A harmless payload: unpickling it creates a marker file (what an attacker's shell command would be)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _crafted_zip(tmp_path: Path, marker: Path) -> Path:
    """A real SB3 PPO zip whose ``data`` entry carries the payload where SB3 unpickles its entries."""
    import gymnasium as gym
    from stable_baselines3 import PPO

    env = gym.make("CartPole-v1")
    model = PPO("MlpPolicy", env, n_steps=16, batch_size=16, device="cpu")
    path = tmp_path / "agent.zip"
    model.save(path)
    with zipfile.ZipFile(path) as zf:
        entries = {name: zf.read(name) for name in zf.namelist()}
    data = json.loads(entries["data"])
    data["lr_schedule"] = {
        ":type:": "<class 'function'>",
        ":serialized:": base64.b64encode(pickle.dumps(_Touch(marker))).decode(),
    }
    entries["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in entries.items():
            zf.writestr(name, content)
    meta = {"obs_type": "latent", "checkpoint": "none", "config": {"algo": "ppo"}, "game": "Pong"}
    (tmp_path / "agent.json").write_text(json.dumps(meta))
    return path


def test_a_crafted_sb3_zip_runs_nothing_without_the_opt_in(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    marker = tmp_path / "pwned"
    path = _crafted_zip(tmp_path, marker)
    for load in (
        lambda: load_agent(path),
        lambda: load_agent(tmp_path),
        lambda: make_agent(str(path), "Pong", 6),
        lambda: convert_zip(path),
    ):
        with pytest.raises(AgentLoadError, match="--trust-pickle"):
            load()
    assert cli_main(["evaluate-agent", "--agent", str(tmp_path), "--episodes", "1", "--no-progress"]) == 2
    assert "trust-pickle" in capsys.readouterr().err
    args = ["-g", "Pong", "--out", str(tmp_path / "d"), "--episodes", "1", "--agent", str(path)]
    assert create_dataset(args) != 0
    assert not marker.exists()
    # with the opt-in the file is read as SB3 reads it, and the payload does run: the flag is a real warning
    load_agent(path, trust_pickle=True)
    assert marker.exists()


def test_weights_and_json_round_trip_and_refuse_a_crafted_weights_file(tmp_path: Path) -> None:
    import shutil

    import torch

    from agents.evaluate import agent_file

    shipped = agent_file("PongDreamPPO-v1").parent
    agent = tmp_path / "agent"
    shutil.copytree(shipped, agent)
    policy, meta = load_agent(agent)
    assert meta["policy"]["format"] == 2 and meta["policy"]["class"] == "MlpPolicy"
    obs = np.random.default_rng(0).normal(size=(64, 36)).astype(np.float32)
    actions = policy.predict(obs, deterministic=True)[0]
    assert actions.shape == (64,) and set(actions.tolist()) <= set(range(6))
    marker = tmp_path / "pwned"
    torch.save({"weights": _Touch(marker)}, agent / "agent.pt")  # a weights file that would run code if unpickled
    with pytest.raises(AgentLoadError, match="agent.pt"):
        load_agent(agent)
    assert not marker.exists()
    (agent / "agent.json").write_text("{}")
    with pytest.raises(AgentLoadError, match="agent.json: not an agent"):
        load_agent(agent)
    (agent / "agent.json").write_text("{not json")
    with pytest.raises(AgentLoadError, match="agent.json: not valid JSON"):
        load_agent(agent)
