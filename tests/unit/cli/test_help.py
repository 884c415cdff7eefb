"""`rb` help: -h and --help everywhere, --version, click-style types (never Python's), a
description for every option and examples for every command."""

from __future__ import annotations

import re

import pytest
import typer.main
from conftest import Rb

from rb_cli.main import app


def leaf_commands() -> list[list[str]]:
    """Every command path: ["run"], ["keys", "create"], ..."""
    paths: list[list[str]] = []

    def walk(command: object, path: list[str]) -> None:
        children = getattr(command, "commands", None)
        if children:
            for name, child in children.items():
                walk(child, [*path, name])
        elif path:
            paths.append(path)

    walk(typer.main.get_command(app), [])
    return paths


COMMANDS = leaf_commands()
PYTHON_TYPES = re.compile(r"<(list\[|bool|str|int|float|path|Path)[^>]*>")


def test_every_verb_is_found() -> None:
    names = {" ".join(p) for p in COMMANDS}
    assert {
        "run",
        "test",
        "replay",
        "trigger",
        "logs",
        "graph",
        "new",
        "keys create",
        "audit verify",
    } <= names


def test_version(rb: Rb) -> None:
    code, out, _ = rb("--version")
    assert code == 0 and re.fullmatch(r"rb \d+\.\d+\.\d+.*\n", out), out
    assert rb("-V")[1] == out


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_help_of_every_command(rb: Rb, path: list[str]) -> None:
    code, out, err = rb(*path, "-h")
    assert code == 0, err
    assert rb(*path, "--help")[1] == out
    assert not PYTHON_TYPES.search(out), f"Python types in `rb {' '.join(path)} -h`:\n{out}"
    assert "Examples:" in out, f"`rb {' '.join(path)}` has no examples"
    assert f"rb {path[0]}" in out.split("Examples:")[1]


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_every_option_says_what_it_does(path: list[str]) -> None:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    assert command.help, f"rb {' '.join(path)} has no description"
    for param in command.params:
        assert getattr(param, "help", None), f"rb {' '.join(path)}: {param.name} has no help text"


def test_root_help_lists_completion_and_examples(rb: Rb) -> None:
    code, out, _ = rb("-h")
    assert code == 0
    assert "--install-completion" in out and "--version" in out and "Examples:" in out


def test_short_f_means_follow_only() -> None:
    """`-f` is --follow wherever it exists (rb logs, rb trigger), never --fact."""
    seen = {}
    root = typer.main.get_command(app)
    for path in COMMANDS:
        command = root
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        for param in command.params:
            if "-f" in getattr(param, "opts", []):
                seen[" ".join(path)] = param.opts
    assert seen and all("--follow" in opts for opts in seen.values()), seen


def test_shell_completion_completes_commands_and_options() -> None:
    """`rb --install-completion` installs what `rb --show-completion` prints; the script asks rb
    itself for completions (`_RB_COMPLETE`), as the shell does."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    rb_script = str(Path(sys.executable).parent / "rb")
    script = subprocess.run(
        [rb_script, "--show-completion", "bash"], capture_output=True, text=True, timeout=60
    )
    assert script.returncode == 0 and "_rb_completion" in script.stdout and "complete " in script.stdout

    def complete(words: str) -> list[str]:
        env = {**os.environ, "_RB_COMPLETE": "complete_bash", "COMP_WORDS": words}
        env["COMP_CWORD"] = str(len(words.split()) - 1)
        result = subprocess.run([rb_script], capture_output=True, text=True, env=env, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert complete("rb tr") == ["trigger"]
    assert complete("rb replay --so") == ["--source"]
