"""Promoted policies: list, run."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from simgate.gateway.deps import ACT_ERRORS, READ_ERRORS, Actor, Reader, Service, errors
from simgate.gateway.schemas import PolicyRunRequest

router = APIRouter(prefix="/v1", tags=["policies"])


def listing(service) -> list[dict[str, Any]]:
    from simgate.policies.registry import Registry

    registry = Registry(service.motions.registry_dir)
    out = []
    for e in registry.entries():
        problem = registry.attested(e["id"])
        out.append({"id": e["id"], "name": e.get("name"), "env_id": e.get("env_id"), "robot": e.get("robot"),
                    "verified": problem is None, "problem": problem,
                    # an entry that fails verification shows no figures: they would be its own word
                    "holdout_success": None if problem else e.get("holdout", {}).get("success_rate")})
    return out


@router.get("/policies", responses=READ_ERRORS)
def policies(_: Reader, service: Service) -> list[dict[str, Any]]:
    return listing(service)


@router.post("/policies/{ref}/run", responses={**ACT_ERRORS, **errors(404)})
def run_policy(ref: str, req: PolicyRunRequest, who: Actor, service: Service) -> dict[str, Any]:
    """Run a promoted policy towards a goal; each step passes the safety layer as it comes."""
    return service.run_policy(who, "rest", ref, req.goal_m, req.max_steps, req.tolerance_m)
