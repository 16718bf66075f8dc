"""``strategyq tenant`` and ``strategyq lane``: tenants' quotas and lanes' weights, at run time."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from strategyq.cli.common import client, console, fail, settings
from strategyq.errors import TaskValidationError

if TYPE_CHECKING:
    from strategyq.queue.tenants import TenantState
    from strategyq.queue.view import QueueView

tenant_app = typer.Typer(
    help="Quotas per tenant (in Redis: every worker and producer sees a change at once).",
    no_args_is_help=True,
)
lane_app = typer.Typer(help="Lanes and their weights.", no_args_is_help=True)
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _quota(help_: str) -> object:
    return typer.Option(help=help_ + " (0: no limit; omitted: unchanged).", show_default=False)


def _view() -> QueueView:
    from strategyq.queue.view import QueueView

    conf = settings()
    return QueueView(client(conf), conf.queue_name)


@tenant_app.command("set")
def tenant_set(
    name: Annotated[str, typer.Argument(help="The tenant (the producer's tenant field).")],
    max_in_flight: Annotated[
        int | None, _quota("Tasks of the tenant running at once, across all workers")
    ] = None,
    max_queued: Annotated[int | None, _quota("Tasks of the tenant waiting")] = None,
    max_result_bytes: Annotated[
        int | None, _quota("Bytes of the tenant's results stored (for their TTL)")
    ] = None,
    max_combinations: Annotated[
        int | None, _quota("Sweep combinations the tenant may run per day (UTC)")
    ] = None,
) -> None:
    """Set or clear a tenant's quotas; prints the quotas it has now."""
    given = {
        "max_in_flight": max_in_flight,
        "max_queued": max_queued,
        "max_result_bytes": max_result_bytes,
        "max_combinations": max_combinations,
    }
    try:
        now = _view().tenancy.set_quotas(name, **{k: v for k, v in given.items() if v is not None})
    except TaskValidationError as exc:
        raise fail(str(exc)) from None
    shown = ", ".join(f"{k}={v}" for k, v in now.items()) or "no quotas (unlimited)"
    console.print(f"tenant [bold]{name}[/]: {shown}", highlight=False)


def _row(t: TenantState) -> list[str]:
    from strategyq.queue.tenants import QUOTAS

    use = t.use()

    def cell(quota: str) -> str:
        limit = t.quotas.get(quota)
        return f"{use[quota]}/{limit}" if limit else str(use[quota])

    waits = ", ".join(f"{lane} {w.p50_s:.2f}/{w.p95_s:.2f}s" for lane, w in sorted(t.waits.items()))
    return [t.name, *(cell(q) for q in QUOTAS), waits or "—"]


@tenant_app.command("list")
def tenant_list(as_json: AsJson = False) -> None:
    """Every tenant with tasks, results or quotas: use against each quota, wait p50/p95."""
    from rich.table import Table

    tenants = _view().tenancy.tenants()
    if as_json:
        print(json.dumps([t.as_dict() for t in tenants], indent=2))
        return
    table = Table(title=f"tenants ({len(tenants)})")
    for c in ("tenant", "in flight", "queued", "result bytes", "combinations today", "wait"):
        table.add_column(c)
    for t in tenants:
        table.add_row(*_row(t))
    console.print(table)


@tenant_app.command("show")
def tenant_show(name: str, as_json: AsJson = False) -> None:
    """One tenant's quotas and use."""
    from strategyq.queue.tenants import QUOTAS

    try:
        state = _view().tenancy.tenant(name)
    except TaskValidationError as exc:
        raise fail(str(exc)) from None
    if as_json:
        print(json.dumps(state.as_dict(), indent=2))
        return
    for quota in QUOTAS:
        limit = state.quotas.get(quota)
        console.print(f"{quota}: {state.use()[quota]} of {limit if limit else 'unlimited'}")
    for lane, w in sorted(state.waits.items()):
        console.print(f"wait in {lane}: p50 {w.p50_s:.3f}s, p95 {w.p95_s:.3f}s ({w.samples} tasks)")


@lane_app.command("set")
def lane_set(
    name: Annotated[str, typer.Argument(help="The lane (the producer's priority field).")],
    weight: Annotated[int, typer.Option(help="Tasks taken from it per round, against the others.")],
) -> None:
    """Add a lane or change its weight (builtin: interactive 4, batch 1)."""
    try:
        _view().tenancy.set_lane(name, weight)
    except TaskValidationError as exc:
        raise fail(str(exc)) from None
    console.print(f"lane [bold]{name}[/]: weight {weight}", highlight=False)


@lane_app.command("remove")
def lane_remove(name: str) -> None:
    """Remove an operator lane (a builtin one goes back to its default weight)."""
    try:
        _view().tenancy.remove_lane(name)
    except TaskValidationError as exc:
        raise fail(str(exc)) from None
    console.print(f"lane [bold]{name}[/] removed", highlight=False)


@lane_app.command("list")
def lane_list(as_json: AsJson = False) -> None:
    """Every lane: weight, tasks waiting, tenants waiting."""
    from rich.table import Table

    lanes = _view().tenancy.lanes()
    if as_json:
        print(json.dumps([lane.as_dict() for lane in lanes], indent=2))
        return
    table = Table(title="lanes")
    for c in ("lane", "weight", "waiting", "tenants waiting"):
        table.add_column(c)
    for lane in lanes:
        table.add_row(lane.name, str(lane.weight), str(lane.depth), str(lane.tenants_waiting))
    console.print(table)
