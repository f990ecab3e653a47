"""scene_dynamics: slots from the shipped SPACE-Time extractor, their cache, training, the learned env and its twin."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dataset_tools.dataset import DatasetDir
from dataset_tools.preprocess import to_tensor_layout
from learned_envs.env import LearnedVectorEnv
from learned_envs.twin import make_real_twin
from world_models import load_model
from world_models.objects.pong_objects import ram_vectors
from world_models.objects.scene_dynamics import SceneDynamics, SceneDynamicsConfig, cache_name, resolve_extractor
from world_models.space import PONG_CHECKPOINT
from world_models.training import TrainError, train

TINY = ["steps=4", "batch_size=4", "n_past=2", "n_future=2", "hidden=16", "layers=1", "image_every=0", "n_contexts=4"]


@pytest.fixture(scope="module")
def scene_run(pong_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A private copy of the Pong fixture (the model caches slots in it), a private copy of the shipped
    extractor, and a tiny scene_dynamics checkpoint trained over them."""
    root = tmp_path_factory.mktemp("scene")
    data, extractor = root / "pong", root / "extractor"
    shutil.copytree(pong_dataset, data)
    shutil.copytree(PONG_CHECKPOINT, extractor)
    ckpt = train("scene_dynamics", data, root / "run", [*TINY, f"extractor={extractor}"], progress=False)
    return data, extractor, ckpt


def test_cached_slots_are_the_objects_of_the_ram(scene_run: tuple[Path, Path, Path]) -> None:
    data, extractor, _ = scene_run
    spec = resolve_extractor(SceneDynamicsConfig(extractor=str(extractor)))
    assert spec["labels"] == ["player", "enemy", "ball"]
    ds = DatasetDir(data)
    slots, truth = [], []
    for ep in ds.episode_indices():
        cached = np.load(ds.episodes_dir / f"ep_{ep:06d}" / cache_name(spec))
        assert cached.shape == (ds.load(ep).frames.shape[0], 3, 5 + 16) and cached.dtype == np.float32
        slots.append(cached[5:])  # skip each episode's odd-coloured first frames
        truth.append(ram_vectors(np.asarray(ds.load(ep).ram[5:])))
    slot, ram = np.concatenate(slots), np.concatenate(truth)
    both = (slot[..., 0] > 0) & (ram[..., 0] > 0)
    assert both[:, :2].mean() > 0.9 and both[:, 2].sum() > 100  # paddles nearly always, the ball often
    # slot centres are over the 160 x 160 field (rows 34-194); the RAM's over the raw 210 x 160 frame
    dx = (slot[..., 1] - ram[..., 1]) * 80
    dy = ((slot[..., 2] + 1) * 80 + 34) - (ram[..., 2] + 1) * 105
    err = np.hypot(dx, dy)[both]
    assert np.median(err) < 2.0, np.median(err)


def test_checkpoint_is_self_contained_and_starts_from_real_frames(
    scene_run: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    data, extractor, ckpt = scene_run
    moved = tmp_path / "ckpt"
    shutil.copytree(ckpt, moved)
    model, config = load_model(moved)
    frames = DatasetDir(data).load(0).frames[20:22]
    x = torch.from_numpy(to_tensor_layout(model.data_options(model.cfg, None)["preprocess"](np.asarray(frames))))
    before = model.extract(x)
    hidden = tmp_path / "gone"
    extractor.rename(hidden)  # the checkpoint must not need the extractor's files any more
    try:
        again, _ = load_model(moved)
        assert torch.equal(again.extract(x), before)
    finally:
        hidden.rename(extractor)
    state = model.start(x[None], torch.zeros(1, 1, dtype=torch.long))
    assert model.features(state).shape == (1, model.feature_dim) == (1, 2 * 3 * 21)
    assert model.decode(state).shape == (1, 3, 128, 128)


def test_learned_env_steps_and_the_twin_observes_through_the_extractor(scene_run: tuple[Path, Path, Path]) -> None:
    _, _, ckpt = scene_run
    env = LearnedVectorEnv(ckpt, num_envs=3, obs_type="latent")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3, 126) and np.isfinite(obs).all()
    for _ in range(5):
        obs, reward, *_ = env.step(env.action_space.sample())
    assert np.isfinite(obs).all() and set(np.unique(reward)) <= {-1.0, 0.0, 1.0}
    for precision in ("float32", "bfloat16"):
        frames = LearnedVectorEnv(ckpt, num_envs=2, obs_type="frames", precision=precision)
        assert frames.reset(seed=0)[0].shape == (2, 128, 128, 3)
        assert frames.step(np.zeros(2, dtype=np.int64))[0].shape == (2, 128, 128, 3)

    twin = make_real_twin(ckpt, obs_type="latent")
    obs, _ = twin.reset(seed=0)
    for _ in range(30):
        obs, *_ = twin.step(0)
    assert twin.observation_space.shape == (126,)
    x = torch.from_numpy(to_tensor_layout(twin.preprocess(twin.last_raw_frame[None])))
    newest = obs.reshape(2, 3, 21)[-1]
    # the twin sees what start() sees (up to float noise: a batch of 2 frames against one, any thread count)
    assert np.allclose(newest, twin.model.extract(x)[0].numpy(), atol=1e-3)
    assert newest[0, 0] == 1.0  # the player is found on the real frame


