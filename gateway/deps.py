"""FastAPI dependencies: the service, the caller's identity by scope (``Reader``, ``Actor``,
``Admin``). Authentication failures are audited by the app's exception handler."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from simgate.gateway.access import require
from simgate.gateway.service import ArmService


def get_service(request: Request) -> ArmService:
    return request.app.state.service


def bearer(authorization: str | None) -> str | None:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization.split(" ", 1)[1].strip() or None
    return None


def _identify(request: Request, authorization: str | None, need: str) -> str:
    st = request.app.state
    name, scope = st.tokens.identify(bearer(authorization))
    request.state.who = name  # a 403 below is audited under the token's name
    require(scope, need)
    if not st.rate.allow(name):
        raise HTTPException(429, detail=f"rate limit exceeded for token {name!r}")
    request.state.who = name
    st.metrics.requests += 1
    return name


def reader(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    return _identify(request, authorization, "read")


def actor(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    return _identify(request, authorization, "act")


def admin(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    return _identify(request, authorization, "admin")


Service = Annotated[ArmService, Depends(get_service)]
Reader = Annotated[str, Depends(reader)]
Actor = Annotated[str, Depends(actor)]
Admin = Annotated[str, Depends(admin)]


def errors(*codes: int) -> dict:
    """OpenAPI ``responses`` for the statuses a route can return besides 200."""
    text = {400: "malformed request", 401: "missing or invalid token", 403: "token lacks the scope",
            404: "not found", 409: "refused by the safety layer (e-stop, lease, stale backend, limits, workspace)",
            413: "request body too large", 422: "invalid input (the field is named)", 429: "rate limit exceeded",
            503: "backend not available"}
    return {c: {"description": text[c], "content": {"application/json": {"schema": {
        "type": "object", "properties": {"detail": {}}, "required": ["detail"]}}}} for c in codes}


READ_ERRORS = errors(400, 401, 403, 413, 422, 429)
ACT_ERRORS = errors(400, 401, 403, 409, 413, 422, 429, 503)
