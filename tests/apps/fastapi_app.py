"""A FastAPI app: a route with a trailing slash (FastAPI redirects to it), the URLs it builds, who it
thinks the client is, a websocket echo, and the docs."""

from __future__ import annotations

from fastapi import FastAPI, Request, WebSocket

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


@app.get("/whoami")
def whoami(request: Request) -> dict[str, str | None]:
    return {"client": request.client.host if request.client else None, "scheme": request.url.scheme}


@app.websocket("/ws")
async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(f"echo: {text}")
