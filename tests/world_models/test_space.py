"""SPACE-Time (world_models/space) at tiny sizes: shapes, losses, schedules, trainer, configs, scenes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dataset_tools.dataset import DatasetDir
from dataset_tools.postprocess import MotionConfig, compute_motion
from dataset_tools.sequences import SequenceBatch, SequenceDataset
from learned_envs.cli import main
from world_models import MODELS, Extractor, WorldModel, build_model, load_model
from world_models.checkpoint import checkpoint_dirs
from world_models.config import ConfigError, apply_overrides, parse_pairs, read_config_file
from world_models.space import (
    Inference,
    SpaceTime,
    SpaceTimeConfig,
    label_list,
    linear_anneal,
    scene_description,
    zwhere_to_box,
)
from world_models.space.losses import continuity_loss
from world_models.training import config_file

TINY = {
    "img_size": "32",
    "grid": "4",
    "fg_nf": "8",
    "glimpse_size": "8",
    "glimpse_hidden": "16",
    "z_what_dim": "4",
    "bg_k": "2",
    "bg_nf": "8",
    "bg_downsample": "2",
    "z_mask_dim": "4",
    "z_comp_dim": "4",
    "z_scale_max": "0.25",
}


def _cfg(**kwargs: object) -> SpaceTimeConfig:
    (cfg,) = apply_overrides([SpaceTimeConfig()], TINY | {k: str(v) for k, v in kwargs.items()})
    return cfg


@pytest.fixture(scope="module")
def pong_motion(pong_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Pong fixture with motion targets (mode background of each episode)."""
    root = tmp_path_factory.mktemp("space") / "pong"
    shutil.copytree(pong_dataset, root)
    compute_motion(DatasetDir(root), MotionConfig(method="mode"), progress=False)
    return root


def _real_batch(root: Path, cfg: SpaceTimeConfig, n: int = 4) -> SequenceBatch:
    options = SpaceTime.data_options(cfg, DatasetDir(root).preprocess())
    data = SequenceDataset(root, seq_len=2, split="train", stride=40, **options)
    return next(iter(data.loader(n, seed=0)))


def test_shapes_elbo_and_the_extractor_contract(pong_motion: Path) -> None:
    torch.manual_seed(0)
    cfg = _cfg()
    model = build_model("space_time", cfg, (3, 32, 32), 6)
    assert MODELS["space_time"] is SpaceTime
    batch = _real_batch(pong_motion, cfg)
    assert batch.frames.shape == (4, 2, 3, 32, 32) and batch.motion_pres.shape == (4, 2, 4, 4)
    loss, logs = model.loss(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert {"recon", "kl", "elbo", "motion_pres", "motion_where", "continuity", "objects"} <= set(logs)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)

    out = model.infer(batch.frames[:, 0])
    assert isinstance(out, Inference) and model.training  # infer leaves the mode alone
    assert out.z_pres.shape == (4, 16) and ((0 <= out.z_pres) & (out.z_pres <= 1)).all()
    assert out.z_where.shape == (4, 16, 4) and out.z_what.shape == (4, 16, 4) and out.boxes.shape == (4, 16, 4)
    centres = out.z_where[..., 2:]  # every centre stays in its own cell
    cells = ((centres + 1) / 2 * 4).floor().clamp(0, 3)
    assert torch.equal(cells[..., 1] * 4 + cells[..., 0], torch.arange(16.0).expand(4, 16))

    assert isinstance(model, Extractor) and not isinstance(model, WorldModel)  # it finds objects, never steps
    assert not hasattr(model, "step") and not hasattr(model, "decode")
    image = model.summary_images(batch)
    assert image.shape == (3, 4 * 32, 4 * 32) and 0 <= image.min() and image.max() <= 1
    with pytest.raises(ValueError, match="RGB frames"):
        build_model("space_time", cfg, (1, 32, 32), 6)


