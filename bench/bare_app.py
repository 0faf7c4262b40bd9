"""The floor of the web stack: a bare Quart-Trio app on Hypercorn's trio worker, with one
JSON POST route and one GET route, for the benchmarks to compare callboard with; and
the same POST route in plain ASGI (`/asgi/submit`, ahead of Quart), the floor of
callboard's own submit routes, which are plain ASGI too.

    .venv/bin/python bench/bare_app.py 127.0.0.1:8100
"""

from __future__ import annotations

import json
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


async def plain(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http" or scope["path"] != "/asgi/submit":
        await app(scope, receive, send)
        return
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    answer = {"jobId": "00000000-0000-0000-0000-000000000000", "status": "queued"}
    answer["in"] = json.loads(body)
    data = json.dumps(answer).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": data})


if __name__ == "__main__":
    config = Config()
    config.bind = [sys.argv[1]]
    trio.run(serve, plain, config)
