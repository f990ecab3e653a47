"""Checkpoints and classifiers run no code on load: a config naming a crafted pickle is inert."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import gymnasium as gym
import pytest

import learned_envs
from world_models.objects.scene_dynamics import _digest
from world_models.space import PONG_CHECKPOINT
from world_models.space.classifier import ClassifierError, load_classifier


class _Touch:
    """A harmless payload: unpickling it creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_naming_a_crafted_classifier_runs_nothing_in_gym_make(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    extractor = tmp_path / "extractor"
    shutil.copytree(PONG_CHECKPOINT, extractor)
    crafted = tmp_path / "classifier.joblib.pkl"
    crafted.write_bytes(pickle.dumps(_Touch(marker)))
    ckpt = tmp_path / "scene"
    shutil.copytree(learned_envs.shipped_checkpoint("LearnedPongScene-v0"), ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    config["model_config"]["extractor"] = str(extractor)
    config["model_config"]["classifier"] = str(crafted)
    config["model_config"]["trust_pickle"] = True  # even a config that opts in is not followed at load time
    config["model_config"]["extractor_spec"]["digest"] = _digest(extractor / "model.pt", crafted)  # looks current
    (ckpt / "config.json").write_text(json.dumps(config))
    learned_envs.register_checkpoint("CraftedScene-v0", ckpt)
    env = gym.make("CraftedScene-v0", obs_type="latent", device="cpu")
    env.reset(seed=0)
    env.step(0)
    assert not marker.exists()


def test_a_crafted_classifier_pickle_is_refused_unless_trusted(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    crafted = tmp_path / "z_what-classifier_4.joblib.pkl"
    crafted.write_bytes(pickle.dumps(_Touch(marker)))
    with pytest.raises(ClassifierError, match="trust_pickle"):
        load_classifier(crafted)
    assert not marker.exists()
    with pytest.raises(ClassifierError, match="not a linear classifier"):  # the payload ran: that is what trust means
        load_classifier(crafted, trust_pickle=True)
    assert marker.exists()
    shipped = load_classifier(PONG_CHECKPOINT / "z_what-classifier_4.json")
    assert list(shipped.classes_) == ["ball", "enemy", "player"]
