from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dataset_tools.dataset import DatasetDir
from dataset_tools.preprocess import Preprocess
from dataset_tools.sequences import SequenceBatch, SequenceDataset


def test_windows_line_up_with_the_episode(pong_dataset: Path) -> None:
    data = SequenceDataset(pong_dataset, seq_len=6, split="all")
    assert len(data) == 3 * (201 - 6 + 1)
    item = data[200]  # episode 1, start 4
    episode = DatasetDir(pong_dataset).load(1)
    assert item["frames"].shape == (6, 3, 64, 64) and item["frames"].dtype == torch.float32
    assert 0.0 <= item["frames"].min() and item["frames"].max() <= 1.0
    np.testing.assert_array_equal(item["actions"].numpy(), episode.actions[4:9])
    np.testing.assert_array_equal(item["ram"].numpy(), episode.ram[4:10])
    expected = data.preprocess(np.asarray(episode.frames[4:10]))
    np.testing.assert_allclose(item["frames"].permute(0, 2, 3, 1).numpy(), expected / 255.0, atol=1e-6)


def test_split_holds_out_last_episode(pong_dataset: Path) -> None:
    train = SequenceDataset(pong_dataset, seq_len=4, split="train")
    val = SequenceDataset(pong_dataset, seq_len=4, split="val")
    assert train.episodes == [0, 1] and val.episodes == [2]
    assert set(train.index[:, 0]) == {0, 1} and set(val.index[:, 0]) == {2}


def test_loader_batches_and_custom_preprocess(pong_dataset: Path) -> None:
    data = SequenceDataset(
        pong_dataset, seq_len=3, split="train", preprocess=Preprocess(size=(32, 48), grayscale=True), stride=5
    )
    batch = next(iter(data.loader(batch_size=4)))
    assert isinstance(batch, SequenceBatch)
    assert batch.frames.shape == (4, 3, 1, 32, 48)
    assert batch.actions.shape == batch.rewards.shape == batch.terminated.shape == (4, 2)
    assert batch.to("cpu").frames.shape == batch.frames.shape


def test_point_windows_are_the_windows_with_a_reward(pong_dataset: Path) -> None:
    data = SequenceDataset(pong_dataset, seq_len=8, split="all", frames=False)
    rewards = {ep: np.asarray(DatasetDir(pong_dataset).load(ep).rewards) for ep in data.episodes}
    expected = [i for i, (ep, t) in enumerate(data.index) if np.any(rewards[ep][t : t + 7] != 0)]
    assert 0 < len(expected) < len(data)  # the fixture's scripted games score, but not in every window
    np.testing.assert_array_equal(data.point_windows(), expected)


def test_bad_arguments(pong_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SequenceDataset(pong_dataset, seq_len=0)
    from dataset_tools.episode import DatasetError

    with pytest.raises(DatasetError, match="dataset.json"):
        SequenceDataset(tmp_path, seq_len=4)


def test_motion_targets_follow_the_preprocessing(pong_copy: Path) -> None:
    from dataset_tools.episode import DatasetError
    from dataset_tools.motion import grid_targets
    from dataset_tools.postprocess import MotionConfig, compute_motion

    with pytest.raises(DatasetError, match="motion.npz: missing"):
        SequenceDataset(pong_copy, seq_len=2, motion_grid=8)
    ds = DatasetDir(pong_copy)
    compute_motion(ds, MotionConfig(method="mode"), progress=False)
    pre = Preprocess(crop=(34, 194, 0, 160), size=(128, 128))
    data = SequenceDataset(pong_copy, seq_len=2, split="all", preprocess=pre, motion_grid=8)
    item = data[50]  # episode 0, frames 50 and 51
    assert item["motion_pres"].shape == (2, 8, 8) and item["motion_where"].shape == (2, 8, 8, 4)
    raw = np.load(pong_copy / "episodes" / "ep_000000" / "motion.npz")["boxes"]
    boxes = pre.boxes(raw[raw[:, 0] == 51][:, 1:])
    boxes = boxes[(boxes[:, 2] > 0) & (boxes[:, 3] > 0)]  # the score digits lie above the crop
    assert 2 <= len(boxes) <= 4  # paddles and (mostly) the ball
    pres, where = grid_targets(boxes, 128, 128, 8)
    np.testing.assert_array_equal(item["motion_pres"][1].numpy(), pres)
    np.testing.assert_allclose(item["motion_where"][1].numpy(), where, atol=1e-6)
    batch = next(iter(data.loader(batch_size=3)))
    assert batch.motion_pres is not None and batch.motion_pres.shape == (3, 2, 8, 8)
    assert batch.to("cpu").motion_where.shape == (3, 2, 8, 8, 4)
    assert next(iter(SequenceDataset(pong_copy, seq_len=2).loader(2))).motion_pres is None
