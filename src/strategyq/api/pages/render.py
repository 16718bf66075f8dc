"""What every dashboard page shares: the templates, their filters, ``render`` and tables.

The task page and the standalone HTML report (:mod:`strategyq.api.report`) show a
result through the same :func:`task_context`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from strategyq.api import analytics, charts, sweep_page
from strategyq.api.auth import CSRF_COOKIE, csrf_token, identify
from strategyq.api.problems import Problem
from strategyq.api.shapes import clean_data, clean_record
from strategyq.api.state import ApiState
from strategyq.labels import HEADLINE, METRICS, date_range, duration, format_metric, label
from strategyq.protocol.results import TERMINAL_STATUSES

HERE = Path(__file__).parent.parent
STATIC_DIR = HERE / "static"
TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))
TABLE_PAGE = 25


_SCRIPT_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def script_json(value: Any) -> str:
    """JSON safe to place inside a ``<script type="application/json">`` element.

    Every ``<``, ``>`` and ``&`` is written as a ``\\u`` escape (the same JSON),
    so no string in the data can end the element or open a comment or another
    script (``</script>``, ``<!--<script>``) whatever the page around it.
    """
    return orjson.dumps(value).decode().translate(_SCRIPT_ESCAPES)


def fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value).lower()
    if isinstance(value, float):
        return f"{value:,.4f}" if math.isfinite(value) else "—"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def ms_iso(value: Any) -> str:
    """Epoch milliseconds as ``2024-01-15 10:30:00Z``."""
    try:
        moment = datetime.fromtimestamp(int(value) / 1000, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return ""
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


TEMPLATES.env.filters["fmt"] = fmt
TEMPLATES.env.filters["ms_iso"] = ms_iso
TEMPLATES.env.filters["json"] = lambda v: orjson.dumps(v).decode()
TEMPLATES.env.filters["duration"] = duration
TEMPLATES.env.filters["date_range"] = date_range
TEMPLATES.env.globals["quote"] = quote


def render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    state: ApiState = request.app.state.api
    principal = getattr(request.state, "principal", None) or identify(state.config, request)
    token = csrf_token(request)
    response = TEMPLATES.TemplateResponse(
        request,
        name,
        {
            "principal": principal,
            "auth_required": state.config.auth_required,
            "csrf": token,
            "queue": state.queue,
            **context,
        },
        status_code=status_code,
    )
    if getattr(request.state, "new_csrf", None):
        response.set_cookie(
            CSRF_COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
    return response


def render_problem(request: Request, problem: Problem) -> Response:
    if problem.status == 401:
        # The page to come back to, without anything that looks like a credential:
        # a token pasted into a URL must not travel on into another URL, a log or history.
        kept = [(k, v) for k, v in request.query_params.multi_items() if not _secret_name(k)]
        target = request.url.path + (f"?{urlencode(kept)}" if kept else "")
        return RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)
    return render(request, "error.html", {"problem": problem}, status_code=problem.status)


SECRET_WORDS = ("token", "secret", "password", "key", "auth", "session", "csrf")


def _secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS)


class Table:
    """A server-side sorted, paged view of a list of dict rows."""

    def __init__(
        self,
        name: str,
        rows: Sequence[Mapping[str, Any]],
        query: Mapping[str, str],
        size: int = TABLE_PAGE,
        columns: list[str] | None = None,
        metrics: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        # Column -> metric name, for cells shown in the metric's unit (8.65 %, 1.23).
        self.metrics = dict(metrics or {})
        self.total = len(rows)
        self.columns = columns or list(dict.fromkeys(k for r in rows[:100] for k in r))
        self.sort = query.get(f"{name}_sort") or ""
        self.desc = query.get(f"{name}_dir") == "desc"
        self.query = dict(query)
        ordered = list(rows)
        if self.sort in self.columns:
            ordered.sort(key=lambda r: _sort_key(r.get(self.sort)), reverse=self.desc)
        self.pages = max(1, math.ceil(self.total / size))
        try:
            self.page = min(max(int(query.get(f"{name}_page") or 1), 1), self.pages)
        except ValueError:
            self.page = 1
        self.rows = ordered[(self.page - 1) * size : self.page * size]
        self._all = ordered

    def unpaged(self) -> Table:
        """Every row on one page (for the standalone report, which has no next page)."""
        self.rows, self.page, self.pages = self._all, 1, 1
        return self

    def link(self, **changes: Any) -> str:
        query = {**self.query}
        for key, value in changes.items():
            query[f"{self.name}_{key}"] = str(value)
        return "?" + urlencode(query) + f"#{self.name}"

    def cell(self, column: str, value: Any) -> str:
        metric = self.metrics.get(column)
        return format_metric(metric, value) if metric else fmt(value)

    def sort_link(self, column: str) -> str:
        desc = not self.desc if column == self.sort else False
        return self.link(sort=column, dir="desc" if desc else "asc", page=1)


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (2, 0)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, value)
    return (1, str(value))


def _timeline(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    data = record.get("data") or {}
    steps = [
        ("submitted", data.get("submitted_at") or data.get("queued_at")),
        ("started", data.get("started_at")),
        ("cancelled", data.get("cancelled_at")),
        ("finished", data.get("completed_at")),
    ]
    out = [(name, str(at)) for name, at in steps if at]
    out.append((f"last update ({record.get('status')})", str(record.get("updated_at") or "")))
    return out


def _logs(data: Mapping[str, Any]) -> str | None:
    logs = data.get("logs")
    if logs is None:
        return None
    if isinstance(logs, list):
        return "\n".join(str(line) for line in logs)
    if isinstance(logs, dict):
        text = logs.get("text") or logs.get("lines") or ""
        return "\n".join(text) if isinstance(text, list) else str(text)
    return str(logs)


def task_context(
    state: ApiState,
    record: dict[str, Any],
    query: Mapping[str, str],
    link: str | None = None,
    memo: dict[Any, Any] | None = None,
    *,
    all_prices: bool = False,
) -> dict[str, Any]:
    """What the task page and the HTML report show for one result.

    ``all_prices``: embed every traded ticker's price chart (the report, which has no
    server to fetch one from); the page embeds the first and fetches the others.
    """
    record = clean_record(record)
    data = record["data"]
    status = record.get("status")
    mode = data.get("execution_mode")
    metrics = data.get("performance_metrics") or {}
    context: dict[str, Any] = {
        "record": record,
        "data": data,
        "status": status,
        "terminal": status in TERMINAL_STATUSES,
        "mode": mode,
        "metrics": metrics,
        "summary": data.get("summary") or {},
        "timeline": _timeline(record),
        "logs": _logs(data),
        "warnings": data.get("warnings") or [],
        "equity": None,
        "prices": {},
        "price_tickers": {},
        "monthly": None,
        "rolling": None,
        "trades": None,
        "instances": None,
        "ranked": None,
        "screen": None,
        "sweep": None,
        "headline": [],
        "metric_rows": [],
    }
    if status == "completed" and mode == "backtest":
        context.update(backtest_context(state.market_dir, data, query, all_prices=all_prices))
    elif status == "completed" and mode == "screening":
        rows = screen_rows(data)
        context["screen"] = screen_facts(data, rows)
        context["ranked"] = Table("ranked", rows, query, size=100)
    elif mode == "sweep":
        context["sweep"] = sweep_context(record, query, link, memo)
    return context


def backtest_context(
    market_dir: Path | None,
    data: Mapping[str, Any],
    query: Mapping[str, str],
    *,
    all_prices: bool = False,
) -> dict[str, Any]:
    """A completed backtest's cards, charts and tables (``data`` already cleaned)."""
    metrics = data.get("performance_metrics") or {}
    out: dict[str, Any] = {}
    out["headline"], out["metric_rows"] = _metric_views(metrics, analytics.benchmark_figures(data))
    figure = charts.equity_figure(data)
    out["equity"] = script_json(figure) if figure else None
    months = analytics.monthly_returns(data)
    out["monthly"] = script_json(analytics.monthly_figure(months)) if months else None
    roll = analytics.rolling(data)
    out["rolling"] = script_json(analytics.rolling_figure(roll)) if roll else None
    trade_model = (data.get("summary") or {}).get("trade_model") or {}
    adjusted = bool(trade_model.get("adjusted", True))
    traded = charts.traded_tickers(data)
    shown = list(traded) if all_prices else list(traded)[:1]
    out["price_tickers"] = traded
    out["prices"] = {
        ticker: script_json(fig)
        for ticker, fig in charts.price_figures(
            data, market_dir, adjusted=adjusted, tickers=shown
        ).items()
    }
    out["trades"] = Table("trades", data.get("trades") or [], query)
    out["instances"] = Table("instances", data.get("instances") or [], query)
    return out


