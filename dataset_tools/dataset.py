"""A dataset directory: ``dataset.json`` manifest plus ``episodes/`` shards.

The manifest holds the schema version, the game and env settings, the preprocessing, and one entry
per collection run (agent, seed, workers, episodes added, command). The episode shards on disk are
the source of truth for what exists; the manifest's counts are refreshed after every run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataset_tools.episode import DatasetError, episode_index, load_episode, read_meta, verify_episode
from dataset_tools.games import EnvSettings
from dataset_tools.preprocess import Preprocess

SCHEMA_VERSION = 2
"""Version written by this library. 2: frames stored as palette indices + ``palette.npy`` (episode.py)."""
READABLE_VERSIONS = (1, 2)
"""Versions this library reads: a version-1 dataset (RGB ``frames.npy``) reads as before, and
collecting into it again adds palette shards and raises its version to 2."""
MANIFEST = "dataset.json"


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _check_shard(ep_dir: Path, n_actions: int | None) -> None:
    """Raise a :class:`DatasetError` naming the file unless the shard is whole and its actions are in range."""
    verify_episode(ep_dir)
    actions = load_episode(ep_dir).actions
    if n_actions is not None and len(actions) and (actions.min() < 0 or actions.max() >= n_actions):
        raise DatasetError(
            f"{ep_dir / 'actions.npy'}: actions {int(actions.min())}..{int(actions.max())} outside the game's {n_actions}"
        )


def _shard_stamp(ep_dir: Path) -> str:
    """What a shard's check is valid for: its ``meta.json`` (crc32s and length) and its arrays' sizes and
    modification times (a byte changed in place changes the time)."""
    meta = ep_dir / "meta.json"
    h = hashlib.sha1(meta.read_bytes() if meta.exists() else b"")
    for name in sorted(read_meta(ep_dir).get("crc32", {})) if meta.exists() else []:
        f = ep_dir / f"{name}.npy"
        stat = f.stat() if f.exists() else None
        h.update(f"{name}:{stat.st_size if stat else -1}:{stat.st_mtime_ns if stat else -1};".encode())
    return h.hexdigest()


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to a temporary name beside ``path`` and rename it: readers never see
    a half-written file, and a kill keeps the previous one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


@dataclass
class DatasetDir:
    """Handle on a dataset directory (it need not exist yet)."""

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    @property
    def episodes_dir(self) -> Path:
        return self.root / "episodes"

    def exists(self) -> bool:
        return self.manifest_path.exists()

    # ----------------------------------------------------------------- manifest
    def read_manifest(self) -> dict[str, Any]:
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            raise DatasetError(
                f"{self.manifest_path}: missing; is {self.root} a dataset made by create-dataset?"
            ) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DatasetError(f"{self.manifest_path}: corrupted manifest ({err})") from None
        version = manifest.get("schema_version")
        if version not in READABLE_VERSIONS:
            readable = ", ".join(str(v) for v in READABLE_VERSIONS)
            raise DatasetError(
                f"{self.manifest_path}: schema version {version}, this library reads versions {readable}"
                + ("; upgrade learned-envs to read it" if isinstance(version, int) and version > SCHEMA_VERSION else "")
            )
        for key in ("env", "preprocess"):
            if key not in manifest:
                raise DatasetError(f"{self.manifest_path}: no {key!r} entry")
        return manifest

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Write the manifest atomically (temporary file + rename)."""
        self.root.mkdir(parents=True, exist_ok=True)
        write_json(self.manifest_path, manifest)

    def env_settings(self) -> EnvSettings:
        return EnvSettings.from_dict(self.read_manifest()["env"])

    def preprocess(self) -> Preprocess:
        return Preprocess.from_dict(self.read_manifest()["preprocess"])

    def manifest_hash(self) -> str:
        """sha256 of the manifest's env + preprocessing + episode list (recorded by checkpoints)."""
        manifest = self.read_manifest()
        key = json.dumps(
            {"env": manifest["env"], "preprocess": manifest["preprocess"], "episodes": self.episode_indices()},
            sort_keys=True,
        )
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    # ----------------------------------------------------------------- episodes
    def episode_dirs(self) -> list[Path]:
        """Finished episode directories, sorted by index."""
        if not self.episodes_dir.exists():
            return []
        dirs = [p for p in self.episodes_dir.iterdir() if p.is_dir() and p.name.startswith("ep_")]
        return sorted(dirs, key=episode_index)

    def episode_indices(self) -> list[int]:
        return [episode_index(p) for p in self.episode_dirs()]

    def clean_partial(self) -> int:
        """Remove leftovers of interrupted writes; returns how many were removed."""
        if not self.episodes_dir.exists():
            return 0
        stale = [p for p in self.episodes_dir.iterdir() if p.name.startswith(".tmp-")]
        for path in stale:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        for ep in self.episode_dirs():
            for leftover in ep.glob(".tmp-*"):
                leftover.unlink(missing_ok=True)
        return len(stale)

    def counts(self) -> dict[str, int]:
        """Episodes and transitions on disk (from each shard's meta.json)."""
        steps = 0
        dirs = self.episode_dirs()
        for ep in dirs:
            steps += int(read_meta(ep)["length"])
        return {"episodes": len(dirs), "steps": steps, "frames": steps + len(dirs)}

    def split(self, val_fraction: float = 0.1) -> tuple[list[int], list[int]]:
        """Deterministic (train, val) split of episode indices: the last episodes are held out.

        With one episode only, it is used for training and val is empty.
        """
        indices = self.episode_indices()
        if len(indices) < 2 or val_fraction <= 0:
            return indices, []
        n_val = min(len(indices) - 1, max(1, round(val_fraction * len(indices))))
        return indices[:-n_val], indices[-n_val:]

    def load(self, index: int, mmap: bool = True):  # -> Episode
        return load_episode(self.episodes_dir / f"ep_{index:06d}", mmap=mmap)

    # ----------------------------------------------------------------- validation
    def check_episodes(self, episodes: list[int] | None = None) -> None:
        """Raise a :class:`DatasetError` naming the file unless every shard of ``episodes`` (default: all) is
        whole (every array's crc32 as ``meta.json`` says, arrays that line up) and its actions are in the
        manifest's action set. A shard that passed is remembered in its ``.checked`` file (the digest of its
        ``meta.json`` and its files' sizes and times), so training checks each shard once, not at every run
        (on a read-only dataset, at every run)."""
        n_actions = len(self.read_manifest().get("action_meanings") or []) or None
        for ep in self.episode_indices() if episodes is None else episodes:
            ep_dir = self.episodes_dir / f"ep_{ep:06d}"
            stamp = _shard_stamp(ep_dir)
            marker = ep_dir / ".checked"
            if marker.exists() and marker.read_text() == stamp:
                continue
            _check_shard(ep_dir, n_actions)
            try:
                _write_text(marker, stamp)
            except OSError:  # a read-only dataset: checked again next time
                pass

    def validate(self) -> list[str]:
        """Check the manifest and every shard; returns a list of problems (empty: valid)."""
        problems: list[str] = []
        try:
            manifest = self.read_manifest()
        except DatasetError as err:
            return [str(err)]
        leftovers = [p.name for p in self.episodes_dir.glob(".tmp-*")] if self.episodes_dir.exists() else []
        if leftovers:
            problems.append(
                f"{self.episodes_dir}: {len(leftovers)} unfinished episode(s) of an interrupted run "
                f"({', '.join(sorted(leftovers)[:3])}); the next collection removes them"
            )
        try:
            counts = self.counts()
            if manifest.get("counts") != counts:
                problems.append(f"{self.manifest_path}: counts {manifest.get('counts')}, the episodes on disk {counts}")
        except DatasetError as err:
            problems.append(str(err))
        shape = tuple(manifest.get("frame_shape", ()))
        n_actions = len(manifest.get("action_meanings") or []) or None
        for ep in self.episode_dirs():
            try:
                _check_shard(ep, n_actions)
                meta = read_meta(ep)
                if shape and tuple(meta["frame_shape"]) != shape:
                    problems.append(
                        f"{ep}: frame shape {meta['frame_shape']} differs from the manifest's {list(shape)}"
                    )
            except DatasetError as err:
                problems.append(str(err))
        return problems
