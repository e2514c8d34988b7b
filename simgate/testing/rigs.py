"""The plugin's building blocks, usable without pytest: context managers for a simulated backend,
an emulated servo bus (own process, fault injection), a live gateway (``simgate serve`` on a free
loopback port, tokens of each scope) and the ROS 2 driver node on a private DDS domain.

Each one stops its processes and removes its files when its ``with`` block ends, however it
ends; :mod:`simgate.testing.procs` covers the test process dying.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from simgate.testing import procs

SCOPES = ("read", "act", "admin")


class BusFaults(BaseModel):
    """Faults of an emulated servo bus (each can change while it runs; unplug is an action)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    drop_reply_prob: float = Field(0.0, ge=0, le=1, description="probability that a reply is not sent")
    corrupt_prob: float = Field(0.0, ge=0, le=1, description="probability that a reply's checksum/CRC is wrong")
    latency_ms: float = Field(0.0, ge=0, le=1000, description="added before every reply")
    dead_ids: frozenset[int] = Field(frozenset(), description="servo ids that never answer")
    silent: bool = Field(False, description="no servo answers (the cable to the servos is pulled)")

    def for_emulator(self) -> dict[str, Any]:
        return {"drop_reply_prob": self.drop_reply_prob, "corrupt_prob": self.corrupt_prob,
                "latency_s": self.latency_ms / 1000.0, "dead_ids": sorted(self.dead_ids), "silent": self.silent}


class BusConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    protocol: Literal["feetech", "dynamixel"] = "feetech"
    robot: str = Field("so101", description="built-in robot name or a spec YAML path")
    randomize: bool = Field(False, description="servos with the randomization preset's dynamics")
    seed: int = 0
    model: str | None = Field(None, description="servo model (default: STS3215 / XL430-W250)")
    faults: BusFaults = BusFaults()


# ---- simulated backend -------------------------------------------------------------------------
@contextlib.contextmanager
def sim_backend(robot: str = "so101", **kwargs) -> Iterator[Any]:
    """A connected real-time :class:`SimBackend` (PyBullet in this process), closed at the end."""
    from simgate.hardware.sim_backend import SimBackend

    backend = SimBackend(robot, **kwargs)
    backend.connect()
    try:
        yield backend
    finally:
        backend.close()


# ---- emulated servo bus ------------------------------------------------------------------------
class EmulatedBus:
    """The test side of an emulated bus process: its device path, ids, calibration, and controls."""

    def __init__(self, proc: subprocess.Popen, config: BusConfig, hello: dict, calibration: Path) -> None:
        self._proc, self.config = proc, config
        self.port: str = hello["port"]
        self.ids: dict[str, int] = hello["ids"]
        self.randomization: dict[str, float] = hello["randomization"]
        self.calibration = calibration
        self.protocol, self.robot = config.protocol, config.robot
        self._lock = threading.Lock()

    def call(self, cmd: str, *args):
        with self._lock:
            self._proc.stdin.write(json.dumps({"cmd": cmd, "args": list(args)}) + "\n")
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the emulated bus process exited ({self._proc.poll()})")
        out = json.loads(line)
        if not out["ok"]:
            raise RuntimeError(out["error"])
        return out["result"]

    def set_faults(self, faults: BusFaults | None = None, **fields) -> None:
        """Replace the bus's faults: ``set_faults(drop_reply_prob=0.3)`` or a :class:`BusFaults`."""
        self.call("faults", (faults or BusFaults(**fields)).for_emulator())

    def clear_faults(self) -> None:
        self.set_faults(BusFaults())

    def unplug(self) -> None:
        """The USB adapter disappears (device path gone, open handles fail)."""
        self.call("unplug")

    def replug(self) -> None:
        self.call("replug")

    def present_positions(self) -> dict[str, float]:
        """The joints' physical angles (rad) - what a person at the bench would measure."""
        return self.call("present_positions")

    def stats(self) -> dict[str, int]:
        return self.call("stats")

    def serial_config(self, **overrides) -> dict[str, Any]:
        """The ``serial`` backend config for this bus (a dict: ``SerialConfig(**cfg)`` or a gateway's
        ``backend:``). A 4 ms latency timer keeps the SDK's reply timeouts robust on loaded CI hosts."""
        return {"type": "serial", "port": self.port, "protocol": self.protocol, "robot": self.robot,
                "ids": dict(self.ids), "calibration": str(self.calibration), "latency_timer_ms": 4.0, **overrides}


