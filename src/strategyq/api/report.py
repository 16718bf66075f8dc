"""A standalone HTML report of one result: the dashboard's charts and tables, inlined.

One self-contained file (plotly.js, the stylesheet and the chart data inside),
viewable offline and attachable to a ticket — as backtesting.py's ``plot()``
writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from strategyq import __version__
from strategyq.api import charts
from strategyq.api.pages.render import HERE, STATIC_DIR, Table, fmt, script_json, task_context
from strategyq.labels import date_range, duration


def _inline(text: str) -> str:
    # Nothing inside a <script>/<style> element may close it early.
    return text.replace("</script", "<\\/script").replace("</style", "<\\/style")


class _NoMarket:
    """Stands in for the API state: the report draws prices from ``market_dir`` only."""

    def __init__(self, market_dir: Path | None) -> None:
        self.market_dir = market_dir


def render_report(task_id: str, record: dict[str, Any], market_dir: Path | None = None) -> str:
    """The report's HTML for ``record`` (the stored result of ``task_id``)."""
    env = Environment(
        loader=FileSystemLoader(str(HERE / "templates")), autoescape=select_autoescape()
    )
    env.filters["fmt"] = fmt
    env.filters["json"] = lambda v: script_json(v)
    env.filters["duration"] = duration
    env.filters["date_range"] = date_range
    context = task_context(_NoMarket(market_dir), record, {}, all_prices=True)  # type: ignore[arg-type]
    # Every row, unpaged: a file has no server to ask for the next page.
    for name in ("trades", "instances", "ranked"):
        table = context.get(name)
        if isinstance(table, Table):
            context[name] = table.unpaged()
    sweep = context.get("sweep")
    if isinstance(sweep, dict):
        for name in ("results", "best_trades"):
            table = sweep.get(name)
            if isinstance(table, Table):
                sweep[name] = table.unpaged()
    return env.get_template("report.html").render(
        task_id=task_id,
        static=True,
        version=__version__,
        css=_inline((STATIC_DIR / "style.css").read_text()),
        live_js=_inline((STATIC_DIR / "live.js").read_text()),
        plotly_js=_inline(charts.plotly_js_path().read_text()),
        **context,
    )


def write_report(path: Path, task_id: str, record: dict[str, Any], market_dir: Path | None) -> int:
    """Write the report to ``path``; returns its size in bytes."""
    html = render_report(task_id, record, market_dir)
    path.write_text(html, encoding="utf-8")
    return len(html.encode())
