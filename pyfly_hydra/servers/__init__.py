"""Server adapters: one module per ASGI server, each implementing ApplicationServerPort."""