@contextlib.contextmanager
def emulated_bus(workdir: Path, config: BusConfig = BusConfig()) -> Iterator[EmulatedBus]:
    """An emulated servo bus in its own process, with the matching nominal calibration file."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec = {"protocol": config.protocol, "robot": config.robot, "seed": config.seed, "model": config.model,
            "randomization": "preset" if config.randomize else None, "faults": config.faults.for_emulator()}
    log = workdir / "bus.log"
    with procs.running(procs.python_module("simgate.testing.bus_server", json.dumps(spec)), log,
                       stdin=subprocess.PIPE) as proc:
        hello = json.loads(procs.read_first_line(proc, "the emulated servo bus", log))
        cal = workdir / f"calibration-{config.protocol}.yaml"
        _write_calibration(config.robot, hello["ids"], cal)
        bus = EmulatedBus(proc, config, hello, cal)
        try:
            yield bus
        finally:
            with contextlib.suppress(OSError, ValueError):
                proc.stdin.write(json.dumps({"cmd": "stop"}) + "\n")
                proc.stdin.flush()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


def _write_calibration(robot: str, ids: dict[str, int], path: Path) -> None:
    from simgate.hardware.serial.calibration import nominal_calibration
    from simgate.sim.robot_spec import resolve_spec

    nominal_calibration(resolve_spec(robot), ids).save(path)


# ---- gateway -----------------------------------------------------------------------------------
class LiveGateway(BaseModel):
    """A running gateway: where it listens and a token of each scope."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)
    url: str = Field(description="REST base URL, e.g. http://127.0.0.1:43121")
    ws_url: str = Field(description="the WebSocket stream, ws://.../v1/stream")
    mcp_url: str = Field(description="MCP streamable HTTP endpoint, http://.../mcp/")
    tokens: dict[str, str] = Field(description="a bearer token per scope: read, act, admin")
    audit_path: Path
    log_path: Path | None = None
    tokens_path: Path
    service: Any = Field(None, description="the ArmService (in-process gateways only)")

    def headers(self, scope: str = "act") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[scope]}"}

    def audit(self) -> list[dict]:
        """The audit log's records so far."""
        if not self.audit_path.exists():
            return []
        return [json.loads(ln) for ln in self.audit_path.read_text().splitlines() if ln.strip()]


def _tokens(path: Path) -> dict[str, str]:
    from simgate.gateway.access import TokenStore

    store = TokenStore(path)
    return {s: store.create(f"{s}-client", s) for s in SCOPES}


def _urls(port: int) -> dict[str, str]:
    return {"url": f"http://127.0.0.1:{port}", "ws_url": f"ws://127.0.0.1:{port}/v1/stream",
            "mcp_url": f"http://127.0.0.1:{port}/mcp/"}


_BOUND = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


