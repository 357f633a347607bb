"""Start-up cost we remove from Hydra: the extra composition it makes only to read ``hydra.mode``, and the garbage
collector's passes over Hydra's and OmegaConf's objects.

Hydra 1.3's ``@hydra.main`` composes the whole configuration once just to read ``hydra.mode`` (could a
config file ask for a multirun?), then composes it again to run: ~70-100 ms of every start here.
Only the sweep presets (``sweep=NAME``, ``conf/sweep/``) set ``hydra.mode: MULTIRUN``, so the probe runs
only when one is chosen; otherwise ``-m``/``--multirun`` on the command line decides, which Hydra reads from
its arguments, and the probe answers "not set". A config file of your own that sets ``hydra.mode:
MULTIRUN`` is therefore not honoured: use ``-m``.

The command line (``pyfly_hydra.__main__``) starts with the garbage collector paused: importing Hydra and
composing the configuration allocate tens of thousands of objects, which its passes walked again and again
(~45 ms of a start here, as much as one full collection at the end costs). When the task runs, everything
allocated so far is frozen (``gc.freeze``: never walked again) and the collector resumes. That includes
start-up's garbage (composition's discarded nodes: ~10,000 objects, 1-2 MB), kept rather than collected.
"""

from __future__ import annotations

import gc
from typing import Any

from hydra._internal.hydra import Hydra

_probe_mode = Hydra.get_mode
SWEEP_PRESET = "sweep="


def _mode_from_sweep_preset(self: Hydra, config_name: str | None, overrides: list[str]) -> Any:
    if any(override.startswith(SWEEP_PRESET) for override in overrides):
        return _probe_mode(self, config_name, overrides)
    return None


def skip_mode_probe() -> None:
    """Make Hydra take the run mode from the command line, or a sweep preset (see the module docstring)."""
    Hydra.get_mode = _mode_from_sweep_preset  # type: ignore[method-assign]


def end_of_startup() -> None:
    """Freeze what start-up allocated and resume the garbage collector, once: where the command line paused it
    (see the module docstring). A multirun's later jobs find it running."""
    if gc.isenabled():
        return
    gc.freeze()
    gc.enable()
