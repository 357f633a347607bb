"""Where a run's record goes: Hydra's ``outputs/`` in the working directory, unless it cannot be written.

``hydra.run.dir`` and ``hydra.sweep.dir`` go through ``${writable_dir:...}``: a relative directory whose
nearest existing parent is writable stays where Hydra's convention puts it; otherwise (a read-only
container image, a directory owned by someone else) the record moves below the system's temporary
directory and one notice line on stderr says where. ``mode=info`` writes no record at all
(``conf/mode/info.yaml``).

The temporary directory is shared with every user, and a record holds what a request carried (access
log lines with their query strings), so the fallback ``$TMPDIR/pyfly-hydra-<uid>`` must be ours alone:
created 0700, or, when it exists, a real directory (not a symbolic link) owned by us and made 0700, with
nothing below it on the record's path that another user placed. Otherwise the run says so in one
notice line and keeps no record: Hydra still needs a directory, so it gets a fresh private one
(``tempfile.mkdtemp``) that is removed when the run ends. On a machine with no writable temporary
directory at all (a read-only container without a tmpfs) the run keeps no record either, says so in one
notice line, and ``RunRecords`` turns Hydra's own files off (``.hydra/``, the job's log file).

Records next to the code are not source: the first directory a relative record path creates
(``outputs/``, or a sweep's ``multirun/``) gets a ``.gitignore`` of ``*``, as pytest's and ruff's caches do.
"""

from __future__ import annotations

import atexit
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from pyfly_hydra.runner.logs import runner_line, writes_json

RESOLVER = "writable_dir"
PRIVATE_MODE = 0o700
GITIGNORE = "# Created by pyfly-hydra: run records, not sources.\n*\n"
_chosen: dict[str, str] = {}  # each directory's answer, once per process (a scratch directory is new each time)
_unrecorded: set[str] = set()  # answers that keep no record: an existing directory Hydra must not write to


