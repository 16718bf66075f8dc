"""``POST /v1/check``: the sandbox's findings for a strategy, nothing run or queued."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body
from pydantic import BaseModel, Field

from strategyq.api.deps import READ, Principal
from strategyq.api.routes import RouteTable
from strategyq.check import check_strategy


class CheckIn(BaseModel):
    strategy_code: str = Field(..., description="The strategy's Python source.")


class FindingOut(BaseModel):
    kind: str = Field(..., description="syntax, policy or module_unavailable.")
    line: int
    column: int
    message: str
    fix: str = Field(..., description="What to write instead.")


class CheckOut(BaseModel):
    ok: bool = Field(..., description="No findings: a worker would run the strategy.")
    entry: str | None = Field(..., description="The function a run would call.")
    takes_params: bool
    error_type: str | None = Field(..., description="What a run would end with, if not ok.")
    findings: list[FindingOut]
    imports: list[str]


router = RouteTable(prefix="/v1", tags=["tasks"])


@router.post(
    "/check",
    response_model=CheckOut,
    summary="Check a strategy against the sandbox's policy",
)
def check(body: Annotated[CheckIn, Body()], _: Principal = READ) -> dict[str, Any]:
    """Every finding at once (line, what is refused, what to write instead) and the
    entry function a run would call; the same answer as ``strategyq check``."""
    return check_strategy(body.strategy_code).as_dict()
