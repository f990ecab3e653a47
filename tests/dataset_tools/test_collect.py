from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from agents import make_agent
from dataset_tools.collect import CollectConfig, collect, episode_seed
from dataset_tools.dataset import DatasetDir
from dataset_tools.episode import DatasetError
from dataset_tools.games import EnvSettings


def test_fixture_dataset_is_complete(pong_dataset: Path) -> None:
    ds = DatasetDir(pong_dataset)
    manifest = ds.read_manifest()
    assert manifest["game"] == "Pong" and manifest["env_id"] == "ALE/Pong-v5"
    assert manifest["env"]["frameskip"] == 4 and manifest["env"]["repeat_action_probability"] == 0.25
    assert manifest["action_meanings"][:2] == ["NOOP", "FIRE"]
    assert manifest["preprocess"]["size"] == [64, 64]
    assert manifest["counts"] == {"episodes": 3, "steps": 600, "frames": 603}
    assert ds.episode_indices() == [0, 1, 2]
    ep = ds.load(0)
    assert ep.frames.shape == (201, 210, 160, 3) and ep.ram.shape == (201, 128)
    assert ep.actions.shape == ep.rewards.shape == (200,)
    assert ep.truncated[-1] and not ep.terminated.any()
    assert ep.meta["seed"] == episode_seed(0, 0)
    assert ds.validate() == []


def test_frames_budget_with_two_workers_and_extend(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    settings = EnvSettings(game="Pong", max_episode_steps=120)
    first = collect(CollectConfig(out=root, env=settings, frames=500, workers=2, seed=3), progress=False)
    ds = DatasetDir(root)
    assert first.steps == 500 and ds.counts()["steps"] == 500
    lengths = [len(ds.load(i)) for i in ds.episode_indices()]
    assert sum(lengths) == 500 and max(lengths) <= 120
    before = {i: np.asarray(ds.load(i).actions).copy() for i in ds.episode_indices()}
    # the same command again extends: new indices, new seeds, old episodes untouched
    second = collect(CollectConfig(out=root, env=settings, frames=300, workers=2, seed=3), progress=False)
    assert second.steps == 300 and ds.counts()["steps"] == 800
    assert set(second.episodes).isdisjoint(before)
    seeds = [ds.load(i).meta["seed"] for i in ds.episode_indices()]
    assert len(set(seeds)) == len(seeds)
    for i, actions in before.items():
        np.testing.assert_array_equal(ds.load(i).actions, actions)
    assert len(ds.read_manifest()["runs"]) == 2
    assert ds.validate() == []


def test_same_seed_same_episode(tmp_path: Path) -> None:
    settings = EnvSettings(game="Pong", max_episode_steps=50)
    for name in ("a", "b"):
        collect(
            CollectConfig(
                out=tmp_path / name, env=settings, episodes=1, agent="scripted", make_agent=make_agent, seed=7
            ),
            progress=False,
        )
    a, b = DatasetDir(tmp_path / "a").load(0), DatasetDir(tmp_path / "b").load(0)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.actions, b.actions)


