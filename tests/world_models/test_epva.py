"""epva: the contract in every mode, learning a real Pong batch, the critic's two-optimizer loop,
the trainer (with resume), a learned env and the evaluator over tiny epva checkpoints."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dataset_tools.sequences import SequenceBatch, SequenceDataset
from learned_envs.env import LearnedVectorEnv
from world_models import MODELS, build_model, load_model
from world_models.base import select_state
from world_models.evaluation.evaluate import evaluate
from world_models.pixel.epva import MODES, POSE_DIM, EPVAConfig
from world_models.training import train

TINY = EPVAConfig(n_past=2, n_future=2, enc_dim=16, nf=8, rnn_size=32, action_dim=8, noise_dim=4, critic_hidden=16)
TINY_ARGS = ["n_past=2", "n_future=2", "enc_dim=16", "nf=8", "rnn_size=32", "action_dim=8", "critic_hidden=16"]


@pytest.fixture(scope="module")
def batch(pong_dataset: Path) -> SequenceBatch:
    data = SequenceDataset(pong_dataset, seq_len=TINY.n_past + TINY.n_future, split="train")
    return next(iter(data.loader(4, seed=0)))


@pytest.fixture(scope="module")
def small(batch: SequenceBatch) -> SequenceBatch:
    """The same real batch at 32 x 32 (area-averaged): the tests of the networks run at a quarter of the cost
    (the trainer, learned env and evaluator tests below run at the real 64 x 64)."""
    frames = F.interpolate(batch.frames.flatten(0, 1), size=(32, 32), mode="area")  # (B*T, C, 64, 64) -> 32 x 32
    return dataclasses.replace(batch, frames=frames.view(*batch.frames.shape[:3], 32, 32))


def _model(mode: str, size: int = 64, **changes: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("epva", dataclasses.replace(TINY, mode=mode, **changes), (3, size, size), 6)


@pytest.mark.parametrize("mode", MODES)
def test_contract_in_every_mode(small: SequenceBatch, mode: str) -> None:
    batch = small
    model = _model(mode, size=32)
    b = batch.frames.shape[0]
    loss, logs = model.loss(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert {"recon", "frame_loss", "reward_ce", "term_bce", "reward_acc"} <= set(logs)
    assert ("ep" in logs) == (mode in ("epva", "epva_gan")) and ("pose_enc" in logs) == (
        "pose" in mode or mode == "individual"
    )
    loss.backward()
    for name, param in model.named_parameters():  # every network learns in every mode (the critic elsewhere)
        if not name.startswith("critic."):
            assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert (model.adversary() is not None) == (mode == "epva_gan") == model.stochastic
    model.eval()
    state = model.start(batch.frames[:, :2], batch.actions[:, :1])
    assert torch.equal(model.decode(state), batch.frames[:, 1])  # before a step: the real anchor frame
    dim = POSE_DIM if mode == "individual" else TINY.enc_dim
    assert model.feature_dim == dim + TINY.rnn_size
    state, reward, term = model.step(state, batch.actions[:, 1])
    frame = model.decode(state)
    assert frame.shape == (b, 3, 32, 32) and 0 <= frame.min() and frame.max() <= 1
    assert model.features(state).shape == (b, model.feature_dim)
    assert reward.shape == term.shape == (b,) and set(reward.tolist()) <= {-1.0, 0.0, 1.0}
    assert ((0 <= term) & (term <= 1)).all()
    mask = torch.arange(b) % 2 == 0
    mixed = select_state(mask, state, {k: torch.zeros_like(v) for k, v in state.items()})
    assert all(torch.equal(mixed[k][0], v[0]) and not mixed[k][1].any() for k, v in state.items())
    gen = torch.Generator().manual_seed(1)
    out = model.rollout(batch.frames[:, :2], batch.actions[:, :1], batch.actions[:, 1:], gen)
    assert out["frames"].shape == (b, 2, 3, 32, 32) and out["rewards"].shape == (b, 2)
    again = model.rollout(
        batch.frames[:, :2], batch.actions[:, :1], batch.actions[:, 1:], torch.Generator().manual_seed(1)
    )
    assert torch.equal(out["frames"], again["frames"])  # seeded: reproducible, noise included


def test_registry_and_refusals() -> None:
    assert MODELS["epva"].Config is EPVAConfig
    with pytest.raises(ValueError, match="mode must be one of"):
        build_model("epva", {"mode": "pose"}, (3, 64, 64), 6)
    with pytest.raises(ValueError, match="enc_dim >= 9"):
        build_model("epva", {"mode": "e2e_with_pose", "enc_dim": 4}, (3, 64, 64), 6)
    with pytest.raises(ValueError, match="square"):
        build_model("epva", {}, (3, 64, 32), 6)
    with pytest.raises(ValueError, match="RAM"):
        _model("individual", size=32).bind_data("Breakout", None)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="no adversary"):
        _model("epva", size=32).adversary_loss(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(("mode", "key"), [("epva", "frame_loss"), ("individual", "pose_enc")])
def test_learns_a_real_pong_batch(small: SequenceBatch, mode: str, key: str, fit) -> None:
    model = _model(mode, size=32, enc_pred_loss_scale_delay=0)
    values = [logs[key] for logs in fit(model, small, 12)]
    assert values[-1] < 0.6 * values[0], values
    assert int(model.updates) == 12


def test_ep_weight_ramps_with_training_steps(small: SequenceBatch) -> None:
    model = _model("epva", size=32, enc_pred_loss_scale=0.5, enc_pred_loss_scale_delay=2)
    scales = [model.loss(small)[1]["ep_scale"] for _ in range(3)]
    assert scales == [0.0, 0.25, 0.5]
    model.eval()
    model.loss(small)
    assert int(model.updates) == 3  # evaluation calls do not advance the ramp


def test_gan_trains_with_a_second_optimizer(small: SequenceBatch) -> None:
    """The trainer's two-optimizer loop, by hand: the critic steps on adversary_loss, the rest on loss."""
    batch = small
    model = _model("epva_gan", size=32, enc_pred_loss_scale_delay=0)
    with pytest.raises(RuntimeError, match="call loss first"):
        model.adversary_loss(batch)
    critic = model.adversary()
    critic_ids = {id(p) for p in critic.parameters()}
    main = torch.optim.Adam([p for p in model.parameters() if id(p) not in critic_ids], 1e-3)
    adv = torch.optim.Adam(critic.parameters(), 1e-3)
    before = [p.detach().clone() for p in critic.parameters()]
    distances = []
    for _ in range(4):
        loss, logs = model.loss(batch)
        main.zero_grad()
        adv.zero_grad()
        loss.backward()
        assert all(p.grad is None for p in critic.parameters())  # the generator term leaves the critic alone
        main.step()
        d_loss, d_logs = model.adversary_loss(batch)
        d_loss.backward()
        adv.step()
        distances.append((d_logs["wasserstein"], model.adversary_loss(batch)[1]["wasserstein"]))
        assert np.isfinite([logs["adv"], d_logs["gradient_penalty"]]).all()
    assert all(not torch.equal(a, b) for a, b in zip(before, critic.parameters(), strict=True))
    # each critic step widens the gap it sees between encoded and predicted transitions
    assert all(after > before for before, after in distances), distances


