"""``/tenants``: each lane and each tenant — depth, in flight, wait p50/p95, quota use."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from strategyq.api.deps import READ, Principal, State
from strategyq.api.pages.render import render
from strategyq.api.routes import RouteTable
from strategyq.queue.tenants import QUOTAS

router = RouteTable(include_in_schema=False)

SHOWN_TENANTS = 200


@router.get("/tenants", response_class=HTMLResponse)
def tenants(request: Request, state: State, _: Principal = READ) -> Response:
    tenancy = state.view.tenancy
    every = tenancy.tenants()
    rows = []
    for t in every[:SHOWN_TENANTS]:
        use = t.use()
        rows.append(
            {
                "name": t.name,
                "queued": t.queued,
                "in_flight": t.in_flight,
                "waits": sorted(t.waits.items()),
                "quotas": [
                    {
                        "name": q,
                        "used": use[q],
                        "limit": t.quotas.get(q),
                        # Share of the quota in use, for the bar (capped at 100 %).
                        "pct": min(100, round(100 * use[q] / t.quotas[q])) if q in t.quotas else 0,
                    }
                    for q in QUOTAS
                ],
            }
        )
    return render(
        request,
        "tenants.html",
        {
            "lanes": tenancy.lanes(),
            "tenants": rows,
            "total": len(every),
            "shown": min(len(every), SHOWN_TENANTS),
            "quota_names": QUOTAS,
        },
    )
