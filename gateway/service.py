"""ArmService: the one object every interface calls. It owns the backend, the safety layer, the
lease, the audit log and the watchdog; interfaces (REST, WebSocket, MCP) only translate.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from simgate.errors import SafetyViolation, SimgateError
from simgate.gateway.access import AuditLog, Lease
from simgate.gateway.safety import SafetyConfig, SafetyLayer
from simgate.hardware.types import JointCommand


class Refused(SafetyViolation):
    """A command refused before it reached the backend (HTTP 409/422 with the reason)."""


class ArmService:
    def __init__(self, backend, audit: AuditLog, safety: SafetyConfig | None = None, lease_ttl_s: float = 5.0) -> None:
        self.backend = backend
        self.spec = backend.spec
        self.safety = SafetyLayer(self.spec, safety)
        self.audit = audit
        self.lease = Lease(lease_ttl_s)
        self._lock = threading.Lock()
        self._watch: dict[str, float] = {}  # streaming clients: last message time
        self._stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watchdog_loop, daemon=True, name="simgate-watchdog")
        self.sent_commands = 0

    def start(self) -> None:
        self.backend.connect()
        self._watchdog.start()

    def close(self) -> None:
        self._stop.set()
        self.backend.close()

    # ---- reading -----------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        s = self.spec
        return {"name": s.name, "dof": s.dof,
                "joints": [{"name": j.name, "lower_rad": j.lower, "upper_rad": j.upper, "velocity_rad_s": j.velocity,
                            "effort_nm": j.effort} for j in s.arm_joints],
                "gripper": bool(s.gripper), "control_rate_hz": s.control_rate_hz,
                "capabilities": self.backend.capabilities.model_dump(),
                "safety": self.safety.config.model_dump()}

    def state(self) -> dict[str, Any]:
        st = self.backend.read()
        return {**st.model_dump(), "estop": self.safety.estopped, "lease_holder": self.lease.holder}

    # ---- acting ------------------------------------------------------------------------------
    def move(self, who: str, via: str, positions: list[float] | None, gripper: float | None = None,
             clip: bool = False, stream: bool | None = None) -> dict[str, Any]:
        """The only way a command reaches the backend. ``stream`` (default: WebSocket, trajectory
        and policy commands) adds the velocity/acceleration checks between consecutive commands."""
        if stream is None:
            stream = via not in ("rest", "mcp")
        asked = {"positions": positions, "gripper": gripper, "clip": clip}
        with self._lock:
            try:
                if not self.lease.acquire(who):
                    raise Refused(f"another client ({self.lease.holder}) holds the actuation lease")
                health = self.backend.health()
                if health.status != "ok":
                    raise Refused(f"backend is {health.status}: {health.reason}")
                current = self.backend.read().positions
                d = self.safety.check(positions, gripper, current, clip, stream)
                if not d.allowed:
                    raise Refused(d.reason)
                sent = self.backend.write(JointCommand(positions=d.positions, gripper=d.gripper))
            except (Refused, SimgateError) as exc:
                self.audit.record(who, via, "move", asked, "refused", reason=str(exc))
                raise Refused(str(exc)) from exc
            self.sent_commands += 1
            out = {"sent": sent.model_dump(), "clipped": d.clipped, "note": d.reason}
            self.audit.record(who, via, "move", asked, "sent", sent=out["sent"], reason=d.reason)
            return out

    def stop(self, who: str, via: str) -> dict[str, Any]:
        """Hold the current position (allowed even under e-stop: it moves nothing)."""
        with self._lock:
            # hold where the arm is, clipped into the limits (a measured pose can overshoot a limit slightly)
            cur = [min(j.upper, max(j.lower, q)) for q, j in zip(self.backend.read().positions, self.spec.arm_joints,
                                                                 strict=True)]
            sent = self.backend.write(JointCommand(positions=cur))
            self.audit.record(who, via, "stop", {}, "sent", sent=sent.model_dump())
            return {"sent": sent.model_dump()}

    def estop(self, who: str, via: str, reason: str = "requested") -> dict[str, Any]:
        self.safety.engage_estop(f"{reason} by {who}")
        try:
            self.stop(who, via)
        except SimgateError:
            pass
        self.audit.record(who, via, "estop", {"reason": reason}, "latched")
        return {"estop": True}

    def reset_estop(self, who: str, via: str) -> dict[str, Any]:
        self.safety.reset_estop()
        self.audit.record(who, via, "estop_reset", {}, "cleared")
        return {"estop": False}

    # ---- watchdog ----------------------------------------------------------------------------
    def heartbeat(self, client: str) -> None:
        self._watch[client] = time.monotonic()

    def forget(self, client: str) -> None:
        self._watch.pop(client, None)

    def _watchdog_loop(self) -> None:
        timeout = self.safety.config.watchdog_timeout_s
        while not self._stop.wait(min(timeout / 4, 0.01)):
            now = time.monotonic()
            for client, t in list(self._watch.items()):
                if now - t > timeout:
                    self._watch.pop(client, None)
                    try:
                        self.stop(client, "watchdog")
                        self.audit.record(client, "watchdog", "watchdog_stop", {"silent_s": now - t}, "sent")
                    except SimgateError:
                        pass
