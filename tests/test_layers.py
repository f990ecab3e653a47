"""Imports run one way: dataset_tools <- world_models <- learned_envs <- agents. Only the command-line modules
(``*/cli.py``, ``*_cli.py``), which sit above all four, may import a package above their own."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["dataset_tools", "world_models", "learned_envs", "agents"]


def _is_cli(path: Path) -> bool:
    return path.name == "cli.py" or path.name.endswith("_cli.py")


def upward_imports(root: Path = ROOT) -> list[str]:
    found = []
    for package in LAYERS:
        for path in sorted((root / package).rglob("*.py")):
            if _is_cli(path):
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in LAYERS and LAYERS.index(top) > LAYERS.index(package):
                        found.append(f"{path.relative_to(root)}:{node.lineno} imports {name}")
    return found


def test_imports_run_one_way() -> None:
    assert upward_imports() == []


def test_the_check_finds_an_upward_import(tmp_path: Path) -> None:
    for package in LAYERS:
        (tmp_path / package).mkdir()
    (tmp_path / "dataset_tools" / "x.py").write_text("def f():\n    from agents import make_agent\n")
    (tmp_path / "dataset_tools" / "cli.py").write_text("import agents\n")  # a command line may
    (tmp_path / "agents" / "y.py").write_text("import dataset_tools\n")  # downward: fine
    assert upward_imports(tmp_path) == ["dataset_tools/x.py:2 imports agents"]
