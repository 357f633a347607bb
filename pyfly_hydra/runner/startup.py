"""Start-up cost we remove from Hydra: the extra composition it makes only to read ``hydra.mode``.

Hydra 1.3's ``@hydra.main`` composes the whole configuration once just to read ``hydra.mode`` (could a
config file ask for a multirun?), then composes it again to run: ~70-100 ms of every start here.
Only the sweep presets (``sweep=NAME``, ``conf/sweep/``) set ``hydra.mode: MULTIRUN``, so the probe runs
only when one is chosen; otherwise ``-m``/``--multirun`` on the command line decides, which Hydra reads from
its arguments, and the probe answers "not set". A config file of your own that sets ``hydra.mode:
MULTIRUN`` is therefore not honoured: use ``-m``.
"""

from __future__ import annotations

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
