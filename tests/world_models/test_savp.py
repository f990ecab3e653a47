"""SAVP and its ablations: the contract per mode and transformation, learning a real Pong batch,
the trainer's second (adversary) optimizer with resume, a learned env and the evaluator over it."""

from __future__ import annotations

import csv
import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dataset_tools.sequences import SequenceBatch, SequenceDataset
from learned_envs.env import LearnedVectorEnv
from world_models.base import MODELS, build_model, select_state
from world_models.checkpoint import checkpoint_dirs, load_training_state
from world_models.evaluation.evaluate import evaluate
from world_models.pixel.savp import SAVPConfig
from world_models.training import train

ROOT = Path(__file__).resolve().parents[2]
TINY = SAVPConfig(
    n_past=2, n_future=3, nf=4, nef=4, ndf=4, feat_dim=16, z_dim=2, action_dim=4, n_transformed=2, kernel_size=3
)
TINY_ARGS = [f"{f.name}={getattr(TINY, f.name)}" for f in dataclasses.fields(TINY) if f.name in
             ("n_future", "nf", "nef", "ndf", "feat_dim", "z_dim", "action_dim", "n_transformed", "kernel_size")]  # fmt: skip
TRAIN_ARGS = [*TINY_ARGS, "batch_size=2", "log_every=1", "image_every=0", "n_contexts=4"]
N_ACTIONS = 6


def _random_batch(size: int = 32, b: int = 2, t: int = 5) -> SequenceBatch:
    g = torch.Generator().manual_seed(0)
    return SequenceBatch(
        frames=torch.rand(b, t, 3, size, size, generator=g),
        actions=torch.randint(0, N_ACTIONS, (b, t - 1), generator=g),
        rewards=torch.randint(-1, 2, (b, t - 1), generator=g).float(),
        terminated=torch.zeros(b, t - 1),
        ram=torch.zeros(b, t, 128, dtype=torch.uint8),
    )


def _pong_batch(pong_dataset: Path, batch_size: int = 4) -> SequenceBatch:
    data = SequenceDataset(pong_dataset, seq_len=TINY.n_past + TINY.n_future, split="train")
    return next(iter(data.loader(batch_size, seed=0)))


