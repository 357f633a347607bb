"""`python -m pyfly_hydra`: see pyfly_hydra.cli."""

from pyfly_hydra.cli import main

if __name__ == "__main__":
    main()
