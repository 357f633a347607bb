"""Code that runs inside server workers: standard library only, imported by nothing of the parent side."""
