"""What ``server.reload`` watches: the app's sources, never the run's records, virtualenvs, VCS or caches.

One rule for every server: a change reloads when the file's name matches ``server.reload_includes``
(``*.py`` by default) and no part of its path below the watched directory matches the excludes
(``server.reload_excludes`` plus hidden files and directories, caches, ``node_modules``,
``site-packages``, editor back-ups), and it lies outside the run's output directory and every
virtualenv found in the watched directories. granian and uvicorn get this rule as their watch
filter; hypercorn's reloader (which polls every imported module) is replaced by the runner's own.

watchfiles' own log lines are kept to warnings: it announces every batch it hands over (``1 change
detected``) next to the reload line that names the files, and at debug level it logs every batch it
filtered out, the writes of the run's own log among them.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import watchfiles

WATCHER_LOGGER = "watchfiles"
ALWAYS_EXCLUDED = (".*", "__pycache__", "node_modules", "site-packages", "*~", "#*#", "*.py[cod]", "*.sw?")


def _virtualenvs(directory: Path) -> list[Path]:
    """Virtualenvs directly inside ``directory`` (a ``pyvenv.cfg`` marks one, whatever its name)."""
    try:
        return [child for child in directory.iterdir() if (child / "pyvenv.cfg").is_file()]
    except OSError:
        return []


def _top_level_entry(path: Path, directories: Iterable[Path]) -> Path | None:
    """The entry of a watched directory that holds ``path`` (``outputs`` for ``outputs/2026-11-24/...``)."""
    for directory in directories:
        try:
            relative = path.relative_to(directory)
        except ValueError:
            continue
        if relative.parts:
            return directory / relative.parts[0]
    return None


@dataclass(frozen=True)
class WatchedSources:
    """The directories to watch and the rule that decides whether a changed file reloads the server."""

    dirs: tuple[Path, ...]
    includes: tuple[str, ...]
    excludes: tuple[str, ...]
    ignored: tuple[Path, ...]

    def accepts(self, path: str | Path) -> bool:
        """True when a change of ``path`` should reload the server."""
        file = Path(path)
        if any(file.is_relative_to(ignored) for ignored in self.ignored):
            return False
        root = next((d for d in self.dirs if file.is_relative_to(d)), None)
        parts = file.relative_to(root).parts if root is not None else (file.name,)
        if any(fnmatch(part, pattern) for part in parts for pattern in self.excludes):
            return False
        return any(fnmatch(file.name, pattern) for pattern in self.includes)

    def describe(self) -> str:
        """One line for the log: what is watched and what reloads."""
        dirs = ", ".join(str(d) for d in self.dirs)
        ignored = ", ".join(str(p) for p in self.ignored) or "nothing"
        return f"reload watches {dirs} for {', '.join(self.includes)}; ignoring {ignored}"

    @functools.cache  # noqa: B019 (frozen, hashable, few): the same rule is the same class
    def filter_class(self) -> type[watchfiles.BaseFilter]:
        """A watchfiles filter class applying this rule (granian instantiates the class itself)."""
        import watchfiles

        accepts = self.accepts

        class SourceFilter(watchfiles.BaseFilter):
            ignore_dirs: tuple[str, ...] = ()
            ignore_entity_patterns: tuple[str, ...] = ()
            ignore_paths: tuple[Path | str, ...] = ()

            def __call__(self, change: Any, path: str) -> bool:
                return accepts(path)

        return SourceFilter


def quiet_watcher() -> None:
    """Keep watchfiles to warnings in this process, where granian's reloader and the supervisor's watch run."""
    logging.getLogger(WATCHER_LOGGER).setLevel(logging.WARNING)


def _default_roots(app_dir: Path | None) -> tuple[Path, ...]:
    """The current directory, and ``app_dir`` when it lies outside it (run from a sub-directory: ``..``)."""
    cwd = Path.cwd()
    if app_dir is None or app_dir.resolve().is_relative_to(cwd):
        return (cwd,)
    return (cwd, app_dir.resolve())


def watched_sources(
    *, dirs: list[str], includes: list[str], excludes: list[str], output_dir: Path | None, app_dir: Path | None = None
) -> WatchedSources:
    """The rule for these ``server.reload_*`` values, with the run's output dir and virtualenvs left out.

    No ``dirs``: the current directory and ``app_dir``, where the app is imported from."""
    roots = tuple(Path(d).resolve() for d in dirs) or _default_roots(app_dir)
    ignored: list[Path] = []
    if output_dir is not None:
        entry = _top_level_entry(output_dir.resolve(), roots)
        if entry is not None:
            ignored.append(entry)
    prefix = Path(sys.prefix).resolve()
    if any(prefix.is_relative_to(root) for root in roots):
        ignored.append(prefix)
    for root in roots:
        ignored.extend(venv for venv in _virtualenvs(root) if venv not in ignored)
    return WatchedSources(
        dirs=roots,
        includes=tuple(includes),
        excludes=(*ALWAYS_EXCLUDED, *excludes),
        ignored=tuple(ignored),
    )