@pytest.mark.parametrize(
    ("mode", "transformation"),
    [("savp", "cdna"), ("savp", "dna"), ("savp", "flow"), ("vae", "cdna"), ("gan", "dna"), ("deterministic", "flow")],
)
def test_contract(mode: str, transformation: str) -> None:
    torch.manual_seed(0)
    cfg = dataclasses.replace(
        TINY, mode=mode, transformation=transformation, prior="learned" if mode == "vae" else "fixed"
    )
    model = build_model("savp", cfg, (3, 32, 32), N_ACTIONS)
    assert model.stochastic == (mode != "deterministic") and model.deterministic_start == (mode == "deterministic")
    batch = _random_batch()
    b, _, c, h, w = batch.frames.shape
    loss, logs = model.loss(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert {"recon", "l1", "kl", "reward_ce", "term_bce", "reward_acc"} <= set(logs)
    assert (logs["kl"] > 0) == (mode in ("savp", "vae"))
    discriminators = {"savp": {"gan", "vae_gan"}, "gan": {"gan"}}.get(mode, set())
    assert {k[2:] for k in logs if k.startswith("g_")} == discriminators
    if discriminators:
        assert set(model.adversary().keys()) == discriminators
        d_loss, d_logs = model.adversary_loss(batch)
        assert d_loss.ndim == 0 and torch.isfinite(d_loss) and {f"d_{k}" for k in discriminators} <= set(d_logs)
    else:
        assert model.adversary() is None
        with pytest.raises(RuntimeError):  # NotImplementedError (the base) is one too
            model.adversary_loss(batch)

    state = model.start(batch.frames[:, :2], batch.actions[:, :1])
    assert torch.equal(model.decode(state), batch.frames[:, 1])
    state, reward, term = model.step(state, batch.actions[:, 1])
    frame = model.decode(state)
    assert frame.shape == (b, c, h, w) and 0 <= frame.min() and frame.max() <= 1
    assert model.features(state).shape == (b, model.feature_dim)
    assert set(reward.tolist()) <= {-1.0, 0.0, 1.0} and ((0 <= term) & (term <= 1)).all()
    mixed = select_state(torch.tensor([True, False]), state, {k: torch.zeros_like(v) for k, v in state.items()})
    assert all(torch.equal(mixed[k][0], v[0]) and not mixed[k][1].any() for k, v in state.items())

    out = model.rollout(batch.frames[:, :2], batch.actions[:, :1], batch.actions[:, 1:])
    assert out["frames"].shape == (b, 3, c, h, w) and out["rewards"].shape == (b, 3)
    seeded = [
        model.rollout(batch.frames[:, :2], batch.actions[:, :1], batch.actions[:, 1:], torch.Generator().manual_seed(s))
        for s in (1, 1, 2)
    ]
    assert torch.equal(seeded[0]["frames"], seeded[1]["frames"])
    assert torch.equal(seeded[0]["frames"], seeded[2]["frames"]) == (mode == "deterministic")


def test_registry_options_and_errors() -> None:
    assert MODELS["savp"].Config is SAVPConfig
    only_scratch = dataclasses.replace(TINY, n_transformed=0, first_image_background=False, prev_image_background=False)
    assert build_model("savp", only_scratch, (1, 16, 16), N_ACTIONS).transform is None
    with pytest.raises(ValueError, match="divisible"):
        build_model("savp", TINY, (3, 36, 36), N_ACTIONS)
    with pytest.raises(ValueError, match="mode"):
        build_model("savp", dataclasses.replace(TINY, mode="vae_gan"), (3, 32, 32), N_ACTIONS)
    with pytest.raises(ValueError, match="odd"):
        build_model("savp", dataclasses.replace(TINY, kernel_size=4), (3, 32, 32), N_ACTIONS)
    with pytest.raises(ValueError, match="composites nothing"):
        build_model("savp", dataclasses.replace(only_scratch, generate_scratch_image=False), (3, 32, 32), N_ACTIONS)


def test_gradients_reach_generator_and_discriminators(pong_dataset: Path) -> None:
    torch.manual_seed(0)
    model = build_model("savp", dataclasses.replace(TINY, prior="learned"), (3, 64, 64), N_ACTIONS)
    batch = _pong_batch(pong_dataset, 2)
    loss, _ = model.loss(batch)
    loss.backward()
    adversary = {id(p) for p in model.adversary().parameters()}
    for name, param in model.named_parameters():
        if id(param) not in adversary:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
    model.zero_grad(set_to_none=True)
    model.adversary_loss(batch)[0].backward()
    for name, param in model.named_parameters():
        assert (param.grad is not None) == (id(param) in adversary), name


def test_learns_a_real_pong_batch(pong_dataset: Path, fit) -> None:
    torch.manual_seed(0)
    model = build_model("savp", TINY, (3, 64, 64), N_ACTIONS)
    first, *_, logs = fit(model, _pong_batch(pong_dataset), 12)
    assert logs["l1"] < 0.5 * first["l1"] and logs["reward_ce"] < first["reward_ce"], (first, logs)


@pytest.fixture(scope="module")
def savp_run(pong_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny savp (VAE + GAN) run of 3 steps, checkpoints at 2 and 3."""
    run = tmp_path_factory.mktemp("savp") / "run"
    train("savp", pong_dataset, run, [*TRAIN_ARGS, "steps=3", "ckpt_every=2"], progress=False)
    return run


def test_trainer_steps_both_optimizers_and_resumes(savp_run: Path, pong_dataset: Path, tmp_path: Path) -> None:
    final = checkpoint_dirs(savp_run)[-1]
    state = load_training_state(final)
    assert state["step"] == 3 and state["adversary_optimizer"]["state"]  # Adam moments of the discriminators
    n_adversary = len(state["adversary_optimizer"]["param_groups"][0]["params"])
    assert n_adversary == 2 * 8  # two discriminators of 4 spectrally normalised 3D convs (weight + bias)
    n_main = len(state["optimizer"]["param_groups"][0]["params"])
    assert n_main + n_adversary == len(list(build_model("savp", TINY, (3, 64, 64), N_ACTIONS).parameters()))
    with (savp_run / "train_log.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert {"adversary_loss", "d_gan", "d_vae_gan", "g_gan", "g_vae_gan", "kl", "l1"} <= set(rows[0])
    assert all(np.isfinite(float(r["adversary_loss"])) for r in rows)

    run = tmp_path / "resumed"
    shutil.copytree(savp_run, run)
    shutil.rmtree(checkpoint_dirs(run)[-1])  # killed after step 2
    resumed = train("savp", pong_dataset, run, [*TRAIN_ARGS, "steps=3"], resume=True, progress=False)
    a, b = (torch.load(p / "model.pt", weights_only=True) for p in (final, resumed))
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


def test_learned_env_and_evaluate_over_a_savp_checkpoint(savp_run: Path, pong_dataset: Path, tmp_path: Path) -> None:
    venv = LearnedVectorEnv(savp_run, 3, device="cpu", obs_type="latent")
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (3, TINY.feat_dim)
    for _ in range(3):
        obs, reward, term, trunc, _ = venv.step(np.array([0, 2, 3]))
    assert obs.shape == (3, TINY.feat_dim) and reward.shape == (3,) and np.isfinite(obs).all()
    frames = LearnedVectorEnv(savp_run, 2, device="cpu")
    assert frames.reset(seed=0)[0].shape == (2, 64, 64, 3) and frames.step(np.array([1, 4]))[0].dtype == np.uint8

    result = evaluate(
        savp_run, pong_dataset, tmp_path, n_samples=2, horizon=3, max_sequences=2, device="cpu", progress=False
    )
    assert result["stochastic"] and result["samples_per_window"] == 2
    assert (tmp_path / "metrics.json").exists() and (tmp_path / "prediction.gif").exists()


@pytest.mark.slow
def test_ddp_two_processes_train_the_discriminators(pong_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += ["-m", "learned_envs.cli", "train", "--model", "savp", "--data", str(pong_dataset)]
    command += ["--out", str(run), "--no-progress", *TRAIN_ARGS, "steps=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert load_training_state(checkpoint_dirs(run)[-1])["adversary_optimizer"]["state"]
