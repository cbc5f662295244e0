"""The web console's files (webhook/lingo_webhook/console/, its script bundled from console/src by
`make console`), served under /console/ with a strict Content-Security-Policy: scripts and styles
from this origin only, no inline code, connections only to this origin and to LiveKit."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

CONSOLE_DIR = Path(__file__).with_name("console")
FILES = {"": ("index.html", "text/html"), "console.js": ("console.js", "text/javascript"),
         "console.css": ("console.css", "text/css")}


def content_security_policy(livekit_public_url: str) -> str:
    """LiveKit's origin in both schemes (the SDK signals over WebSocket and validates over HTTP);
    any WebSocket origin when the facade does not know LiveKit's public URL."""
    if livekit_public_url:
        parts = urlsplit(livekit_public_url)
        secure = parts.scheme in ("wss", "https")
        livekit = f"{'wss' if secure else 'ws'}://{parts.netloc} {'https' if secure else 'http'}://{parts.netloc}"
    else:
        livekit = "ws: wss:"
    return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"media-src 'self' blob: mediastream:; connect-src 'self' {livekit}; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def add_console_routes(app: web.Application, livekit_public_url: str) -> None:
    policy = content_security_policy(livekit_public_url)

    async def redirect(_: web.Request) -> web.Response:
        raise web.HTTPFound("/console/")

    async def serve(request: web.Request) -> web.Response:
        name, content_type = FILES.get(request.match_info["file"], (None, None))
        if name is None:
            raise web.HTTPNotFound()
        return web.Response(body=(CONSOLE_DIR / name).read_bytes(), content_type=content_type, headers={
            "Content-Security-Policy": policy, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"})

    app.router.add_get("/console", redirect)
    app.router.add_get("/console/{file:[a-z.]*}", serve)
