"""``hydra/sweeper=tune``: an optuna study driven by ask and tell over Hydra's launcher.

Each trial draws its overrides from the search space (:mod:`pyfly_hydra.tune.space`), runs as one job per
round (``bench.rounds``) through whatever launcher is configured, and is told the median of its rounds, or
that it failed. The study lives in SQLite (under the sweep dir unless ``storage`` says otherwise) and a
second invocation with the same ``study_name`` continues it, its jobs numbered after the ones already there.
optuna is imported only when a sweep starts: Hydra imports this module on every start to find its plugins.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    from hydra.core.utils import JobReturn
    from hydra.plugins.launcher import Launcher
    from hydra.types import HydraContext, TaskFunction

logger = logging.getLogger("pyfly_hydra")


class TuneSweeper(Sweeper):
    """Searches ``params`` (and ``spaces.<server>``) for the best ``bench.metric``."""

    def __init__(self, *, params: Any = None, spaces: Any = None, **settings: Any) -> None:
        super().__init__()
        self.params = params if params is not None else {}
        self.spaces = spaces if spaces is not None else {}
        self.settings = settings
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Launcher | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> list[list[JobReturn]]:
        from optuna.trial import TrialState

        from pyfly_hydra.bench.task import METRICS
        from pyfly_hydra.config.own_servers import server_names
        from pyfly_hydra.errors import ConfigError
        from pyfly_hydra.tune.space import parse_space
        from pyfly_hydra.tune.study import (
            TRIALS_FILE,
            StudySettings,
            next_job_number,
            open_study,
            opening_line,
            tell,
            write_trials,
        )

        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        if importlib.util.find_spec("optuna") is None:
            raise ConfigError("hydra/sweeper", "tune", "needs optuna: pip install 'pyfly-hydra[tune]'")
        settings = StudySettings(**self.settings)
        if self.config.get("mode") != "bench":
            raise ConfigError("mode", self.config.get("mode"), "the tuner measures jobs: use mode=bench (sweep=tune)")
        metric = self.config.bench.metric
        maximize = METRICS.get(metric, True) if settings.direction == "auto" else settings.direction == "maximize"
        space = parse_space(
            params=_plain(self.params),
            arguments=arguments,
            spaces=_plain(self.spaces),
            parser=OverridesParser.create(config_loader=self.hydra_context.config_loader),
            default_server=self.config.hydra.runtime.choices.get("server", "auto"),
            servers=server_names(),
        )
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        study = open_study(settings, sweep_dir=sweep_dir, maximize=maximize)
        job_number = next_job_number(sweep_dir)
        opening = opening_line(settings, sweep_dir, len(study.get_trials(deepcopy=False)))
        started, asked, returns = time.monotonic(), 0, []
        while asked < settings.n_trials:
            if settings.timeout_seconds is not None and time.monotonic() - started > settings.timeout_seconds:
                spent = settings.timeout_seconds
                logger.info("tuner: hydra.sweeper.timeout_seconds=%s spent after %d trials", spent, asked)
                break
            trials = [study.ask() for _ in range(min(settings.n_jobs, settings.n_trials - asked))]
            asked += len(trials)
            drawn = [space.suggest(trial) for trial in trials]
            # Round-major, as the grid sweep does: round 1 of every trial in the batch, then round 2.
            batch = [[*overrides, f"bench.round={r}"] for r in space.rounds for overrides in drawn]
            try:
                self.validate_batch_is_legal(batch)
            except Exception:
                for trial in trials:  # not left running in the study: what they drew cannot be composed
                    study.tell(trial, state=TrialState.FAIL)
                raise
            if opening:  # said once the space composes, so a bad space is one error line and nothing else
                logger.info(opening)
                opening = ""
            results = list(self.launcher.launch(batch, initial_job_idx=job_number))
            job_number += len(batch)
            returns.append(results)
            for index, (trial, overrides) in enumerate(zip(trials, drawn, strict=True)):
                value = tell(study, trial, results[index :: len(trials)])
                shown = "failed" if value is None else f"{metric} {value:,.2f}"
                drawn_here = " ".join(o for o in overrides if o not in space.fixed) or "(fixed)"
                logger.info("trial %d: %s -> %s", trial.number, drawn_here, shown)
        write_trials(sweep_dir / TRIALS_FILE, study)
        _log_best(study, metric)
        return returns


def _plain(node: Any) -> Any:
    """A mapping of plain values (interpolations resolved)."""
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def _log_best(study: Any, metric: str) -> None:
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        logger.warning("tuner: no trial completed; see trials.csv for the reasons")
        return
    best = study.best_trial
    drawn = " ".join(f"{key}={value}" for key, value in best.params.items())
    logger.info(
        "tuner: best of %d trials (%d complete): trial %d, %s %s, %s",
        len(study.get_trials(deepcopy=False)),
        len(complete),
        best.number,
        metric,
        f"{best.value:,.2f}",
        drawn,
    )
