"""``learned-envs suite``: agents found from paths, scored per game, human-normalised beside the anchors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agents.evaluate import SHIPPED_AGENTS
from agents.suite import find_agents, normalised
from learned_envs.cli import main as cli_main


def test_agents_are_found_from_names_directories_and_trees(tmp_path: Path) -> None:
    tree = tmp_path / "loop" / "agents"
    for name in ("iter_0", "final_s1"):
        shutil.copytree(SHIPPED_AGENTS["PongDreamPPO-v2"], tree / name)
    (tree / "notes").mkdir()
    assert find_agents(["PongDreamPPO-v1", tree / "iter_0"]) == ["PongDreamPPO-v1", str(tree / "iter_0")]
    assert find_agents([tmp_path / "loop"]) == [str(tree / "final_s1"), str(tree / "iter_0")]
    with pytest.raises(ValueError, match="holds no agent"):
        find_agents([tree / "notes"])
    with pytest.raises(ValueError, match="no such agent or directory"):
        find_agents([tmp_path / "nope"])


def test_human_normalised_score() -> None:
    pong = {"random": -20.7, "human": 14.6}
    assert normalised(-20.7, pong) == 0.0 and normalised(14.6, pong) == pytest.approx(1.0)
    assert normalised(-3.4, pong) == pytest.approx(17.3 / 35.3)
    assert normalised(1.0, {}) is None


def test_suite_scores_agents_per_game_beside_the_anchors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "suite"
    args = ["suite", "--agents", "PongDreamPPO-v1", "PongDreamPPO-v2", "--episodes", "2", "--max-steps", "30"]
    assert cli_main([*args, "--out", str(out), "--no-progress"]) == 0
    data = json.loads((out / "suite.json").read_text())
    (pong,) = data["games"]
    assert pong["game"] == "Pong" and [a["agent"] for a in pong["agents"]] == ["PongDreamPPO-v1", "PongDreamPPO-v2"]
    assert all(len(a["scores"]) == 2 for a in pong["agents"]) and pong["anchors"]["SimPLe"] == 12.8
    scores = [s for a in pong["agents"] for s in a["scores"]]
    assert pong["mean"] == pytest.approx(sum(scores) / 4)
    assert pong["human_normalised"] == pytest.approx(normalised(pong["mean"], pong["anchors"]))
    table = capsys.readouterr().out
    assert "| Pong | PongDreamPPO-v1 " in table and "not the protocol's scores" in table
    assert (out / "suite.png").stat().st_size > 0 and (out / "suite.md").read_text() in table
    assert cli_main(["suite", "--agents", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert "no such agent or directory" in capsys.readouterr().err
