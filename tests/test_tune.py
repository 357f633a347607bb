"""hydra/sweeper=tune: a model-based search over real servers that resumes by study name."""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
from pathlib import Path

import pytest
import yaml

from pyfly_hydra.tune.space import parse_space
from pyfly_hydra.tune.study import StudySettings, open_study
from tests.conftest import assert_one_line_error, run_cli

SHORT = ["bench.duration=0.5", "bench.warmup=0", "bench.connections=8", "bench.client=builtin"]
SPACE = [
    "server=granian,uvicorn,hypercorn",
    "loop=uvloop,asyncio",
    "server.workers=range(1,3)",
    "+hydra.sweeper.spaces.granian={server.granian.runtime_threads:'range(1,3)'}",
]


def trials(study_dir: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((study_dir / "trials.csv").read_text())))


def job_overrides(job_dir: Path) -> list[str]:
    return yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text())


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_search_of_twelve_trials_resumes_by_study_name(tmp_path: Path) -> None:
    """As a user runs it: `sweep=tune` from their directory, the study in multirun/tune/<name>."""
    first = run_cli(
        "sweep=tune", "hydra.sweeper.study_name=ci", "hydra.sweeper.n_trials=12", "hydra.sweeper.seed=1",
        *SPACE, *SHORT, cwd=tmp_path, users_defaults=True, timeout=300,
    )  # fmt: skip
    study_dir = tmp_path / "multirun" / "tune" / "ci"
    assert first.returncode == 0, first.stdout + first.stderr
    assert "study ci created" in first.stdout
    after_first = trials(study_dir)
    searched = [row for row in after_first if row["phase"] == "search"]
    assert len(searched) == 12 and len(after_first) <= 12 + 3 * 3  # the leaders confirmed: at most 3 x 3 jobs
    assert {row["state"] for row in after_first} == {"complete"}, after_first
    assert len({row["server"] for row in searched}) >= 2  # the space was searched, not one corner of it

    second = run_cli(
        "sweep=tune", "hydra.sweeper.study_name=ci", "hydra.sweeper.n_trials=3", *SPACE, *SHORT,
        cwd=tmp_path, users_defaults=True, timeout=120,
    )  # fmt: skip
    assert second.returncode == 0, second.stdout + second.stderr
    so_far = re.search(r"study ci resumed from .*: (\d+) trials so far", second.stdout)
    assert so_far and int(so_far[1]) >= len(after_first), second.stdout  # the told draws (no job) count too
    rows = trials(study_dir)
    numbers = [int(row["trial"]) for row in rows]
    assert numbers == sorted(set(numbers))  # the told draws of measured configurations (no job) are not listed
    assert [row["phase"] for row in rows[len(after_first) :]][:3] == ["search"] * 3
    # Job dirs do not collide: the resumed trials took the next jobs, and every job kept its own record.
    assert [row["jobs"] for row in rows] == [str(number) for number in range(len(rows))]
    job_dirs = sorted((path for path in study_dir.iterdir() if path.name.isdigit()), key=lambda p: int(p.name))
    assert [path.name for path in job_dirs] == [str(number) for number in range(len(rows))]
    for row, job_dir in zip(rows, job_dirs, strict=True):
        record = json.loads((job_dir / "bench.json").read_text())
        assert record["status"] == "ok" and record["server"] == row["server"]
        assert float(row["value"]) == pytest.approx(record["rps"])
        overrides = job_overrides(job_dir)
        # granian's own keys are drawn for granian trials only.
        assert any(o.startswith("server.granian.runtime_threads=") for o in overrides) == (row["server"] == "granian")
    # The same summary as a grid sweep, over every trial of the study.
    summary = (study_dir / "summary.md").read_text()
    assert "Benchmark sweep" in summary and (study_dir / "best.yaml").is_file()
    csv_rows = list(csv.DictReader(io.StringIO((study_dir / "summary.csv").read_text())))
    assert sorted(int(row["job"]) for row in csv_rows) == list(range(len(rows)))


