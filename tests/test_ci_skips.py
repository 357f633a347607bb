"""Under CI=true a test missing a tool fails instead of skipping: CI never goes green on tests it did not run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

# Every way a test here says what it lacks (tests/conftest.py), and a skip by design, which stays a skip.
TESTS = """
import pytest

from tests.conftest import missing, needs


def test_imperative():
    missing("frobnicate(1) is not installed")


@needs(True, "wrk is not installed")
def test_marked():
    pass


@needs(False, "present here")
def test_present():
    pass


@pytest.mark.skipif(True, reason="this platform cannot by design")
def test_by_design():
    pass
"""


def run_pytest(tmp_path: Path, ci: str | None) -> dict[str, str]:
    """Each generated test's outcome (PASSED, SKIPPED, FAILED, ERROR: failed in its setup) in a real pytest
    run, with CI set to ``ci``."""
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_configure, pytest_runtest_setup\n")
    (tmp_path / "test_generated.py").write_text(TESTS)
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env["PYTHONPATH"] = str(ROOT)
    if ci is not None:
        env["CI"] = ci
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-p", "no:xdist", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    outcomes = dict(re.findall(r"::(test_\w+) (PASSED|SKIPPED|FAILED|ERROR)", done.stdout))
    assert len(outcomes) == 4, done.stdout + done.stderr
    assert done.returncode == (1 if {"FAILED", "ERROR"} & set(outcomes.values()) else 0), done.stdout
    return outcomes


@pytest.mark.parametrize("ci", [None, "false", ""])
def test_outside_ci_a_missing_tool_skips(tmp_path: Path, ci: str | None) -> None:
    assert run_pytest(tmp_path, ci) == {
        "test_imperative": "SKIPPED",
        "test_marked": "SKIPPED",
        "test_present": "PASSED",
        "test_by_design": "SKIPPED",
    }


@pytest.mark.parametrize("ci", ["true", "1", "TRUE"])
def test_under_ci_a_missing_tool_fails(tmp_path: Path, ci: str) -> None:
    assert run_pytest(tmp_path, ci) == {
        "test_imperative": "FAILED",
        "test_marked": "ERROR",  # failed in setup, where the marker is read: the run fails all the same
        "test_present": "PASSED",
        "test_by_design": "SKIPPED",
    }
