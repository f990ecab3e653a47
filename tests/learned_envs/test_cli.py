"""The ``learned-envs`` command: every subcommand is listed and parses; ``--help`` imports nothing heavy."""

from __future__ import annotations

import subprocess
import sys

from learned_envs.cli import COMMANDS, build_parser


def test_help_imports_no_torch_and_lists_every_command() -> None:
    code = (
        "import sys\n"
        "from learned_envs.cli import build_parser\n"
        "text = build_parser(['--help']).format_help()\n"
        "heavy = [m for m in ('torch', 'stable_baselines3') if m in sys.modules]\n"
        f"print(heavy, all(c in text for c in {list(COMMANDS)!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] True"


def test_each_command_parses_with_its_module_loaded_and_keeps_its_help() -> None:
    full = build_parser()
    for name, (_, help_line) in COMMANDS.items():
        sub = full._subparsers._group_actions[0]
        assert name in sub.choices, name
        assert help_line in [a.help for a in sub._choices_actions if a.dest == name]
        args = build_parser([name, "--help"])._subparsers._group_actions[0].choices[name]
        assert args.get_default("func") is not None, f"{name}: its module did not set func"
