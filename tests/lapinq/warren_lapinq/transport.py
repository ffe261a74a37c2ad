"""`httpx.ASGITransport(app=app)` for an app that is a running `warren dev`.

lapinq's tests talk to their Starlette app through
`httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")`.
When `app` is a warren app (what the stand-in `create_app` returns), the
transport sends each request over real HTTP to that warren instead: the same
method, path, query, headers and body; only the address changes (and with it
the `Host` header, as with any client pointed at warren). Any other app gets
httpx's own ASGI transport.
"""

from __future__ import annotations

from typing import Any

import httpx

from .warren import Exchange, current

_OriginalASGITransport = httpx.ASGITransport


async def send_logged(inner: httpx.AsyncBaseTransport, request: httpx.Request, via: str) -> httpx.Response:
    """Send `request` with `inner`, record the exchange in the running test."""
    body = request.content if isinstance(request.stream, httpx.ByteStream) else await request.aread()
    exchange = Exchange(via, request.method, str(request.url), body, None, b"")
    try:
        ctx = current()
    except RuntimeError:
        ctx = None
    if ctx is not None:
        ctx.exchanges.append(exchange)
    try:
        response = await inner.handle_async_request(request)
    except Exception as e:
        exchange.error = f"{type(e).__name__}: {e}"
        raise
    raw = b"".join([chunk async for chunk in response.aiter_raw()])
    await response.aclose()
    exchange.status = response.status_code
    exchange.response_body = httpx.Response(response.status_code, headers=response.headers, content=raw).content
    return httpx.Response(
        status_code=response.status_code,
        headers=response.headers,
        content=raw,
        request=request,
        extensions=response.extensions,
    )


class WarrenTransport(httpx.AsyncBaseTransport):
    def __init__(self, app: Any) -> None:
        self.app = app
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        inst = self.app.instance
        request.url = request.url.copy_with(scheme="http", host=inst.host, port=inst.port)
        request.headers["Host"] = inst.addr
        return await send_logged(self._inner, request, "test client")

    async def aclose(self) -> None:
        await self._inner.aclose()


class ASGITransport(_OriginalASGITransport):
    """Stands in for httpx.ASGITransport: warren apps go over HTTP."""

    def __new__(cls, app: Any, *args: Any, **kwargs: Any) -> Any:
        from .server import WarrenApp

        if isinstance(app, WarrenApp):
            return WarrenTransport(app)
        return _OriginalASGITransport(app, *args, **kwargs)


def install() -> None:
    httpx.ASGITransport = ASGITransport  # type: ignore[misc]
