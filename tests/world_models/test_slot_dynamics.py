"""slot_dynamics and its frames-only extractor: fitting, the slots against the RAM, training, the env, the twin."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import dataset_tools.ram_truth
import world_models.objects.pong_objects
from dataset_tools.dataset import DatasetDir
from dataset_tools.preprocess import Preprocess
from dataset_tools.sequences import SequenceDataset
from learned_envs.env import LearnedEnv, LearnedVectorEnv
from learned_envs.twin import RealTwin, load_twin_model, make_real_twin
from world_models import load_model
from world_models.objects import ExtractorError, ObjectExtractor, fit_extractor, load_extractor, read_spec
from world_models.objects.scoring import format_scores, score_slots
from world_models.objects.slot_dynamics import SlotDynamicsConfig, cache_name
from world_models.space import PONG_CHECKPOINT
from world_models.training import TrainError, train

TINY = ["steps=6", "batch_size=8", "n_past=3", "n_future=3", "hidden=32", "layers=1", "image_every=0", "n_contexts=4"]
TINY += ["move_classes=16", "fit_frames=300", "log_every=1"]


def _no_ram(*args, **kwargs):
    raise AssertionError("the frames-only route read the RAM")


@pytest.fixture(scope="module")
def slot_run(pong_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A private copy of the Pong fixture (the extractor is fitted into it and slots are cached there) and a
    tiny slot_dynamics checkpoint trained on it around the shipped SPACE-Time checkpoint, with every
    decoder of the RAM made to fail."""
    root = tmp_path_factory.mktemp("slots")
    data = root / "pong"
    shutil.copytree(pong_dataset, data)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dataset_tools.ram_truth, "ram_objects", _no_ram)
        mp.setattr(world_models.objects.pong_objects, "ram_objects", _no_ram)
        ckpt = train("slot_dynamics", data, root / "run", [*TINY, f"extractor={PONG_CHECKPOINT}"], progress=False)
    return data, ckpt


def test_the_fitted_extractor_finds_pong_objects_exactly(slot_run: tuple[Path, Path]) -> None:
    data, ckpt = slot_run
    spec = load_model(ckpt)[1].model_config["extractor_spec"]
    fitted = Path(spec["path"])
    assert fitted.parent == data / "extractors" and read_spec(fitted)["digest"] == spec["digest"]
    sizes = [c["size"] for c in spec["classes"]]
    assert sizes == [[4.0, 16.0], [4.0, 16.0], [2.0, 4.0]] and spec["tiers"] == [[0, 1], [2]]  # found unsupervised
    assert [c["slots"] for c in spec["classes"]] == [1, 1, 1]  # one of each on screen: one slot each
    assert spec["max_box"] == [80.0, 80.0]  # half the crop: larger components (a flashed frame) are no objects
    old = {k: v for k, v in read_spec(fitted).items() if k != "max_box"}  # fitted before max_box: the old rule
    assert ObjectExtractor(old).max_box.tolist() == [40.0, 40.0]  # twice z_scale_max (0.125) of 160 px
    ds = DatasetDir(data)
    slots = np.concatenate(
        [np.load(ds.episodes_dir / f"ep_{e:06d}" / cache_name(spec))[5:] for e in ds.episode_indices()]
    )
    ram = np.concatenate([np.asarray(ds.load(e).ram)[5:] for e in ds.episode_indices()])
    scores = score_slots("Pong", slots, ram)
    assert scores["mapping"]["ball"] == 2 and {scores["mapping"]["player"], scores["mapping"]["enemy"]} == {0, 1}
    ball = scores["classes"]["ball"]
    assert ball["visible"] > 100 and ball["recall"] >= 0.99 and ball["median_error_px"] <= 0.5, format_scores(scores)
    assert ball["near_frames"] == 0 or ball["recall_near"] >= 0.95, format_scores(scores)
    for name in ("player", "enemy"):
        assert scores["classes"][name]["recall"] >= 0.99, format_scores(scores)


def test_the_size_gate_keeps_a_ball_out_of_a_paddle_class(slot_run: tuple[Path, Path]) -> None:
    from world_models.objects import load_extractor
    from world_models.objects.extractor import SIZE_GATE

    data, ckpt = slot_run
    spec = load_model(ckpt)[1].model_config["extractor_spec"]
    assert spec["size_gate"] == SIZE_GATE  # written by every fit
    extractor = load_extractor(spec["path"])
    paddle = extractor.centroids[0].numpy() * extractor.feature_std.numpy() + extractor.feature_mean.numpy()
    what = np.stack([paddle, paddle])  # both look like a paddle ...
    area = np.array([64.0, 8.0])  # ... but the second is a ball's size
    assert extractor.classify(what, area)[0].tolist() == [0, 2]
    extractor.size_gate = 0.0  # off (extractors fitted before the gate)
    assert extractor.classify(what, area)[0].tolist() == [0, 0]


