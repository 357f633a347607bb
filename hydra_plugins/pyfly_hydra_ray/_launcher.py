"""``hydra/launcher=ray_bench``: hydra-ray-launcher on an existing cluster, for benchmark sweeps.

Each job asks for the resources in ``ray.remote.resources`` (one ``bench_node`` per benchmark machine, so one
benchmark per node at a time) and returns a ``BenchOutcome`` carrying its record; the driver writes every
record a node's filesystem kept to itself into its own sweep dir, where the summary reads them.

Jobs run in the sweep's order: hydra-ray-launcher submits every job at once and Ray starts whichever it
likes (a 4-job sweep ran 0, 3, 2, 1; rounds ran 1, 3, 1, 3, 2, 2), which undid the interleaved, shuffled rounds
the summary's verdicts rely on. So they are handed over as many at a time as the cluster can run together
(its resources over a job's: one at a time on one bench node), the next ones once those are done.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra._internal.grammar.utils import escape_special_characters
from hydra.core.utils import JobReturn
from hydra_plugins.hydra_ray_launcher.ray_launcher import RayLauncher
from omegaconf import OmegaConf

from pyfly_hydra.bench.outcome import land_records
from pyfly_hydra.errors import ConfigError

log = logging.getLogger(__name__)

ADDRESS_KEY = "hydra.launcher.ray.init.address"
RESOURCES_KEY = "hydra.launcher.ray.remote.resources"
CONNECT_TIMEOUT = 5.0  # seconds; ray.init waits without end for an address where nothing answers
START_HINT = (
    "start one with ray start --head --resources='{\"bench_node\": 1}', or set RAY_ADDRESS=HOST:PORT of its head"
)


def driver_pythonpath() -> str:
    """What ``python -m`` imports from here: the working directory, then ``PYTHONPATH``."""
    entries = [os.getcwd(), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    return os.pathsep.join(dict.fromkeys(entry for entry in entries if entry))


if not OmegaConf.has_resolver("driver_pythonpath"):
    OmegaConf.register_new_resolver("driver_pythonpath", driver_pythonpath)


class RayBenchLauncher(RayLauncher):
    """Checks the cluster before the sweep, runs the jobs in order, and lands their records in the driver's sweep
    dir after it."""

    _at_once: int | None = None  # jobs the cluster runs together (its resources over a job's); None: no limit

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Run the jobs on the cluster; return what they returned, their records landed here."""
        assert self.config is not None
        self._connect()
        # A worker resolves a relative sweep dir against its own working directory: every job gets the driver's.
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).absolute()
        pinned = f"hydra.sweep.dir={escape_special_characters(str(sweep_dir))}"
        jobs = [[*overrides, pinned] for overrides in job_overrides]
        width = self._at_once or max(len(jobs), 1)
        returns: list[JobReturn] = []
        for start in range(0, len(jobs), width):  # the next ones once these are done: the sweep's order kept
            returns += super().launch(jobs[start : start + width], initial_job_idx + start)
        landed = land_records(returns)
        if landed:
            log.info(
                "landed %d of %d job records in %s (their nodes' files are not here)",
                len(landed),
                len(returns),
                sweep_dir,
            )
        return returns

    def _connect(self) -> None:
        """``ray.init`` with ``ray.init.*``: one clear error when no cluster answers or none can run a job."""
        import ray

        if ray.is_initialized():
            return
        init: dict[str, Any] = OmegaConf.to_container(self.ray_cfg.init, resolve=True)  # type: ignore[assignment]
        address = init.get("address")
        if address not in (None, "local"):  # those start a Ray of their own, on this machine
            _check_answers(str(address))
        ray.init(**init)
        where, offered = ray.get_runtime_context().gcs_address, ray.cluster_resources()
        remote: dict[str, Any] = OmegaConf.to_container(self.ray_cfg.remote, resolve=True)  # type: ignore[assignment]
        wanted: dict[str, float] = remote.get("resources") or {}
        for name, amount in wanted.items():
            if offered.get(name, 0) < amount:
                ray.shutdown()
                hint = f"no node of the Ray cluster at {where} offers {name}; start each benchmark node with"
                raise ConfigError(
                    f"{RESOURCES_KEY}.{name}", amount, f"{hint} ray start --resources='{{\"{name}\": 1}}'"
                )
        positive = {name: amount for name, amount in wanted.items() if amount > 0}
        self._at_once = min((int(offered[name] // amount) for name, amount in positive.items()), default=None)
        log.info("Ray cluster at %s: %s", where, ", ".join(f"{offered[name]:g} {name}" for name in wanted) or "up")


def _check_answers(address: str) -> None:
    """Refuse an address that names no head, or one where nothing accepts a connection."""
    from ray._private.services import canonicalize_bootstrap_address

    try:  # what ray.init connects to ("auto": RAY_ADDRESS, else the cluster running on this machine)
        head = canonicalize_bootstrap_address(address.removeprefix("ray://")) or ""
    except ConnectionError as error:
        raise ConfigError(ADDRESS_KEY, address, f"no Ray cluster found; {START_HINT}") from error
    except ValueError:
        head = ""
    host, colon, port = head.rpartition(":")
    if not colon or not port.isdigit():
        raise ConfigError(ADDRESS_KEY, address, "must be auto or HOST:PORT of a Ray cluster's head")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(ADDRESS_KEY, address, f"no Ray cluster answers at {head} ({reason}); {START_HINT}") from error
