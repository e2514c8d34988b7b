"""The WebSocket stream ``/v1/stream``: state pushed at ``rate_hz``; set-points in, each answered
with an ack (what was sent, or why it was refused).

Authentication: ``Authorization: Bearer ...`` on the upgrade request, or a first frame
``{"type": "auth", "token": "..."}`` within 5 s - never in the URL (a URL ends up in access
logs; a ``token`` query parameter is refused). The token is re-checked every 0.25 s: revocation
or losing the actuation lease to another client closes the stream. Every malformed frame
(binary, not JSON, not an object, wrong types, unknown fields) gets a refusal ack and the stream
stays up. Silence longer than the watchdog timeout stops the arm.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from fastapi import WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from simgate.errors import SimgateError
from simgate.gateway.access import AuthError, require
from simgate.gateway.deps import bearer
from simgate.gateway.schemas import StreamCommand

AUTH_TIMEOUT_S = 5.0
RECHECK_S = 0.25


def _field_errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(x) for x in e['loc']) or 'frame'}: {e['msg']}" for e in exc.errors()[:5])


async def _authenticate(ws: WebSocket, tokens) -> tuple[str, str, str]:
    """(name, scope, token) from the upgrade header or the first frame; AuthError otherwise."""
    if "token" in ws.query_params:
        raise AuthError("a token in the URL is not accepted (URLs are logged): send 'Authorization: Bearer' or a "
                        "first frame {\"type\": \"auth\", \"token\": ...}")
    token = bearer(ws.headers.get("authorization"))
    if token is None:
        await ws.accept()
        try:
            raw = await asyncio.wait_for(ws.receive_text(), AUTH_TIMEOUT_S)
            token = json.loads(raw).get("token") if raw.startswith("{") else None
        except (TimeoutError, ValueError, KeyError, AttributeError) as exc:
            raise AuthError("expected a first frame {\"type\": \"auth\", \"token\": ...}") from exc
    name, scope = tokens.identify(token if isinstance(token, str) else None)
    return name, scope, token


async def stream(ws: WebSocket, rate_hz: float = 20.0) -> None:
    st = ws.app.state
    service, tokens = st.service, st.tokens
    try:
        name, scope, token = await _authenticate(ws, tokens)
    except (AuthError, WebSocketDisconnect) as exc:
        service.audit.record("anonymous", "ws", "connect", {}, "refused", reason=str(exc))
        with contextlib.suppress(RuntimeError):  # the client may already be gone
            await ws.close(code=4401, reason=str(exc)[:120])
        return
    if ws.client_state.name == "CONNECTING":
        await ws.accept()
    await ws.send_json({"type": "welcome", "who": name, "scope": scope})
    client = f"{name}#ws{id(ws)}"
    period = 1.0 / max(0.1, min(float(rate_hz), service.spec.control_rate_hz * 4))
    closed = asyncio.Event()
    acted = {"yes": False}

    async def push() -> None:
        while not closed.is_set():
            await ws.send_json({"type": "state", **service.state()})
            await asyncio.sleep(period)

    async def guard() -> None:
        """Close within RECHECK_S of revocation, expiry or a lost lease."""
        while not closed.is_set():
            await asyncio.sleep(RECHECK_S)
            reason = None
            try:
                tokens.identify(token)
            except AuthError as exc:
                reason = f"token no longer valid: {exc}"
            holder = service.lease.holder
            if reason is None and acted["yes"] and holder not in (None, name):
                reason = f"the actuation lease was taken by {holder}"
            if reason:
                service.forget(client)
                service.audit.record(name, "ws", "stream_closed", {}, "closed", reason=reason)
                closed.set()
                await ws.close(code=4403, reason=reason[:120])

    tasks = [asyncio.create_task(push()), asyncio.create_task(guard())]
    try:
        while not closed.is_set():
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                break
            service.heartbeat(client)
            reply = await _handle(service, name, scope, msg)
            if reply is not None:
                if reply.get("ok"):
                    acted["yes"] = True
                await ws.send_json(reply)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        closed.set()
        for t in tasks:
            t.cancel()
        service.forget(client)


async def _handle(service, name: str, scope: str, msg: dict) -> dict | None:
    if msg.get("bytes") is not None:
        return _refusal(service, name, None, "binary frames are not accepted: send JSON text")
    try:
        data = json.loads(msg.get("text") or "")
    except ValueError:
        return _refusal(service, name, None, "frame is not JSON")
    if not isinstance(data, dict):
        return _refusal(service, name, None, f"frame must be a JSON object, got {type(data).__name__}")
    try:
        cmd = StreamCommand.model_validate(data)
    except ValidationError as exc:
        fid = data.get("id") if isinstance(data.get("id"), (int, str)) else None
        return _refusal(service, name, fid, _field_errors(exc))
    if cmd.type in ("ping", "auth"):
        return None
    try:
        require(scope, "act")
        out = service.stream_setpoint(name, "ws", cmd.positions, cmd.gripper, cmd.clip)
        return {"type": "ack", "id": cmd.id, **out}
    except AuthError as exc:
        return _refusal(service, name, cmd.id, str(exc))
    except SimgateError as exc:  # the service audited it
        return {"type": "ack", "id": cmd.id, "ok": False, "reason": str(exc)}


def _refusal(service, name: str, frame_id, reason: str) -> dict:
    service.audit.record(name, "ws", "frame", {}, "refused", reason=reason)
    return {"type": "ack", "id": frame_id, "ok": False, "reason": reason}
