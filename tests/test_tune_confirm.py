"""The tuner names a configuration best only once it leads over ``confirm_rounds`` rounds (pyfly_hydra.tune.confirm),
checked on optuna studies built from known figures."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from pyfly_hydra.tune.confirm import leaders, shuffled, standings, unconfirmed

SERVERS = CategoricalDistribution(["granian", "uvicorn", "hypercorn", "other"])
RULE = {"contenders": 2, "confirm_rounds": 3, "maximize": True}


def study_of(*trials: tuple[str, list[float] | None]) -> optuna.Study:
    """A study holding one trial per ``(server, rounds)``; ``None`` rounds: a failed trial."""
    study = optuna.create_study(direction="maximize")
    for server, rounds in trials:
        jobs = [str(number) for number in range(len(rounds or [0]))]
        study.add_trial(
            create_trial(
                params={"server": server}, distributions={"server": SERVERS},
                value=None if rounds is None else sorted(rounds)[len(rounds) // 2],
                state=TrialState.FAIL if rounds is None else TrialState.COMPLETE,
                user_attrs={"rounds": rounds or [], "jobs": jobs},
            )
        )  # fmt: skip
    return study


def names(found: list) -> list[str]:
    return [standing.params["server"] for standing in found]


def test_a_configurations_trials_are_one_standing_with_every_round() -> None:
    study = study_of(("granian", [100.0]), ("uvicorn", [90.0]), ("granian", [80.0, 120.0]))
    [granian, uvicorn] = standings(study)
    assert granian.values == [100.0, 80.0, 120.0] and granian.jobs == 3 and granian.median == 100.0
    assert uvicorn.values == [90.0] and uvicorn.jobs == 1


def test_the_leaders_short_of_rounds_are_measured_next() -> None:
    study = study_of(("granian", [100.0, 101.0, 99.0]), ("uvicorn", [105.0]), ("hypercorn", [50.0]))
    assert names(leaders(standings(study), contenders=2, maximize=True)) == ["uvicorn", "granian"]
    assert names(unconfirmed(standings(study), **RULE)) == ["uvicorn"]  # granian has its three rounds
    # minimised (a latency): the lowest lead
    assert names(leaders(standings(study), contenders=1, maximize=False)) == ["hypercorn"]


def test_a_leader_that_falls_back_is_replaced_by_the_one_that_overtook_it() -> None:
    """One lucky run put uvicorn ahead; measured again it falls behind, and the next best is confirmed instead."""
    study = study_of(("uvicorn", [130.0]), ("granian", [100.0, 101.0, 99.0]), ("other", [98.0]))
    assert names(unconfirmed(standings(study), **RULE)) == ["uvicorn"]
    study = study_of(
        ("uvicorn", [130.0]), ("granian", [100.0, 101.0, 99.0]), ("other", [98.0]), ("uvicorn", [70.0]),
        ("uvicorn", [72.0]),
    )  # fmt: skip
    assert names(leaders(standings(study), **{k: v for k, v in RULE.items() if k != "confirm_rounds"})) == [
        "granian", "other",
    ]  # fmt: skip
    assert names(unconfirmed(standings(study), **RULE)) == ["other"]


def test_a_configuration_that_failed_once_is_never_a_leader() -> None:
    study = study_of(("granian", [200.0]), ("granian", None), ("uvicorn", [100.0]))
    assert names(leaders(standings(study), contenders=3, maximize=True)) == ["uvicorn"]


def test_nothing_to_confirm_at_one_round() -> None:
    study = study_of(("granian", [100.0]), ("uvicorn", [90.0]))
    assert unconfirmed(standings(study), contenders=3, confirm_rounds=1, maximize=True) == []
    assert unconfirmed(standings(study), contenders=3, confirm_rounds=0, maximize=True) == []


@pytest.mark.parametrize("seed", [0, 7])
def test_a_pass_runs_in_a_seeded_order_that_changes_between_passes(seed: int) -> None:
    study = study_of(*((server, [1.0]) for server in ("granian", "uvicorn", "hypercorn", "other")))
    found = standings(study)
    orders = {tuple(names(shuffled(found, seed=seed, number=number))) for number in range(1, 9)}
    assert len(orders) > 1  # not the same neighbour every pass
    assert names(shuffled(found, seed=seed, number=3)) == names(shuffled(found, seed=seed, number=3))
    assert sorted(names(shuffled(found, seed=seed, number=3))) == sorted(names(found))
