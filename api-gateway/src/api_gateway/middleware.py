"""Request body size limit: 413 before anything reads a body larger than the limit.

A declared ``Content-Length`` over the limit is refused without reading; a streamed (chunked)
body is read up to the limit and refused as soon as it crosses it, else replayed to the app.
"""

from __future__ import annotations

from typing import ClassVar

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.errors import InvalidInput, Rejected


class PayloadTooLarge(Rejected):
    status_code: ClassVar[int] = 413
    code: ClassVar[str] = "payload_too_large"


class BodySizeLimit:
    """Refuses bodies larger than ``max_bytes`` on every path except the ``exempt`` prefixes."""

    def __init__(self, app: ASGIApp, max_bytes: int, exempt: tuple[str, ...] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length")
        if declared is not None:
            length = int(declared) if declared.isdigit() else -1
            if length < 0:
                await _reject(InvalidInput("invalid Content-Length header"), scope, receive, send)
                return
            if length > self.max_bytes:
                await _reject(self._too_large(), scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if b"chunked" not in headers.get(b"transfer-encoding", b"").lower():
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _reject(self._too_large(), scope, receive, send)
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"request body larger than {self.max_bytes} bytes")


async def _reject(error: Rejected, scope: Scope, receive: Receive, send: Send) -> None:
    await JSONResponse(error.to_body(), status_code=error.status_code, headers={"Connection": "close"})(
        scope, receive, send
    )
