"""learned-envs dream / evaluate-agent on a tiny object-level learned env (the machinery, not the score)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agents.algos import ALGOS
from agents.dream import DreamConfig, train_in_dream
from agents.evaluate import evaluate_agent, load_agent
from learned_envs.cli import main as cli_main


def _cfg(checkpoint: Path, **changes) -> DreamConfig:
    base = dict(
        env=str(checkpoint),
        steps=128,
        n_envs=8,
        n_steps=16,
        batch_size=32,
        n_epochs=1,
        eval_every=64,
        eval_episodes=2,
        eval_max_steps=30,
        device="cpu",
        net_arch=[16],
    )
    return DreamConfig(**{**base, **changes})


def test_dream_trains_saves_and_scores_on_the_real_game(tiny_object_checkpoint: Path, tmp_path: Path) -> None:
    path = train_in_dream(_cfg(tiny_object_checkpoint), tmp_path / "agent", progress=False)
    model, meta = load_agent(path)
    assert meta["obs_type"] == "latent" and meta["game"] == "Pong" and meta["dream_steps"] >= 128
    assert [e["dream_steps"] for e in meta["evals"]][:2] == [64, 128] and len(meta["evals"][0]["scores"]) == 2
    assert (tmp_path / "agent" / "evals.csv").read_text().count("\n") == len(meta["evals"]) + 1
    assert any((tmp_path / "agent" / "tb").rglob("events.*"))
    assert model.observation_space.shape == (18,)

    out = tmp_path / "scores.json"
    result = evaluate_agent(
        path.parent, "pong", episodes=2, seed=3, out=out, gif=tmp_path / "ep.gif", progress=False, max_steps=40
    )
    assert len(result["scores"]) == 2 and json.loads(out.read_text())["mean"] == result["mean"]
    assert (tmp_path / "ep.gif").stat().st_size > 0
    again = evaluate_agent(path, episodes=2, seed=3, progress=False, max_steps=40)
    assert again["scores"] == result["scores"]  # seeded episodes, deterministic policy


def test_an_agent_trains_in_an_ensemble_of_dreams(tiny_object_checkpoint: Path, tmp_path: Path) -> None:
    cfg = _cfg(tiny_object_checkpoint, ensemble=[str(tiny_object_checkpoint)], eval_every=0, eval_episodes=0)
    path = train_in_dream(cfg, tmp_path / "agent", progress=False)
    _, meta = load_agent(path)
    assert meta["ensemble"] == [str(tiny_object_checkpoint.resolve())] and meta["dream_steps"] >= 128
    assert (
        meta["real_steps_used"] == json.loads((tiny_object_checkpoint / "config.json").read_text())["dataset"]["steps"]
    )


def test_a_dream_cuts_its_episodes_where_its_env_says(tiny_object_checkpoint: Path, tmp_path: Path) -> None:
    """Unless told, agents of LearnedBoxing-v0 train on 30-step dream episodes (its agents lose with 100),
    every other env's on 100; a length asked for is kept."""
    cases = (("LearnedBoxing-v0", 0, 30), (str(tiny_object_checkpoint), 0, 100), ("LearnedBoxing-v0", 7, 7))
    for i, (env, asked, cut) in enumerate(cases):
        cfg = _cfg(tiny_object_checkpoint, env=env, max_episode_steps=asked, steps=64, eval_every=0, eval_episodes=0)
        _, meta = load_agent(train_in_dream(cfg, tmp_path / str(i), progress=False))
        assert meta["config"]["max_episode_steps"] == cut, env


@pytest.mark.parametrize("algo", sorted(ALGOS))  # a new row of the table is tested here without more
def test_every_algorithm_trains_in_the_dream_saves_and_loads(
    algo: str, tiny_object_checkpoint: Path, tmp_path: Path
) -> None:
    import numpy as np
    import torch

    cfg = _cfg(tiny_object_checkpoint, algo=algo, eval_every=0, eval_episodes=1, eval_max_steps=10)
    path = train_in_dream(cfg, tmp_path / algo, progress=False)
    model, meta = load_agent(path)
    assert meta["policy"]["algo"] == algo and meta["dream_steps"] >= 128
    assert type(model.policy).__name__ == ALGOS[algo].mlp_policy
    saved = torch.load(path, weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in model.policy.state_dict().items())
    obs = np.random.default_rng(0).uniform(-1, 1, (5, *model.observation_space.shape)).astype(np.float32)
    first, _ = model.predict(obs, deterministic=True)
    again, _ = load_agent(path)[0].predict(obs, deterministic=True)
    assert np.array_equal(first, again)


