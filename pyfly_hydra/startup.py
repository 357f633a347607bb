"""Start-up cost we remove from Hydra: the extra composition it makes only to read ``hydra.mode``.

Hydra 1.3's ``@hydra.main`` composes the whole configuration once just to read ``hydra.mode`` (could a
config file ask for a multirun?), then composes it again to run: ~70-100 ms of every start here.
pyfly-hydra never sets ``hydra.mode`` in its configuration: ``-m``/``--multirun`` on the command line
decides, which Hydra reads from its arguments without the probe. So the probe answers "not set".
A config file of your own that sets ``hydra.mode: MULTIRUN`` is therefore not honoured: use ``-m``.
"""

from __future__ import annotations

from typing import Any

from hydra._internal.hydra import Hydra


def _mode_not_set(self: Hydra, config_name: str | None, overrides: list[str]) -> Any:
    return None


def skip_mode_probe() -> None:
    """Make Hydra take the run mode from the command line alone (see the module docstring)."""
    Hydra.get_mode = _mode_not_set  # type: ignore[method-assign]
