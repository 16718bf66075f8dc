"""What every route module shares, as FastAPI dependencies: the app's state and the caller.

A handler names what it needs in its signature — ``state: State`` for the
settings, limits and queue of this server, ``who: Principal = READ`` (or
``WRITE``) for a caller that must hold that scope — and FastAPI supplies it per
request. The state is the one :class:`~strategyq.api.state.ApiState` that
:func:`~strategyq.api.app.create_app` puts on ``app.state.api``, so the route
modules hold nothing of their own and register on module-level routers.
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from strategyq.api.auth import Principal, authorize
from strategyq.api.config import Scope
from strategyq.api.state import ApiState


def get_state(request: Request) -> ApiState:
    """The server's shared state (settings, config, Redis client, metrics)."""
    return cast(ApiState, request.app.state.api)


def reader(request: Request) -> Principal:
    """The caller, who must hold the read scope (any valid token, or none on loopback)."""
    return authorize(get_state(request).config, request, Scope.READ)


def writer(request: Request) -> Principal:
    """The caller, who must hold the write scope."""
    return authorize(get_state(request).config, request, Scope.WRITE)


State = Annotated[ApiState, Depends(get_state)]
READ = Depends(reader)
WRITE = Depends(writer)

__all__ = ["READ", "WRITE", "Principal", "State", "get_state", "reader", "writer"]
