"""A Flask (WSGI) app: GET, a POST that hashes its body, a streamed response and a slow request."""

from __future__ import annotations

import hashlib
import time

from flask import Flask, Response, request, url_for

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return "flask says hello"


@app.get("/health")
def health() -> str:
    return "ok"


@app.get("/client")
def client() -> dict[str, object]:
    return {"client": request.remote_addr, "scheme": request.scheme}


@app.get("/where")
def where() -> dict[str, object]:
    """Where the app thinks it is: mounted at SCRIPT_NAME, its own path, the URL it builds."""
    return {"script_root": request.script_root, "path": request.path, "url": url_for("where", _external=True)}


@app.post("/upload")
def upload() -> dict[str, object]:
    body = request.get_data()
    return {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}


@app.post("/upload-raw")
def upload_raw() -> dict[str, object]:
    """The body as a plain WSGI app reads it: wsgi.input.read(), no size."""
    return {"size": len(request.environ["wsgi.input"].read())}


@app.get("/stream")
def stream() -> Response:
    def chunks() -> object:
        for i in range(5):
            yield f"chunk {i}\n"

    return Response(chunks(), mimetype="text/plain")


@app.get("/sleep")
def sleep() -> str:
    seconds = float(request.args.get("seconds", "1"))
    time.sleep(seconds)
    return f"slept {seconds}"


def create_app() -> Flask:
    """A factory, as `app_factory=true` expects."""
    return app
