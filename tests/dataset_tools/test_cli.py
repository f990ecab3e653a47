"""The create-dataset workflow of the README, end to end, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from dataset_tools.cli import main as create_dataset
from dataset_tools.dataset import DatasetDir
from dataset_tools.episode import load_extra
from learned_envs.cli import main as learned_envs


def test_collect_rootmedian_root_plot_bb_score(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pong"
    base = ["-g", "Pong", "--out", str(out), "--no-progress"]
    assert (
        create_dataset(
            [*base, "--frames", "600", "--workers", "2", "--agent", "scripted", "--max-episode-steps", "300"]
        )
        == 0
    )
    ds = DatasetDir(out)
    assert ds.counts()["steps"] == 600
    assert create_dataset([*base, "--rootmedian"]) == 0
    mode, median = iio.imread(out / "mode.png"), iio.imread(out / "median.png")
    assert mode.shape == median.shape == (210, 160, 3)
    assert tuple(mode[100, 80]) == (144, 72, 17)  # Pong's field colour, RGB (not BGR)
    assert create_dataset([*base, "--root", "--plot_bb"]) == 0
    manifest = ds.read_manifest()
    assert manifest["motion"]["root"] is True and manifest["motion"]["method"] == "mode"
    motion = load_extra(ds.episodes_dir / "ep_000000", "motion")
    assert motion is not None
    t_frames = len(ds.load(0).frames)
    assert motion["z_pres"].shape == (t_frames, 16, 16) and motion["z_where"].shape == (t_frames, 16, 16, 4)
    assert np.unpackbits(motion["mask_bits"], axis=-1)[:, :, :160].shape == (t_frames, 210, 160)
    assert len(motion["boxes"]) > 0 and np.abs(motion["z_where"]).max() <= 1.0
    assert len(list((out / "plot_bb").glob("*.png"))) > 0
    capsys.readouterr()
    report = tmp_path / "scores.json"
    assert learned_envs(["score-boxes", str(out), "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "ball" in printed and "precision" in printed
    scores = json.loads(report.read_text())
    assert scores["frames"] > 100
    for name in ("ball", "player", "enemy"):
        assert scores["classes"][name]["recall"] >= 0.9, (name, scores["classes"][name])
        assert scores["classes"][name]["precision"] >= 0.9, (name, scores["classes"][name])
    assert learned_envs(["validate", str(out)]) == 0


@pytest.mark.parametrize("method", ["median", "flow"])
def test_other_motion_methods_and_random(pong_copy: Path, method: str) -> None:
    base = ["-g", "Pong", "--out", str(pong_copy), "--no-progress"]
    extra = ["--root"] if method == "median" else []
    if method == "median":
        assert create_dataset([*base, "--rootmedian"]) == 0
    assert create_dataset([*base, "--motion", method, *extra, "--grid", "8", "--random", "--iid-frames", "50"]) == 0
    ds = DatasetDir(pong_copy)
    assert ds.read_manifest()["motion"]["method"] == method
    motion = load_extra(ds.episodes_dir / "ep_000001", "motion")
    assert motion is not None and motion["z_pres"].shape[1:] == (8, 8)
    iid = np.load(pong_copy / "iid" / "frames.npy")
    source = np.load(pong_copy / "iid" / "source.npy")
    assert iid.shape == (50, 210, 160, 3) and source.shape == (50, 2)
    assert len(set(source[:, 0])) > 1  # drawn across episodes, not one consecutive run
    np.testing.assert_array_equal(iid[0], ds.load(int(source[0, 0])).frames[int(source[0, 1])])


def test_root_before_rootmedian_is_a_clear_error(pong_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert create_dataset(["-g", "Pong", "--out", str(pong_copy), "--root", "--no-progress"]) == 2
    assert "--rootmedian" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["-g", "Pnog", "--frames", "10"], "did you mean: Pong"),
        (["-g", "Pong", "--frames", "0"], "--frames must be at least 1"),
        (["-g", "Pong", "--episodes", "-1"], "--episodes must be at least 1"),
        (["-g", "Pong", "--frames", "10", "--workers", "0"], "--workers must be at least 1"),
        (["-g", "Pong"], "nothing to do"),
        (["-g", "Pong", "--rootmedian"], "no dataset there yet"),
        (["-g", "Breakout", "--frames", "10", "--agent", "scripted"], "no scripted agent plays Breakout (only Pong)"),
        (["-g", "Pong", "--frames", "10", "--sticky", "2"], "--sticky must be in"),
    ],
)
def test_bad_input_gives_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code = create_dataset([*args, "--out", str(tmp_path / "d"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1, err


def test_unwritable_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "f").write_text("x")
    assert create_dataset(["-g", "Pong", "--frames", "5", "--out", str(tmp_path / "f" / "d"), "--no-progress"]) == 2
    assert "cannot write there" in capsys.readouterr().err


def test_validate_reports_bad_shard(pong_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = pong_copy / "episodes" / "ep_000000" / "ram.npy"
    bad.write_bytes(bad.read_bytes()[:100])
    assert learned_envs(["validate", str(pong_copy)]) == 1
    assert str(bad) in capsys.readouterr().err
