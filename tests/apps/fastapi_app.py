"""A FastAPI app: a route with a trailing slash (FastAPI redirects to it), a URL it builds, the docs."""

from __future__ import annotations

from fastapi import FastAPI, Request

app = FastAPI()


@app.get("/health")
def health() -> str:
    return "ok"


@app.get("/things/")
def things(request: Request) -> dict[str, str]:
    """Where the app thinks it is: its URL, the URL it builds for a route, and the scope's two paths."""
    return {
        "url": str(request.url),
        "built": str(request.url_for("things")),
        "path": request.scope["path"],
        "root_path": request.scope["root_path"],
    }
