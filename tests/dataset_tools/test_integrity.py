"""One writer per dataset, shards checked before training, counts that never lie, bad input refused up front."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from agents import make_agent
from dataset_tools.collect import CollectConfig, collect, worker_count
from dataset_tools.dataset import DatasetDir
from dataset_tools.episode import DatasetError
from dataset_tools.games import EnvSettings
from world_models.training import TrainError, train

TINY = ["steps=2", "batch_size=2", "n_past=2", "n_future=2", "hidden=8", "layers=1", "image_every=0", "n_contexts=2"]


HOLD = "import sys, time; from dataset_tools.lock import DatasetLock; DatasetLock(sys.argv[1]).__enter__(); print('ready', flush=True); time.sleep(60)"


def test_a_second_writer_is_refused_and_a_dead_one_frees_the_lock(pong_copy: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(pong_copy)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
    leftover = pong_copy / "episodes" / ".tmp-ep_000099-123"  # the first writer's unfinished episode
    leftover.mkdir()
    before = DatasetDir(pong_copy).counts()
    cfg = CollectConfig(
        out=pong_copy,
        env=EnvSettings(game="Pong", max_episode_steps=200),
        episodes=1,
        agent="scripted",
        make_agent=make_agent,
    )
    with pytest.raises(DatasetError, match=rf"another run is writing this dataset: pid {holder.pid}"):
        collect(cfg, progress=False)
    assert leftover.exists() and DatasetDir(pong_copy).counts() == before  # nothing of the first run touched
    holder.kill()  # killed while holding it: the kernel drops the lock
    holder.wait()
    collect(cfg, progress=False)
    assert not leftover.exists() and DatasetDir(pong_copy).counts()["episodes"] == before["episodes"] + 1
    assert DatasetDir(pong_copy).validate() == []


def test_training_checks_every_shard_before_it_writes_anything(pong_copy: Path, tmp_path: Path) -> None:
    ep = pong_copy / "episodes" / "ep_000001"
    val = ep / "delta_val.npy"
    raw = bytearray(val.read_bytes())
    raw[-1] ^= 0x55  # one flipped byte
    val.write_bytes(bytes(raw))
    with pytest.raises(TrainError, match=r"ep_000001/delta_val.npy: checksum mismatch"):
        train("object_dynamics", pong_copy, tmp_path / "run", TINY, progress=False)
    assert not (tmp_path / "run").exists()
    assert any("checksum mismatch" in p for p in DatasetDir(pong_copy).validate())


def test_actions_outside_the_game_are_refused(pong_copy: Path, tmp_path: Path) -> None:
    import zlib

    ep = pong_copy / "episodes" / "ep_000000"
    actions = np.load(ep / "actions.npy")
    actions[5] = 9  # Pong has 6 actions
    np.save(ep / "actions.npy", actions)
    meta = json.loads((ep / "meta.json").read_text())
    meta["crc32"]["actions"] = zlib.crc32(actions.view(np.uint8).reshape(-1))  # a consistent, wrong shard
    (ep / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(TrainError, match=r"ep_000000/actions.npy: actions 0..9 outside the game's 6"):
        train("object_dynamics", pong_copy, tmp_path / "run", TINY, progress=False)
    assert not (tmp_path / "run").exists()


def test_a_shard_passes_its_check_once(pong_copy: Path) -> None:
    ds = DatasetDir(pong_copy)
    ds.check_episodes()
    markers = sorted((pong_copy / "episodes").glob("*/.checked"))
    assert len(markers) == ds.counts()["episodes"]
    stamp = markers[0].stat().st_mtime_ns
    time.sleep(0.01)
    ds.check_episodes()
    assert markers[0].stat().st_mtime_ns == stamp


def test_counts_are_reconciled_and_a_broken_meta_stops_collection_first(pong_copy: Path) -> None:
    ds = DatasetDir(pong_copy)
    shutil.rmtree(pong_copy / "episodes" / "ep_000002")  # the manifest still counts it
    problems = ds.validate()
    assert any("counts" in p for p in problems), problems
    cfg = CollectConfig(
        out=pong_copy,
        env=EnvSettings(game="Pong", max_episode_steps=200),
        episodes=1,
        agent="scripted",
        make_agent=make_agent,
    )
    (pong_copy / "episodes" / "ep_000001" / "meta.json").write_text("{broken")
    with pytest.raises(DatasetError, match="ep_000001/meta.json"):
        collect(cfg, progress=False)
    assert ds.episode_indices() == [0, 1]  # nothing was collected
    shutil.rmtree(pong_copy / "episodes" / "ep_000001")
    collect(cfg, progress=False)
    assert ds.read_manifest()["counts"] == ds.counts() and ds.validate() == []


def test_bad_settings_fail_up_front(tmp_path: Path) -> None:
    env = EnvSettings(game="Pong")
    assert worker_count(CollectConfig(out=tmp_path, env=env, frames=50, workers=500)) == 1
    with pytest.raises(ValueError, match="--seed must be 0 or more"):
        collect(CollectConfig(out=tmp_path / "d", env=env, frames=50, seed=-1), progress=False)
    assert not (tmp_path / "d").exists()


def test_an_extractor_is_refused_as_an_env() -> None:
    from learned_envs.env import LearnedVectorEnv
    from world_models.space import PONG_CHECKPOINT

    with pytest.raises(ValueError, match="object extractor, it cannot step"):
        LearnedVectorEnv(PONG_CHECKPOINT, 1, device="cpu")


def test_a_read_only_dataset_is_checked_without_stamps(pong_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataset_tools.dataset as dataset_module

    def read_only(path: Path, text: str) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    for stamp in (pong_copy / "episodes").glob("*/.checked"):  # the shared fixture may have been checked already
        stamp.unlink()
    monkeypatch.setattr(dataset_module, "_write_text", read_only)
    DatasetDir(pong_copy).check_episodes()  # no stamps written, and no error for it
    assert not list((pong_copy / "episodes").glob("*/.checked"))
    val = pong_copy / "episodes" / "ep_000000" / "delta_val.npy"
    raw = bytearray(val.read_bytes())
    raw[-1] ^= 0x55
    val.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="checksum mismatch"):  # unstamped, so checked again every time
        DatasetDir(pong_copy).check_episodes()
