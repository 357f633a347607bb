"""The module Hydra's plugin scan imports on every run.

The launcher lives in ``_launcher`` (a module the scan skips) and is offered only when the ``ray`` extra is
installed, so a run without it imports nothing of Ray's and prints no plugin warning.
"""

from importlib.util import find_spec

if find_spec("ray") is not None and find_spec("hydra_plugins.hydra_ray_launcher") is not None:
    from hydra_plugins.pyfly_hydra_ray._launcher import RayBenchLauncher

    __all__ = ["RayBenchLauncher"]