def test_training_never_reads_the_ram(slot_run: tuple[Path, Path]) -> None:
    data, ckpt = slot_run
    model, config = load_model(ckpt)
    model.train()
    cfg = SlotDynamicsConfig(**config.model_config)
    windows = SequenceDataset(data, cfg.n_past + cfg.n_future, frames=False, objects=cache_name(cfg.extractor_spec))
    batch = next(iter(windows.loader(8, seed=0)))
    loss, logs = model.loss(batch)
    batch.ram = torch.randint(0, 256, batch.ram.shape, dtype=torch.uint8)
    assert torch.equal(model.loss(batch)[0], loss)
    assert {"move_ce", "reward_ce", "class2_px", "class2_move_acc", "point_recall"} <= set(logs)
    assert np.isfinite(loss.item())


def test_checkpoint_is_self_contained_env_and_twin(slot_run: tuple[Path, Path], tmp_path: Path, monkeypatch) -> None:
    data, ckpt = slot_run
    copy = tmp_path / "ckpt"
    shutil.copytree(ckpt, copy)
    config = json.loads((copy / "config.json").read_text())
    config["model_config"]["extractor_spec"]["path"] = str(tmp_path / "gone")  # the fitted files are not needed
    (copy / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(dataset_tools.ram_truth, "ram_objects", _no_ram)
    venv = LearnedVectorEnv(copy, num_envs=5, device="cpu", obs_type="latent", max_episode_steps=20)
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (5, 3 * 3 * 5)
    for _ in range(30):
        obs, reward, terminated, truncated, _ = venv.step(np.random.default_rng(0).integers(0, 6, 5))
    slots = obs.reshape(5, 3, 3, 5)[:, -1]
    assert ((slots[..., 0] == 0) | (slots[..., 0] == 1)).all()
    assert (slots[slots[..., 0] == 0] == 0).all() and (slots[slots[..., 0] == 1][:, 3:] >= 0).all()
    frames = LearnedVectorEnv(copy, num_envs=2, device="cpu", obs_type="frames").reset(seed=0)[0]
    assert frames.shape == (2, 160, 160, 3) and frames.dtype == np.uint8
    check_env(LearnedEnv(copy, device="cpu", obs_type="latent"), skip_render_check=True)

    # the twin encodes each real frame once; its observation is the model's start() on the same frames
    twin = make_real_twin(copy, obs_type="latent")
    obs, _ = twin.reset(seed=3)
    seen, acts = [twin.observer._frames[-1]], []
    for a in [2, 3, 2, 0, 3] * 12:  # past the first frames of a game, drawn in other colours
        obs, *_ = twin.step(a)
        seen.append(twin.observer._frames[-1])
        acts.append(a)
    model = twin.model
    frames = torch.from_numpy(np.stack(seen[-3:])).permute(0, 3, 1, 2).float()[None] / 255.0
    state = model.start(frames, torch.tensor([acts[-2:]]))
    assert np.allclose(model.features(state)[0].numpy(), obs)
    assert obs.reshape(3, 3, 5)[-1, :, 0].sum() >= 2  # the paddles at least


def test_extractor_files_and_errors(slot_run: tuple[Path, Path], tmp_path: Path) -> None:
    data, ckpt = slot_run
    fitted = Path(load_model(ckpt)[1].model_config["extractor_spec"]["path"])
    extractor = load_extractor(fitted)
    crops = np.stack([np.asarray(DatasetDir(data).load(0).frames[t])[34:194] for t in (20, 21)])
    slots = extractor.slots(crops)
    assert slots.shape == (2, 3, 5) and slots.dtype == np.float32
    drawn = extractor.render(torch.from_numpy(slots))
    assert drawn.shape == (2, 3, 160, 160)
    with pytest.raises(ExtractorError, match="uint8 crops"):
        extractor.slots(crops.astype(np.float32))
    (bad := tmp_path / "bad").mkdir()
    with pytest.raises(ExtractorError, match="extractor.json: missing"):
        load_extractor(bad)
    shutil.copytree(fitted, tmp_path / "copy")
    (tmp_path / "copy" / "extractor.pt").write_bytes(b"not a state dict")
    with pytest.raises(ExtractorError, match="extractor.pt: corrupted"):
        load_extractor(tmp_path / "copy")
    with pytest.raises(TrainError, match="extractor=DIR"):
        train("slot_dynamics", data, tmp_path / "run", TINY, progress=False)
    with pytest.raises(ExtractorError, match="not a space_time"):
        fit_extractor(ckpt, data, tmp_path / "x", frames=10, progress=False)


def test_preprocessing_is_the_full_resolution_crop(slot_run: tuple[Path, Path]) -> None:
    _, ckpt = slot_run
    config = load_model(ckpt)[1]
    assert Preprocess.from_dict(config.preprocess) == Preprocess(crop=(34, 194, 0, 160), size=(160, 160))
    assert config.frame_shape == (3, 160, 160)


def test_an_ensemble_trains_each_member_and_steps_each_env_with_one(
    slot_run: tuple[Path, Path], tmp_path: Path
) -> None:
    data, ckpt = slot_run
    fitted = load_model(ckpt)[1].model_config["extractor_spec"]["path"]
    run = train("slot_dynamics", data, tmp_path / "ens", [*TINY, f"extractor={fitted}", "members=2"], progress=False)
    model, config = load_model(run)
    assert len(model.cores) == 2 and config.model_config["members"] == 2
    a, b = (torch.cat([p.flatten() for p in core.parameters()]) for core in model.cores)
    assert not torch.allclose(a, b)  # each member its own weights
    venv = LearnedVectorEnv(run, num_envs=32, device="cpu", obs_type="latent")
    venv.reset(seed=0)
    for _ in range(5):
        obs, reward, *_ = venv.step(np.zeros(32, dtype=np.int64))
    assert obs.shape == (32, 45) and set(np.unique(reward)) <= {-1.0, 0.0, 1.0}
    assert venv.state["rewards"].shape == (32, 2)  # the rewards of the steps in the window are part of the state
    # MOPO's penalty: every member on every env, the reward less the spread of their expected rewards
    venv = LearnedVectorEnv(run, num_envs=32, device="cpu", obs_type="latent", settings={"reward_disagreement": 2.0})
    assert venv.model.cfg.reward_disagreement == 2.0 and all(c.cfg is venv.model.cfg for c in venv.model.cores)
    venv.reset(seed=0)
    penalised = []
    for _ in range(5):
        obs, reward, *_ = venv.step(np.zeros(32, dtype=np.int64))
        signs = venv.state["rewards"][:, -1].numpy()  # the state keeps the drawn member's reward sign
        assert set(np.unique(signs)) <= {-1.0, 0.0, 1.0} and (reward <= signs + 1e-6).all()
        penalised.append(signs - reward)
    assert np.max(penalised) > 0  # untrained members disagree
    with pytest.raises(ValueError, match="'hidden' is not an imagination setting of slot_dynamics"):
        LearnedVectorEnv(run, num_envs=2, device="cpu", settings=["hidden=8"])


def _several_balls(fitted: Path, out: Path, slots: int) -> Path:
    """A copy of the fitted Pong extractor whose ball class holds ``slots`` objects."""
    shutil.copytree(fitted, out)
    spec = json.loads((out / "extractor.json").read_text())
    spec["classes"][2]["slots"] = slots
    (out / "extractor.json").write_text(json.dumps(spec))
    return out


def test_a_class_of_several_slots_tracks_its_objects_from_frame_to_frame(
    slot_run: tuple[Path, Path], tmp_path: Path
) -> None:
    _, ckpt = slot_run
    extractor = load_extractor(
        _several_balls(Path(load_model(ckpt)[1].model_config["extractor_spec"]["path"]), tmp_path / "x", 3)
    )
    assert extractor.n_slots == 5 and extractor.slot_class.tolist() == [0, 1, 2, 2, 2] and extractor.tracks
    what = extractor.centroids.numpy() * extractor.feature_std.numpy() + extractor.feature_mean.numpy()

    def frame(balls: list[tuple[float, float, float]]) -> dict[str, np.ndarray]:
        """A paddle (class 0) and balls (x, y, area) in crop pixels, as ObjectExtractor.objects gives them."""
        boxes = np.array([[140.0, 60.0, 4.0, 16.0]] + [[x, y, 2.0, 4.0] for x, y, _ in balls])
        area = np.array([64.0] + [a for *_, a in balls])
        z = np.stack([what[0]] + [what[2]] * len(balls)).astype(np.float32)
        return {"boxes": boxes, "area": area, "z_what": z, "source": np.zeros(len(boxes), np.int64)}

    frames = [
        frame([(30, 40, 8), (50, 10, 8), (10, 10, 8)]),  # afresh: top to bottom, then left to right
        frame([(32, 42, 8), (12, 12, 8)]),  # the one at (50, 10) is gone: its slot empties
        frame([(80, 60, 8), (14, 14, 8), (34, 44, 8)]),  # a new one: the slot that was empty
        frame([(16, 16, 8), (36, 46, 8), (82, 62, 8), (100, 100, 4)]),  # four: the smallest is left out
        frame([(18, 18, 8), (36, 90, 8)]),  # one jumped 44 px: a new object, not the one that slot held
    ]
    slots = extractor.slots_of(frames)
    assert slots.shape == (5, 5, 5) and (slots[:, :2, 0] == [1, 0]).all()  # the paddle: class 0's one slot

    def xy(t: int) -> list[tuple[float, float] | None]:
        """Ball slots of frame t in crop pixels (their boxes' top left), None where empty."""
        out = []
        for s in slots[t, 2:]:
            if s[0] == 0:
                assert (s == 0).all()
                out.append(None)
            else:
                x, y = (s[1] + 1) * 80 - s[3] * 40, (s[2] + 1) * 105 - s[4] * 52.5 - 34  # the crop starts at row 34
                out.append((round(float(x), 3), round(float(y), 3)))
        return out

    assert xy(0) == [(10, 10), (50, 10), (30, 40)]
    assert xy(1) == [(12, 12), None, (32, 42)]
    assert xy(2) == [(14, 14), (80, 60), (34, 44)]
    assert xy(3) == [(16, 16), (82, 62), (36, 46)]
    assert xy(4) == [(18, 18), (36, 90), None]  # the jump takes the free slot of the ball gone at (82, 62)
    # chained in pieces as an episode is extracted in chunks: the same slots
    assert np.array_equal(np.concatenate([slots[:2], extractor.slots_of(frames[2:], slots[1])]), slots)
    # frames of separate games, each after its own frame before
    assert np.array_equal(extractor.slots_after(frames[1:3], slots[:2]), slots[1:3])


def test_slot_dynamics_over_a_class_of_several_slots_trains_steps_and_twins(
    slot_run: tuple[Path, Path], tmp_path: Path
) -> None:
    data, ckpt = slot_run
    fitted = Path(load_model(ckpt)[1].model_config["extractor_spec"]["path"])
    two = _several_balls(fitted, tmp_path / "two", 2)
    run = train("slot_dynamics", data, tmp_path / "run", [*TINY, f"extractor={two}"], progress=False)
    model, config = load_model(run)
    spec = config.model_config["extractor_spec"]
    assert model.n_slots == 4 and model.tiers == [[0, 1], [2, 3]] and model.vocab.shape == (3, 16, 2)
    name = cache_name(spec)
    assert name != cache_name(read_spec(fitted)) and "_s1-1-2_" in name  # its own cache, beside the one-slot one
    ds = DatasetDir(data)
    cached = np.load(ds.episodes_dir / "ep_000000" / name)
    assert cached.shape[1:] == (4, 5) and cached[:, 2, 0].sum() > 0
    assert np.array_equal(cached[:, :2], np.load(ds.episodes_dir / "ep_000000" / cache_name(read_spec(fitted)))[:, :2])
    venv = LearnedVectorEnv(run, num_envs=4, device="cpu", obs_type="latent", max_episode_steps=20)
    venv.reset(seed=0)
    for _ in range(10):
        obs, reward, *_ = venv.step(np.zeros(4, dtype=np.int64))
    assert obs.shape == (4, 3 * 4 * 5) and set(np.unique(reward)) <= {-1.0, 0.0, 1.0}
    assert LearnedVectorEnv(run, num_envs=2, device="cpu", obs_type="frames").reset(seed=0)[0].shape == (2, 160, 160, 3)

    twin = make_real_twin(run, obs_type="latent")
    obs, _ = twin.reset(seed=3)
    for a in [2, 3, 2, 0, 3] * 8:
        obs, *_ = twin.step(a)
    assert obs.shape == (60,) and obs.reshape(3, 4, 5)[-1, :2, 0].sum() == 2  # both paddles
    # real games side by side (each tracked from its own frame before) see what each sees alone
    loaded = load_twin_model(run)
    together = [make_real_twin(run, obs_type="latent", loaded=loaded) for _ in range(2)]
    alone = [make_real_twin(run, obs_type="latent") for _ in range(2)]
    for i in range(2):
        together[i].reset(seed=i)
        alone[i].reset(seed=i)
    for t in range(30):
        actions = [t % 6, (t * 5) % 6]
        for i, (o, *_) in enumerate(RealTwin.step_many(together, actions)):
            np.testing.assert_allclose(o, alone[i].step(actions[i])[0], atol=1e-5)


def test_each_slot_in_a_tier_of_its_own_is_drawn_given_the_earlier_ones(
    slot_run: tuple[Path, Path], tmp_path: Path
) -> None:
    """``tier_each_slot``: the paddles (one size tier) are drawn one after the other, the second given where
    the first went; the contact weighting still follows the extractor's size tiers."""
    data, ckpt = slot_run
    fitted = Path(load_model(ckpt)[1].model_config["extractor_spec"]["path"])
    two = _several_balls(fitted, tmp_path / "two", 2)
    run = train(
        "slot_dynamics", data, tmp_path / "run", [*TINY, f"extractor={two}", "tier_each_slot=true"], progress=False
    )
    model, config = load_model(run)
    assert config.model_config["tier_each_slot"] and model.tiers == [[0], [1], [2], [3]]
    assert model.event_mask.tolist() == [0.0, 0.0, 1.0, 1.0]  # the balls' tier, as without the option
    core, window = model.cores[0], torch.zeros(1, 3, 4, 5)
    window[:, :, :2] = torch.tensor([[1.0, 0.8, 0.0, 0.05, 0.15], [1.0, -0.8, 0.1, 0.05, 0.15]])
    hidden = core.predict(
        window, torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), model._pairs()
    )[0]
    flight = torch.zeros(1, 4, 2)
    still, moved = (
        core.tier_choices(1, hidden, window[:, -1], torch.tensor([[[dy, 0.0]]]), flight) for dy in (0.0, 8.0)
    )
    assert not torch.allclose(still, moved)  # the second paddle's moves read the first's drawn move
    venv = LearnedVectorEnv(run, num_envs=4, device="cpu", obs_type="latent", max_episode_steps=20)
    venv.reset(seed=0)
    for _ in range(10):
        obs, reward, *_ = venv.step(np.zeros(4, dtype=np.int64))
    assert obs.shape == (4, 3 * 4 * 5) and set(np.unique(reward)) <= {-1.0, 0.0, 1.0}


