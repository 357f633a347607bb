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
REDRAWS = 50  # draws of measured configurations a batch skips before it measures a repeat


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
        self.job_number = next_job_number(sweep_dir)
        opening = opening_line(settings, sweep_dir, len(study.get_trials(deepcopy=False)))
        started, asked, returns = time.monotonic(), 0, []
        while asked < settings.n_trials:
            if _timed_out(settings, started, study):
                break
            trials, drawn = self._ask_unseen(study, space, min(settings.n_jobs, settings.n_trials - asked))
            asked += len(trials)
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
            returns.append(self._measure(study, trials, drawn, batch, space=space, metric=metric))
        returns += self._confirm(study, settings, space=space, metric=metric, maximize=maximize, started=started)
        write_trials(sweep_dir / TRIALS_FILE, study)
        _log_best(study, metric, maximize=maximize)
        return returns

    def _ask_unseen(self, study: Any, space: Any, count: int) -> tuple[list[Any], list[list[str]]]:
        """``count`` trials drawing configurations not measured yet: a trial that draws a measured one is told its
        median (``phase: known``, no job; one drawn twice in a batch is pruned) and another is asked, up to
        ``REDRAWS`` times (then the space is as good as exhausted, and a repeat is measured again)."""
        from optuna.trial import TrialState

        from pyfly_hydra.tune.confirm import KNOWN, configuration, standings

        known = {configuration(standing.params): standing for standing in standings(study) if standing.values}
        batch: set[tuple[tuple[str, str], ...]] = set()
        trials: list[Any] = []
        drawn: list[list[str]] = []
        redraws = 0
        while len(trials) < count:
            trial = study.ask()
            overrides = space.suggest(trial)
            key = configuration(trial.params)
            if (key in known or key in batch) and redraws < REDRAWS:
                redraws += 1
                trial.set_user_attr("phase", KNOWN)
                if key in known:
                    study.tell(trial, known[key].median)
                else:
                    study.tell(trial, state=TrialState.PRUNED)
                continue
            batch.add(key)
            trials.append(trial)
            drawn.append(overrides)
        return trials, drawn

    def _measure(
        self, study: Any, trials: list[Any], drawn: list[list[str]], batch: list[list[str]], *, space: Any, metric: str
    ) -> list[JobReturn]:
        """Launch ``batch`` (the trials' rounds, round-major), tell each trial its median, say what it drew."""
        from pyfly_hydra.tune.confirm import CONFIRM
        from pyfly_hydra.tune.study import tell

        assert self.launcher is not None
        results = list(self.launcher.launch(batch, initial_job_idx=self.job_number))
        self.job_number += len(batch)
        for index, (trial, overrides) in enumerate(zip(trials, drawn, strict=True)):
            value = tell(study, trial, results[index :: len(trials)])
            shown = "failed" if value is None else f"{metric} {value:,.2f}"
            drawn_here = " ".join(o for o in overrides if o not in space.fixed) or "(fixed)"
            phase = " (confirming)" if trial.user_attrs.get("phase") == CONFIRM else ""
            logger.info("trial %d%s: %s -> %s", trial.number, phase, drawn_here, shown)
        return results

    def _confirm(
        self, study: Any, settings: Any, *, space: Any, metric: str, maximize: bool, started: float
    ) -> list[list[JobReturn]]:
        """Measure the leading configurations again, a round each per pass, until the leaders all have
        ``confirm_rounds`` rounds or ``contenders x confirm_rounds`` jobs are spent (``pyfly_hydra.tune.confirm``)."""
        from pyfly_hydra.tune.confirm import CONFIRM, shuffled, standings, unconfirmed

        budget, spent, returns = settings.contenders * settings.confirm_rounds, 0, []
        rule = {"contenders": settings.contenders, "confirm_rounds": settings.confirm_rounds, "maximize": maximize}
        while short := unconfirmed(standings(study), **rule):
            if _timed_out(settings, started, study):
                break
            if spent + len(short) > budget:
                named = "; ".join(standing.describe() for standing in short)
                logger.info("tuner: confirming stopped at its %d jobs (contenders x confirm_rounds): %s", spent, named)
                break
            batch = shuffled(short, seed=settings.seed, number=len(returns) + 1)
            for standing in batch:
                study.enqueue_trial(standing.params, user_attrs={"phase": CONFIRM})
            trials = [study.ask() for _ in batch]
            drawn = [space.suggest(trial) for trial in trials]
            jobs = [[*o, f"bench.round={s.jobs + 1}"] for o, s in zip(drawn, batch, strict=True)]
            returns.append(self._measure(study, trials, drawn, jobs, space=space, metric=metric))
            spent += len(batch)
        return returns


def _timed_out(settings: Any, started: float, study: Any) -> bool:
    """Whether ``hydra.sweeper.timeout_seconds`` is spent (said when it is)."""
    if settings.timeout_seconds is None or time.monotonic() - started <= settings.timeout_seconds:
        return False
    trials = len(study.get_trials(deepcopy=False))
    logger.info("tuner: hydra.sweeper.timeout_seconds=%s spent, %d trials so far", settings.timeout_seconds, trials)
    return True


def _plain(node: Any) -> Any:
    """A mapping of plain values (interpolations resolved)."""
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def _log_best(study: Any, metric: str, *, maximize: bool) -> None:
    """The configuration named best: the best median over every round of it (a lone lucky trial is not)."""
    from pyfly_hydra.tune.confirm import leaders, standings

    everything = standings(study)
    ahead = leaders(everything, contenders=1, maximize=maximize)
    if not ahead:
        logger.warning("tuner: no trial completed; see trials.csv for the reasons")
        return
    best = ahead[0]
    logger.info(
        "tuner: best of %d configurations (%d trials): %s, %s %s, the median of %d rounds",
        len(everything), len(study.get_trials(deepcopy=False)), best.describe(), metric, f"{best.median:,.2f}",
        len(best.values),
    )  # fmt: skip
