"""What ``strategyq serve`` needs beyond the worker settings: address, tokens, limits.

Binding a loopback address needs no token (only this machine can connect);
binding anything else needs ``STRATEGYQ_API_TOKENS``. Tokens are stored as
SHA-256 digests, never in clear, so the environment of the API process does
not hold a usable credential.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from strategyq.errors import ConfigError
from strategyq.settings import read_env, setting

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DIGEST_PREFIX = "sha256:"


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"


@dataclass(frozen=True)
class ApiToken:
    """One configured token: a name (for logs), a scope and the SHA-256 digest of the secret."""

    name: str
    scope: Scope
    digest: bytes

    def allows(self, wanted: Scope) -> bool:
        return self.scope is Scope.WRITE or wanted is Scope.READ


def hash_token(secret: str) -> str:
    """The ``sha256:<hex>`` form of a token secret, as ``STRATEGYQ_API_TOKENS`` stores it."""
    return DIGEST_PREFIX + hashlib.sha256(secret.encode()).hexdigest()


def new_token(name: str, scope: Scope) -> tuple[str, str]:
    """A fresh random secret and its ``name:scope:sha256:<hex>`` entry for the environment."""
    secret = "sq_" + secrets.token_urlsafe(32)
    return secret, f"{name}:{scope.value}:{hash_token(secret)}"


def parse_tokens(text: str) -> tuple[ApiToken, ...]:
    """``name:scope:sha256:<hex>`` entries separated by commas or whitespace.

    Raises:
        ConfigError: an entry is malformed (the message says which and how to fix it).
    """
    tokens: list[ApiToken] = []
    for entry in text.replace(",", " ").split():
        parts = entry.split(":")
        if len(parts) != 4 or parts[2] != DIGEST_PREFIX.rstrip(":"):
            raise ConfigError(
                f"STRATEGYQ_API_TOKENS entry {entry[:40]!r} is not name:scope:sha256:<hex>; "
                "make one with `strategyq serve --new-token NAME --scope write`"
            )
        name, scope_text, _, hexdigest = parts
        try:
            scope = Scope(scope_text)
        except ValueError:
            raise ConfigError(
                f"STRATEGYQ_API_TOKENS entry {name!r}: scope must be 'read' or 'write', "
                f"got {scope_text!r}"
            ) from None
        try:
            digest = bytes.fromhex(hexdigest)
        except ValueError:
            digest = b""
        if len(digest) != 32 or not name:
            raise ConfigError(
                f"STRATEGYQ_API_TOKENS entry {name!r}: the digest must be 64 hex characters "
                "(the SHA-256 of the secret); make one with `strategyq serve --new-token NAME`"
            )
        tokens.append(ApiToken(name=name, scope=scope, digest=digest))
    return tuple(tokens)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ApiConfig:
    """The API's own settings (the Redis ones come from :class:`strategyq.settings.Settings`).

    Its environment variables are rows of the settings table (:func:`setting`).
    """

    host: str = setting(
        DEFAULT_HOST,
        "STRATEGYQ_API_HOST",
        "`strategyq serve`'s address (`--host` wins; any but loopback needs tokens)",
    )
    port: int = setting(
        DEFAULT_PORT, "STRATEGYQ_API_PORT", "`strategyq serve`'s port (`--port` wins)", minimum=1
    )
    tokens: tuple[ApiToken, ...] = setting(
        (),
        "STRATEGYQ_API_TOKENS",
        "hashed API tokens, `name:scope:sha256:<hex>` (`strategyq serve --new-token NAME`)",
        parse=lambda raw: parse_tokens(raw),
        secret=True,
    )
    max_body_bytes: int = setting(
        2 * 1024 * 1024, "STRATEGYQ_API_MAX_BODY", "request body cap", minimum=64 * 1024
    )
    max_wait_s: float = 300.0
    blocking_threads: int = 64
    """Threads for long-polls and event streams (each holds one while it waits)."""
    max_followers: int = setting(
        48,
        "STRATEGYQ_API_MAX_FOLLOWERS",
        "long-polls and event streams one `strategyq serve` holds at once (503 + `Retry-After` "
        "past it; at most 56)",
        minimum=1,
    )
    market_dir: str | None = None
    """The market store to draw price charts from (None: the settings' store, if present)."""
    extra_hosts: tuple[str, ...] = setting(
        (),
        "STRATEGYQ_API_ALLOWED_HOSTS",
        "extra host names accepted on a loopback bind (DNS-rebinding guard)",
        parse=lambda raw: tuple(raw.replace(",", " ").split()),
    )

    @property
    def auth_required(self) -> bool:
        return bool(self.tokens)

    def check(self) -> None:
        """Refuse an unsafe combination (a public bind without tokens).

        Raises:
            ConfigError: the address is not loopback and no token is configured.
        """
        if not is_loopback(self.host) and not self.tokens:
            raise ConfigError(
                f"binding {self.host} exposes the API beyond this machine, so it needs tokens: "
                "create one with `strategyq serve --new-token NAME --scope write` and set "
                "STRATEGYQ_API_TOKENS to the line it prints (or bind 127.0.0.1)"
            )
        if not 0 < self.port < 65536:
            raise ConfigError(f"the API port must be 1-65535, got {self.port}")

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        host: str | None = None,
        port: int | None = None,
    ) -> ApiConfig:
        """The config from ``env`` (default: the process environment); ``host`` and ``port``
        (the command line's) win over it.

        Raises:
            ConfigError: a variable is malformed (the message says which and how to fix it).
        """
        values = read_env(cls, os.environ if env is None else env)
        if host:
            values["host"] = host
        if port is not None:
            values["port"] = port
        if "max_followers" in values:
            # Every follower may hold a waiting thread: keep some for the others' reads.
            values["max_followers"] = min(values["max_followers"], cls.blocking_threads - 8)
        return cls(**values)