def test_the_dream_bar_ends_at_its_total(
    tiny_object_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    train_in_dream(_cfg(tiny_object_checkpoint, steps=100, eval_episodes=0), tmp_path / "a", progress=True)
    err = capsys.readouterr().err
    assert "128/128" in err and "/100" not in err  # two rollouts of 8 envs x 16 steps, nothing past the total
    assert "real episodes" not in err  # eval_episodes=0: no real game


def test_cli_and_bad_input(tiny_object_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cli"
    code = cli_main(
        [
            "dream",
            "--env",
            str(tiny_object_checkpoint),
            "--steps",
            "64",
            "--n-envs",
            "8",
            "--out",
            str(out),
            "--no-progress",
            "n_steps=8",
            "batch_size=32",
            "n_epochs=1",
            "eval_every=0",
            "eval_episodes=1",
            "eval_max_steps=20",
            "device=cpu",
            "net_arch=16",
            "model_settings=move_temperature=0.5",
        ]
    )
    assert code == 0 and (out / "agent.pt").exists() and not (out / "agent.zip").exists()
    assert json.loads((out / "agent.json").read_text())["config"]["model_settings"] == ["move_temperature=0.5"]
    capsys.readouterr()
    assert (
        cli_main(["evaluate-agent", "--agent", str(out), "--episodes", "1", "--max-steps", "20", "--no-progress"]) == 0
    )
    assert json.loads(capsys.readouterr().out)["episodes"] == 1
    assert cli_main(["evaluate-agent", "--agent", str(out), "--game", "Breakout", "--episodes", "1"]) == 2
    assert "plays Pong, not Breakout" in capsys.readouterr().err
    assert cli_main(["evaluate-agent", "--agent", str(tmp_path / "nothing.zip")]) == 2
    assert "no such agent" in capsys.readouterr().err
    assert cli_main(["dream", "--env", "NoSuchEnv-v0", "--out", str(tmp_path / "x")]) == 2
    assert "neither a registered learned env" in capsys.readouterr().err
    assert cli_main(["dream", "--env", str(tiny_object_checkpoint), "--out", str(tmp_path / "y"), "bogus=1"]) == 2
    assert "unknown config key 'bogus'" in capsys.readouterr().err
    bad = ["dream", "--env", str(tiny_object_checkpoint), "--out", str(tmp_path / "z"), "model_settings=hidden=8"]
    assert cli_main(bad) == 2
    assert "'hidden' is not an imagination setting of object_dynamics" in capsys.readouterr().err


def test_quickstart_writes_the_report(
    tiny_object_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agents.report import quickstart

    monkeypatch.chdir(tmp_path)
    report = quickstart(
        "report", env=str(tiny_object_checkpoint), steps=64, episodes=1, progress=False, checks=1, n_envs=8
    )
    text = report.read_text()
    assert "Real score:" in text and "dream_vs_real.gif" in text and "over 1 full game (" in text
    assert "random play scores about -20.7." in text  # Pong's anchor, from the game registry
    assert "| 32 |" in text and "8 envs" in text and "dream return at the end" in text
    assert "learning_curve.png" in text and "torch on" in text and "| **total** |" in text
    assert str(tmp_path) not in text and "--agent report/agent/agent.pt" in text  # relative paths
    assert (tmp_path / "report" / "learning_curve.png").stat().st_size > 0
    scores = json.loads((tmp_path / "report" / "scores.json").read_text())
    assert len(scores["scores"]) == 1 and -21 <= scores["mean"] <= 21
    assert (tmp_path / "report" / "dream_vs_real.gif").stat().st_size > 0
    # one check half way, not one per 32 steps of the whole rollout (8,192 steps) PPO runs, and none at the
    # end, where the report's own games score the agent
    meta = json.loads((tmp_path / "report" / "agent" / "agent.json").read_text())
    assert [e["dream_steps"] for e in meta["evals"]] == [32]
    # the dream return at each rollout's end: one rollout of 1,024 steps per env, 100-step dream episodes
    assert [step for step, _ in meta["dream_curve"]] == [8_192]


def test_dream_agent_collects_real_data(tiny_object_checkpoint: Path, tmp_path: Path) -> None:
    from agents import make_agent
    from agents.dream_agent import DreamAgent
    from dataset_tools.collect import CollectConfig, collect
    from dataset_tools.dataset import DatasetDir
    from dataset_tools.games import EnvSettings

    path = train_in_dream(_cfg(tiny_object_checkpoint, eval_every=0, eval_episodes=1), tmp_path / "a", progress=False)
    assert isinstance(make_agent(str(path), "Pong", 6), DreamAgent)
    assert isinstance(make_agent(str(path.parent), "Pong", 6), DreamAgent)
    cfg = CollectConfig(
        out=tmp_path / "data",
        env=EnvSettings(game="Pong", max_episode_steps=50),
        episodes=2,
        agent=str(path),
        make_agent=make_agent,
        workers=1,
        seed=0,
    )
    collect(cfg, progress=False)
    ds = DatasetDir(tmp_path / "data")
    assert ds.counts()["episodes"] == 2 and ds.read_manifest()["runs"][0]["agent"] == str(path)
    assert json.loads((ds.root / "episodes" / "ep_000000" / "meta.json").read_text())["agent"]["name"] == "dream"


def test_loop_runs_two_iterations_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = [
        "loop",
        "-g",
        "Pong",
        "--real-steps",
        "400",
        "--iterations",
        "2",
        "--out",
        str(tmp_path / "loop"),
        "--no-progress",
        "model_steps=3",
        "final_model_steps=4",
        "dream_steps=64",
        "n_envs=8",
        "eval_episodes=1",
        "workers=1",
        "model_overrides=batch_size=4,n_past=2,n_future=2,hidden=16,layers=1",
    ]
    assert cli_main(args) == 0
    table = capsys.readouterr().out
    assert "| 0 | " in table and "| 1 | " in table and "final agent" not in table
    state = json.loads((tmp_path / "loop" / "loop.json").read_text())
    assert [r["real_steps"] for r in state["rows"]] == [200, 400]
    # iteration 0's agent's real return per 100 steps: from the rewards it collected in iteration 1
    from agents.loop import _episodes_after
    from dataset_tools.dataset import DatasetDir

    ds = DatasetDir(tmp_path / "loop" / "data")
    rewards = np.concatenate([np.asarray(ds.load(e).rewards) for e in _episodes_after(ds, 200)])
    assert state["rows"][0]["real_return_100"] == pytest.approx(100 * rewards.sum() / len(rewards))
    assert "real_return_100" not in state["rows"][1] and "its real return per 100 steps" in table
    # every stage's wall time is kept, and printed with their sum
    times = state["stage_s"]
    for i, model_steps in ((0, 3), (1, 4)):
        for stage in ("collecting", f"object_dynamics, {model_steps} steps", "agent, 64 dream steps", "1 real games"):
            assert times[f"iteration {i}: {stage}"] >= 0.0
    assert "| **all** | **" in table and "| iteration 1: agent, 64 dream steps |" in table
    steps = [
        json.loads((tmp_path / "loop" / "models" / f"iter_{i}" / "run.json").read_text())["train_config"]["steps"]
        for i in (0, 1)
    ]
    assert steps == [3, 4]  # the last iteration's model trains final_model_steps
    before = (tmp_path / "loop" / "loop.json").stat().st_mtime_ns
    assert cli_main(args) == 0  # everything is done: nothing is redone
    assert (tmp_path / "loop" / "loop.json").stat().st_mtime_ns == before
    runs = DatasetDir(tmp_path / "loop" / "data").read_manifest()["runs"]
    assert runs[0]["agent"] == "random" and runs[1]["agent"].endswith("iter_0/agent.pt")
    bad = [a if not a.startswith("model_steps") else "model_steps=4" for a in args]
    assert cli_main(bad) == 2
    assert "other settings" in capsys.readouterr().err
    # a finished loop scores more final agents: its own and one more trained in the last dream
    assert cli_main([*args, "final_seeds=2", "final_episodes=1"]) == 0
    final = json.loads((tmp_path / "loop" / "loop.json").read_text())["final"]
    assert [f["seed"] for f in final] == [0, 1] and all(len(f["scores"]) == 1 for f in final)
    times = json.loads((tmp_path / "loop" / "loop.json").read_text())["stage_s"]
    assert {"final agent, seed 1: 64 dream steps", "final agent, seed 0: 1 real games"} <= set(times)
    assert final[0]["agent"] == state["rows"][1]["agent"] and (tmp_path / "loop" / "agents" / "final_s1").is_dir()
    assert "| **mean of 2 seeds** |" in capsys.readouterr().out
    # an agent trained before an interruption (its score not saved yet) is scored, not trained again
    loop_json = tmp_path / "loop" / "loop.json"
    state = json.loads(loop_json.read_text())
    loop_json.write_text(json.dumps({**state, "final": state["final"][:1]}))
    trained = (tmp_path / "loop" / "agents" / "final_s1" / "agent.pt").stat().st_mtime_ns
    assert cli_main([*args, "final_seeds=2", "final_episodes=1"]) == 0
    assert json.loads(loop_json.read_text())["final"] == final
    assert (tmp_path / "loop" / "agents" / "final_s1" / "agent.pt").stat().st_mtime_ns == trained
    # final agents trained longer (or with other envs) than the iterations': all of them are trained, the
    # earlier results are kept aside, and come back when asked for again
    longer = [*args, "final_seeds=2", "final_episodes=1", "final_dream_steps=128", "final_n_envs=4"]
    assert cli_main(longer) == 0
    assert "128 dream steps, 4 envs" in capsys.readouterr().out
    state = json.loads(loop_json.read_text())
    assert [f["training"] for f in state["final"]] == [{"dream_steps": 128, "n_envs": 4}] * 2
    assert state["final_earlier"] == final
    for seed in (0, 1):
        meta = json.loads((tmp_path / "loop" / "agents" / f"final_s{seed}_128steps_4envs" / "agent.json").read_text())
        assert meta["dream_steps"] >= 128 and meta["config"]["n_envs"] == 4
    assert cli_main([*args, "final_seeds=2", "final_episodes=1"]) == 0
    back = json.loads(loop_json.read_text())
    assert back["final"] == final and [f["training"]["n_envs"] for f in back["final_earlier"]] == [4, 4]
    assert (tmp_path / "loop" / "agents" / "final_s1" / "agent.pt").stat().st_mtime_ns == trained


@pytest.mark.parametrize(
    "name, game, n_actions",
    [
        ("PongDreamPPO-v0", "Pong", 6),
        ("PongDreamPPO-v1", "Pong", 6),
        ("PongDreamPPO-v2", "Pong", 6),
        ("FreewayDreamPPO-v0", "Freeway", 3),
        ("BoxingDreamPPO-v0", "Boxing", 18),
    ],
)
def test_shipped_agent_plays_the_real_game(name: str, game: str, n_actions: int, capsys: pytest.CaptureFixture) -> None:
    from agents import make_agent
    from agents.dream_agent import DreamAgent

    assert isinstance(make_agent(name, game, n_actions), DreamAgent)
    args = ["evaluate-agent", "--agent", name, "--game", game, "--episodes", "1", "--max-steps", "50"]
    assert cli_main([*args, "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["game"] == game


def test_frames_only_loop_reads_the_ram_only_to_score(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two frames-only iterations at toy sizes: the extractor is trained and fitted on the loop's frames, and the
    RAM is decoded only by the collector (it stores its labels) and by the scoring (recall, fidelity)."""
    import inspect

    import dataset_tools.ram_truth
    import world_models.objects.pong_objects
    from agents.loop import LoopConfig, format_table, run_loop

    real = dataset_tools.ram_truth.ram_objects
    callers: set[str] = set()

    def watched(*args, **kwargs):
        callers.add(inspect.stack()[1].frame.f_globals["__name__"])
        return real(*args, **kwargs)

    monkeypatch.setattr(dataset_tools.ram_truth, "ram_objects", watched)
    monkeypatch.setattr(world_models.objects.pong_objects, "ram_objects", watched)
    cfg = LoopConfig(
        real_steps=400,
        iterations=2,
        frames_only=True,
        model_steps=3,
        frames_model_overrides=["batch_size=4", "n_past=2", "n_future=2", "hidden=16", "layers=1", "move_classes=8"],
        extractor_steps=2,
        extractor_overrides=["batch_size=2"],
        extractor_classes=2,
        dream_steps=64,
        n_envs=8,
        dream_episode_steps=7,
        eval_episodes=1,
        fidelity_episodes=1,
        explore=0.2,
        workers=1,
    )
    rows = run_loop(cfg, tmp_path / "loop", progress=False)
    assert [r["real_steps"] for r in rows] == [200, 400]
    spec = json.loads((tmp_path / "loop" / "extractor" / "fitted_0" / "extractor.json").read_text())
    assert len(spec["classes"]) == 2  # extractor_classes, not the silhouette score's choice
    assert all(0.0 <= r["ball_recall"] <= 1.0 and "fidelity" in r for r in rows)
    assert "ball recall (near a paddle)" in format_table(rows)
    assert set(rows[0]["recall"]) <= {"player", "enemy", "ball"} and all(
        0 <= v <= 1 for v in rows[0]["recall"].values()
    )
    boxing = [{**r, "ball_recall": float("nan"), "recall": {"player": 0.99, "enemy": 0.95}} for r in rows]
    table = format_table(boxing)  # a game without a ball: the object the extractor finds least often
    assert "extractor recall of the RAM's objects, lowest" in table and "| 0.9500 (enemy) |" in table
    assert json.loads((tmp_path / "loop" / "models" / "iter_1" / "run.json").read_text())["model"] == "slot_dynamics"
    for i in (0, 1):  # the agents' dream episodes are cut where the loop says
        meta = json.loads((tmp_path / "loop" / "agents" / f"iter_{i}" / "agent.json").read_text())
        assert meta["config"]["max_episode_steps"] == 7
    assert callers <= {"dataset_tools.collect", "world_models.objects.scoring", "agents.fidelity"}, callers


def test_an_iteration_s_episodes_are_known_when_the_loop_resumes_after_collecting(pong_dataset: Path) -> None:
    """The recall of an iteration is scored on the episodes it collected, found by the steps before it (a
    resumed run no longer sees the collection happen)."""
    from agents.loop import _episodes_after
    from dataset_tools.dataset import DatasetDir

    ds = DatasetDir(pong_dataset)
    indices = ds.episode_indices()
    lengths = [len(ds.load(i).actions) for i in indices]
    assert len(indices) >= 2
    assert _episodes_after(ds, 0) == indices
    assert _episodes_after(ds, lengths[0]) == indices[1:]
    assert _episodes_after(ds, lengths[0] - 1) == indices[1:]  # the steps of a partly counted episode are before
    assert _episodes_after(ds, sum(lengths)) == []


def test_the_loop_may_hold_its_first_random_actions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``random_repeat=K``: iteration 0 collects with ``random:K`` (each random action held K steps)."""
    import importlib

    from agents.loop import LoopConfig, run_loop

    module = importlib.import_module("dataset_tools.collect")  # the package's `collect` is the function

    seen = []

    def fake_collect(cfg, progress=True):
        seen.append(cfg.agent)
        raise KeyboardInterrupt  # stop the loop here

    monkeypatch.setattr(module, "collect", fake_collect)
    with pytest.raises(KeyboardInterrupt):
        run_loop(
            LoopConfig(game="Freeway", real_steps=100, iterations=1, random_repeat=16), tmp_path / "a", progress=False
        )
    with pytest.raises(KeyboardInterrupt):
        run_loop(LoopConfig(game="Freeway", real_steps=100, iterations=1), tmp_path / "b", progress=False)
    assert seen == ["random:16", "random"]
    with pytest.raises(ValueError, match="random_repeat must be >= 1"):
        run_loop(LoopConfig(random_repeat=0), tmp_path / "c", progress=False)