@pytest.fixture(scope="module")
def epva_run(pong_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("epva") / "run"
    args = [*TINY_ARGS, "batch_size=2", "image_every=2", "ckpt_every=2", "enc_pred_loss_scale_delay=10"]
    train("epva", pong_dataset, run, ["steps=2", *args], progress=False)
    return train("epva", pong_dataset, run, ["steps=3", *args], resume=True, progress=False)


def test_trains_and_resumes_through_the_trainer(epva_run: Path) -> None:
    model, config = load_model(epva_run)
    assert config.model == "epva" and config.step == 3 and config.model_config["mode"] == "epva"
    assert int(model.updates) == 3  # the EP ramp went on where the killed run stopped
    assert (epva_run.parent.parent / "samples" / "step_00000002.gif").exists()


def test_learned_env_and_evaluate_on_a_tiny_checkpoint(epva_run: Path, pong_dataset: Path, tmp_path: Path) -> None:
    env = LearnedVectorEnv(epva_run, num_envs=3, device="cpu", max_episode_steps=4)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3, 64, 64, 3) and obs.dtype == np.uint8
    truncated = []
    for _ in range(5):  # past max_episode_steps: autoreset of finished envs
        obs, reward, term, trunc, _ = env.step(np.array([0, 2, 3]))
        truncated.append(trunc | term)
    assert obs.shape == (3, 64, 64, 3) and reward.shape == (3,) and np.any(truncated)
    latent = LearnedVectorEnv(epva_run, num_envs=2, device="cpu", obs_type="latent")
    assert latent.reset(seed=0)[0].shape == (2, TINY.enc_dim + TINY.rnn_size)
    result = evaluate(epva_run, pong_dataset, tmp_path / "eval", horizon=2, max_sequences=4, batch_size=2,
                      val_fraction=0.0, progress=False)  # fmt: skip
    assert result["model"] == "epva" and not result["stochastic"] and len(result["per_step"]) == 2
    assert (tmp_path / "eval" / "metrics.json").exists()


def test_gan_checkpoint_backs_a_seeded_learned_env(pong_dataset: Path, tmp_path: Path) -> None:
    """epva_gan through today's trainer (the critic sits idle in the main optimizer) and a stochastic env."""
    args = ["steps=1", "batch_size=2", "image_every=0", "mode=epva_gan", *TINY_ARGS]
    ckpt = train("epva", pong_dataset, tmp_path / "gan", args, progress=False)
    assert load_model(ckpt)[0].stochastic
    runs = []
    for _ in range(2):
        env = LearnedVectorEnv(ckpt, num_envs=2, device="cpu")
        frames = [env.reset(seed=5)[0]] + [env.step(np.array([1, 4]))[0] for _ in range(3)]
        runs.append(np.stack(frames))
    np.testing.assert_array_equal(runs[0], runs[1])