def test_cache_is_reused_and_bad_classifiers_are_clear_errors(
    scene_run: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    data, extractor, _ = scene_run
    spec = resolve_extractor(SceneDynamicsConfig(extractor=str(extractor)))
    cache = DatasetDir(data).episodes_dir / "ep_000000" / cache_name(spec)
    stamp = cache.stat().st_mtime_ns
    train("scene_dynamics", data, tmp_path / "again", [*TINY, f"extractor={extractor}"], progress=False)
    assert cache.stat().st_mtime_ns == stamp

    with pytest.raises(TrainError, match="no z_what classifier"):
        train("scene_dynamics", data, tmp_path / "x", [*TINY, f"classifier={tmp_path / 'none.pkl'}"], progress=False)
    import joblib
    from sklearn.linear_model import RidgeClassifier

    from world_models.space.classifier import LinearClassifier

    ridge = RidgeClassifier().fit(np.eye(16)[:4], ["a", "b", "a", "b"])
    other = LinearClassifier.from_sklearn(ridge).save(tmp_path / "other.json")
    with pytest.raises(TrainError, match="are not the labels"):
        train("scene_dynamics", data, tmp_path / "y", [*TINY, f"classifier={other}"], progress=False)
    pickled = tmp_path / "other.joblib.pkl"
    joblib.dump(ridge, pickled)
    with pytest.raises(TrainError, match="trust_pickle"):  # a pickle is read only when trusted
        train("scene_dynamics", data, tmp_path / "z", [*TINY, f"classifier={pickled}"], progress=False)
    with pytest.raises(TrainError, match="are not the labels"):
        train(
            "scene_dynamics",
            data,
            tmp_path / "w",
            [*TINY, f"classifier={pickled}", "trust_pickle=true"],
            progress=False,
        )


def test_training_noise_moves_only_present_objects_and_sizes_stay_drawable(scene_run: tuple[Path, Path, Path]) -> None:
    _, _, ckpt = scene_run
    model, _ = load_model(ckpt)
    model.cfg.noise_px, model.cfg.what_noise = 2.0, 0.1
    window = torch.zeros(4, 2, 3, model.slot_dim)
    window[:, :, 0, 0] = 1.0  # only the player is present
    window[:, :, 0, 1:5] = torch.tensor([0.7, 0.1, 0.03, 0.1])
    noisy = model._noisy(window)
    assert torch.equal(noisy[..., 1:, :], window[..., 1:, :]) and torch.equal(noisy[..., 0], window[..., 0])
    shift = (noisy[..., 0, 1:3] - window[..., 0, 1:3]) * 80  # raw pixels
    assert 0.5 < shift.std() < 5.0
    big = torch.full((2, 3, model.slot_dim - 3), 5.0)
    assert model._clamp(big)[..., :2].max() <= model.space.cfg.z_scale_max


def test_objects_lost_for_a_frame_or_two_keep_moving(scene_run: tuple[Path, Path, Path]) -> None:
    _, _, ckpt = scene_run
    model, _ = load_model(ckpt)
    assert model.cfg.hold_frames == 2
    slots = torch.zeros(1, 8, 3, model.slot_dim)
    slots[0, :2, 2, :3] = torch.tensor([[1.0, 0.50, 0.0], [1.0, 0.55, 0.02]])  # the ball, then lost for 3 frames
    slots[0, 5:, 2, :3] = torch.tensor([1.0, 0.6, 0.1])
    held = model._hold(slots)[0, :, 2]
    assert held[2:4, 0].tolist() == [1.0, 1.0] and held[4, 0] == 0.0  # held for 2 frames, not a third
    assert torch.allclose(held[2:4, 1:3], torch.tensor([[0.60, 0.04], [0.65, 0.06]]))  # moving on as it moved
    assert torch.equal(held[5:], slots[0, 5:, 2])  # found again: as extracted


def test_a_changed_extractor_is_never_used_with_random_weights(
    scene_run: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    data, extractor, _ = scene_run
    cfg = SceneDynamicsConfig(extractor=str(tmp_path / "extractor"))
    shutil.copytree(extractor, tmp_path / "extractor")
    resolve_extractor(cfg)  # the spec (and so the cache name) of these files
    with (tmp_path / "extractor" / "model.pt").open("ab") as f:
        f.write(b"\0")  # the files change after the spec was written
    fresh = tmp_path / "pong"
    shutil.copytree(data, fresh)
    for cache in fresh.glob("episodes/*/scene_*.npy"):
        cache.unlink()
    with pytest.raises(ValueError, match="could not be loaded"):
        SceneDynamics.prepare_data(cfg, fresh, progress=False)
    assert not list(fresh.glob("episodes/*/scene_*.npy"))
