"""A module whose import fails, for the bad-input tests."""

raise RuntimeError("boom")