def test_motion_loss_pulls_z_pres_towards_the_targets(pong_motion: Path) -> None:
    torch.manual_seed(0)
    cfg = _cfg(area_object_weight=0, motion_weight=1000)
    model = build_model("space_time", cfg, (3, 32, 32), 6)
    batch = _real_batch(pong_motion, cfg, n=6)
    target = batch.motion_pres.flatten(0, 1).flatten(1)  # (B*T, N)
    assert 0 < target.sum() < target.numel()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    first = None
    for step in range(1, 51):
        model.on_step(step)
        loss, logs = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else logs["motion_pres"]
    assert logs["motion_pres"] < 0.6 * first
    pres = model.infer(batch.frames.flatten(0, 1)).z_pres
    assert ((pres > 0.5).float() == target).float().mean() > 0.95


def test_continuity_loss_prefers_the_same_code_for_the_same_object() -> None:
    centres = torch.tensor([[[[-0.5, 0.0], [0.5, 0.0]], [[-0.45, 0.0], [0.55, 0.0]]]])  # (1, T=2, N=2, 2)
    present = torch.ones(1, 2, 2, dtype=torch.bool)
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    same = torch.stack([torch.stack([a, b]), torch.stack([a, b])])[None]  # (1, 2, 2, D): codes kept
    swapped = torch.stack([torch.stack([a, b]), torch.stack([b, a])])[None]  # codes exchanged
    low, n = continuity_loss(same, centres, present, radius=0.2, temperature=0.1)
    high, _ = continuity_loss(swapped, centres, present, radius=0.2, temperature=0.1)
    assert n == 2 and low.item() < 1e-3 and high.item() > 10
    moved = centres + torch.tensor([0.0, 0.5]).view(1, 2, 1, 1)  # frame t+1 shifted by 0.5: nothing matches
    far, n_far = continuity_loss(same, moved, present, radius=0.2, temperature=0.1)
    assert n_far == 0 and far.item() == 0
    z = same.clone().requires_grad_(True)
    continuity_loss(z + 0.1 * torch.randn_like(z), centres, present, 0.2, 0.1)[0].sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_annealing_schedules() -> None:
    assert linear_anneal(0, 10, 20, 1.0, 0.0) == 1.0 and linear_anneal(15, 10, 20, 1.0, 0.0) == 0.5
    assert linear_anneal(25, 10, 20, 1.0, 0.0) == 0.0 and linear_anneal(5, 0, 0, 1.0, 3.0) == 3.0
    cfg = SpaceTimeConfig()
    assert cfg.tau(0) == 2.5 and cfg.tau(5000) == pytest.approx(1.5) and cfg.tau(99999) == 0.5
    assert cfg.z_pres_prior(4000) == 0.1 and cfg.z_pres_prior(7000) == pytest.approx(0.055)
    assert cfg.z_scale_prior(15000) == pytest.approx(-1.5)
    assert cfg.motion_hint(5000) == 1.0 and cfg.motion_hint(7500) == 0.5 and cfg.motion_hint(10000) == 0.0
    model = SpaceTime(_cfg(tau_end_step=10), (3, 32, 32), 6)
    model.on_step(5)
    assert model.cfg.tau(model.global_step) == pytest.approx(1.5)
    with pytest.raises(ConfigError, match="2\\+ frames"):
        SpaceTimeConfig(n_future=0)
    with pytest.raises(ConfigError, match="power of two"):
        SpaceTimeConfig(glimpse_size=12)


def test_config_file_and_overrides(tmp_path: Path) -> None:
    pong = config_file("atari_pong.yaml", "space_time")
    assert pong.parent.name == "configs" and config_file("atari_breakout.yaml", "space_time").exists()
    pairs = parse_pairs([*read_config_file(pong), "grid=8", "seed=3"])
    from world_models.training import TrainConfig

    train_cfg, cfg = apply_overrides([TrainConfig(), SpaceTimeConfig()], pairs)
    assert cfg.img_size == 128 and cfg.grid == 8 and cfg.motion_weight == 100.0 and cfg.z_scale_prior_start == -1.0
    assert train_cfg.keep_last == 3 and train_cfg.seed == 3 and train_cfg.lr == 3e-4
    path = tmp_path / "mine.yaml"
    path.write_text("# comment\n---\nlr: 1e-3   # trailing\nname: 'a b'\n\nsteps: \"7\"\n")
    assert read_config_file(path) == ["lr=1e-3", "name=a b", "steps=7"]
    path.write_text("model:\n  grid: 8\n")
    with pytest.raises(ConfigError, match="mine.yaml: model: expected one value"):
        read_config_file(path)
    path.write_text("lr: [1e-3\n")
    with pytest.raises(ConfigError, match="mine.yaml: not valid YAML"):
        read_config_file(path)
    path.write_text("train: true\nlr: !!python/object/apply:os.system ['true']\n")  # the safe loader constructs nothing
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_config_file(path)
    with pytest.raises(ConfigError, match="shipped for space_time: atari_boxing.yaml, atari_breakout.yaml, atari_freeway.yaml, atari_pong.yaml"):
        config_file("atari_nope.yaml", "space_time")


