"""pyfly-hydra: run, benchmark and tune an ASGI app across servers and event loops, configured with Hydra."""

__version__ = "0.1.0"
