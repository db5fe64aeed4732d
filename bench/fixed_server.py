"""A server that answers every request with one fixed file, for bench/cache.py.

    python bench/fixed_server.py PORT FILE upstream   # POST /v1/images/*: the file as the answer
    python bench/fixed_server.py PORT FILE static     # GET /file: the file, by aiohttp's
                                                      # FileResponse (sendfile)

Both run on asyncio's own loop, which has sendfile (uvloop has not): the static server is the
strongest plain-Python file server to compare the gateway's cache hits with.
"""

from __future__ import annotations

import sys
from pathlib import Path

from aiohttp import web


def main() -> None:
    port, path, mode = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    app = web.Application(client_max_size=64 * 1024 * 1024)
    if mode == "static":

        async def static(request: web.Request) -> web.FileResponse:
            return web.FileResponse(path, headers={"Content-Type": "application/json"})

        app.router.add_get("/file", static)
    else:
        body = path.read_bytes()

        async def upstream(request: web.Request) -> web.Response:
            await request.read()
            return web.Response(body=body, content_type="application/json")

        app.router.add_post("/v1/images/{tail:.+}", upstream)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