def test_a_drawn_move_is_the_one_the_whole_move_head_gives(slot_run: tuple[Path, Path]) -> None:
    """Imagination computes only the move logits and the drawn moves' corrections (``tier_draw``): with the same
    random numbers it draws the moves, and gets the corrections, of the whole head (``tier_choices``)."""
    from world_models.objects.moves import draw_choice

    _, ckpt = slot_run
    model = load_model(ckpt)[0].eval()
    core, b = model.cores[0], 64
    torch.manual_seed(0)
    window = torch.rand(b, model.cfg.n_past, model.n_slots, 5) * 2 - 1
    window[..., 0] = (window[..., 0] > -0.5).float()
    window[..., 3:] = window[..., 3:].abs() * 0.2
    past = torch.randint(0, model.n_actions, (b, model.cfg.n_past - 1))
    hidden = core.predict(window, past, torch.zeros(b, model.cfg.n_past - 1), past[:, 0], model._pairs())[0]
    flight, earlier = torch.zeros(b, model.n_slots, 2), None
    assert len(model.tiers) >= 2  # a plain head and one that reads the earlier tier
    with torch.no_grad():
        for j in range(len(model.tiers)):
            whole = core.tier_choices(j, hidden, window[:, -1], earlier, flight)
            want = draw_choice(whole[..., 0], model.cfg.move_temperature, torch.Generator().manual_seed(j))
            choice, correction = core.tier_draw(
                j, hidden, window[:, -1], earlier, flight, torch.Generator().manual_seed(j)
            )
            assert torch.equal(choice, want)
            index = want[..., None, None].expand(-1, -1, 1, 2)
            assert torch.allclose(correction, whole[..., 1:].gather(2, index).squeeze(2), atol=1e-5)
            earlier = torch.cat([earlier, correction], 1) if earlier is not None else correction


def test_max_classes_caps_the_classes_a_fit_may_choose(slot_run: tuple[Path, Path], tmp_path: Path, caplog) -> None:
    data, _ = slot_run
    with caplog.at_level("WARNING"):
        run = train(
            "slot_dynamics",
            data,
            tmp_path / "m2",
            [*TINY, f"extractor={PONG_CHECKPOINT}", "max_classes=2", "steps=1"],
            progress=False,
        )
    spec = load_model(run)[1].model_config["extractor_spec"]
    assert len(spec["classes"]) == 2 and Path(spec["path"]).name.endswith("_k0_m2_n300")  # beside the default fit
    assert "chose the most classes allowed (2)" in caplog.text
