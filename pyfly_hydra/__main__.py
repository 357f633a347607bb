"""``python -m pyfly_hydra`` and the ``pyfly-hydra`` script: the command line (``pyfly_hydra.cli``), started with the
garbage collector paused until the task runs (``pyfly_hydra.runner.startup.end_of_startup``)."""

import gc


def main() -> None:
    gc.disable()  # before Hydra is imported: its import and composition are most of the collector's start-up work
    from pyfly_hydra.cli import main as command_line

    command_line()


if __name__ == "__main__":
    main()
