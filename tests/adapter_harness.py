"""Run the same request through both adapters: a real Starlette app and a real Flask app.

A plain module (not a conftest), so test files can import it by a unique name."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from flask import Flask, jsonify, request
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from bearerguard import BearerGuardMiddleware, WSGIBearerGuard


class AppCalls:
    """Counts how often the protected app itself ran."""

    def __init__(self) -> None:
        self.count = 0


def starlette_app(calls: AppCalls) -> Starlette:
    async def health(req: Request) -> JSONResponse:
        calls.count += 1
        return JSONResponse({"status": "ok"})

    async def whoami(req: Request) -> JSONResponse:
        calls.count += 1
        ident = req.scope["bearerguard"]
        return JSONResponse(
            {
                "key_id": ident.key_id,
                "apis": sorted(ident.apis),
                "client_ip": ident.client_ip,
                "user": req.user.display_name,
                "scopes": req.auth.scopes,
            }
        )

    async def stream(req: Request) -> StreamingResponse:
        calls.count += 1

        async def chunks() -> Any:
            for i in range(3):
                yield f"chunk{i};".encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    return Starlette(
        routes=[Route("/health", health), Route("/whoami", whoami), Route("/stream", stream)]
    )


def flask_app(calls: AppCalls) -> Flask:
    app = Flask("contract")

    @app.get("/health")
    def health() -> Any:
        calls.count += 1
        return jsonify(status="ok")

    @app.get("/whoami")
    def whoami() -> Any:
        calls.count += 1
        ident = request.environ["bearerguard.identity"]
        return jsonify(
            key_id=ident.key_id,
            apis=sorted(ident.apis),
            client_ip=ident.client_ip,
            user=ident.display_name,
            scopes=ident.scopes,
        )

    @app.get("/stream")
    def stream() -> Any:
        calls.count += 1
        return app.response_class((f"chunk{i};" for i in range(3)), mimetype="text/plain")

    return app


class Harness:
    """One adapter around one real app; `get` sends a request from a chosen address."""

    def __init__(self, kind: str, backend: object, **options: Any) -> None:
        self.kind = kind
        self.calls = AppCalls()
        self._loop: asyncio.AbstractEventLoop | None = None
        if kind == "asgi":
            self.middleware: Any = BearerGuardMiddleware(
                starlette_app(self.calls), backend=backend, **options
            )
            self._loop = asyncio.new_event_loop()
            self.app: Any = self.middleware
        else:
            app = flask_app(self.calls)
            self.middleware = WSGIBearerGuard(app.wsgi_app, backend=backend, **options)
            app.wsgi_app = self.middleware  # type: ignore[method-assign]
            self.app = app

    @property
    def guard(self) -> Any:
        return self.middleware.guard

    def run(self, coro: Any) -> Any:
        assert self._loop is not None
        return self._loop.run_until_complete(coro)

    def get(
        self,
        path: str,
        headers: dict[str, str] | list[tuple[str, str]] | None = None,
        *,
        ip: str = "127.0.0.1",
    ) -> httpx.Response:
        if self.kind == "asgi":
            return self.run(self._aget(path, headers, ip))
        transport = httpx.WSGITransport(app=self.app, remote_addr=ip)
        with httpx.Client(transport=transport, base_url="http://testserver") as client:
            return client.get(path, headers=headers)

    async def _aget(self, path: str, headers: Any, ip: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=self.app, client=(ip, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return await c.get(path, headers=headers)

    def settle(self) -> None:
        """Let background refreshes finish (ASGI tasks, WSGI pool threads)."""
        import time

        deadline = time.monotonic() + 5
        flights = self.middleware._caller._flights
        while time.monotonic() < deadline:
            if self._loop is not None:
                self.run(asyncio.sleep(0.001))
            else:
                time.sleep(0.001)
            if not flights:
                return
        raise AssertionError("background refresh did not finish")

    def close(self) -> None:
        self.middleware.close()
        if self._loop is not None:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()