@contextlib.contextmanager
def live_gateway(workdir: Path, backend: dict[str, Any] | None = None, registry_dir: Path | None = None,
                 safety: dict[str, Any] | None = None, timeout_s: float = 90.0) -> Iterator[LiveGateway]:
    """``simgate serve`` in its own process on a free loopback port (the OS picks it: no race
    between parallel test workers), ready when ``/v1/ready`` answers 200."""
    import httpx

    workdir.mkdir(parents=True, exist_ok=True)
    settings = {"host": "127.0.0.1", "port": 0, "backend": backend or {"type": "sim", "robot": "so101"},
                "tokens_file": str(workdir / "tokens.json"), "audit_file": str(workdir / "audit.jsonl"),
                "rate_limit_hz": 5000.0, "rate_limit_burst": 10_000}
    if registry_dir is not None:
        settings["registry_dir"] = str(registry_dir)
    if safety:
        settings["safety"] = safety
    (workdir / "gateway.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    (workdir / "tokens.json").unlink(missing_ok=True)  # fresh tokens for each gateway
    tokens = _tokens(workdir / "tokens.json")
    log = workdir / "gateway.log"
    log.unlink(missing_ok=True)
    with procs.running(procs.python_module("simgate.cli", "serve", "--config", str(workdir / "gateway.yaml")),
                       log) as proc:
        port = _wait_bound(proc, log, timeout_s)
        gw = LiveGateway(**_urls(port), tokens=tokens, audit_path=workdir / "audit.jsonl", log_path=log,
                         tokens_path=workdir / "tokens.json")

        def ready() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(gw.url + "/v1/ready", timeout=2).status_code == 200
            return False

        if not procs.wait_until(lambda: ready() or proc.poll() is not None, timeout_s, 0.1) or proc.poll() is not None:
            raise RuntimeError(f"the gateway did not become ready; log {log}:\n{log.read_text()[-3000:]}")
        yield gw


def _wait_bound(proc: subprocess.Popen, log: Path, timeout_s: float) -> int:
    def bound():
        m = _BOUND.search(log.read_text()) if log.exists() else None
        return int(m.group(1)) if m else (proc.poll() is not None and -1)

    port = procs.wait_until(bound, timeout_s, 0.05)
    if not port or port < 0:
        raise RuntimeError(f"the gateway did not start; log {log}:\n{log.read_text()[-3000:] if log.exists() else ''}")
    return port


@contextlib.contextmanager
def in_process_gateway(backend, workdir: Path, safety=None) -> Iterator[LiveGateway]:
    """The gateway app served by uvicorn on a thread of this process around an already-built
    backend - for tests that look inside (``.service``) while they attack it from outside."""
    import uvicorn

    from simgate.gateway.access import AuditLog, RateLimiter, TokenStore
    from simgate.gateway.app import create_app
    from simgate.gateway.service import ArmService

    workdir.mkdir(parents=True, exist_ok=True)
    tokens = _tokens(workdir / "tokens.json")
    service = ArmService(backend, AuditLog(workdir / "audit.jsonl"), safety)
    service.start()
    app = create_app(service, TokenStore(workdir / "tokens.json"), RateLimiter(rate_hz=5000, burst=10_000))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    try:
        procs.wait_until(lambda: server.started, 20.0)
        yield LiveGateway(**_urls(port), tokens=tokens, audit_path=workdir / "audit.jsonl",
                          tokens_path=workdir / "tokens.json", service=service)
    finally:
        server.should_exit = True
        th.join(timeout=10)
        service.close()


# ---- ROS 2 driver ------------------------------------------------------------------------------
class Ros2Driver(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    domain_id: int = Field(description="the private ROS_DOMAIN_ID it runs on (use it for your nodes)")
    node: str = "simgate_driver"
    controller: str = "joint_trajectory_controller"
    robot: str
    log_path: Path
    pid: int


@contextlib.contextmanager
def ros2_driver(workdir: Path, domain_id: int, robot: str = "so101", bus: EmulatedBus | None = None,
                **params) -> Iterator[Ros2Driver]:
    """``simgate-ros2-driver`` on the simulated arm (or on ``bus`` through the serial backend),
    on DDS domain ``domain_id``, localhost only."""
    workdir.mkdir(parents=True, exist_ok=True)
    values: dict[str, Any] = {"backend": "sim", "robot": robot, **params}
    if bus is not None:
        ids = [bus.ids[n] for n in _joint_names(bus.robot)]
        values.update(backend="serial", robot=bus.robot, port=bus.port, protocol=bus.protocol,
                      calibration_file=str(bus.calibration), servo_ids=f"[{', '.join(map(str, ids))}]",
                      latency_timer_ms=4.0)
    args = procs.python_module("simgate.hardware.ros2_driver", "--ros-args")
    for k, v in values.items():
        args += ["-p", f"{k}:={v}"]
    log = workdir / "ros2_driver.log"
    env = {"ROS_DOMAIN_ID": str(domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    with procs.running(args, log, env=env) as proc:
        line = procs.read_first_line(proc, "the ROS 2 driver", log)
        if line != "ready":
            raise RuntimeError(f"the ROS 2 driver said {line!r}; log {log}:\n{log.read_text()[-3000:]}")
        yield Ros2Driver(domain_id=domain_id, robot=values["robot"], log_path=log, pid=proc.pid,
                         controller=str(values.get("controller", "joint_trajectory_controller")))


def _joint_names(robot: str) -> list[str]:
    from simgate.sim.robot_spec import resolve_spec

    return resolve_spec(robot).joint_names


def wait_for(pred, timeout_s: float = 5.0, period_s: float = 0.02):
    """Poll ``pred`` until it returns something truthy (returned) or ``timeout_s`` passes."""
    return procs.wait_until(pred, timeout_s, period_s)


def startup_seconds(t0: float) -> float:
    return round(time.monotonic() - t0, 2)