def test_other_games_and_settings_are_recorded(tmp_path: Path) -> None:
    settings = EnvSettings(game="Breakout", frameskip=2, repeat_action_probability=0.0, max_episode_steps=30)
    collect(CollectConfig(out=tmp_path / "b", env=settings, episodes=2), progress=False)
    ds = DatasetDir(tmp_path / "b")
    assert ds.env_settings() == settings
    assert ds.counts()["episodes"] == 2
    # extending with other settings is refused, naming the manifest
    other = EnvSettings(game="Breakout", frameskip=4, max_episode_steps=30)
    with pytest.raises(DatasetError, match="dataset.json"):
        collect(CollectConfig(out=tmp_path / "b", env=other, episodes=1), progress=False)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"episodes": 0}, "--episodes must be at least 1"),
        ({"frames": -5}, "--frames must be at least 1"),
        ({"episodes": 1, "frames": 10}, "not both"),
        ({"episodes": 1, "workers": 0}, "--workers must be at least 1"),
        ({}, "nothing to collect"),
    ],
)
def test_impossible_counts(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        collect(CollectConfig(out=tmp_path / "x", **kwargs), progress=False)


def test_unwritable_output(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(DatasetError, match="cannot write there"):
        collect(CollectConfig(out=blocker / "ds", episodes=1), progress=False)


def test_corrupted_and_truncated_shards_are_named(pong_copy: Path) -> None:
    ds = DatasetDir(pong_copy)
    frames = pong_copy / "episodes" / "ep_000001" / "keyframes.npy"
    with open(frames, "r+b") as f:
        f.truncate(os.path.getsize(frames) // 2)
    with pytest.raises(DatasetError, match=str(frames)):
        ds.load(1)
    actions = pong_copy / "episodes" / "ep_000002" / "actions.npy"
    data = bytearray(actions.read_bytes())
    data[-3] ^= 0xFF  # same size, flipped bits: only the checksum sees it
    actions.write_bytes(bytes(data))
    problems = ds.validate()
    assert any(str(frames) in p for p in problems)
    assert any(str(actions) in p and "checksum" in p for p in problems)
    (pong_copy / "dataset.json").write_text("{broken")
    with pytest.raises(DatasetError, match="dataset.json"):
        ds.read_manifest()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from dataset_tools.cli import main; sys.exit(main())", *args]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupt_keeps_finished_episodes(tmp_path: Path, sig: signal.Signals) -> None:
    root = tmp_path / "ds"
    proc = subprocess.Popen(
        _cli(
            "-g",
            "Pong",
            "--out",
            str(root),
            "--episodes",
            "1000",  # more than a loaded machine can finish before the signal arrives
            "--max-episode-steps",
            "40",
            "--workers",
            "2",
            "--no-progress",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=sig == signal.SIGKILL,
        # a test run started in the background inherits an ignored SIGINT: give the collector Ctrl-C back
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    ds = DatasetDir(root)
    deadline = time.time() + 60
    while len(ds.episode_indices()) < 3 and time.time() < deadline:
        time.sleep(0.1)
    assert len(ds.episode_indices()) >= 3
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130, err.decode()
        assert b"every finished episode is kept" in err
        runs = ds.read_manifest()["runs"]
        assert runs[-1]["interrupted"] is True
    time.sleep(1.0)  # orphaned workers notice the dead parent and stop
    kept = ds.episode_indices()
    assert 3 <= len(kept) < 1000
    problems = ds.validate()
    if sig == signal.SIGINT:
        assert problems == []
    else:  # a killed run could not record its episodes: validate says so, and only so
        assert problems and all("counts" in p or "interrupted run" in p for p in problems), problems
    # a new run cleans up, reconciles the counts and continues after the last finished episode
    collect(CollectConfig(out=root, env=EnvSettings(max_episode_steps=40), episodes=1), progress=False)
    assert DatasetDir(root).episode_indices()[-1] > max(kept) - 0
    assert not list((root / "episodes").glob(".tmp-*"))
    assert DatasetDir(root).validate() == []


def test_manifest_records_command(pong_dataset: Path) -> None:
    manifest = json.loads((pong_dataset / "dataset.json").read_text())
    run = manifest["runs"][0]
    assert run["agent"] == "scripted" and run["episodes_added"] == [0, 1, 2] and run["interrupted"] is False


def test_copy_is_independent(pong_dataset: Path, pong_copy: Path) -> None:
    shutil.rmtree(pong_copy / "episodes" / "ep_000000")
    assert DatasetDir(pong_dataset).episode_indices() == [0, 1, 2]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_worker_blocked_on_a_lock_exits_when_its_parent_is_killed() -> None:
    """A parent killed while holding a shared lock must not leave a worker blocked on it forever,
    holding the parent's output pipes open (seen once in CI: the SIGKILL test above timed out)."""
    code = (
        "import os, threading, time\n"
        "from dataset_tools.collect import _exit_when_orphaned\n"
        "if os.fork() == 0:\n"
        "    _exit_when_orphaned(os.getppid(), grace=0.2)\n"
        "    lock = threading.Lock(); lock.acquire()\n"
        "    print('blocked', flush=True)\n"
        "    lock.acquire()  # forever, like a lock whose holder died\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None and proc.stdout.readline() == b"blocked\n"
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=20)  # EOF only once the orphaned child has exited too
    assert out == b""
