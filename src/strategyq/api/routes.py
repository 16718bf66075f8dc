"""A module's routes, declared as on an ``APIRouter`` and built once, on the app.

FastAPI builds a route (its dependencies, parameter and response models) when it is
declared on an ``APIRouter``, then again for every router it is included through when a
request first walks them: included, each of the server's routes would be built twice,
some 60 ms of CPU at every start of ``strategyq serve``. A :class:`RouteTable` keeps the
declarations and :meth:`RouteTable.add_to` declares them on the app's own router, as
``@app.get`` would: one build each, and the same routes (paths, tags, schema entries,
handlers) as an included ``APIRouter`` with the same arguments gives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


class RouteTable:
    """``get``/``post``/``put``/``delete`` as on ``APIRouter(prefix, tags,
    include_in_schema)``, recorded until :meth:`add_to`."""

    def __init__(
        self, *, prefix: str = "", tags: list[str] | None = None, include_in_schema: bool = True
    ) -> None:
        self.prefix = prefix
        self.tags = list(tags or [])
        self.include_in_schema = include_in_schema
        self.routes: list[tuple[str, str, Callable[..., Any], dict[str, Any]]] = []

    def _route(
        self, method: str, path: str, options: dict[str, Any]
    ) -> Callable[[Endpoint], Endpoint]:
        def declare(endpoint: Endpoint) -> Endpoint:
            self.routes.append((method, path, endpoint, options))
            return endpoint

        return declare

    def get(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        return self._route("GET", path, options)

    def post(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        return self._route("POST", path, options)

    def put(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        return self._route("PUT", path, options)

    def delete(self, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
        return self._route("DELETE", path, options)

    def add_to(self, router: APIRouter) -> None:
        """Declare every route on ``router`` (the app's), with this table's prefix, tags
        and schema flag applied as ``APIRouter`` applies its own."""
        for method, path, endpoint, options in self.routes:
            extra = dict(options)
            tags = [*self.tags, *(extra.pop("tags", None) or [])]
            shown = extra.pop("include_in_schema", True) and self.include_in_schema
            router.add_api_route(
                self.prefix + path,
                endpoint,
                methods=[method],
                tags=tags or None,
                include_in_schema=shown,
                **extra,
            )
