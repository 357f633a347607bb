"""granian: its adapter, its server class with pyfly-hydra's hooks, and what runs in its workers."""
