"""An emulated bus in its own process, driven like the in-process one (``faults``, ``unplug``,
``peek`` ...) through a command pipe.

In the test process, the emulator's threads share the GIL with the host's SDK calls: on a
loaded machine a preempted GIL holder stalls the emulator for tens of ms (a real servo never
waits for the host's interpreter). In its own process the emulator answers on its own
schedule, as a servo would, which is what the serial fault tests under CPU load need.
"""

from __future__ import annotations

import multiprocessing as mp

_CTX = mp.get_context("forkserver")
_CTX.set_forkserver_preload(["simgate.hardware.emulator.bus"])


def _child(conn, protocol, robot, kwargs):
    from simgate.hardware.emulator.bus import EmulatedServoBus

    bus = EmulatedServoBus(protocol, robot, **kwargs).start()
    conn.send((bus.port, bus.ids))
    try:
        while True:
            cmd, args = conn.recv()
            if cmd == "stop":
                break
            if cmd == "fault":
                setattr(bus.faults, *args)
                out = None
            elif cmd == "clear_faults":
                out = bus.faults.clear()
            else:
                out = getattr(bus, cmd)(*args)
            conn.send(out)
    finally:
        bus.stop()
        conn.send("stopped")


class _Faults:
    def __init__(self, proc: EmulatorProcess) -> None:
        object.__setattr__(self, "_proc", proc)

    def __setattr__(self, name, value) -> None:
        self._proc._call("fault", name, value)

    def clear(self) -> None:
        self._proc._call("clear_faults")


class EmulatorProcess:
    def __init__(self, protocol: str, robot: str = "so101", **kwargs) -> None:
        from simgate.sim.robot_spec import resolve_spec

        self.protocol, self.spec = protocol, resolve_spec(robot)
        self._conn, child = _CTX.Pipe()
        self._proc = _CTX.Process(target=_child, args=(child, protocol, robot, kwargs), daemon=True)
        self.faults = _Faults(self)

    def __enter__(self) -> EmulatorProcess:
        self._proc.start()
        if not self._conn.poll(60):
            raise RuntimeError("emulator process did not start")
        self.port, self.ids = self._conn.recv()
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._conn.send(("stop", ()))
            self._conn.poll(10)
        finally:
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.kill()

    def _call(self, cmd, *args):
        self._conn.send((cmd, args))
        return self._conn.recv()

    def unplug(self) -> None:
        self._call("unplug")

    def replug(self) -> None:
        self._call("replug")

    def peek(self, joint: str, register: str) -> int:
        return self._call("peek", joint, register)

    def present_positions(self) -> dict[str, float]:
        return self._call("present_positions")

    def move_by_hand(self, targets: dict[str, float]) -> None:
        self._call("move_by_hand", targets)

    def release_hand(self) -> None:
        self._call("release_hand")
