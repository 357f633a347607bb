"""Configuration: the schema, its checks, the ``auto`` resolver and the one-line messages."""
