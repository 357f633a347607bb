"""The tuner's study: stored in SQLite, resumed by name, each trial told its median or its failure."""

from __future__ import annotations

import csv
import logging
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.utils import JobReturn, JobStatus

from pyfly_hydra.bench.outcome import BenchOutcome, job_output_dir
from pyfly_hydra.bench.rounds import MAX_ROUNDS
from pyfly_hydra.errors import ConfigError
from pyfly_hydra.tune.confirm import KNOWN

if TYPE_CHECKING:
    import optuna

logger = logging.getLogger("pyfly_hydra")

STUDY_FILE = "study.db"
TRIALS_FILE = "trials.csv"
SAMPLERS = ("tpe", "random")
DIRECTIONS = ("auto", "maximize", "minimize")


@dataclass(frozen=True)
class StudySettings:
    """``hydra.sweeper.*`` of ``hydra/sweeper=tune``, checked."""

    study_name: str
    storage: str | None
    n_trials: int
    n_jobs: int
    direction: str
    sampler: str
    startup_trials: int
    seed: int | None
    timeout_seconds: float | None
    contenders: int
    confirm_rounds: int

    def __post_init__(self) -> None:
        for key in ("n_trials", "n_jobs", "contenders"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"hydra.sweeper.{key}", value, "must be an integer >= 1")
        if isinstance(self.startup_trials, bool) or not isinstance(self.startup_trials, int) or self.startup_trials < 0:
            raise ConfigError("hydra.sweeper.startup_trials", self.startup_trials, "must be an integer >= 0")
        rounds = self.confirm_rounds
        if isinstance(rounds, bool) or not isinstance(rounds, int) or not 0 <= rounds <= MAX_ROUNDS:
            raise ConfigError("hydra.sweeper.confirm_rounds", rounds, f"must be an integer 0..{MAX_ROUNDS}")
        if self.direction not in DIRECTIONS:
            raise ConfigError("hydra.sweeper.direction", self.direction, f"must be one of {', '.join(DIRECTIONS)}")
        if self.sampler not in SAMPLERS:
            raise ConfigError("hydra.sweeper.sampler", self.sampler, f"must be one of {', '.join(SAMPLERS)}")
        if not self.study_name or "/" in self.study_name:
            raise ConfigError("hydra.sweeper.study_name", self.study_name, "must be a non-empty name without '/'")
        if self.timeout_seconds is not None and not self.timeout_seconds > 0:
            raise ConfigError("hydra.sweeper.timeout_seconds", self.timeout_seconds, "must be seconds > 0, or null")


def open_study(settings: StudySettings, *, sweep_dir: Path, maximize: bool) -> optuna.Study:
    """Create the study, or load it when one of that name is in the storage; trials an interrupted run left
    running are recorded as failed."""
    import optuna
    from optuna.trial import TrialState
    from sqlalchemy.exc import SQLAlchemyError

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own line per trial says more
    storage = storage_url(settings, sweep_dir)
    direction = "maximize" if maximize else "minimize"
    try:
        study = optuna.create_study(
            study_name=settings.study_name, storage=storage, sampler=_sampler(settings, settings.seed),
            direction=direction, load_if_exists=True,
        )  # fmt: skip
    except (ValueError, ImportError, SQLAlchemyError) as exc:
        raise ConfigError("hydra.sweeper.storage", storage, f"cannot be opened: {exc}") from None
    if study.direction.name.lower() != direction:
        allowed = f"was created to {study.direction.name.lower()}; use another hydra.sweeper.study_name"
        raise ConfigError("hydra.sweeper.direction", direction, allowed)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
        logger.warning("trial %d was left running by an interrupted tuner: recorded as failed", trial.number)
    before = len(study.get_trials(deepcopy=False))
    if before and settings.seed is not None:
        # A resumed study draws on from where it stopped: seeded as at its start, it drew the same configurations
        # again (its first trials repeated, each one a benchmark spent on a known answer).
        study.sampler = _sampler(settings, settings.seed + before)
    return study


def _sampler(settings: StudySettings, seed: int | None) -> optuna.samplers.BaseSampler:
    import optuna

    if settings.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=settings.startup_trials)
    return optuna.samplers.RandomSampler(seed=seed)


def storage_url(settings: StudySettings, sweep_dir: Path) -> str:
    """Where the study lives: ``hydra.sweeper.storage``, else SQLite under the sweep dir."""
    return settings.storage or f"sqlite:///{(sweep_dir / STUDY_FILE).resolve()}"


def opening_line(settings: StudySettings, sweep_dir: Path, trials_before: int) -> str:
    """What the tuner says once its first trials compose: the study created, or resumed."""
    storage = storage_url(settings, sweep_dir)
    if trials_before:
        return f"study {settings.study_name} resumed from {storage}: {trials_before} trials so far"
    return f"study {settings.study_name} created in {storage}"


def tell(study: optuna.Study, trial: optuna.trial.Trial, rounds: Sequence[JobReturn]) -> float | None:
    """Tell the study the trial's value, the median of its rounds; a round that failed fails the trial."""
    from optuna.trial import TrialState

    values, reasons = [], []
    for job_return in rounds:
        outcome = job_return._return_value
        if job_return.status != JobStatus.COMPLETED:
            reasons.append(f"{type(outcome).__name__}: {outcome}")
        elif not isinstance(outcome, float) or math.isnan(outcome):
            record = outcome.record if isinstance(outcome, BenchOutcome) else {}
            reasons.append(str(record.get("reason") or f"the job returned {outcome!r}"))
        else:
            values.append(float(outcome))
    trial.set_user_attr("jobs", [job_dir.name for r in rounds if (job_dir := job_output_dir(r)) is not None])
    trial.set_user_attr("rounds", values)
    if reasons:
        trial.set_user_attr("reason", reasons[0])
        study.tell(trial, state=TrialState.FAIL)
        return None
    value = statistics.median(values)
    study.tell(trial, value)
    return value


def write_trials(path: Path, study: optuna.Study) -> None:
    """Every measured trial of the study so far: number, phase (search or confirm), state, value, its rounds and
    jobs, the overrides it drew."""
    trials = [trial for trial in study.get_trials(deepcopy=False) if trial.user_attrs.get("phase") != KNOWN]
    keys = sorted({key for trial in trials for key in trial.params} - {"server"})
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["trial", "phase", "state", "value", "rounds", "jobs", "reason", "server", *keys])
        for trial in trials:
            attrs: dict[str, Any] = trial.user_attrs
            writer.writerow(
                [
                    trial.number,
                    attrs.get("phase", "search"),
                    trial.state.name.lower(),
                    "" if trial.value is None else trial.value,
                    " ".join(f"{value:g}" for value in attrs.get("rounds", [])),
                    " ".join(attrs.get("jobs", [])),
                    attrs.get("reason", ""),
                    trial.params.get("server", attrs.get("server", "")),
                    *(trial.params.get(key, "") for key in keys),
                ]
            )


def next_job_number(sweep_dir: Path) -> int:
    """The first job number no job dir of ``sweep_dir`` has taken (a resumed study adds jobs after them)."""
    numbers = [int(path.name) for path in sweep_dir.iterdir() if path.is_dir() and path.name.isdigit()]
    return max(numbers, default=-1) + 1
