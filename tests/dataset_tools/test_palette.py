"""Palette-index frames: the colour table, the RGB view, palette shards and schema-1 (RGB) datasets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from agents import make_agent
from dataset_tools.collect import CollectConfig, collect
from dataset_tools.dataset import DatasetDir
from dataset_tools.episode import DatasetError, Episode, episode_index, load_episode, verify_episode, write_episode
from dataset_tools.games import EnvSettings
from dataset_tools.palette import ColourTable, PaletteError, PaletteFrames, used_indices
from dataset_tools.sequences import SequenceDataset


def _palette() -> np.ndarray:
    palette = np.zeros((256, 3), np.uint8)
    palette[0], palette[2], palette[200] = (0, 0, 0), (236, 236, 236), (92, 186, 92)
    return palette


def test_colour_table_learns_checks_and_refuses_two_colours() -> None:
    palette = _palette()
    frame = np.zeros((210, 160), np.uint8)
    frame[10:20, 5:9] = 2
    table = ColourTable()
    assert table.has_unknown(frame)
    table.learn(frame, palette[frame])
    assert table.known.tolist() == [0, 2] and not table.has_unknown(frame)
    np.testing.assert_array_equal(table.rgb[frame], palette[frame])
    moved = frame.copy()
    moved[100, 100] = 200  # a new colour where the frame changed: seen by the full and the delta check
    assert table.has_unknown(moved) and table.has_unknown(moved, previous=frame)
    assert not table.has_unknown(frame, previous=frame)
    table.learn(moved, palette[moved])
    assert table.known.tolist() == [0, 2, 200]
    wrong = palette[moved].copy()
    wrong[100, 100] = (1, 2, 3)  # index 200 now shows a second colour
    with pytest.raises(PaletteError, match="200"):
        table.learn(moved, wrong)


def test_palette_frames_behave_like_the_rgb_array() -> None:
    rng = np.random.default_rng(0)
    indices = rng.choice(np.array([0, 2, 200], np.uint8), size=(7, 210, 160))
    palette = _palette()
    frames, rgb = PaletteFrames(indices, palette), palette[indices]
    assert frames.shape == rgb.shape == (7, 210, 160, 3) and len(frames) == 7 and frames.dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(frames), rgb)
    np.testing.assert_array_equal(frames[2:5], rgb[2:5])
    np.testing.assert_array_equal(frames[3], rgb[3])
    np.testing.assert_array_equal(frames[np.array([6, 0])], rgb[np.array([6, 0])])
    np.testing.assert_array_equal(frames[1, 50:60, 7], rgb[1, 50:60, 7])
    np.testing.assert_array_equal(frames[1, :, :, 2], rgb[1, :, :, 2])
    assert used_indices(indices).tolist() == [0, 2, 200]
    with pytest.raises(ValueError, match="palette"):
        PaletteFrames(indices, palette[:10])


def _episode(frames: np.ndarray | PaletteFrames, meta: dict | None = None) -> Episode:
    n = len(frames) - 1
    return Episode(
        frames=frames,
        actions=np.zeros(n, np.int64),
        rewards=np.zeros(n, np.float32),
        terminated=np.zeros(n, bool),
        truncated=np.zeros(n, bool),
        ram=np.zeros((n + 1, 128), np.uint8),
        meta=meta or {},
    )


def test_palette_shard_round_trip_and_missing_colour(tmp_path: Path) -> None:
    indices = np.zeros((4, 210, 160), np.uint8)
    indices[:, 3, 3] = 2
    path = write_episode(tmp_path, 0, _episode(PaletteFrames(indices, _palette())))
    assert (path / "palette.npy").exists() and not (path / "frames.npy").exists()
    assert np.load(path / "keyframes.npy").shape == (1, 210, 160)  # frames 1-3 are stored as changes
    episode = load_episode(path)
    assert isinstance(episode.frames, PaletteFrames) and episode.meta["palette_indices"] == [0, 2]
    np.testing.assert_array_equal(np.asarray(episode.frames), _palette()[indices])
    # a shard whose frames use an index with no colour in its palette is reported, naming the file
    bad = write_episode(tmp_path, 1, _episode(PaletteFrames(indices, _palette()), meta={"palette_indices": [0]}))
    with pytest.raises(DatasetError, match=r"ep_000001: palette indices \[2\]"):
        verify_episode(bad)
    verify_episode(path)


def _as_schema_1(src: Path, dst: Path) -> None:
    """Rewrite a dataset the way schema 1 stored it: RGB frames.npy, no palette."""
    shutil.copytree(src, dst)
    ds = DatasetDir(dst)
    for ep in ds.episode_dirs():
        episode = load_episode(ep, mmap=False)
        episode.frames = np.asarray(episode.frames)
        episode.meta.pop("palette_indices")
        shutil.rmtree(ep)
        write_episode(ds.episodes_dir, episode_index(ep), episode)
    manifest = ds.read_manifest()
    manifest["schema_version"] = 1
    ds.write_manifest(manifest)


def test_schema_1_datasets_read_validate_and_extend(pong_dataset: Path, tmp_path: Path) -> None:
    old = tmp_path / "v1"
    _as_schema_1(pong_dataset, old)
    ds = DatasetDir(old)
    assert np.load(ds.episodes_dir / "ep_000000" / "frames.npy", mmap_mode="r").shape == (201, 210, 160, 3)
    assert ds.validate() == []
    new_items, old_items = SequenceDataset(pong_dataset, seq_len=3), SequenceDataset(old, seq_len=3)
    assert len(new_items) == len(old_items)
    np.testing.assert_array_equal(new_items[5]["frames"].numpy(), old_items[5]["frames"].numpy())
    # collecting into it adds palette shards and raises the version; both kinds keep reading
    settings = EnvSettings.from_dict(ds.read_manifest()["env"])
    collect(
        CollectConfig(out=old, env=settings, frames=20, agent="scripted", make_agent=make_agent, seed=9), progress=False
    )
    assert ds.read_manifest()["schema_version"] == 2 and ds.validate() == []
    assert isinstance(ds.load(3).frames, PaletteFrames) and isinstance(ds.load(0).frames, np.ndarray)
    mixed = SequenceDataset(old, seq_len=3, split="all")
    assert mixed[0]["frames"].shape == mixed[len(mixed) - 1]["frames"].shape == (3, 3, 64, 64)


def test_newer_schema_is_refused_with_a_clear_message(pong_copy: Path) -> None:
    manifest = json.loads((pong_copy / "dataset.json").read_text())
    manifest["schema_version"] = 99
    (pong_copy / "dataset.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match="schema version 99.*upgrade"):
        DatasetDir(pong_copy).read_manifest()


def test_collected_shards_are_palette_shards(pong_dataset: Path) -> None:
    ds = DatasetDir(pong_dataset)
    assert ds.read_manifest()["schema_version"] == 2
    frames = ds.load(0).frames
    assert isinstance(frames, PaletteFrames) and frames.shape == (201, 210, 160, 3)
    assert set(used_indices(np.asarray(frames.indices)).tolist()) <= set(ds.load(0).meta["palette_indices"])
    stored = sum(p.stat().st_size for p in (ds.episodes_dir / "ep_000000").glob("*.npy"))
    assert stored < 201 * 210 * 160 / 10  # ten times smaller than even one byte per pixel
