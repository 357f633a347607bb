"""Server adapters: one module per ASGI server, each implementing ApplicationServerPort."""

# A TLS handshake must finish within this: granian's fixed value, which the runner also sets on
# hypercorn (default 60 s) and uvicorn (no option; see uvicorn_loops). Kept here, in the package's
# light first module, because uvicorn's workers read it without importing the adapters.
TLS_HANDSHAKE_SECONDS = 10.0
