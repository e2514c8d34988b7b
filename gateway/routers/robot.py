"""Reading the arm: health, readiness, description, state, camera."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response

from simgate.gateway.deps import READ_ERRORS, Reader, Service, errors

router = APIRouter(prefix="/v1", tags=["robot"])


@router.get("/health")
def health(service: Service) -> dict[str, Any]:
    h = service.backend.health()
    return {"status": h.status, "reason": h.reason, "estop": service.safety.estopped}


@router.get("/ready", responses=errors(503))
def ready(service: Service):
    h = service.backend.health()
    if h.status != "ok":
        return JSONResponse({"ready": False, "reason": h.reason, "detail": h.reason}, status_code=503)
    return {"ready": True}


@router.get("/robot", responses=READ_ERRORS)
def robot(service: Service, _: Reader) -> dict[str, Any]:
    return service.describe()


@router.get("/state", responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}},
                                  **READ_ERRORS})
async def state(service: Service, _: Reader) -> Response:
    """The latest snapshot (joint positions rad, velocities rad/s, tool position m, health, e-stop),
    served on the event loop from the state poller: never waits for the control loop or the bus."""
    return Response(service.state_json(), media_type="application/json")


@router.get("/camera", responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}, **errors(400, 401, 403, 404, 413,
                                                                                                   422, 429, 503)})
def camera(service: Service, who: Reader, request: Request, width: int = Query(320, ge=16, le=1280),
           height: int = Query(240, ge=16, le=960), fmt: str = Query("png", pattern="^(png|jpeg)$")):
    """An RGB image of the scene, rendered off the control loop; frames are rate-limited per token."""
    if not hasattr(service.backend, "camera_image"):
        raise HTTPException(404, detail="this backend has no camera")
    data = request.app.state.frames.frame(who, width, height, fmt)
    return Response(data, media_type=f"image/{fmt}")
