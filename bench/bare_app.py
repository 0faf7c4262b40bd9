"""The floor of the web stack: a bare Quart-Trio app on Hypercorn's trio worker, with one
JSON POST route and one GET route, for the benchmarks to compare callboard with.

    .venv/bin/python bench/bare_app.py 127.0.0.1:8100
"""

from __future__ import annotations

import sys

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import request
from quart_trio import QuartTrio

app = QuartTrio("bare")


@app.post("/submit")
async def submit():
    data = await request.get_json()
    return {"jobId": "00000000-0000-0000-0000-000000000000", "status": "queued", "in": data}, 202


@app.get("/healthz")
async def healthz():
    return {"status": "ok"}


if __name__ == "__main__":
    config = Config()
    config.bind = [sys.argv[1]]
    trio.run(serve, app, config)
