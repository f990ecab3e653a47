"""``learned-envs compare``: two tiny trained runs on the Pong fixture, outputs, table and bad inputs."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest

from dataset_tools.dataset import DatasetDir
from learned_envs.cli import main
from world_models.checkpoint import resolve_checkpoint
from world_models.evaluation.compare import _reusable, _unique, compare
from world_models.evaluation.compare_report import COPY_NAME
from world_models.evaluation.evaluate import evaluate
from world_models.training import train

COMMON = ["n_future=3", "batch_size=2", "log_every=1", "image_every=0", "n_contexts=2", "steps=1"]
FAST = ["--horizon", "3", "--max-sequences", "3", "--samples", "2", "--no-progress"]
FAST += ["--speed-envs", "2", "--speed-steps", "1", "--speed-repeats", "1"]


@pytest.fixture(scope="module")
def two_runs(pong_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("compare_runs")
    rnn = ["hidden=16", "nf=8", "action_dim=4"]
    svg = ["g_dim=16", "z_dim=4", "rnn_size=16", "nf=8", "action_dim=4", "n_past=3"]  # rnn_deconv: n_past 2
    train("rnn_deconv", pong_dataset, root / "rnn", [*COMMON, *rnn], progress=False)
    train("svg_lp", pong_dataset, root / "svg", [*COMMON, *svg], progress=False)
    return root / "rnn", root / "svg"


def _finite(text: str) -> bool:
    return text != "" and math.isfinite(float(text))


def test_compare_cli_writes_one_table_of_both_models(
    two_runs: tuple[Path, Path], pong_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rnn, svg = two_runs
    out = tmp_path / "cmp"
    svg_ckpt = next((svg / "checkpoints").iterdir())  # a checkpoint directory works as well as a run
    assert main(["compare", str(rnn), str(svg_ckpt), "--data", str(pong_dataset), "--out", str(out), *FAST]) == 0
    printed = capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"compare.json", "compare.csv", "compare.md", "compare.png", "rnn", "svg"}
    assert (out / "compare.png").stat().st_size > 5000 and (out / "svg" / "metrics.json").exists()

    table = (out / "compare.md").read_text()
    assert table.strip() in printed
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(rows) == 4 and "PSNR avg @1/3" in rows[0]  # header, rnn, svg, copy-last
    assert rows[1].startswith("| rnn (rnn_deconv, step 1) | ") and rows[2].startswith("| svg (svg_lp, step 1) | ")
    assert rows[3].startswith(f"| {COPY_NAME} | - |")

    result = json.loads((out / "compare.json").read_text())
    assert [m["name"] for m in result["models"]] == ["rnn", "svg"]
    assert result["settings"]["horizon"] == 3 and result["settings"]["val_fraction"] == 0.1
    assert result["settings"]["context_frames"] == 3  # the larger n_past: both models predict the same frames
    for m in result["models"]:
        assert m["params"] > 1000 and m["train_frames_per_s"] > 0 and m["imagined_steps_per_s"] > 0
        assert m["windows"] == 3 and len(m["per_step"]) == 3
        assert all(0 <= r["ssim_avg"] <= 1 and 0 < r["psnr_avg"] <= 60 for r in m["per_step"])
        # both predicted the same frames: the copy-last baseline is the same for both
        assert [r["psnr_copy"] for r in m["per_step"]] == [r["psnr"] for r in result["copy_last"]]
    assert [m["samples_per_window"] for m in result["models"]] == [1, 2]

    with open(out / "compare.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert [r["name"] for r in csv_rows] == [n for n in ("rnn", "svg", COPY_NAME) for _ in range(3)]
    for r in csv_rows:
        assert _finite(r["psnr_avg"]) and _finite(r["ssim_avg"])
        if r["name"] != COPY_NAME:
            assert all(_finite(r[k]) for k in ("reward_acc", "params", "train_frames_per_s", "imagined_steps_per_s"))

    # a bare checkpoint (like a shipped asset: no train_log.csv beside it), and --reuse
    bare = tmp_path / "shipped"
    shutil.copytree(next((rnn / "checkpoints").iterdir()), bare)
    stamps = [(out / n / "metrics.json").stat().st_mtime_ns for n in ("rnn", "svg")]
    kwargs = dict(horizon=3, max_sequences=3, n_samples=2, speed_envs=2, speed_steps=1, speed_repeats=1)
    again = compare([bare, rnn, svg_ckpt], pong_dataset, out, reuse=True, progress=False, **kwargs)
    assert [(out / n / "metrics.json").stat().st_mtime_ns for n in ("rnn", "svg")] == stamps  # not evaluated again
    assert [m["name"] for m in again["models"]] == ["shipped", "rnn", "svg"]
    assert again["models"][0]["train_frames_per_s"] is None and again["models"][1]["train_frames_per_s"] > 0
    assert again["models"][0]["per_step"] == again["models"][1]["per_step"] == result["models"][0]["per_step"]
    shipped_row = (out / "compare.md").read_text().splitlines()[2]
    assert shipped_row.startswith("| shipped (rnn_deconv, step 1) | ") and shipped_row.split(" | ")[2] == "-"
    settings = again["settings"]
    ckpt = resolve_checkpoint(rnn)
    assert _reusable(out / "rnn" / "metrics.json", settings, ckpt, 1) is not None
    assert _reusable(out / "rnn" / "metrics.json", {**settings, "horizon": 4}, ckpt, 1) is None
    assert _reusable(out / "rnn" / "metrics.json", {**settings, "context_frames": 2}, ckpt, 1) is None
    assert _reusable(out / "rnn" / "metrics.json", settings, ckpt, 2) is None


def test_bad_inputs_are_one_line_errors(
    two_runs: tuple[Path, Path],
    pong_dataset: Path,
    pong_copy: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rnn, svg = two_runs
    empty = tmp_path / "empty_run"
    empty.mkdir()

    def error(runs: list[Path], data: Path) -> str:
        argv = ["compare", *map(str, runs), "--data", str(data), "--out", str(tmp_path / "o"), *FAST]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("learned-envs: error: ") and "\n" not in err
        return err

    assert "holds no checkpoint" in error([rnn, empty], pong_copy)
    assert "no such checkpoint or run directory" in error([tmp_path / "nope"], pong_copy)

    small = tmp_path / "small"
    shutil.copytree(next((svg / "checkpoints").iterdir()), small)
    config = json.loads((small / "config.json").read_text())
    config["preprocess"]["size"], config["frame_shape"] = [32, 32], [3, 32, 32]
    (small / "config.json").write_text(json.dumps(config))
    err = error([rnn, small], pong_copy)
    assert "different resolutions" in err and "64x64 RGB" in err and "32x32 RGB" in err

    manifest = DatasetDir(pong_copy).read_manifest()
    manifest["env"]["frameskip"] = 2
    DatasetDir(pong_copy).write_manifest(manifest)
    err = error([rnn, svg], pong_copy)
    assert str(rnn) in err and "frameskip: checkpoint 4, dataset 2" in err
    assert not (tmp_path / "o").exists()  # refused before evaluating anything
    with pytest.raises(ValueError, match="context_frames=2 is fewer than the model's n_past=3"):
        evaluate(svg, pong_dataset, tmp_path / "o", context_frames=2, progress=False)


def test_repeated_run_names_are_told_apart() -> None:
    paths = [Path("grid_a/seed=0"), Path("grid_b/seed=0"), Path("x/svg"), Path("x/svg"), Path("y/rnn")]
    names = _unique(paths)
    assert names == ["grid_a/seed=0", "grid_b/seed=0", "x/svg", "x/svg#2", "rnn"]
