"""``CrashPolicy`` in-process: the one rule pyfly-hydra's supervisor and granian's watcher apply to a worker that
dies (docs/guides/shutdown.md). The end-to-end test on every server is in test_reliability.py."""

from __future__ import annotations

import pytest

from pyfly_hydra.supervision.crash_policy import CrashPolicy

AT_ONCE = 0.0


def test_a_worker_that_served_and_dies_is_respawned_at_once() -> None:
    policy = CrashPolicy(slots=1)
    assert policy.died(0, lived=0.1, others_serving=0) == AT_ONCE  # its first death: however young
    assert not policy.failing(0)


@pytest.mark.parametrize(("lived", "failing"), [(4.9, True), (5.1, False)])
def test_dying_again_within_5_s_of_its_respawn_is_failing(lived: float, failing: bool) -> None:
    """With another worker serving, a failing worker is respawned after a back-off; after 5 s it is not failing."""
    policy = CrashPolicy(slots=2)
    assert policy.died(0, lived=60, others_serving=1) == AT_ONCE
    assert policy.died(0, lived=lived, others_serving=1) == (1.0 if failing else AT_ONCE)
    assert policy.failing(0) is failing


@pytest.mark.parametrize(("lived", "stops"), [(4.9, True), (5.1, False)])
def test_a_lone_worker_dying_again_within_5_s_of_its_respawn_stops_the_server(lived: float, stops: bool) -> None:
    policy = CrashPolicy(slots=1)
    assert policy.died(0, lived=60, others_serving=0) == AT_ONCE
    assert policy.died(0, lived=lived, others_serving=0) == (None if stops else AT_ONCE)


def test_a_worker_that_never_served_is_failing_at_its_first_death() -> None:
    policy = CrashPolicy(slots=2)
    assert policy.died(1, lived=60, served=False, others_serving=1) == 1.0
    assert policy.failing(1) and not policy.failing(0)


def test_the_back_off_doubles_up_to_30_s_while_another_worker_serves() -> None:
    policy = CrashPolicy(slots=2)
    policy.died(0, lived=60, others_serving=1)
    backoffs = [policy.died(0, lived=0.5, others_serving=1) for _ in range(8)]
    assert backoffs == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert policy.died(0, lived=5.1, others_serving=1) == AT_ONCE  # one that lasts resets the count
    assert policy.died(0, lived=0.5, others_serving=1) == 1.0


def test_the_server_stops_only_when_every_worker_is_failing_and_none_serves() -> None:
    policy = CrashPolicy(slots=2)
    for slot in (0, 1):
        assert policy.died(slot, lived=60, others_serving=1) == AT_ONCE
    assert policy.died(0, lived=1, others_serving=1) == 1.0  # worker 1 serves meanwhile
    assert policy.died(1, lived=1, others_serving=1) == 1.0  # worker 0's replacement serves
    assert policy.died(1, lived=1, others_serving=0) is None  # both failing, none serving: stop


def test_one_failing_worker_does_not_stop_the_server_when_the_other_has_not_failed() -> None:
    policy = CrashPolicy(slots=2)
    policy.died(0, lived=60, others_serving=0)
    assert policy.died(0, lived=1, others_serving=0) == 1.0  # slot 1 has never failed: not every slot is failing
