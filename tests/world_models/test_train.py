"""The trainer on real Pong episodes with a tiny rnn_deconv: run dir, resume, divergence, CLI, grid, DDP."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from dataset_tools.sequences import SequenceBatch
from learned_envs.cli import main
from world_models import load_model
from world_models.checkpoint import checkpoint_dirs, load_training_state
from world_models.pixel.rnn_deconv import RNNDeconv
from world_models.training import TrainError, TrainingDiverged, train, train_grid

ROOT = Path(__file__).resolve().parents[2]
TINY = ["n_future=3", "hidden=16", "nf=8", "action_dim=4", "batch_size=2", "log_every=1", "n_contexts=5"]


def _rows(run: Path) -> list[dict[str, str]]:
    with (run / "train_log.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt / "model.pt", weights_only=True)


def test_cli_run_writes_the_run_dir(pong_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    args = ["train", "--model", "rnn_deconv", "--data", str(pong_dataset), "--out", str(run), "--no-progress"]
    assert main([*args, *TINY, "steps=6", "ckpt_every=2", "image_every=3", "keep_last=2"]) == 0
    assert "step_00000006" in capsys.readouterr().out

    saved = json.loads((run / "run.json").read_text())
    assert saved["model"] == "rnn_deconv" and saved["model_config"]["hidden"] == 16
    assert saved["train_config"]["steps"] == 6 and len(saved["dataset"]["manifest_hash"]) == 16
    assert "steps=6" in saved["command"]

    rows = _rows(run)
    assert [int(r["step"]) for r in rows] == list(range(1, 7))
    assert list(rows[0])[:2] == ["step", "loss"] and list(rows[0])[-2:] == ["wall_time", "frames_per_s"]
    assert {"recon", "grad_norm"} <= set(rows[0]) and all(np.isfinite(float(r["loss"])) for r in rows)

    events = EventAccumulator(str(run / "tb")).Reload()
    assert len(events.Scalars("train/loss")) == 6 and "val/truth_vs_open_loop" in events.Tags()["images"]
    gifs = sorted(p.name for p in (run / "samples").glob("*.gif"))
    assert gifs == ["step_00000003.gif", "step_00000006.gif"]
    assert iio.imread(run / "samples" / gifs[0]).shape == (5, 128, 4 * 64, 3)  # (T, truth over pred, 4 windows)

    assert [p.name for p in checkpoint_dirs(run)] == ["step_00000004", "step_00000006"]
    ckpt = checkpoint_dirs(run)[-1]
    with np.load(ckpt / "context.npz") as ctx:
        assert ctx["frames"].shape == (5, 2, 64, 64, 3) and ctx["frames"].dtype == np.uint8
        assert ctx["actions"].shape == (5, 1) and ctx["actions"].dtype == np.int64
    model, config = load_model(run)
    assert config.step == 6 and config.n_actions == len(config.action_meanings) == 6
    assert config.game == "Pong" and config.preprocess["size"] == [64, 64] and config.env["game"] == "Pong"
    assert (
        config.model == "rnn_deconv"
        and config.train_config["steps"] == 6
        and config.command.startswith("learned-envs train")
    )
    assert config.metrics["loss"] == pytest.approx(float(rows[-1]["loss"]))
    assert model.cfg.hidden == 16


def test_resume_after_a_kill_matches_the_uninterrupted_run(
    pong_dataset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = tmp_path / "run"
    overrides = [*TINY, "steps=6", "ckpt_every=3", "image_every=0"]
    final = train("rnn_deconv", pong_dataset, run, overrides, progress=False)
    uninterrupted = _weights(final)
    with pytest.raises(RuntimeError, match="--resume"):
        train("rnn_deconv", pong_dataset, run, overrides, progress=False)

    shutil.rmtree(final)  # killed after step 5: the newest checkpoint is step 3
    with caplog.at_level(logging.WARNING, logger="world_models.training"):
        resumed = train("rnn_deconv", pong_dataset, run, [*overrides, "lr=0.5"], resume=True, progress=False)
    assert "ignoring lr=0.5" in caplog.text
    assert resumed == final and load_training_state(resumed)["step"] == 6
    for key, value in _weights(resumed).items():
        assert torch.equal(value, uninterrupted[key]), key
    assert [int(r["step"]) for r in _rows(run)] == list(range(1, 7))  # replayed rows are not doubled
    run_json = json.loads((run / "run.json").read_text())
    assert run_json["train_config"]["lr"] == 1e-3 and len(run_json["resumed_by"]) == 1

    assert train("rnn_deconv", pong_dataset, run, overrides, resume=True, progress=False) == final  # finished
    longer = train("rnn_deconv", pong_dataset, run, [*TINY, "steps=8"], resume=True, progress=False)
    assert longer.name == "step_00000008" and [int(r["step"]) for r in _rows(run)][-2:] == [7, 8]


def test_point_share_fills_batches_with_points_and_resumes_at_the_step(pong_dataset: Path) -> None:
    from dataset_tools.sequences import SequenceDataset
    from world_models.training.config import ConfigError, TrainConfig
    from world_models.training.data import batches
    from world_models.training.distributed import Dist

    data = SequenceDataset(pong_dataset, seq_len=8, split="train")
    share = float(len(data.point_windows()) / len(data))
    cfg = TrainConfig(batch_size=16, point_share=0.75, seed=3)
    stream = batches(data, cfg, Dist(), start=0)
    drawn = [next(stream) for _ in range(4)]
    with_points = [int((b.rewards != 0).any(1).sum()) for b in drawn]
    assert share < 0.5 and min(with_points) >= 12, (share, with_points)  # 12 of 16 drawn from point windows
    again = next(batches(data, cfg, Dist(), start=3))  # a resumed run reads the batch of its step
    assert torch.equal(again.frames, drawn[3].frames) and torch.equal(again.actions, drawn[3].actions)
    plain_stream = batches(data, TrainConfig(batch_size=16), Dist(), start=0)
    plain = [int((next(plain_stream).rewards != 0).any(1).sum()) for _ in range(4)]
    assert sum(plain) < sum(with_points)

    class NoPoints(SequenceDataset):
        def point_windows(self) -> np.ndarray:
            return np.zeros(0, dtype=np.int64)

    with pytest.raises(TrainError, match="no training window holds a point"):
        next(batches(NoPoints(pong_dataset, seq_len=8), cfg, Dist(), start=0))
    with pytest.raises(ConfigError, match="point_share must be in"):
        TrainConfig(point_share=1.5)


def test_nan_loss_stops_with_the_last_good_checkpoint(
    pong_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real_loss = RNNDeconv.loss

    def loss_going_nan(self: RNNDeconv, batch: SequenceBatch) -> tuple[torch.Tensor, dict[str, float]]:
        loss, logs = real_loss(self, batch)
        calls.append(1)
        return (loss * float("nan") if len(calls) >= 5 else loss), logs

    monkeypatch.setattr(RNNDeconv, "loss", loss_going_nan)
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"step 5 .*step_00000004"):
        train("rnn_deconv", pong_dataset, run, [*TINY, "steps=8", "ckpt_every=2", "image_every=0"], progress=False)
    assert [p.name for p in checkpoint_dirs(run)] == ["step_00000002", "step_00000004"]
    assert all(torch.isfinite(w).all() for w in _weights(checkpoint_dirs(run)[-1]).values())


def test_cli_errors_are_one_line(pong_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["train", "--data", str(pong_dataset), "--out", str(tmp_path / "run")]
    assert main([*base, "--model", "rnn_deconv", "hiden=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("learned-envs: error: unknown config key 'hiden'") and "\n" not in err
    assert "hidden" in err and "batch_size" in err  # the valid keys of both configs
    assert main([*base, "--model", "no_such_model"]) == 2
    assert "unknown model 'no_such_model'" in capsys.readouterr().err
    assert main(["train", "--model", "rnn_deconv", "--data", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert "dataset.json: missing" in capsys.readouterr().err


def test_grid_runs_every_combination(pong_dataset: Path, tmp_path: Path) -> None:
    finals = train_grid(
        "rnn_deconv", pong_dataset, tmp_path, [*TINY, "steps=1", "image_every=0", "seed=0,1"], progress=False
    )
    assert [p.relative_to(tmp_path).parts[0] for p in finals] == ["seed=0", "seed=1"]
    assert json.loads((tmp_path / "seed=1" / "run.json").read_text())["train_config"]["seed"] == 1
    assert not torch.equal(*(_weights(p)["encoder.fc.weight"] for p in finals))


def test_ddp_two_processes_on_cpu(pong_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += ["-m", "learned_envs.cli", "train", "--model", "rnn_deconv", "--data", str(pong_dataset)]
    command += ["--out", str(run), "--no-progress", *TINY, "steps=2", "image_every=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [p.name for p in checkpoint_dirs(run)] == ["step_00000002"]
    assert len(load_training_state(checkpoint_dirs(run)[0])["rng"]) == 2  # one RNG state per rank
    assert [int(r["step"]) for r in _rows(run)] == [1, 2] and len(list((run / "samples").glob("*.gif"))) == 1


def test_init_from_copies_weights_and_checks_the_model(pong_dataset: Path, tmp_path: Path) -> None:
    first = train("rnn_deconv", pong_dataset, tmp_path / "a", [*TINY, "steps=2", "image_every=0"], progress=False)
    source, _ = load_model(first)
    # a fine-tune with 0 steps of training left is just the copied weights, saved
    second = train(
        "rnn_deconv",
        pong_dataset,
        tmp_path / "b",
        [*TINY, "steps=1", "lr=0", "image_every=0", f"init_from={first}"],
        progress=False,
    )
    copied, config = load_model(second)
    assert config.train_config["init_from"] == str(first)
    for a, b in zip(source.state_dict().values(), copied.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(TrainError, match="do not fit"):
        train(
            "rnn_deconv",
            pong_dataset,
            tmp_path / "c",
            [*TINY, "hidden=24", "steps=1", f"init_from={first}"],
            progress=False,
        )
    with pytest.raises(TrainError, match="holds a rnn_deconv model"):
        train(
            "svg_lp",
            pong_dataset,
            tmp_path / "d",
            ["n_future=3", "nf=8", "batch_size=2", "steps=1", f"init_from={first}"],
            progress=False,
        )


def test_init_from_a_model_with_fewer_inputs_zero_pads_them(pong_dataset: Path, tmp_path: Path) -> None:
    """svg_lp encoder_frames=2 from a one-frame run: the old weights copied, the new inputs at zero."""
    tiny_svg = ["n_future=3", "nf=8", "g_dim=16", "z_dim=4", "rnn_size=16", "action_dim=4", "batch_size=2"]
    tiny_svg += ["n_contexts=5", "image_every=0"]
    first = train("svg_lp", pong_dataset, tmp_path / "a", [*tiny_svg, "steps=1"], progress=False)
    grown = train(
        "svg_lp",
        pong_dataset,
        tmp_path / "b",
        [*tiny_svg, "steps=1", "lr=0", "encoder_frames=2", f"init_from={first}"],
        progress=False,
    )
    source, _ = load_model(first)
    model, config = load_model(grown)
    assert config.model_config["encoder_frames"] == 2
    old, new = source.encoder.blocks[0][0].weight, model.encoder.blocks[0][0].weight  # (nf, C*k, 4, 4)
    assert torch.equal(new[:, :3], old) and not new[:, 3:].any()
    # fewer inputs than the source is not a fit
    with pytest.raises(TrainError, match="do not fit"):
        train("svg_lp", pong_dataset, tmp_path / "c", [*tiny_svg, "steps=1", f"init_from={grown}"], progress=False)
