"""A torch ``Dataset`` of sequence windows, read lazily from memory-mapped episode shards.

Item ``i`` is a window of ``seq_len`` consecutive frames of one episode with the ``seq_len - 1``
transitions between them::

    frames      (T, C, H, W) float32 in [0, 1]   preprocessed (crop / resize / colour)
    actions     (T-1,) int64                     action taken at frame t, leading to frame t+1
    rewards     (T-1,) float32
    terminated  (T-1,) float32                   1.0 where the transition ended the episode
    ram         (T, 128) uint8                   (for RAM-based evaluation)

With ``motion_grid=G`` items also hold SPACE-Time's motion targets, computed from the boxes of the
episode's ``motion.npz`` (``create-dataset --root`` / ``--motion``) mapped through the preprocessing
(crop and resize), so they fit the frames the model sees whatever geometry the motion was found at::

    motion_pres   (T, G, G) float32      1 in the cell holding a box centre
    motion_where  (T, G, G, 4) float32   [w, h, cx, cy] (see :func:`dataset_tools.motion.grid_targets`)

With ``objects=NAME`` items also hold per-frame object states cached in each episode's ``NAME`` file
(an ``.npy`` array (T, ...) per episode, e.g. an object extractor's scenes, written by the model that
asks for them; see :meth:`world_models.base.WorldModel.prepare_data`)::

    objects       (T, ...) float32
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from dataset_tools.dataset import DatasetDir
from dataset_tools.episode import DatasetError, Episode
from dataset_tools.motion import grid_targets
from dataset_tools.preprocess import Preprocess, to_tensor_layout


@dataclass
class SequenceBatch:
    """A batch of windows; ``.to(device)`` moves every tensor."""

    frames: torch.Tensor  # (B, T, C, H, W)
    actions: torch.Tensor  # (B, T-1)
    rewards: torch.Tensor  # (B, T-1)
    terminated: torch.Tensor  # (B, T-1)
    ram: torch.Tensor  # (B, T, 128)
    motion_pres: torch.Tensor | None = None  # (B, T, G, G), with ``motion_grid``
    motion_where: torch.Tensor | None = None  # (B, T, G, G, 4), with ``motion_grid``
    objects: torch.Tensor | None = None  # (B, T, ...), with ``objects``

    def to(self, device: torch.device | str) -> SequenceBatch:
        return SequenceBatch(
            **{k: v.to(device, non_blocking=True) if v is not None else None for k, v in self.__dict__.items()}
        )

    @staticmethod
    def collate(items: list[dict[str, torch.Tensor]]) -> SequenceBatch:
        return SequenceBatch(**{k: torch.stack([it[k] for it in items]) for k in items[0]})


class SequenceDataset(Dataset):
    """Windows of ``seq_len`` frames over the episodes of one split of a dataset directory.

    ``split`` is ``"train"``, ``"val"`` (held-out last episodes, see :meth:`DatasetDir.split`) or
    ``"all"``. ``preprocess`` defaults to the one recorded in the dataset's manifest. At most
    ``cache_episodes`` episodes are kept open (memory-mapped) at a time; random windows over more
    episodes than that reopen shards all the time (a 16-episode cache made RAM-only batches 20x
    slower on 47 episodes). ``frames=False`` skips reading and preprocessing the frames (items then
    hold an empty ``(T, 0)`` frames tensor), for models that train on the RAM alone. ``motion_grid``
    adds motion targets on a G x G grid (see the module docstring); every episode needs its
    ``motion.npz``. ``objects`` adds the episodes' cached object states of that file name.
    """

    def __init__(
        self,
        root: str | Path,
        seq_len: int,
        split: Literal["train", "val", "all"] = "train",
        preprocess: Preprocess | None = None,
        stride: int = 1,
        val_fraction: float = 0.1,
        cache_episodes: int = 1024,
        frames: bool = True,
        motion_grid: int | None = None,
        objects: str | None = None,
    ) -> None:
        if seq_len < 1 or stride < 1:
            raise ValueError(f"seq_len and stride must be >= 1, got {seq_len}, {stride}")
        self.ds = DatasetDir(root)
        self.preprocess = preprocess if preprocess is not None else self.ds.preprocess()
        self.seq_len = seq_len
        self.frames = frames
        train, val = self.ds.split(val_fraction)
        self.episodes = {"train": train, "val": val, "all": train + val}[split]
        self._open: OrderedDict[int, Episode] = OrderedDict()
        self._cache_size = cache_episodes
        starts = []
        self._lengths = {ep: int(self.ds.load(ep).frames.shape[0]) for ep in self.episodes}  # frames per episode
        for ep in self.episodes:
            starts.extend((ep, t) for t in range(0, self._lengths[ep] - seq_len + 1, stride))
        self.index = np.asarray(starts, dtype=np.int64).reshape(-1, 2)  # (N, 2) rows [episode, start]
        self.motion_grid = motion_grid
        self._boxes = {ep: self._motion_boxes(ep) for ep in self.episodes} if motion_grid else {}
        self.objects = objects
        self._objects = {ep: self._object_states(ep) for ep in self.episodes} if objects else {}

    def _object_states(self, ep: int) -> np.ndarray:
        assert self.objects is not None
        path = self.ds.episodes_dir / f"ep_{ep:06d}" / self.objects
        try:
            states = np.load(path, allow_pickle=False)  # small (a few floats per object and frame): kept in memory
        except FileNotFoundError:
            raise DatasetError(f"{path}: missing (the model writes it before training: see prepare_data)") from None
        except (ValueError, OSError, EOFError) as err:
            raise DatasetError(f"{path}: corrupted or truncated file ({err}); delete it to rebuild it") from None
        n_frames = self._lengths[ep]
        if states.shape[0] != n_frames:
            raise DatasetError(
                f"{path}: {states.shape[0]} object states for {n_frames} frames; delete it to rebuild it"
            )
        return states

    def _motion_boxes(self, ep: int) -> tuple[np.ndarray, np.ndarray]:
        """Episode ``ep``'s motion boxes (K, 4) [x, y, w, h] in the preprocessed frame, and per frame t the
        rows ``start[t]:start[t+1]`` that are its boxes."""
        path = self.ds.episodes_dir / f"ep_{ep:06d}" / "motion.npz"
        try:
            with np.load(path, allow_pickle=False) as data:
                rows = np.asarray(data["boxes"]).reshape(-1, 5)  # (K, 5) [t, x, y, w, h], sorted by t
        except FileNotFoundError:
            raise DatasetError(
                f"{path}: missing; add motion targets with create-dataset --out {self.ds.root} --root (or --motion)"
            ) from None
        except (KeyError, ValueError, OSError, EOFError) as err:
            raise DatasetError(f"{path}: corrupted or truncated file ({err})") from None
        start = np.searchsorted(rows[:, 0], np.arange(self._lengths[ep] + 1))  # (T+1,)
        return self.preprocess.boxes(rows[:, 1:]), start

    def _motion_targets(self, ep: int, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.motion_grid is not None
        boxes, start = self._boxes[ep]
        h, w, _ = self.preprocess.shape
        pres, where = [], []
        for s in range(t, t + self.seq_len):
            b = boxes[start[s] : start[s + 1]]
            p, z = grid_targets(b[(b[:, 2] > 0) & (b[:, 3] > 0)], h, w, self.motion_grid)
            pres.append(p)
            where.append(z)
        return torch.from_numpy(np.stack(pres)), torch.from_numpy(np.stack(where))  # (T, G, G), (T, G, G, 4)

    def __len__(self) -> int:
        return len(self.index)

    def point_windows(self) -> np.ndarray:
        """Indices of the windows with a nonzero reward in one of their transitions (a point, in Pong)."""
        has = np.zeros(len(self.index), dtype=bool)
        for ep in self.episodes:
            rows = np.flatnonzero(self.index[:, 0] == ep)
            before = np.concatenate([[0], np.cumsum(np.asarray(self.ds.load(ep).rewards) != 0)])  # per frame
            starts = self.index[rows, 1]
            has[rows] = before[starts + self.seq_len - 1] > before[starts]
        return np.flatnonzero(has)

    def _episode(self, ep: int) -> Episode:
        if ep in self._open:
            self._open.move_to_end(ep)
            return self._open[ep]
        episode = self.ds.load(ep, mmap=True)
        self._open[ep] = episode
        if len(self._open) > self._cache_size:
            self._open.popitem(last=False)
        return episode

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        ep, t = (int(v) for v in self.index[i])
        episode = self._episode(ep)
        end = t + self.seq_len
        if self.frames:
            frames = self.preprocess(np.asarray(episode.frames[t:end]))  # (T, 210, 160, 3) -> (T, H, W, C)
            frames_t = torch.from_numpy(to_tensor_layout(frames))  # (T, H, W, C) -> (T, C, H, W)
        else:
            frames_t = torch.empty(self.seq_len, 0)
        item = {
            "frames": frames_t,
            "actions": torch.from_numpy(np.array(episode.actions[t : end - 1], dtype=np.int64)),
            "rewards": torch.from_numpy(np.array(episode.rewards[t : end - 1], dtype=np.float32)),
            "terminated": torch.from_numpy(np.array(episode.terminated[t : end - 1], dtype=np.float32)),
            "ram": torch.from_numpy(np.array(episode.ram[t:end])),
        }
        if self.motion_grid:
            item["motion_pres"], item["motion_where"] = self._motion_targets(ep, t)
        if self.objects:
            item["objects"] = torch.from_numpy(np.array(self._objects[ep][t:end], dtype=np.float32))
        return item

    def loader(
        self, batch_size: int, shuffle: bool = True, num_workers: int = 0, seed: int = 0
    ) -> torch.utils.data.DataLoader:
        """A DataLoader yielding :class:`SequenceBatch` objects."""
        generator = torch.Generator().manual_seed(seed)
        return torch.utils.data.DataLoader(
            self,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=num_workers,
            collate_fn=SequenceBatch.collate,
            generator=generator,
            drop_last=False,
        )


def context_windows(
    ds: DatasetDir, episodes: list[int], preprocess: Preprocess, n: int, n_past: int, seed: int = 0
) -> dict[str, np.ndarray] | None:
    """``n`` windows of ``n_past`` preprocessed frames and the ``n_past - 1`` actions between them, drawn
    uniformly over every window of ``episodes`` (a long episode gives more): ``{"frames": (n, n_past, H, W, C)
    uint8, "actions": (n, n_past - 1) int64}``, or None where no episode has ``n_past`` frames. The start
    contexts of learned envs: shipped with each checkpoint by the trainer, or drawn from a dataset."""
    loaded = [ds.load(i) for i in episodes]
    starts = np.array([max(int(ep.frames.shape[0]) - n_past + 1, 0) for ep in loaded], dtype=np.int64)
    if starts.sum() == 0:
        return None
    rng = np.random.default_rng(seed)
    flat = np.sort(rng.choice(int(starts.sum()), size=n, replace=bool(starts.sum() < n)))
    bounds = np.cumsum(starts)
    which = np.searchsorted(bounds, flat, side="right")
    frames, actions = [], []
    for e, i in zip(which, flat, strict=True):
        t = int(i - (bounds[e] - starts[e]))
        ep = loaded[e]
        frames.append(preprocess(np.asarray(ep.frames[t : t + n_past])))  # (n_past, H, W, C)
        actions.append(np.asarray(ep.actions[t : t + n_past - 1], dtype=np.int64))
    return {"frames": np.stack(frames), "actions": np.stack(actions)}
