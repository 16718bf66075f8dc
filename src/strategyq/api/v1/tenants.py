"""``/v1/tenants``: each tenant's quotas and use, the lanes, and changing quotas at run time."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, Path

from strategyq.api.deps import READ, WRITE, Principal, State
from strategyq.api.models import LaneIn, LaneOut, QuotasIn, TenantOut, Tenants
from strategyq.api.routes import RouteTable

router = RouteTable(prefix="/v1", tags=["tenants"])

TenantName = Annotated[str, Path(max_length=64, description="The tenant (a task's tenant field).")]
LaneName = Annotated[str, Path(max_length=32, description="The lane (a task's priority field).")]


@router.get("/tenants", response_model=Tenants, summary="Tenants and lanes")
def tenants(state: State, _: Principal = READ) -> dict[str, Any]:
    tenancy = state.view.tenancy
    return {
        "lanes": [lane.as_dict() for lane in tenancy.lanes()],
        "tenants": [t.as_dict() for t in tenancy.tenants()],
    }


@router.get("/tenants/{name}", response_model=TenantOut, summary="One tenant")
def tenant(name: TenantName, state: State, _: Principal = READ) -> dict[str, Any]:
    return state.view.tenancy.tenant(name).as_dict()


@router.put(
    "/tenants/{name}",
    response_model=TenantOut,
    summary="Set a tenant's quotas",
    description="Each quota given is set (a positive number) or removed (0 or null); the "
    "others are left as they are. Workers and producers apply it at their next task.",
)
def set_quotas(
    name: TenantName, quotas: Annotated[QuotasIn, Body()], state: State, _: Principal = WRITE
) -> dict[str, Any]:
    given = quotas.model_dump(exclude_unset=True)
    state.view.tenancy.set_quotas(name, **given)
    return state.view.tenancy.tenant(name).as_dict()


@router.put("/lanes/{name}", response_model=LaneOut, summary="Add a lane or change its weight")
def set_lane(
    name: LaneName, lane: Annotated[LaneIn, Body()], state: State, _: Principal = WRITE
) -> dict[str, Any]:
    state.view.tenancy.set_lane(name, lane.weight)
    (found,) = [x for x in state.view.tenancy.lanes() if x.name == name]
    return found.as_dict()
