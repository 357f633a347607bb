"""The command line: a thin ``@hydra.main`` that dispatches on ``mode`` and reports errors in one line."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from pyfly_hydra.bench.rounds import register_rounds_resolver
from pyfly_hydra.config.environment import applied, apply_environment, check_env_file
from pyfly_hydra.config.known_keys import USAGE_EXIT_CODE, check_known_keys, key_named
from pyfly_hydra.config.messages import describe
from pyfly_hydra.config.resolvers import register_resolvers
from pyfly_hydra.config.schema import register_schema
from pyfly_hydra.errors import USER_FULL_ERROR_ENV, ConfigError
from pyfly_hydra.runner.records import keeps_record, register_run_records_resolver
from pyfly_hydra.runner.startup import end_of_startup, skip_mode_probe

# Registered at import, so `--cfg job --resolve`, multirun and every launched job see them.
register_schema()
register_resolvers()
register_run_records_resolver()
register_rounds_resolver()
skip_mode_probe()

PACKAGE_DIR = Path(__file__).resolve().parent
# Inside a wheel the config tree ships as pyfly_hydra/conf; in a checkout it is the top-level conf/.
CONFIG_DIR = PACKAGE_DIR / "conf" if (PACKAGE_DIR / "conf").is_dir() else PACKAGE_DIR.parent / "conf"
FULL_ERROR_ENV = "HYDRA_FULL_ERROR"
BROKEN_PIPE_EXIT_CODE = 141  # 128 + SIGPIPE: what the shell reports for a tool whose reader went away


def _info(cfg: DictConfig, output_dir: Path | None) -> int:
    from pyfly_hydra.config.own_servers import own_server_targets
    from pyfly_hydra.info import render_info

    print(render_info(own_servers=own_server_targets(), from_environment=applied()))
    return 0


def _serve(cfg: DictConfig, output_dir: Path | None) -> int:
    from pyfly_hydra.runner.serve import serve

    code = serve(cfg, output_dir=output_dir, from_environment=applied())
    if code:
        sys.exit(code)
    return code


def _bench(cfg: DictConfig, output_dir: Path | None) -> float:
    from pyfly_hydra.bench.task import run_bench

    if output_dir is None:
        raise ConfigError(
            "hydra.run.dir", HydraConfig.get().run.dir, "mode=bench writes its results there, and it is not writable"
        )
    return run_bench(cfg, output_dir)


MODES: dict[str, Callable[[DictConfig, Path | None], float]] = {"serve": _serve, "info": _info, "bench": _bench}


def run_mode(cfg: DictConfig, output_dir: Path | None) -> float:
    """Run the task named by ``cfg.mode`` and return what it returns (bench: its metric, for sweepers);
    ``output_dir`` None: the run keeps no record."""
    end_of_startup()
    task = MODES.get(cfg.mode)
    if task is None:
        raise ConfigError("mode", cfg.mode, f"must be one of {', '.join(MODES)}")
    check_known_keys(cfg)
    check_env_file(cfg, HydraConfig.get().overrides.task)
    return task(cfg, output_dir)


def _exit_with(error: Exception) -> NoReturn:
    from pyfly_hydra.runner.logs import job_logging, runner_line, writes_json

    message, code = describe(error, from_environment=applied())
    print(runner_line("error", message, json_lines=writes_json(job_logging())), file=sys.stderr)
    sys.exit(code)


def version_line() -> str:
    """``--version``: pyfly-hydra's, each installed server's and Hydra's versions, on one line."""
    from importlib.metadata import version

    from pyfly_hydra import __version__
    from pyfly_hydra.config.resolvers import SERVER_PRIORITY, is_installed

    servers = [f"{name} {version(name)}" for name in SERVER_PRIORITY if is_installed(name)]
    return f"pyfly-hydra {__version__} ({', '.join(servers) or 'no server installed'}; Hydra {hydra.__version__})"


def _unknown_flag(arguments: list[str]) -> str | None:
    """One line for a ``--flag`` Hydra's parser does not know (``--workers 2``): settings are key=value."""
    from hydra._internal.utils import get_args_parser

    _, unknown = get_args_parser().parse_known_args(arguments)
    flag = next((argument for argument in unknown if argument.startswith("-")), None)
    if flag is None:
        return None
    name, equals, value = flag.lstrip("-").replace("-", "_").partition("=")
    following = arguments[arguments.index(flag) + 1 : arguments.index(flag) + 2]
    if not equals and following and "=" not in following[0] and not following[0].startswith("-"):
        value = following[0]
    key = key_named(name) or name
    example = f"{key}={value}" if value else "server.workers=2"
    return f"{flag}: not an option; settings are key=value overrides, e.g. {example} (--help lists them)"


def _quiet_broken_pipe() -> NoReturn:
    """The reader of our output went away (``--help | head -1``): stop without a word, as Unix tools do."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush at exit must not fail again
    sys.exit(BROKEN_PIPE_EXIT_CODE)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def _hydra_main(cfg: DictConfig) -> float:
    try:
        output_dir = HydraConfig.get().runtime.output_dir
        result = run_mode(cfg, Path(output_dir) if keeps_record(output_dir) else None)
    except Exception as error:  # reported here, before Hydra logs "Error executing job"
        if os.environ.get(USER_FULL_ERROR_ENV) == "1":
            raise
        _exit_with(error)
    return result


def main() -> None:
    """Entry point of ``python -m pyfly_hydra`` and the ``pyfly-hydra`` script."""
    os.environ.setdefault(USER_FULL_ERROR_ENV, os.environ.get(FULL_ERROR_ENV, "0"))
    os.environ[FULL_ERROR_ENV] = "1"  # let errors reach us instead of Hydra's multi-line report
    arguments = sys.argv[1:]
    try:
        if "--version" in arguments:
            print(version_line())
            return
        flag = _unknown_flag(arguments)
        if flag is not None:
            print(f"pyfly-hydra: error: {flag}", file=sys.stderr)
            sys.exit(USAGE_EXIT_CODE)
        # PYFLY_HYDRA_<KEY>, WEB_CONCURRENCY, PORT: overrides before the command line's, which win.
        sys.argv = [sys.argv[0], *apply_environment(arguments, os.environ, config_dir=CONFIG_DIR)]
        _hydra_main()
    except BrokenPipeError:
        _quiet_broken_pipe()
    except Exception as error:
        if os.environ.get(USER_FULL_ERROR_ENV) == "1":
            raise
        _exit_with(error)