def test_a_failed_trial_is_recorded_as_failed_and_rounds_give_the_median(tmp_path: Path) -> None:
    """hypercorn refuses server.max_concurrent_connections: that trial fails; granian's is told the median of 2."""
    result = run_cli(
        "-m", "mode=bench", "hydra/sweeper=tune", "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler=random",
        "hydra.sweeper.seed=0", "bench.rounds=2", "server=choice(granian,hypercorn)",
        "+hydra.sweeper.spaces.hypercorn={server.max_concurrent_connections:50}", f"hydra.sweep.dir={tmp_path}", *SHORT,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    every = trials(tmp_path)
    rows = {row["server"]: row for row in every if row["phase"] == "search"}
    if set(rows) != {"granian", "hypercorn"}:
        pytest.fail(f"seed 0 was expected to draw both servers: {rows}")
    assert rows["hypercorn"]["state"] == "fail" and "max_concurrent_connections" in rows["hypercorn"]["reason"]
    granian = rows["granian"]
    rounds = [float(value) for value in granian["rounds"].split()]
    assert granian["state"] == "complete" and len(rounds) == 2
    assert float(granian["value"]) == pytest.approx(sum(rounds) / 2, rel=1e-4)  # the median of two
    assert len(granian["jobs"].split()) == 2
    # Confirming (3 rounds by default) gives granian its third round, as round 3; the failed hypercorn none.
    [confirming] = [row for row in every if row["phase"] == "confirm"]
    assert confirming["server"] == "granian" and confirming["state"] == "complete"
    [job] = confirming["jobs"].split()
    assert "bench.round=3" in job_overrides(tmp_path / job)
    assert "the median of 3 rounds" in result.stdout + result.stderr


@pytest.mark.slow
def test_the_search_measures_each_configuration_once_until_the_space_is_spent(tmp_path: Path) -> None:
    """Two configurations, three search trials: the first two draw both (a draw of a measured one is told its
    median, not run); the third finds nothing new in 50 draws and measures a repeat."""
    result = run_cli(
        "-m", "mode=bench", "hydra/sweeper=tune", "hydra.sweeper.n_trials=3", "hydra.sweeper.sampler=random",
        "hydra.sweeper.seed=5", "hydra.sweeper.confirm_rounds=0", "server=granian", "server.workers=1,2",
        f"hydra.sweep.dir={tmp_path}", *SHORT, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    rows = trials(tmp_path)
    assert [row["phase"] for row in rows] == ["search"] * 3
    assert sorted(row["server.workers"] for row in rows[:2]) == ["1", "2"]
    assert int(rows[2]["trial"]) > 50  # the told draws took the numbers between
    job_dirs = [path for path in tmp_path.iterdir() if path.name.isdigit()]
    assert len(job_dirs) == 3


@pytest.mark.slow
def test_the_leaders_are_measured_again_before_one_is_named_best(tmp_path: Path) -> None:
    """Four one-round trials, then the two best configurations get a second round each, interleaved; the one named
    best leads over every round of it, and the summary counts those rounds as its n."""
    result = run_cli(
        "-m", "mode=bench", "hydra/sweeper=tune", "hydra.sweeper.n_trials=4", "hydra.sweeper.sampler=random",
        "hydra.sweeper.seed=3", "hydra.sweeper.contenders=2", "hydra.sweeper.confirm_rounds=2",
        "server=granian,uvicorn,hypercorn", "server.workers=range(1,3)", f"hydra.sweep.dir={tmp_path}", *SHORT,
        timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    rows = trials(tmp_path)
    assert [row["phase"] for row in rows[:4]] == ["search"] * 4
    confirming = [row for row in rows if row["phase"] == "confirm"]
    assert 1 <= len(confirming) <= 2 * 2, rows  # at most contenders x confirm_rounds jobs
    assert "(confirming)" in result.stdout
    # Every row's jobs, in order, are the sweep's job dirs: nothing launched twice or lost.
    assert " ".join(row["jobs"] for row in rows).split() == [str(number) for number in range(len(rows))]

    def configuration(row: dict[str, str]) -> tuple[str, str]:
        return row["server"], row["server.workers"]

    rounds: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        rounds.setdefault(configuration(row), []).extend(float(value) for value in row["rounds"].split())
    by_median = sorted(rounds, key=lambda key: statistics.median(rounds[key]), reverse=True)
    for leader in by_median[:2]:
        assert len(rounds[leader]) >= 2, rounds  # the leaders were confirmed
    best = by_median[0]
    assert f"server={best[0]} server.workers={best[1]}" in result.stdout
    assert "the median of 2 rounds" in result.stdout or "the median of 3 rounds" in result.stdout
    summary = list(csv.DictReader(io.StringIO((tmp_path / "summary.csv").read_text())))
    assert len(summary) == len(rows)


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (["hydra.sweeper.n_trials=0"], ["hydra.sweeper.n_trials=0", ">= 1"]),
        (["hydra.sweeper.contenders=0"], ["hydra.sweeper.contenders=0", ">= 1"]),
        (["hydra.sweeper.confirm_rounds=99"], ["hydra.sweeper.confirm_rounds=99", "0..50"]),
        (["hydra.sweeper.direction=up"], ["hydra.sweeper.direction=up", "maximize"]),
        (["hydra.sweeper.sampler=cmaes"], ["hydra.sweeper.sampler=cmaes", "tpe"]),
        (["server.workers=range(3,1)"], ["server.workers", "is empty"]),
        (["+hydra.sweeper.spaces.nginx={server.workers:2}"], ["hydra.sweeper.spaces=nginx", "granian"]),
        (["hydra.sweeper.storage=nosuchdb://x"], ["hydra.sweeper.storage=nosuchdb://x", "cannot be opened"]),
        (["server.nope=1,2"], ["server.nope", "unknown key"]),  # a space that cannot compose
    ],
)
def test_bad_tuner_settings_are_one_line(tmp_path: Path, overrides: list[str], fragments: list[str]) -> None:
    result = run_cli("-m", "mode=bench", "hydra/sweeper=tune", f"hydra.sweep.dir={tmp_path}", *overrides)
    assert_one_line_error(result, *fragments)


def test_the_space_reads_hydras_sweep_grammar() -> None:
    import optuna
    from hydra.core.override_parser.overrides_parser import OverridesParser

    space = parse_space(
        params={"server": "granian,uvicorn", "bench.round": "1,2,3", "bench.connections": 16},
        arguments=["server.workers=range(1,4)", "+x=tag(int,interval(1,64))", "y=tag(log,interval(0.1,10))"],
        spaces={"granian": {"server.granian.runtime_mode": "st,mt"}},
        parser=OverridesParser.create(),
        default_server="auto",
    )
    assert space.rounds == ["1", "2", "3"] and space.fixed == ["bench.connections=16"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen: dict[str, set[str]] = {}
    for _ in range(60):
        trial = study.ask()
        for override in space.suggest(trial):
            key, value = override.split("=", 1)
            seen.setdefault(key, set()).add(value)
        assert any(o.startswith("server.granian.") for o in space.suggest(trial)) == (
            trial.params["server"] == "granian"
        )
        study.tell(trial, 1.0)
    assert seen["server.workers"] == {"1", "2", "3"}  # range's stop excluded, as in Hydra's grid
    assert all(value.isdigit() and 1 <= int(value) <= 64 for value in seen["+x"])
    assert all(0.1 <= float(value) <= 10 for value in seen["y"])
    assert seen["server.granian.runtime_mode"] == {"st", "mt"}


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_a_resumed_study_with_its_seed_draws_on_instead_of_repeating(tmp_path: Path, sampler: str) -> None:
    """Reopened with the same seed, the study's next draws are not its first ones again (each would be a
    benchmark spent on a configuration already measured)."""
    settings = StudySettings(
        study_name="resume", storage=None, n_trials=4, n_jobs=1, direction="auto", sampler=sampler,
        startup_trials=10, seed=7, timeout_seconds=None, contenders=3, confirm_rounds=3,
    )  # fmt: skip

    def draw(count: int) -> list[int]:
        study = open_study(settings, sweep_dir=tmp_path, maximize=True)
        drawn = []
        for _ in range(count):
            trial = study.ask()
            drawn.append(trial.suggest_int("workers", 1, 1_000_000))
            study.tell(trial, float(drawn[-1]))
        return drawn

    first, resumed = draw(4), draw(4)
    assert not set(first) & set(resumed), (first, resumed)
    # A fresh study with the same seed still repeats its own draws: the seed keeps a search reproducible.
    settings = StudySettings(**{**settings.__dict__, "study_name": "again"})
    assert draw(4) == first
