"""Episode shards on disk: written atomically, read lazily, validated with a message naming the file.

Layout of one episode (``DIR/episodes/ep_000012/``)::

    keyframes.npy, keyframe_at.npy, delta_start.npy, delta_pos.npy, delta_val.npy
                    the T+1 frames as palette indices (T+1, 210, 160) uint8, stored as keyframes
                    plus sparse changes (see frame_codec.py); frame t is seen before action t
    palette.npy     (256, 3) uint8            RGB of each palette index (see palette.py)
    actions.npy     (T,) int64
    rewards.npy     (T,) float32
    terminated.npy  (T,) bool
    truncated.npy   (T,) bool
    ram.npy         (T+1, 128) uint8          RAM at the time of each frame
    labels.npz      optional: RAM ground-truth objects, {class: (T+1, 5) [visible, x, y, w, h]}
    motion.npz      optional: motion boxes and z_pres / z_where targets (see motion.py)
    meta.json       written last: index, seed, agent, length, return, crc32 of every array file

Shards of schema version 1 hold ``frames.npy``, ``(T+1, 210, 160, 3)`` RGB, instead of the frame
and palette files; both kinds are read, and :attr:`Episode.frames` is RGB either way (a
:class:`PaletteFrames` view for palette shards).

A shard is first written under ``episodes/.tmp-ep_000012-<pid>/`` and renamed, so a reader never
sees half an episode and an interrupted collection keeps every finished one.
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dataset_tools import frame_codec
from dataset_tools.palette import PaletteFrames, used_indices

ARRAYS = ("frames", "actions", "rewards", "terminated", "truncated", "ram")
_DTYPES = {
    "frames": np.uint8,
    "actions": np.int64,
    "rewards": np.float32,
    "terminated": np.bool_,
    "truncated": np.bool_,
    "ram": np.uint8,
}


class DatasetError(RuntimeError):
    """A dataset or shard that cannot be read; the message names the file."""


@dataclass
class Episode:
    """One episode in memory (see the module docstring for shapes); ``frames`` is RGB ``(T+1, H, W, 3)``,
    an array or a :class:`PaletteFrames` (written as palette indices)."""

    frames: np.ndarray | PaletteFrames
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    ram: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        """Number of transitions (actions); there is one more frame."""
        return int(self.actions.shape[0])

    def check(self) -> None:
        """Raise ValueError if the arrays do not line up."""
        n = len(self)
        expected = {
            "frames": n + 1,
            "actions": n,
            "rewards": n,
            "terminated": n,
            "truncated": n,
            "ram": n + 1,
        }
        for name, length in expected.items():
            arr = getattr(self, name)
            if arr.shape[0] != length:
                raise ValueError(f"{name} has {arr.shape[0]} rows, expected {length}")


def episode_name(index: int) -> str:
    return f"ep_{index:06d}"


def episode_index(path: Path) -> int:
    return int(path.name.split("_", 1)[1])


def _write_npy(path: Path, arr: np.ndarray) -> int:
    np.save(path, arr)
    return zlib.crc32(np.ascontiguousarray(arr).view(np.uint8).reshape(-1))


def write_episode(
    episodes_dir: Path, index: int, episode: Episode, extras: dict[str, dict[str, np.ndarray]] | None = None
) -> Path:
    """Write ``episode`` as ``episodes_dir/ep_<index>`` atomically and return its path.

    ``extras`` maps a file stem (e.g. ``"labels"``) to arrays saved in ``<stem>.npz``.
    """
    episode.check()
    final = episodes_dir / episode_name(index)
    if final.exists():
        raise FileExistsError(f"{final} already exists; refusing to overwrite an episode")
    tmp = episodes_dir / f".tmp-{episode_name(index)}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    crcs = {}
    for name, arr in _stored_arrays(episode).items():
        crcs[name] = _write_npy(tmp / f"{name}.npy", arr)
    for stem, arrays in (extras or {}).items():
        np.savez(tmp / f"{stem}.npz", **arrays)
    meta = dict(episode.meta)
    if isinstance(episode.frames, PaletteFrames) and "palette_indices" not in meta:
        meta["palette_indices"] = used_indices(episode.frames.indices).tolist()
    meta.update(
        index=index,
        length=len(episode),
        frame_shape=list(episode.frames.shape[1:]),
        episode_return=float(np.sum(episode.rewards)),
        crc32=crcs,
    )
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    os.rename(tmp, final)
    return final


def _stored_arrays(episode: Episode) -> dict[str, np.ndarray]:
    """The arrays of ``episode`` as they are stored on disk (palette frames: the frame_codec arrays + palette)."""
    arrays = {}
    for name in ARRAYS:
        value = getattr(episode, name)
        if isinstance(value, PaletteFrames):
            arrays.update(frame_codec.encode(np.asarray(value.indices)))
            arrays["palette"] = np.ascontiguousarray(value.palette, dtype=np.uint8)
        else:
            arrays[name] = np.ascontiguousarray(value, dtype=_DTYPES[name])
    return arrays


def write_extra(episode_dir: Path, stem: str, arrays: dict[str, np.ndarray]) -> None:
    """Add or replace ``<stem>.npz`` in a finished episode, atomically."""
    tmp = episode_dir / f".tmp-{stem}-{os.getpid()}.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, episode_dir / f"{stem}.npz")


def read_meta(episode_dir: Path) -> dict[str, Any]:
    path = episode_dir / "meta.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing; the episode is incomplete") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: corrupted metadata ({err})") from None


def load_array(episode_dir: Path, name: str, mmap: bool = True) -> np.ndarray:
    """Load one array of an episode (memory-mapped by default); errors name the file."""
    path = episode_dir / f"{name}.npy"
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing") from None
    except (ValueError, OSError, EOFError) as err:
        raise DatasetError(f"{path}: corrupted or truncated shard ({err})") from None
    return arr


def load_frames(episode_dir: Path, mmap: bool = True) -> np.ndarray | PaletteFrames:
    """An episode's RGB frames ``(T+1, 210, 160, 3)``: a :class:`PaletteFrames` view over the stored
    palette indices, or the RGB array of a schema-1 shard."""
    if not (episode_dir / "keyframes.npy").exists() and (episode_dir / "frames.npy").exists():
        frames = load_array(episode_dir, "frames", mmap=mmap)  # schema 1
        if frames.ndim != 4:
            raise DatasetError(f"{episode_dir / 'frames.npy'}: frames of shape {frames.shape}, expected RGB")
        return frames
    arrays = {name: load_array(episode_dir, name, mmap=mmap) for name in (*frame_codec.FILES, "palette")}
    try:
        return PaletteFrames(frame_codec.DeltaFrames(arrays), np.asarray(arrays["palette"]))
    except ValueError as err:
        raise DatasetError(f"{episode_dir}: inconsistent frame files ({err})") from None


def load_extra(episode_dir: Path, stem: str) -> dict[str, np.ndarray] | None:
    """Arrays of ``<stem>.npz`` or None if the episode has none."""
    path = episode_dir / f"{stem}.npz"
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except Exception as err:  # zipfile.BadZipFile, ValueError, OSError, ...
        raise DatasetError(f"{path}: corrupted or truncated file ({err})") from None


def load_episode(episode_dir: Path, mmap: bool = True) -> Episode:
    """Read one episode; raises :class:`DatasetError` naming the bad file."""
    meta = read_meta(episode_dir)
    arrays: dict[str, Any] = {name: load_array(episode_dir, name, mmap=mmap) for name in ARRAYS if name != "frames"}
    episode = Episode(frames=load_frames(episode_dir, mmap=mmap), **arrays, meta=meta)
    try:
        episode.check()
    except ValueError as err:
        raise DatasetError(f"{episode_dir}: inconsistent arrays ({err})") from None
    if len(episode) != meta.get("length"):
        raise DatasetError(f"{episode_dir}: meta.json says length {meta.get('length')}, arrays hold {len(episode)}")
    return episode


def verify_episode(episode_dir: Path) -> None:
    """Full check of one shard: every array readable, consistent, and matching its crc32."""
    episode = load_episode(episode_dir, mmap=True)
    for name, expected in episode.meta.get("crc32", {}).items():
        arr = np.ascontiguousarray(load_array(episode_dir, name))
        if zlib.crc32(arr.view(np.uint8).reshape(-1)) != expected:
            raise DatasetError(f"{episode_dir / (name + '.npy')}: checksum mismatch (corrupted shard)")
    frames = episode.frames
    if isinstance(frames, PaletteFrames) and isinstance(frames.indices, frame_codec.DeltaFrames):
        colours = episode.meta.get("palette_indices")
        deltas = frames.indices
        used = set(used_indices(deltas.keyframes).tolist()) | set(
            used_indices(deltas.delta_val.view(np.uint8)).tolist()
        )
        missing = sorted(used - set(colours or []))
        if colours is not None and missing:
            raise DatasetError(f"{episode_dir}: palette indices {missing} of its frames have no colour in palette.npy")
    for extra in sorted(episode_dir.glob("*.npz")):
        load_extra(episode_dir, extra.stem)
