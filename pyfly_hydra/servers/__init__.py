"""Server adapters: one package per built-in server (``<name>/adapter.py`` implementing ApplicationServerPort,
with its patches), the shared base and key tables (``base``, ``keys``), and the hook checks (``hooks``)."""

# A TLS handshake must finish within this: granian's fixed value, which the runner also sets on
# hypercorn (default 60 s) and uvicorn (no option; see uvicorn.loops). Kept here, in the package's
# light first module, because uvicorn's workers read it without importing the adapters.
TLS_HANDSHAKE_SECONDS = 10.0
