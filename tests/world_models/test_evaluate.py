"""Evaluation: Pong object finding on real frames, metrics, outputs, data checks, plots and the CLI."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity
from torch import nn

from dataset_tools.collect import CollectConfig, collect
from dataset_tools.dataset import DatasetDir
from dataset_tools.games import EnvSettings
from dataset_tools.preprocess import Preprocess, to_tensor_layout
from dataset_tools.ram_truth import ram_objects
from dataset_tools.sequences import SequenceBatch
from world_models.base import ModelConfig, State, StepResult, WorldModel, build_model, register, reward_from_logits
from world_models.checkpoint import CheckpointConfig, save_checkpoint
from world_models.evaluation.eval_cli import add_parser
from world_models.evaluation.evaluate import (
    COLUMNS,
    PSNR_CAP,
    EvaluationDataError,
    best_avg_worst,
    copy_last,
    evaluate,
    frame_metrics,
)
from world_models.evaluation.plot import plot_runs
from world_models.objects.pong_objects import (
    FIELD,
    PLAYER,
    PLAYER_X,
    _columns,
    centre_errors,
    find_objects,
    ram_centres,
    scene_check,
)
from world_models.pixel.rnn_deconv import RNNDeconvConfig


@dataclass
class NoisyConfig(ModelConfig):
    noise: float = 0.05
    """Std of the Gaussian noise added to every predicted frame."""


@register
class NoisyCopy(WorldModel):
    """Test-only stochastic model: a residual 3 x 3 conv of the last frame plus seeded noise."""

    name = "_test_noisy_copy"
    Config = NoisyConfig
    stochastic = True

    def __init__(self, cfg: NoisyConfig, frame_shape: tuple[int, int, int], n_actions: int) -> None:
        super().__init__(cfg, frame_shape, n_actions)
        c = frame_shape[0]
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.heads = nn.Linear(c, 4)  # 3 reward logits + 1 termination logit

    def start(self, frames: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None) -> State:
        return {"frame": frames[:, -1]}

    def step(self, state: State, actions: torch.Tensor, generator: torch.Generator | None = None) -> StepResult:
        f = state["frame"]
        noise = torch.randn(f.shape, generator=generator, device=f.device) * self.cfg.noise
        frame = (f + self.conv(f) + noise).clamp(0, 1)
        logits = self.heads(frame.mean(dim=(2, 3)))  # (B, C, H, W) -> (B, C) -> (B, 4)
        return StepResult({"frame": frame}, reward_from_logits(logits[:, :3]), torch.sigmoid(logits[:, 3]))

    def decode(self, state: State) -> torch.Tensor:
        return state["frame"]

    def features(self, state: State) -> torch.Tensor:
        return state["frame"].mean(dim=(2, 3))

    @property
    def feature_dim(self) -> int:
        return self.frame_shape[0]

    def loss(self, batch: SequenceBatch) -> tuple[torch.Tensor, dict[str, float]]:
        pred = (
            batch.frames[:, :-1] + self.conv(batch.frames[:, :-1].flatten(0, 1)).view_as(batch.frames[:, :-1])
        ).clamp(0, 1)
        recon = torch.mean((pred - batch.frames[:, 1:]) ** 2)
        return recon, {"recon": recon.item()}


def _checkpoint(run: Path, data: Path, name: str, cfg: ModelConfig) -> Path:
    manifest = DatasetDir(data).read_manifest()
    torch.manual_seed(0)
    model = build_model(name, cfg, (3, 64, 64), len(manifest["action_meanings"]))
    info = CheckpointConfig(
        model=name,
        model_config=dataclasses.asdict(cfg),
        frame_shape=(3, 64, 64),
        n_actions=len(manifest["action_meanings"]),
        action_meanings=manifest["action_meanings"],
        game=manifest["game"],
        env=manifest["env"],
        preprocess=manifest["preprocess"],
        dataset={"path": str(data), "hash": DatasetDir(data).manifest_hash()},
        command="test",
    )
    return save_checkpoint(run, 7, model, info)


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="learned-envs")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.mark.parametrize("grayscale", [False, True])
def test_pong_objects_match_ram_on_real_frames(pong_dataset: Path, grayscale: bool) -> None:
    ds = DatasetDir(pong_dataset)
    base = ds.preprocess()
    pre = Preprocess(crop=base.crop, size=base.size, grayscale=grayscale)
    ball_err, ball_found, paddle_err, false_balls, no_ball = [], [], [], 0, 0
    for index in ds.episode_indices():
        episode = ds.load(index)
        frames, ram = np.asarray(episode.frames[1:]), np.asarray(episode.ram[1:])  # frame 0: reset colours
        found = find_objects(to_tensor_layout(pre(frames)), pre)  # (T, C, H, W) in [0, 1]
        truth, boxes = ram_centres(ram), ram_objects("Pong", ram)
        whole = (boxes["ball"][:, 3] == 2) & (boxes["ball"][:, 4] == 4)
        ball_err.append(centre_errors(found["ball"][whole], truth["ball"][whole]))
        ball_found.append(found["ball"][whole, 0])
        false_balls += int(np.sum((found["ball"][:, 0] > 0) & (boxes["ball"][:, 0] == 0)))
        no_ball += int(np.sum(boxes["ball"][:, 0] == 0))
        for name in ("player", "enemy"):
            paddle_err.append(centre_errors(found[name], truth[name])[boxes[name][:, 0] > 0])
    ball, paddle = np.concatenate(ball_err), np.concatenate(paddle_err)
    assert len(ball) > 100 and no_ball > 0
    assert np.mean(np.concatenate(ball_found)) >= (0.85 if grayscale else 0.99)
    assert np.nanmedian(ball) <= 2.0 and np.nanpercentile(ball, 95) <= 2.0
    assert not np.isnan(paddle).any() and np.median(paddle) <= 2.0
    if not grayscale:
        assert paddle.max() <= 2.0 and false_balls == 0


def test_the_scene_check_passes_real_frames_and_fails_stripes_extra_balls_and_grey(pong_dataset: Path) -> None:
    ds = DatasetDir(pong_dataset)
    pre = ds.preprocess()
    frames = torch.from_numpy(
        np.concatenate([to_tensor_layout(pre(np.asarray(ds.load(i).frames[1:]))) for i in ds.episode_indices()])
    )  # (N, C, H, W) in [0, 1]; frame 0 of an episode has the reset colours
    real = scene_check(frames, pre)
    assert len(frames) > 400 and real["valid"].mean() >= 0.99
    assert np.array_equal(real["ball"], find_objects(frames, pre)["ball"][:, 0] > 0)
    assert np.median(real["balls"][real["balls"] > 0.5]) == pytest.approx(1.0, abs=0.1)
    bands = _columns(PLAYER_X, (34, 194, 0, 160), 64)
    stripe = frames[:50].clone()
    player, field = (torch.tensor(c, dtype=torch.float32).view(1, 3, 1, 1) for c in (PLAYER, FIELD))
    stripe[:, :, 4:60][:, :, :, bands] = player  # a full-height paddle
    assert not scene_check(stripe, pre)["valid"].any()
    two = frames[:50].clone()
    two[:, :, 30:32, 30:31] = 1.0  # a second (and third) ball on the field
    two[:, :, 40:42, 50:51] = 1.0
    assert not scene_check(two, pre)["one_ball"].any()
    assert not scene_check(torch.full_like(frames[:5], 0.5), pre)["valid"].any()  # grey: not Pong at all
    hidden = frames[:50].clone()
    hidden[:, :, :, ~bands] = field  # no enemy (hidden), no ball
    check = scene_check(hidden, pre)
    assert check["valid"].all() and (check["balls"] == 0).all()
    gone = frames[:50].clone()
    gone[:, :, :, bands] = field  # the player's paddle is never hidden
    assert not scene_check(gone, pre)["player"].any()


def test_frame_metrics_and_copy_last_on_a_hand_made_sequence() -> None:
    context = torch.full((1, 2, 3, 16, 16), 0.2)
    context[:, -1] = 0.4
    target = np.stack([np.full((3, 16, 16), v, dtype=np.float32) for v in (0.4, 0.5, 0.6)])[None]  # (1, 3, C, H, W)
    copy = copy_last(context, 3)
    assert copy.shape == (1, 3, 3, 16, 16) and torch.all(copy == 0.4)
    psnr, ssim = frame_metrics(copy.numpy(), target)
    assert psnr.shape == (1, 3)
    np.testing.assert_allclose(psnr[0], [PSNR_CAP, 10 * math.log10(1 / 0.01), 10 * math.log10(1 / 0.04)], rtol=1e-4)
    expected = structural_similarity(
        np.full((16, 16, 3), 0.6), np.full((16, 16, 3), 0.4), channel_axis=-1, data_range=1.0
    )
    assert ssim[0, 0] == pytest.approx(1.0) and ssim[0, 2] == pytest.approx(expected, rel=1e-4)
    metric = np.array([[[1.0, 5.0], [3.0, 3.0], [2.0, 0.0]]])  # (B=1, S=3, K=2); means 3, 3, 1
    best, avg, worst = best_avg_worst(metric)
    np.testing.assert_allclose(best, [[1.0, 5.0]])
    np.testing.assert_allclose(avg, [[2.0, 8 / 3]])
    np.testing.assert_allclose(worst, [[2.0, 0.0]])


def test_evaluate_cli_writes_all_outputs(pong_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = _checkpoint(
        tmp_path / "run", pong_dataset, "rnn_deconv", RNNDeconvConfig(n_past=2, hidden=32, nf=8, action_dim=8)
    )
    out = tmp_path / "eval"
    argv = ["evaluate", "--checkpoint", str(ckpt), "--data", str(pong_dataset), "--out", str(out), "--horizon", "4"]
    assert _cli([*argv, "--max-sequences", "6", "--samples", "3"]) == 0
    printed = capsys.readouterr().out
    assert "PSNR best" in printed and "ball err" in printed and "metrics.json" in printed
    assert {p.name for p in out.iterdir()} >= {"metrics.json", "metrics.csv", "per_step.png", "prediction.gif"}
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS and [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    result = json.loads((out / "metrics.json").read_text())
    assert result["step"] == 7 and result["windows"] == 6 and result["samples_per_window"] == 1
    assert result["config"]["horizon"] == 4 and not result["stochastic"]
    for row in result["per_step"]:
        assert row["psnr_best"] == row["psnr_avg"] == row["psnr_worst"]  # deterministic: one sample
        assert 20 < row["psnr_copy"] <= PSNR_CAP and 0 < row["ssim_copy"] <= 1
        assert 0 <= row["reward_acc"] <= 1 and 0 <= row["term_acc"] <= 1
    # the copy-last frame usually holds the ball (not when it is served next step), a few px away
    assert result["per_step"][0]["ball_found_copy"] >= 0.5 and result["per_step"][0]["ball_err_copy"] < 12


def test_stochastic_model_best_avg_worst_and_seed(
    pong_dataset: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ckpt = _checkpoint(tmp_path / "run", pong_dataset, "_test_noisy_copy", NoisyConfig(n_past=2))
    kwargs = dict(n_samples=6, horizon=3, max_sequences=4, batch_size=2, seed=3, progress=False)
    first = evaluate(ckpt, pong_dataset, tmp_path / "a", val_fraction=0.0, **kwargs)
    assert "no validation episodes" in caplog.text
    again = evaluate(ckpt, pong_dataset, tmp_path / "b", val_fraction=0.0, **kwargs)
    assert first["samples_per_window"] == 6 and first["per_step"] == again["per_step"]
    for name in ("psnr", "ssim"):
        o = first["overall"]
        assert o[f"{name}_best"] > o[f"{name}_avg"] > o[f"{name}_worst"]
        assert o[f"{name}_copy"] > o[f"{name}_best"]  # noise only hurts a copy of the last frame
    other = evaluate(ckpt, pong_dataset, tmp_path / "c", val_fraction=0.0, **{**kwargs, "seed": 4})
    assert other["overall"]["psnr_avg"] != first["overall"]["psnr_avg"]


def test_mismatched_datasets_are_refused(pong_dataset: Path, tmp_path: Path) -> None:
    ckpt = _checkpoint(
        tmp_path / "run", pong_dataset, "rnn_deconv", RNNDeconvConfig(n_past=2, hidden=32, nf=8, action_dim=8)
    )
    breakout = tmp_path / "breakout"
    collect(
        CollectConfig(out=breakout, env=EnvSettings(game="Breakout", max_episode_steps=20), episodes=2), progress=False
    )
    with pytest.raises(
        EvaluationDataError,
        match=r"game: checkpoint 'Pong', dataset 'Breakout'.*number of actions: checkpoint 6, dataset 4",
    ):
        evaluate(ckpt, breakout, tmp_path / "out", progress=False)
    skip2 = tmp_path / "pong_skip2"
    shutil.copytree(pong_dataset, skip2)
    manifest = DatasetDir(skip2).read_manifest()
    manifest["env"]["frameskip"] = 2
    DatasetDir(skip2).write_manifest(manifest)
    with pytest.raises(EvaluationDataError, match="frameskip: checkpoint 4, dataset 2"):
        evaluate(ckpt, skip2, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_plot_runs_and_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    runs = tmp_path / "runs"
    for i, name in enumerate(("svg/seed=0", "svg/seed=1")):
        (runs / name).mkdir(parents=True)
        lines = ["step,loss,recon,kl"] + [f"{s},{1 / s + i},{0.5 / s},{0.01 * s}" for s in range(1, 20)]
        (runs / name / "train_log.csv").write_text("\n".join(lines) + "\n")
    data = plot_runs(runs, tmp_path / "losses.png")
    assert set(data) == {"svg/seed=0", "svg/seed=1"} and len(data["svg/seed=1"]["kl"]) == 19
    assert (tmp_path / "losses.png").stat().st_size > 1000
    assert _cli(["plot", str(runs), "--out", str(tmp_path / "cli.png")]) == 0 and (tmp_path / "cli.png").exists()
    capsys.readouterr()
    assert _cli(["plot", str(tmp_path / "empty_does_not_exist")]) == 2
    missing = [
        "evaluate",
        "--checkpoint",
        str(tmp_path / "nope"),
        "--data",
        str(tmp_path),
        "--out",
        str(tmp_path / "o"),
    ]
    assert _cli(missing) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("learned-envs: error: ") for line in err)
    assert "no such" in err[1]
