"""A FastAPI app that counts what it answered, by kind, and writes the counts to $COUNTS_FILE on shutdown."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException

counts: Counter[str] = Counter()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    target = os.environ.get("COUNTS_FILE")
    if target:
        Path(target).write_text(json.dumps(counts))


app = FastAPI(lifespan=lifespan)


@app.get("/items")
async def search(q: str = "") -> dict[str, Any]:
    counts["search"] += 1
    return {"q": q, "items": [q] * 3}


@app.post("/orders")
async def order(body: dict[str, Any]) -> dict[str, Any]:
    counts["order"] += 1
    return {"accepted": len(body.get("lines", []))}


@app.get("/products/{product_id}")
async def product(product_id: int) -> dict[str, Any]:
    counts["missing"] += 1
    raise HTTPException(status_code=404, detail=f"no product {product_id}")