def _writable(path: Path) -> bool:
    """Whether ``path`` exists as a writable directory or could be created (its nearest parent is writable)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate.is_dir() and os.access(candidate, os.W_OK | os.X_OK)
    return False


def fallback_root() -> Path:
    """This user's directory below the system's temporary directory."""
    user = getattr(os, "getuid", lambda: "user")()
    return Path(tempfile.gettempdir()) / f"pyfly-hydra-{user}"


def fallback_dir(directory: str) -> Path:
    """Where a record that cannot go to ``directory`` goes instead."""
    return fallback_root() / directory.lstrip("/")


def _not_ours(path: Path, info: os.stat_result) -> str | None:
    """Why ``path`` (its lstat ``info``) is no directory of ours, or None."""
    if stat.S_ISLNK(info.st_mode):
        return f"{path} is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a directory"
    if info.st_uid != os.getuid():
        return f"{path} belongs to uid {info.st_uid}, not to this user (uid {os.getuid()})"
    return None


def _claim_root(root: Path) -> str | None:
    """Make ``root`` a 0700 directory of ours (created, or tightened if ours); why it cannot be, or None."""
    try:
        os.mkdir(root, PRIVATE_MODE)
    except FileExistsError:
        pass
    except OSError as exc:
        return f"{root} cannot be created ({exc.strerror})"
    info = os.lstat(root)
    reason = _not_ours(root, info)
    if reason is not None:
        return reason
    # Tightened through a descriptor of the very directory checked, never through a name swapped since.
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
            return f"{root} was replaced while it was checked"
        if stat.S_IMODE(opened.st_mode) != PRIVATE_MODE:
            os.fchmod(fd, PRIVATE_MODE)  # ours but open to others (or closed to us): ours alone from now on
    finally:
        os.close(fd)
    return None


def unsafe_reason(root: Path, target: Path) -> str | None:
    """Why a record cannot go to ``target`` below ``root``, or None once ``root`` is ours alone and every
    existing directory from it down to ``target`` is a real directory of ours (none placed by another user)."""
    if not hasattr(os, "getuid"):  # Windows: a per-user temporary directory, no uid to check
        return None
    reason = _claim_root(root)
    if reason is not None:
        return reason
    path = root
    for part in target.relative_to(root).parts:
        path = path / part
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return None  # the rest is created by Hydra, inside directories only we can write
        reason = _not_ours(path, info)
        if reason is not None:
            return reason
    return None


def _remove_scratch(path: str, owner: int) -> None:
    if os.getpid() == owner:  # not in a worker that inherited the hook
        shutil.rmtree(path, ignore_errors=True)


def _no_record(path: Path, *, json_lines: bool) -> str:
    """Nothing is writable: the nearest existing directory of ``path`` (Hydra needs one), keeping no record."""
    existing = next(p for p in (path, *path.parents) if p.exists())
    _notice(
        f"{path} is not writable and there is no writable temporary directory: this run keeps no record"
        " (set hydra.run.dir to a writable directory to keep one)",
        json_lines=json_lines,
    )
    _unrecorded.add(str(existing))
    return str(existing)


def _choose(directory: str, *, json_lines: bool) -> str:
    path = Path(directory)
    if _writable(path.absolute()):
        return directory
    try:
        fallback = fallback_dir(directory)
    except FileNotFoundError:  # tempfile found no writable temporary directory: a read-only machine
        return _no_record(path.absolute(), json_lines=json_lines)
    try:
        reason = unsafe_reason(fallback_root(), fallback)
    except OSError as exc:  # e.g. a temporary directory we may not search
        reason = f"{fallback_root()} cannot be checked ({exc.strerror})"
    if reason is None:
        _notice(
            f"{path.absolute()} is not writable; this run's record goes to {fallback} (set hydra.run.dir to choose)",
            json_lines=json_lines,
        )
        return str(fallback)
    scratch = tempfile.mkdtemp(prefix="pyfly-hydra-scratch-")
    atexit.register(_remove_scratch, scratch, os.getpid())
    _notice(
        f"{path.absolute()} is not writable and {reason}, so it is not used:"
        " this run keeps no record (set hydra.run.dir to choose where it goes)",
        json_lines=json_lines,
    )
    return scratch


def _notice(message: str, *, json_lines: bool) -> None:
    print(runner_line("notice", message, json_lines=json_lines), file=sys.stderr)


def writable_dir(directory: str, _root_: DictConfig) -> str:
    """``directory`` if a run can write there, else a private fallback under the temporary directory (noticed
    once, in the job's log format: logging is not set up yet), else a scratch directory removed at exit."""
    if directory not in _chosen:
        job_logging = OmegaConf.to_container(_root_.hydra.job_logging, resolve=False)  # its file: this directory
        _chosen[directory] = _choose(directory, json_lines=writes_json(job_logging))  # type: ignore[arg-type]
    return _chosen[directory]


def keeps_record(output_dir: str) -> bool:
    """Whether the run's output directory holds its record (not when nothing on this machine is writable)."""
    return output_dir not in _unrecorded


def ignore_for_git(directory: str) -> None:
    """Create the first missing directory of a relative record path (``outputs``) with a ``.gitignore`` of ``*``.

    An absolute path was chosen by the user (or is a fallback outside the project): left to them."""
    path = Path(directory)
    if path.is_absolute():
        return
    missing = next((p for p in (*reversed(path.parents[:-1]), path) if not p.exists()), None)
    if missing is None:
        return
    try:
        missing.mkdir()
    except FileExistsError:  # another run made it meanwhile, with its own .gitignore
        return
    (missing / ".gitignore").write_text(GITIGNORE)


def _without_record_files(hydra: DictConfig) -> None:
    """Hydra's settings for a run that keeps no record: no ``.hydra/`` copies, no handler writing a log file."""
    with read_write(hydra), open_dict(hydra):
        hydra.output_subdir = None
        logging = hydra.job_logging
        files = [name for name, handler in (logging.get("handlers") or {}).items() if "filename" in handler]
        for name in files:
            del logging.handlers[name]
        for owner in [logging.get("root"), *(logging.get("loggers") or {}).values()]:
            if owner is not None and owner.get("handlers"):
                owner.handlers = [name for name in owner.handlers if name not in files]


class RunRecords(Callback):
    """Before Hydra makes a run's directory: a new records root ignores itself for git; no writable
    directory anywhere means no record files at all (``conf/config.yaml`` registers it)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        directory = str(OmegaConf.select(config, "hydra.run.dir"))
        if keeps_record(directory):
            ignore_for_git(directory)
        else:
            _without_record_files(config.hydra)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        ignore_for_git(str(OmegaConf.select(config, "hydra.sweep.dir")))


def register_run_records_resolver() -> None:
    """Register ``writable_dir`` with OmegaConf (idempotent)."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, writable_dir)  # once per directory: _chosen
