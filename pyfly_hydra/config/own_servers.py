"""Servers of the user's own: a ``server/<name>.yaml`` in a config directory of theirs, naming their adapter.

A built-in server is a row of ``pyfly_hydra.registry``; a user's own is found where Hydra finds configs
(``--config-dir``, ``hydra.searchpath``), so ``mode=info``, sweeps and the tuner know it as they know the
built-in ones, with no edit to pyfly-hydra.
"""

from __future__ import annotations

from pyfly_hydra.registry import SERVER_NAMES

GROUP_ONLY = ("auto",)  # options of the server group that name no adapter of their own


def own_server_names() -> tuple[str, ...]:
    """The ``server`` group's options that are not built in, sorted; none outside a Hydra run."""
    from hydra.core.global_hydra import GlobalHydra

    if not GlobalHydra.instance().is_initialized():
        return ()
    options = GlobalHydra.instance().config_loader().get_group_options("server")
    return tuple(sorted(name for name in options if name not in SERVER_NAMES and name not in GROUP_ONLY))


def server_names() -> tuple[str, ...]:
    """Every server a run may choose: the built-in ones in ``auto``'s order, then the user's own."""
    return (*SERVER_NAMES, *own_server_names())


def own_server_targets() -> dict[str, str]:
    """Each of the user's own servers and the ``_target_`` its yaml names, composed as a run would."""
    from hydra import compose

    return {name: str(compose(config_name="config", overrides=[f"server={name}"]).server._target_)
            for name in own_server_names()}  # fmt: skip
