"""The game registry: one module per game, asked by general code instead of comparing game names."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from dataset_tools.atari import REGISTRY, WHOLE_FRAME, game_spec
from dataset_tools.preprocess import default_preprocess

ROOT = Path(__file__).resolve().parents[2]


def test_every_registered_game_reads_its_classes_from_the_ram() -> None:
    assert set(REGISTRY) >= {"Pong", "Breakout", "Boxing", "Freeway"}
    for name, spec in REGISTRY.items():
        assert spec.name == name and set(spec.moving_classes) <= set(spec.classes)
        top, bottom, left, right = spec.field
        assert 0 <= top < bottom <= 210 and 0 <= left < right <= 160
        boxes = spec.ram_objects(np.zeros((2, 128), dtype=np.int64))
        assert tuple(boxes) == spec.classes and all(b.shape == (2, 5) for b in boxes.values())


def test_a_game_without_a_module_gets_a_plain_spec() -> None:
    spec = game_spec("Seaquest")
    assert spec.field == WHOLE_FRAME and spec.crop is None and spec.ram_objects is None and spec.scripted is None
    assert default_preprocess("Seaquest").crop is None and default_preprocess("Pong").crop == game_spec("Pong").crop


def test_no_code_outside_the_registry_compares_a_game_name() -> None:
    compare = re.compile(
        r"""[=!]= *["'](Pong|Breakout|Boxing|Freeway)["']|["'](Pong|Breakout|Boxing|Freeway)["'] *[=!]="""
    )
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for package in ("dataset_tools", "world_models", "learned_envs", "agents")
        for path in (ROOT / package).rglob("*.py")
        if "atari" not in path.parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if compare.search(line)
    ]
    assert found == []
