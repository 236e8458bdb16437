"""The headers every response carries: a Content-Security-Policy with no inline script or style,
no framing, no MIME sniffing, no referrer (sign-in links carry a token in their query)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# img-src: an app whose maps show tiles adds its tile server's origin (maps.image_sources), for
# that app alone: two apps in one process keep their own (docs/WEB.md "Maps")
IMG_SOURCES: tuple[str, ...] = ("'self'", "data:")


def content_security_policy(img_sources: Sequence[str] = IMG_SOURCES) -> str:
    return "; ".join([
        "default-src 'none'", "script-src 'self'", "style-src 'self'",
        f"img-src {' '.join(img_sources)}", "connect-src 'self'", "font-src 'self'",
        "form-action 'self'", "frame-ancestors 'none'", "base-uri 'none'",
    ])


def headers(img_sources: Sequence[str] = IMG_SOURCES) -> list[tuple[bytes, bytes]]:
    return [(b"content-security-policy",
             content_security_policy(img_sources).encode("ascii")),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
            (b"cross-origin-opener-policy", b"same-origin")]


class SecurityHeaders:
    """ASGI middleware: the headers above on every HTTP response that does not set its own;
    `img_sources` this app's (its tile server's origin added, maps.image_sources)."""

    def __init__(self, app: Any, img_sources: Sequence[str] = IMG_SOURCES) -> None:
        self.app = app
        self.headers = headers(img_sources)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in self.headers if n not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)