def test_trainer_runs_resumes_and_keeps_the_last(
    pong_motion: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    tiny = [f"{k}={v}" for k, v in TINY.items()]
    args = ["train", "--model", "space_time", "--config", "atari_pong.yaml", "--data", str(pong_motion)]
    args += ["--out", str(run), "--no-progress"]
    tiny += ["batch_size=2", "n_contexts=2", "log_every=1"]
    assert main([*args, *tiny, "steps=2", "ckpt_every=1", "image_every=2", "keep_last=1"]) == 0
    assert [p.name for p in checkpoint_dirs(run)] == ["step_00000002"]
    assert (run / "samples" / "step_00000002.png").exists()
    saved = json.loads((run / "run.json").read_text())
    assert saved["model_config"]["motion_weight"] == 100.0 and saved["model_config"]["img_size"] == 32
    assert main([*args, "--resume", *tiny, "steps=3", "ckpt_every=1", "image_every=0", "keep_last=1"]) == 0
    assert [p.name for p in checkpoint_dirs(run)] == ["step_00000003"]
    model, config = load_model(run)
    assert isinstance(model, SpaceTime) and config.preprocess["size"] == [32, 32] and config.step == 3
    assert config.preprocess["crop"] == [34, 194, 0, 160] and not config.preprocess["grayscale"]
    assert "final checkpoint" in capsys.readouterr().out


class _StubModel:
    """Answers ``infer`` with hand-made latents (2 images, 3 cells, D = 2)."""

    def infer(self, x: torch.Tensor) -> Inference:
        z_where = torch.tensor(
            [[[0.1, 0.2, -0.5, 0.5], [0.1, 0.1, 0.0, 0.0], [0.2, 0.2, 0.5, -0.5]], [[0.1, 0.1, 0.25, 0.75]] * 3]
        )
        return Inference(
            z_pres=torch.tensor([[0.9, 0.2, 0.7], [0.1, 0.6, 0.1]]),
            z_where=z_where,
            z_what=torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], [[1.0, 0.0]] * 3]),
            z_depth=torch.zeros(2, 3),
            boxes=zwhere_to_box(z_where, 64, 64),
        )


class _ArgmaxClassifier:
    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features).argmax(-1)


def test_scene_description_and_zwhere_to_box() -> None:
    box = zwhere_to_box(torch.tensor([0.5, 0.25, 0.0, -0.5]), 64, 128)
    assert box.tolist() == [32.0, 8.0, 64.0, 16.0]  # w = 0.5 * 128, centre (64, 16)
    np.testing.assert_allclose(zwhere_to_box(np.array([[0.1, 0.2, -1.0, 1.0]]), 100, 50), [[-2.5, 90, 5, 20]])
    scenes = scene_description(_StubModel(), torch.zeros(2, 3, 64, 64), z_classifier=_ArgmaxClassifier())
    assert scenes == [{0: [(-0.5, 0.5)], 1: [(0.5, -0.5)]}, {0: [(0.25, 0.75)]}]
    names = label_list("Pong")
    assert names == ("player", "enemy", "ball")
    one = scene_description(_StubModel(), torch.zeros(3, 64, 64), z_classifier=_ArgmaxClassifier(), labels=names)
    assert one == {"player": [(-0.5, 0.5)], "enemy": [(0.5, -0.5)]}
    assert scene_description(_StubModel(), torch.zeros(3, 64, 64)) == {"object": [(-0.5, 0.5), (0.5, -0.5)]}
    with pytest.raises(ValueError, match="no label list"):
        label_list("Zork")
