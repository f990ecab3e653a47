"""The examples run as documented (STYLE 9: what the docs show is run by the tests)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_space_scene_finds_the_three_pong_objects_where_the_ram_says(tmp_path: Path) -> None:
    out = tmp_path / "scene.png"
    scene = _load("space_scene").main(["--out", str(out), "--steps", "80", "--seed", "0"])
    assert out.exists() and out.stat().st_size > 0
    assert sorted(scene) == ["ball", "enemy", "player"]
    assert all(len(centres) == 1 for centres in scene.values())
    # the shipped extractor's player paddle sits on its column (raw x 140-144 -> (-1, 1) about 0.77)
    assert np.isclose(scene["player"][0][0], 0.775, atol=0.03)
    assert np.isclose(scene["enemy"][0][0], -0.775, atol=0.03)
