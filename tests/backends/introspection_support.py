"""Real servers on 127.0.0.1 for the introspection tests, and the apps they protect.

* `ScriptedServer`: a small raw-socket HTTP/1.1 introspection endpoint whose behaviour
  can be switched at run time (answer, 500, garbage, wrong content type, slow, hang,
  drop a reused connection), counting connections and requests server-side, and that
  can be stopped and started again on the same port.
* `AuthlibServer`: a third-party RFC 7662 endpoint, Authlib's `IntrospectionEndpoint`
  in a Flask app served by werkzeug's threaded server.
* `Harness`: a real Starlette app behind `BearerGuardMiddleware` or a real Flask app
  behind `WSGIBearerGuard`, driven with httpx (the peer address is set per request).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
from flask import Flask, jsonify, request
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bearerguard import BearerGuardMiddleware, WSGIBearerGuard
from bearerguard.backends import IntrospectionBackend
from helpers import remember_secret

CLIENT_ID = "resource-server"


def new_token() -> str:
    """A fresh random token, registered so the suite checks it never reaches a log."""
    return remember_secret(secrets.token_urlsafe(32))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def refused_url() -> str:
    """A URL on a loopback port nobody listens on (connection refused)."""
    return f"http://127.0.0.1:{free_port()}/introspect"


Answer = Callable[[dict[str, str]], dict[str, Any]]


class ScriptedServer:
    """An introspection endpoint on raw sockets, behaviour set by `mode`.

    Modes: ``ok`` (answer with `answer(form)`), ``500``, ``garbage`` (malformed JSON),
    ``ctype`` (text/html), ``wrongtype`` (JSON with ``active: "yes"``), ``slow``
    (answer after `delay` s), ``hang`` (read the request, never answer),
    ``huge`` (a 200 kB answer), ``drop_reused`` (close a connection, unanswered, on
    its second request).
    """

    def __init__(self, secret: str, answer: Answer | None = None) -> None:
        self.secret = secret
        self.answer: Answer = answer or (lambda form: {"active": False})
        self.mode = "ok"
        self.delay = 0.0
        self.connections = 0
        self.requests = 0
        self.unauthorized = 0
        self.forms: list[dict[str, str]] = []
        self.active = 0
        self.max_active = 0
        self.port = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._conns: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/introspect"

    def start(self) -> ScriptedServer:
        lst = socket.socket()
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind(("127.0.0.1", self.port))
        lst.listen(256)
        lst.settimeout(0.05)
        self.port = lst.getsockname()[1]
        self._listener = lst
        self._stop = threading.Event()
        t = threading.Thread(target=self._accept_loop, args=(lst, self._stop), daemon=True)
        t.start()
        self._threads = [t]
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in list(self._threads):
            t.join(5)
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        for t in list(self._threads):
            t.join(5)
        self._threads = []
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _accept_loop(self, lst: socket.socket, stop: threading.Event) -> None:
        workers: list[threading.Thread] = []
        while not stop.is_set():
            try:
                conn, _ = lst.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            with self._lock:
                self.connections += 1
                self._conns.add(conn)
            w = threading.Thread(target=self._serve, args=(conn, stop), daemon=True)
            w.start()
            workers.append(w)
        lst.close()
        self._threads.extend(workers)

    def _read_request(self, f: Any) -> tuple[dict[str, str], bytes] | None:
        line = f.readline(65537)
        if not line:
            return None
        headers: dict[str, str] = {}
        while True:
            h = f.readline(65537)
            if h in (b"\r\n", b"\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = f.read(int(headers.get("content-length", "0")))
        return headers, body

    def _serve(self, conn: socket.socket, stop: threading.Event) -> None:
        conn.settimeout(30)
        f = conn.makefile("rb")
        n = 0
        try:
            while not stop.is_set():
                req = self._read_request(f)
                if req is None:
                    return
                headers, body = req
                n += 1
                with self._lock:
                    self.requests += 1
                    self.active += 1
                    self.max_active = max(self.max_active, self.active)
                try:
                    if not self._respond(conn, headers, body, n, stop):
                        return
                finally:
                    with self._lock:
                        self.active -= 1
        except OSError:
            return
        finally:
            with self._lock:
                self._conns.discard(conn)
            f.close()
            conn.close()

    def _respond(
        self, conn: socket.socket, headers: dict[str, str], body: bytes, n: int, stop: Any
    ) -> bool:
        mode = self.mode
        if mode == "hang":
            stop.wait(60)
            return False
        if mode == "drop_reused" and n >= 2:
            return False
        if mode == "slow" and stop.wait(self.delay):
            return False
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{self.secret}".encode()).decode()
        if not hmac.compare_digest(headers.get("authorization", ""), expected):
            with self._lock:
                self.unauthorized += 1
            return self._send(conn, 401, "application/json", b'{"error":"invalid_client"}')
        if mode == "500":
            return self._send(conn, 500, "application/json", b'{"error":"server_error"}')
        if mode in ("400", "413"):  # what a service says about one malformed/long token
            return self._send(conn, int(mode), "application/json", b'{"error":"invalid_request"}')
        if mode == "garbage":
            return self._send(conn, 200, "application/json", b'{"active": tru')
        if mode == "ctype":
            return self._send(conn, 200, "text/html", b"<html>hello</html>")
        if mode == "huge":
            return self._send(conn, 200, "application/json", b'{"x": "' + b"a" * 200_000 + b'"}')
        if mode == "wrongtype":
            return self._send(conn, 200, "application/json", b'{"active": "yes"}')
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        with self._lock:
            self.forms.append({k: v for k, v in form.items() if k != "token"})
        payload = json.dumps(self.answer(form)).encode()
        return self._send(conn, 200, "application/json", payload)

    @staticmethod
    def _send(conn: socket.socket, status: int, ctype: str, body: bytes) -> bool:
        head = (
            f"HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n\r\n"
        ).encode()
        conn.sendall(head + body)
        return True


class Tokens:
    """A token table for test servers: token → claims (a token is active while listed)."""

    def __init__(self) -> None:
        self.table: dict[str, dict[str, Any]] = {}

    def add(self, token: str, **claims: Any) -> str:
        self.table[token] = claims
        return token

    def answer(self, form: dict[str, str]) -> dict[str, Any]:
        claims = self.table.get(form.get("token", ""))
        if claims is None:
            return {"active": False}
        return {"active": True, **claims}


class AuthlibServer:
    """Authlib's RFC 7662 `IntrospectionEndpoint` in a Flask app, on werkzeug's server."""

    def __init__(self, secret: str) -> None:
        from authlib.integrations.flask_oauth2 import AuthorizationServer
        from authlib.oauth2.rfc7662 import IntrospectionEndpoint
        from werkzeug.serving import make_server

        self.tokens: dict[str, AuthlibToken] = {}
        self.calls = 0
        clients = {CLIENT_ID: AuthlibClient(CLIENT_ID, secret)}
        outer = self

        class Endpoint(IntrospectionEndpoint):  # type: ignore[misc]
            def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
                outer.calls += 1
                return outer.tokens.get(token_string)

            def check_permission(self, token: Any, client: Any, request: Any) -> bool:
                return bool(client.client_id == CLIENT_ID)

            def introspect_token(self, token: Any) -> dict[str, Any]:
                return token.payload()

        app = Flask("authlib-introspection")
        server = AuthorizationServer(app, query_client=clients.get, save_token=lambda t, r: None)
        server.register_endpoint(Endpoint)

        @app.post("/oauth/introspect")
        def introspect() -> Any:
            return server.create_endpoint_response("introspection")

        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}/oauth/introspect"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def add(self, token: str, **kw: Any) -> None:
        self.tokens[token] = AuthlibToken(**kw)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class AuthlibClient:
    """Authlib `ClientMixin` duck type: a confidential client using HTTP Basic."""

    def __init__(self, client_id: str, secret: str) -> None:
        self.client_id = client_id
        self._secret = secret

    def get_client_id(self) -> str:
        return self.client_id

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(client_secret.encode(), self._secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "client_secret_basic"


class AuthlibToken:
    """Authlib `TokenMixin` duck type."""

    def __init__(
        self,
        client_id: str,
        scope: str,
        expires_in: int = 300,
        ip: str | None = None,
        revoked: bool = False,
    ) -> None:
        self.client_id = client_id
        self.scope = scope
        self.issued_at = int(time.time())
        self.expires_in = expires_in
        self.ip = ip
        self.revoked = revoked

    def is_expired(self) -> bool:
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.revoked

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "active": True,
            "client_id": self.client_id,
            "token_type": "Bearer",
            "scope": self.scope,
            "exp": self.issued_at + self.expires_in,
            "iat": self.issued_at,
        }
        if self.ip is not None:
            out["ip"] = self.ip
        return out


# -- the protected apps -----------------------------------------------------------------


def starlette_app(lifespan: Any = None) -> Starlette:
    async def health(req: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def whoami(req: Request) -> JSONResponse:
        ident = req.scope["bearerguard"]
        return JSONResponse({"key_id": ident.key_id, "apis": sorted(ident.apis)})

    async def zones(req: Request) -> JSONResponse:
        return JSONResponse({"zones": ["example.com"]})

    return Starlette(
        routes=[Route("/health", health), Route("/whoami", whoami), Route("/dns/zones", zones)],
        lifespan=lifespan,
    )


def flask_app() -> Flask:
    app = Flask("protected")

    @app.get("/health")
    def health() -> Any:
        return jsonify(status="ok")

    @app.get("/whoami")
    def whoami() -> Any:
        ident = request.environ["bearerguard.identity"]
        return jsonify(key_id=ident.key_id, apis=sorted(ident.apis))

    @app.get("/dns/zones")
    def zones() -> Any:
        return jsonify(zones=["example.com"])

    return app


class Harness:
    """A real app behind one adapter, with `backend`; `get` sends from address `ip`.

    Routes under /dns need API ``dns`` (a second guard layer would be the integrations'
    job; here the middleware's `api` option is set per harness).
    """

    def __init__(self, kind: str, backend: IntrospectionBackend, **options: Any) -> None:
        self.kind = kind
        self.backend = backend
        self.loop: asyncio.AbstractEventLoop | None = None
        options.setdefault("public_paths", ["/health"])
        if kind == "asgi":
            self.mw: Any = BearerGuardMiddleware(starlette_app(), backend=backend, **options)
            self.loop = asyncio.new_event_loop()
        else:
            app = flask_app()
            self.mw = WSGIBearerGuard(app.wsgi_app, backend=backend, **options)
            app.wsgi_app = self.mw  # type: ignore[method-assign]
            self.flask = app

    def run(self, coro: Any) -> Any:
        assert self.loop is not None
        return self.loop.run_until_complete(coro)

    def get(self, path: str, token: str | None = None, *, ip: str = "127.0.0.1") -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        if self.kind == "asgi":
            return self.run(self.aget(path, headers, ip))  # type: ignore[no-any-return]
        transport = httpx.WSGITransport(app=self.flask, remote_addr=ip)
        with httpx.Client(transport=transport, base_url="http://testserver") as client:
            return client.get(path, headers=headers)

    async def aget(self, path: str, headers: dict[str, str], ip: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=self.mw, client=(ip, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return await c.get(path, headers=headers)

    def settle(self, seconds: float = 0.05) -> None:
        """Give background refreshes time to finish."""
        if self.loop is not None:
            self.run(asyncio.sleep(seconds))
        else:
            time.sleep(seconds)

    def close(self) -> None:
        self.mw.close()
        if self.loop is not None:
            self.run(asyncio.sleep(0))
            self.run(self.backend.aclose())
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()
        else:
            self.backend.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


class ServedApp:
    """A protected app served for real on 127.0.0.1: Starlette on uvicorn (a thread),
    or Flask on werkzeug's threaded server. `get` connects from a chosen local address
    (127.0.0.x), so the app sees that address as the peer, as in production.

    The backend's async client lives in uvicorn's event loop and is closed by the app's
    lifespan shutdown there.
    """

    def __init__(self, kind: str, backend: IntrospectionBackend, **options: Any) -> None:
        import uvicorn
        from werkzeug.serving import make_server

        self.kind = kind
        self.backend = backend
        options.setdefault("public_paths", ["/health"])
        self._thread: threading.Thread
        if kind == "asgi":
            inner = starlette_app(self._lifespan)
            self.mw: Any = BearerGuardMiddleware(inner, backend=backend, **options)
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
            config = uvicorn.Config(
                self.mw, log_level="warning", lifespan="on", proxy_headers=False
            )
            self._uvicorn = uvicorn.Server(config)
            self._sock = sock
            self._thread = threading.Thread(
                target=self._uvicorn.run, kwargs={"sockets": [sock]}, daemon=True
            )
            self._thread.start()
            if not wait_until(lambda: self._uvicorn.started, timeout=20):
                raise RuntimeError("uvicorn did not start")
        else:
            app = flask_app()
            self.mw = WSGIBearerGuard(app.wsgi_app, backend=backend, **options)
            app.wsgi_app = self.mw  # type: ignore[method-assign]
            self._werkzeug = make_server("127.0.0.1", 0, app, threaded=True)
            self.port = self._werkzeug.server_port
            self._thread = threading.Thread(target=self._werkzeug.serve_forever, daemon=True)
            self._thread.start()
        self._clients: dict[str, httpx.Client] = {}

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Any) -> Any:
        yield
        await self.backend.aclose()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, ip: str = "127.0.0.1") -> httpx.Client:
        c = self._clients.get(ip)
        if c is None:
            transport = httpx.HTTPTransport(local_address=ip)
            c = httpx.Client(transport=transport, base_url=self.base_url, timeout=30)
            self._clients[ip] = c
        return c

    def get(self, path: str, token: str | None = None, *, ip: str = "127.0.0.1") -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.client(ip).get(path, headers=headers)

    def close(self) -> None:
        for c in self._clients.values():
            c.close()
        if self.kind == "asgi":
            self._uvicorn.should_exit = True
            self._thread.join(30)
            self._sock.close()
        else:
            self._werkzeug.shutdown()
            self._werkzeug.server_close()
            self._thread.join(30)
            self.backend.close()
        self.mw.close()
