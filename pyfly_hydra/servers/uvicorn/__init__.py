"""uvicorn: its adapter, its HTTP protocol and TLS loops, and the worker pyfly-hydra's supervisor runs."""
