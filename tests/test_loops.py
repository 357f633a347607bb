"""Loop adapters name a factory that builds the loop they name, and satisfy the port."""

from __future__ import annotations

import pkgutil

import pytest

from pyfly_hydra.loops.asyncio import AsyncioLoop
from pyfly_hydra.loops.uvloop import UvloopLoop
from pyfly_hydra.ports import EventLoopPort


@pytest.mark.parametrize(
    "adapter,expected",
    [(UvloopLoop(), "uvloop.Loop"), (AsyncioLoop(), "asyncio.unix_events._UnixSelectorEventLoop")],
)
def test_loop_adapter_builds_its_loop(adapter, expected: str) -> None:
    assert isinstance(adapter, EventLoopPort)
    loop = pkgutil.resolve_name(adapter.factory)()
    try:
        assert f"{type(loop).__module__}.{type(loop).__qualname__}" == expected
        assert loop.run_until_complete(_answer()) == 42
    finally:
        loop.close()


async def _answer() -> int:
    return 42
