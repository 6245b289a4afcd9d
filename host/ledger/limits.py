"""Request body size limit, enforced before the application reads a byte of the body.

A declared Content-Length over the limit is refused at once (413, nothing read); a body sent
without one (chunked) is read only up to the limit, then refused. The application then gets the
body from memory, so it never sees more than the limit."""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import send_problem


class BodyLimit:
    def __init__(self, app: ASGIApp, *, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        declared = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await send_problem(send, 400, "Content-Length is not a number")
                    return
        too_large = f"request body over {limit} bytes"
        if declared is not None and declared > limit:
            await send_problem(send, 413, too_large, headers=[(b"connection", b"close")])
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away
                return
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                await send_problem(send, 413, too_large, headers=[(b"connection", b"close")])
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        whole = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()  # http.disconnect, when it comes

        await self.app(scope, replay, send)
