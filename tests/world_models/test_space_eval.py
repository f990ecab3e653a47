"""Scoring a space_time checkpoint: ``learned-envs evaluate`` on it and the trainer's ``eval_every``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from sklearn.linear_model import RidgeClassifier

from dataset_tools.dataset import DatasetDir
from dataset_tools.preprocess import Preprocess
from dataset_tools.sequences import SequenceDataset
from learned_envs.cli import main
from world_models import load_model
from world_models.evaluation.evaluate import EvaluationDataError, evaluate
from world_models.space import SpaceTime, scene_description
from world_models.space.evaluate import EVAL_LOG, held_out
from world_models.space.metrics import CLASSIFIER_FILE, dataset_batches

TINY = ["img_size=32", "grid=4", "fg_nf=8", "glimpse_size=8", "glimpse_hidden=16", "z_what_dim=4", "bg_nf=8"]
TINY += ["bg_downsample=2", "z_mask_dim=4", "z_comp_dim=4", "z_scale_max=0.25", "motion_weight=0"]


@pytest.fixture(scope="module")
def space_run(pong_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two steps of a tiny space_time (no motion targets needed) evaluated at step 2 (eval_every)."""
    run = tmp_path_factory.mktemp("space_eval") / "run"
    args = ["train", "--model", "space_time", "--data", str(pong_dataset), "--out", str(run), "--no-progress"]
    args += [*TINY, "steps=2", "batch_size=2", "n_contexts=2", "image_every=0", "eval_every=2", "eval_frames=40"]
    assert main(args) == 0
    return run


def test_eval_every_logs_the_headline_numbers(space_run: Path) -> None:
    with (space_run / EVAL_LOG).open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [2] and int(rows[0]["frames"]) == 40
    for key in ("f1_player", "f1_enemy", "f1_ball", "f1_all", "ap_mean", "count_acc"):
        value = float(rows[0][key])
        assert 0.0 <= value <= 1.0, (key, value)
    assert "few_shot_4" in rows[0] and (space_run / "eval" / "metrics.json").exists()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for events in (space_run / "tb").glob("events*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    assert {"eval/f1_ball", "eval/few_shot_4", "eval/ap_mean"} <= tags


def test_evaluate_cli_scores_the_held_out_frames(
    space_run: Path, pong_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval"
    args = ["evaluate", "--checkpoint", str(space_run), "--data", str(pong_dataset), "--out", str(out)]
    assert main([*args, "--max-frames", "64", "--batch-size", "32", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "space_time at step 2: 64 of" in printed and "few-shot z_what accuracy" in printed
    result = json.loads((out / "metrics.json").read_text())
    episodes, frames = held_out(pong_dataset, 0.1)
    assert result["held_out"] == {"episodes": episodes, "frames": frames} and episodes == [2]
    assert result["frames"] == 64 and result["step"] == 2 and result["preprocess"]["size"] == [32, 32]
    for name in ("player", "enemy", "ball"):
        score = result["boxes"]["centre"]["classes"][name]
        assert all(0.0 <= score[k] <= 1.0 for k in ("precision", "recall", "f1")), score
    assert 0.0 <= result["ap"]["mean"] <= 1.0 and 0.0 <= result["counting"]["accuracy"] <= 1.0
    assert (out / "z_what_pca.png").exists() == (sum(result["z_what_pairs"].values()) > 0)
    for n, score in result["few_shot"].items():
        classifier = out / CLASSIFIER_FILE.format(n=n)
        assert classifier.exists() == ("accuracy" in score)
        assert "skipped" in score or 0.0 <= score["accuracy"] <= 1.0


def test_the_frames_are_the_models_and_its_classifier_reads_scenes(
    space_run: Path, pong_dataset: Path, tmp_path: Path
) -> None:
    """The evaluation reads the dataset (stored at 64 x 64) at the checkpoint's 32 x 32, as training did,
    and a saved classifier labels :func:`scene_description`'s objects (both see z_what)."""
    model, config = load_model(space_run)
    assert isinstance(model, SpaceTime) and DatasetDir(pong_dataset).preprocess().size == (64, 64)
    frames, ram = next(dataset_batches(pong_dataset, "val", 8, Preprocess.from_dict(config.preprocess)))
    assert frames.shape == (8, 3, 32, 32) and ram.shape == (8, 128)
    options = SpaceTime.data_options(model.cfg, DatasetDir(pong_dataset).preprocess())  # what the trainer reads
    trained = SequenceDataset(pong_dataset, 1, split="val", **options)
    assert torch.equal(frames[3], trained[3]["frames"][0])
    with torch.no_grad():  # a classifier fitted on z_what of any 3 classes stands in for a trained one
        z = model.infer(frames).z_what.flatten(0, 1)[:9]  # (8, N, D) -> (9, D)
    clf = RidgeClassifier().fit(z.numpy(), ["player", "enemy", "ball"] * 3)
    scenes = scene_description(model, frames, z_classifier=clf, threshold=0.0)
    assert all(set(s) <= {"player", "enemy", "ball"} for s in scenes) and sum(map(len, scenes)) > 0


def test_open_loop_evaluate_refuses_an_extractor(space_run: Path, pong_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(EvaluationDataError, match="object extractor"):
        evaluate(space_run, pong_dataset, tmp_path, max_sequences=1, device="cpu")
