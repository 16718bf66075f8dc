"""A bound on the long-polls and event streams one ``strategyq serve`` process holds at once.

Each follower holds a thread of the waiting pool (and a stream also a Redis
connection for its subscription) while it waits. Without a bound, enough
followers — or clients that went away without closing — take every thread and
connection, and other clients' ``/wait`` and ``/events`` hang, even for
finished tasks. So: past :attr:`ApiConfig.max_followers` a new follower is
answered at once with 503 and ``Retry-After``; a follower whose client left is
noticed within :data:`WAIT_SLICE_S` and gives its place back.
"""

from __future__ import annotations

from typing import Any

import anyio
from fastapi.responses import StreamingResponse
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from strategyq.api.problems import Problem

WAIT_SLICE_S = 1.0
"""A long-poll blocks on Redis in slices this long and checks its client between them."""
RETRY_AFTER_S = 5


class Ticket:
    """One follower's place; :meth:`release` gives it back (twice is harmless)."""

    def __init__(self, followers: Followers) -> None:
        self._followers = followers
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._followers.active -= 1

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Followers:
    """Counts this process's followers (all on the event loop's thread, so no lock)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def take(self) -> Ticket:
        """A place for one more follower.

        Raises:
            Problem: 503 with ``Retry-After`` when :attr:`limit` are following already.
        """
        if self.active >= self.limit:
            raise Problem(
                503,
                f"this server is following {self.limit} tasks for other clients already "
                f"(STRATEGYQ_API_MAX_FOLLOWERS); retry in {RETRY_AFTER_S} s, or read "
                "GET /v1/tasks/{id} now",
                title="Too many followers",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        self.active += 1
        return Ticket(self)


async def client_left(request: Request) -> bool:
    return await request.is_disconnected()


class HeldStream(StreamingResponse):
    """A streaming response that gives its follower's place back however it ends.

    The stream's own ``finally`` does not run when the client leaves before the
    first chunk (the generator never started), so the place is released here.
    """

    def __init__(self, content: Any, ticket: Ticket, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._ticket = ticket

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._ticket.release()


def shielded() -> anyio.CancelScope:
    """A scope for clean-up that must finish even when the request was cancelled."""
    return anyio.CancelScope(shield=True)
