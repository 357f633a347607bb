"""The command line's edges, as a user meets them: what --help lists works as written, flags that are not
Hydra's, --version, a closed pipe, a group config without its package header."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pyfly_hydra.config.known_keys import schema_keys
from tests.conftest import ROOT, assert_one_line_error, child_env, run_cli

EXAMPLE = re.compile(r"^\s+python -m pyfly_hydra((?: \S+)*)")  # the command, up to its two-space comment
CHOICES = re.compile(r"\b([\w.]+)=((?:[\w.]+\|)+[\w.]+)")  # key=a|b|c
GROUP = re.compile(r"^([\w/]+): (.+)$")  # a line of $APP_CONFIG_GROUPS: group: a, b, c
LISTED_KEY = re.compile(r"\b(server\.[\w.]*\w)")


def _overrides_listed(help_text: str) -> list[list[str]]:
    """Every command line --help shows or implies: its examples, each key=a|b|c choice, each GROUP=OPTION."""
    commands: list[list[str]] = []
    groups = False
    for line in help_text.splitlines():
        example = EXAMPLE.match(line)
        if example:
            commands.append(example.group(1).split())
        for key, choices in CHOICES.findall(line):
            commands.extend([f"{key}={choice}"] for choice in choices.split("|"))
        groups = groups or line.startswith("Config groups")
        group = GROUP.match(line) if groups else None
        if group:
            commands.extend([f"{group.group(1)}={option}"] for option in group.group(2).split(", "))
    return commands


@pytest.mark.slow  # one composition per override --help lists: ~19 s
def test_every_override_help_lists_works_as_written(tmp_path: Path) -> None:
    """A dry run of each: ``--cfg job`` composes it (a multirun ``-m`` runs its jobs as ``mode=info``)."""
    help_text = run_cli("--help").stdout
    commands = _overrides_listed(help_text)
    assert ["sweep=ladder"] in commands and ["interface=wsgi"] in commands and len(commands) > 30, commands
    for command in commands:
        dry = ["mode=info"] if "-m" in command else ["--cfg", "job"]
        result = run_cli(*command, *dry, cwd=tmp_path, users_defaults=True)
        assert result.returncode == 0, (command, result.stderr)
    keys = set(schema_keys())
    section = help_text.partition("Most used server.* keys")[2].partition("Config groups")[0]
    named = LISTED_KEY.findall(section)
    assert len(named) > 10 and set(named) <= keys, set(named) - keys


def test_a_preset_added_with_a_plus_says_to_drop_it() -> None:
    assert_one_line_error(run_cli("+sweep=ladder"), "+sweep=ladder: sweep is chosen without a +: sweep=ladder")


def test_a_top_level_key_that_lives_under_server_is_named() -> None:
    assert_one_line_error(run_cli("workers=2"), "workers: unknown key; did you mean server.workers?")


def test_a_dash_dash_flag_says_settings_are_overrides() -> None:
    result = run_cli("--workers", "2")
    assert_one_line_error(result, "--workers: not an option; settings are key=value overrides, e.g. server.workers=2")


def test_an_env_file_without_its_package_header_is_named(tmp_path: Path) -> None:
    (tmp_path / "myconf" / "env").mkdir(parents=True)
    (tmp_path / "myconf" / "env" / "staging.yaml").write_text("server:\n  workers: 2\n")
    result = run_cli("--config-dir", "myconf", "env=staging", "mode=info", cwd=tmp_path, users_defaults=True)
    assert_one_line_error(result, "env/staging.yaml must start with the line '# @package _global_'")


def test_version_is_one_line_with_pyfly_hydras_the_servers_and_hydras() -> None:
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert "\n" not in line, line
    assert re.fullmatch(r"pyfly-hydra \S+ \((granian|uvicorn|hypercorn) \S+(, \w+ \S+)*; Hydra 1\.\S+\)", line), line


def test_help_into_a_closed_pipe_is_quiet() -> None:
    """``--help | head -1``: whether the reader has left before the write is a race, so its exit code may be 0;
    a pipe whose reader is gone before the write is certain to break: no word of it, exit 141 (128 + SIGPIPE)."""
    result = subprocess.run(
        f"{sys.executable} -m pyfly_hydra --help | head -1; exit ${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.startswith("pyfly-hydra: run") and result.stdout.count("\n") == 1, result.stdout
    assert (result.returncode, result.stderr) in {(0, ""), (141, "")}, result
    read_end, write_end = os.pipe()
    os.close(read_end)
    closed = subprocess.run(
        [sys.executable, "-m", "pyfly_hydra", "--help"],
        cwd=ROOT,
        env=child_env(),
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
    )
    os.close(write_end)
    assert (closed.returncode, closed.stderr) == (141, "")
