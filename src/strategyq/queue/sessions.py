"""Dashboard logins: a random session id in the browser's cookie, its grant in Redis.

The cookie never holds the API token itself, so a logout (or the session's
expiry) ends that browser's access for good while the token stays valid for its
other users; a token removed from the server's configuration ends its sessions
too (the caller checks the stored digest against the configured ones).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import orjson
import redis

from strategyq.queue import keys

SESSION_TTL_S = 12 * 3600


@dataclass(frozen=True)
class Session:
    """Who logged in: the token's name and scope, and the token's digest (hex)."""

    name: str
    scope: str
    token_digest: str
    created_at: float


def _key(session_id: str) -> str:
    return keys.session(hashlib.sha256(session_id.encode()).hexdigest())


def open_session(
    client: redis.Redis, name: str, scope: str, token_digest: str, ttl_s: int = SESSION_TTL_S
) -> str:
    """Store a new session; returns its id (for the cookie, shown nowhere else)."""
    session_id = secrets.token_urlsafe(32)
    grant = {"name": name, "scope": scope, "token_digest": token_digest, "created_at": time.time()}
    client.set(_key(session_id), orjson.dumps(grant), ex=ttl_s)
    return session_id


def read_session(client: redis.Redis, session_id: str) -> Session | None:
    """The session's grant, or None when it was closed, expired or never existed."""
    if not session_id or len(session_id) > 200:
        return None
    raw = client.get(_key(session_id))
    if raw is None:
        return None
    try:
        grant = orjson.loads(raw)
        return Session(
            name=str(grant["name"]),
            scope=str(grant["scope"]),
            token_digest=str(grant["token_digest"]),
            created_at=float(grant["created_at"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def close_session(client: redis.Redis, session_id: str) -> bool:
    """End the session (logout); True when it existed."""
    if not session_id or len(session_id) > 200:
        return False
    return bool(client.delete(_key(session_id)))
