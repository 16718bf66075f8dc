"""Health, readiness, metrics and ping probes, and the bundled Plotly script (not in the schema)."""

from __future__ import annotations

import orjson
import redis
from fastapi.responses import FileResponse, JSONResponse, Response

from strategyq.api.charts import plotly_js_path
from strategyq.api.deps import State
from strategyq.api.routes import RouteTable

router = RouteTable(include_in_schema=False)


@router.get("/healthz")
def healthz() -> Response:
    return JSONResponse({"status": "ok"})


@router.get("/readyz")
def readyz(state: State) -> Response:
    try:
        state.client.ping()
    except redis.RedisError as exc:
        return JSONResponse(
            {"status": "redis unavailable", "error": type(exc).__name__}, status_code=503
        )
    return JSONResponse({"status": "ready"})


@router.get("/metrics")
def metrics(state: State) -> Response:
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")


@router.get("/ping")
def ping(state: State) -> Response:
    """One Redis PING: the yardstick of the API benchmark."""
    state.client.ping()
    return Response(orjson.dumps({"pong": True}), media_type="application/json")


@router.get("/static/plotly.min.js")
def plotly() -> Response:
    return FileResponse(
        plotly_js_path(),
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=86400"},
    )
