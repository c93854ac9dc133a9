"""How a panel answer looks: the templates, the security headers, redirects, error pages.

Every answer the panel sends is built here, so every one carries `HEADERS`: a
Content-Security-Policy without inline script and with ``frame-ancestors 'none'``,
``nosniff``, ``no-referrer`` and ``no-store``. Templates are autoescaped (Jinja2).
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response

__all__ = ["CSP", "HEADERS", "HERE", "Pages", "curl_lines"]

HERE = Path(__file__).parent

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def curl_lines(key_id: str, secret: str, service_url: str, api_url: str | None) -> str:
    """The documentation's curl + jq lines, filled in, ready to paste into a shell."""
    target = shlex.quote(api_url) if api_url else '"$API_URL"'
    return "\n".join(
        [
            f"KEY_ID={shlex.quote(key_id)}",
            f"SECRET={shlex.quote(secret)}",
            "TOKEN=$(curl -s -d grant_type=client_credentials "
            f'-u "$KEY_ID:$SECRET" {shlex.quote(service_url + "/login")} | jq -r .access_token)',
            f'curl -s -H "Authorization: Bearer $TOKEN" {target}',
        ]
    )


def _when(value: float | None) -> str:
    if value is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(value))


class Pages:
    """The panel's templates and the answers built from them, all with `HEADERS`."""

    def __init__(self) -> None:
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            auto_reload=False,
        )
        self.env.filters["when"] = _when

    def render(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status, headers=HEADERS)

    def redirect(self, path: str) -> Response:
        return RedirectResponse("/panel" + path, status_code=303, headers=HEADERS)

    def error_page(self, status: int, title: str, text: str) -> Response:
        return self.render("error.html", status=status, title=title, text=text)

    async def stylesheet(self, request: Request) -> Response:
        return FileResponse(
            HERE / "static" / "panel.css",
            media_type="text/css",
            headers={**HEADERS, "Cache-Control": "public, max-age=3600"},
        )