def screen_rows(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A screen's ranked results, each with its rank (1 = best) first."""
    rows = data.get("ranked_results")
    if not isinstance(rows, list):
        return []
    return [{"rank": i, **row} for i, row in enumerate(rows, 1) if isinstance(row, dict)]


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _names(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def screen_facts(data: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What a screen ran on: its as-of date, the symbols with data, the matches."""
    universe = _count(data.get("universe_size"))
    missing, stale = _names(data.get("missing_symbols")), _names(data.get("stale_symbols"))
    with_data = None if universe is None else universe - len(missing)
    args = sweep_page.mapping(data.get("task_args"))
    return {
        "as_of": data.get("as_of"),
        "requested": data.get("as_of_requested"),
        "universe": universe,
        "missing": missing,
        "stale": stale,
        "with_data": with_data,
        "current": None if with_data is None else with_data - len(stale),
        "instances": _count(data.get("total_instances")),
        "candidates": _count(data.get("candidates")),
        "matched_symbols": len({r.get("ticker") for r in rows}),
        "returned": _count(data.get("results_returned")) or len(rows),
        "limit": _count(args.get("limit")),
    }


def _metric_views(
    metrics: Mapping[str, Any], benchmark: Mapping[str, float | None] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Headline cards, each beside the benchmark's figure where it has one, and every
    metric with its label."""
    benchmark = benchmark or {}
    cards = []
    for name in HEADLINE:
        if name not in metrics:
            continue
        bench = None
        if name in analytics.BENCHMARK_FIGURES:
            bench = format_metric(name, benchmark.get(name)) if name in benchmark else None
        value = format_metric(name, metrics[name])
        cards.append(
            {
                "name": name,
                "label": label(name),
                "value": value,
                "definition": METRICS[name].definition,
                "benchmark": bench,
            }
        )
    order = [*(n for n in METRICS if n in metrics), *(n for n in metrics if n not in METRICS)]
    rows = [
        {
            "name": n,
            "label": label(n),
            "value": format_metric(n, metrics[n]),
            "raw": metrics[n],
            "definition": METRICS[n].definition if n in METRICS else "",
        }
        for n in order
    ]
    return cards, rows


MEMO_MAX = 24
"""Derived values kept per cached result (a few heatmap choices and the rows)."""


def _memo(memo: dict[Any, Any] | None, key: Any, make: Callable[[], Any]) -> Any:
    """``make()``, kept in ``memo`` (the cached result's derived values) when there is one."""
    if memo is None:
        return make()
    if key not in memo:
        value = make()
        if len(memo) >= MEMO_MAX:
            return value
        memo[key] = value
    return memo[key]


def sweep_context(
    record: Mapping[str, Any],
    query: Mapping[str, str],
    link: str | None,
    memo: dict[Any, Any] | None = None,
) -> dict[str, Any]:
    """A sweep's progress while it runs; its ranking, heatmap, best backtest or folds after."""
    data = record["data"]
    params = [str(p) for p in data.get("params") or []]
    metric = str(data.get("maximize") or "total_return")
    out: dict[str, Any] = {
        "params": params,
        "metric": metric,
        "metric_label": label(metric),
        "progress": sweep_page.progress(data, data.get("started_at")),
    }
    if record.get("status") != "completed":
        return out
    walk = data.get("walk_forward")
    if isinstance(walk, Mapping):
        figure = sweep_page.oos_figure(walk)
        out["walk"] = {
            "folds": Table("folds", sweep_page.fold_rows(walk, metric), query, size=100),
            "oos": script_json(figure) if figure else None,
            "oos_metrics": sweep_page.headline(walk.get("oos_metrics") or {}),
        }
        return out
    stored = data.get("heatmap") if isinstance(data.get("heatmap"), Mapping) else {}
    choice = {
        "metric": _pick(query.get("heat_metric"), list(METRICS), stored.get("metric") or metric),
        "x": _pick(query.get("heat_x"), params, stored.get("x") or (params[:1] or [""])[0]),
        "y": _pick(query.get("heat_y"), params, stored.get("y") or (params[1:2] or [""])[0]),
    }
    heat_json = None
    if choice["x"] and choice["y"] and choice["x"] != choice["y"]:
        heat_json = _memo(
            memo,
            ("heatmap", choice["metric"], choice["x"], choice["y"], link),
            lambda: _heat_json(data, choice, link),
        )
    best = data.get("best") if isinstance(data.get("best"), Mapping) else {}
    best_result = clean_data(data.get("best_result"))
    equity_json = _memo(memo, "best_equity", lambda: _equity_json(best_result))
    rows = _memo(memo, "rows", lambda: sweep_page.result_rows(data, params))
    out.update(
        heat=heat_json,
        choice=choice,
        metric_options=[(n, m.label) for n, m in METRICS.items()],
        best_params=best.get("params") if isinstance(best.get("params"), Mapping) else {},
        best_link=(
            f"{link}/{best['index']}"
            if link is not None and type(best.get("index")) is int
            else None
        ),
        best_headline=sweep_page.headline(best.get("metrics") or {}),
        best_equity=equity_json,
        best_trades=Table("best_trades", best_result.get("trades") or [], query),
        results=Table(
            "results",
            rows,
            query,
            metrics={label(n): n for n in sweep_page.TABLE_METRICS},
        ),
    )
    return out


def _equity_json(result: Mapping[str, Any]) -> str | None:
    figure = charts.equity_figure(result) if result else None
    return script_json(figure) if figure else None


def _heat_json(data: Mapping[str, Any], choice: Mapping[str, str], link: str | None) -> str | None:
    heat = sweep_page.heatmap(data, choice["metric"], choice["x"], choice["y"])
    return script_json(sweep_page.heatmap_figure(heat, link)) if heat else None


def _pick(wanted: str | None, allowed: Sequence[str], default: Any) -> str:
    return wanted if wanted is not None and wanted in allowed else str(default or "")
