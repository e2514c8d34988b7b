"""Runs of motions and policies: status, cancel."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from simgate.gateway.deps import Actor, Reader, Service, errors

router = APIRouter(prefix="/v1", tags=["runs"])


@router.get("/runs/{run_id}", responses=errors(401, 403, 404, 429))
def run_status(run_id: str, _: Reader, service: Service) -> dict[str, Any]:
    return service.get_run(run_id).view()


@router.delete("/runs/{run_id}", responses=errors(401, 403, 404, 429))
def run_cancel(run_id: str, who: Actor, service: Service) -> dict[str, Any]:
    service.get_run(run_id)
    return service.cancel_run(who, "rest", run_id)
