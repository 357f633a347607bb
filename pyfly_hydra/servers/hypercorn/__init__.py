"""hypercorn: its adapter and the patches to its workers (idle connections, request limit)."""
