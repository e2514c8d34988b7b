"""An emulated servo bus in its own process, driven by JSON lines on stdin (the test side:
:class:`simgate.testing.rigs.EmulatedBus`).

In its own process the emulator answers on its own schedule, as servos would, whatever the test
process's interpreter is doing. First stdout line: ``{"port": ..., "ids": {...}}``; then one
JSON answer per command line. It stops - removing its pty symlink - on ``{"cmd": "stop"}``, on
end of stdin (the test process went away) and on SIGTERM / SIGINT.

    python -m simgate.testing.bus_server '{"protocol": "feetech", "robot": "so101"}'
"""

from __future__ import annotations

import json
import signal
import sys

_FAULT_FIELDS = ("drop_reply_prob", "corrupt_prob", "latency_s", "dead_ids", "silent")


def _apply_faults(bus, faults: dict) -> None:
    bus.faults.clear()
    for key, value in faults.items():
        if key not in _FAULT_FIELDS:
            raise ValueError(f"unknown fault {key!r} (known: {_FAULT_FIELDS})")
        setattr(bus.faults, key, set(value) if key == "dead_ids" else value)


def _handle(bus, msg: dict):
    cmd, args = msg.get("cmd"), msg.get("args", [])
    if cmd == "faults":
        _apply_faults(bus, args[0])
        return None
    if cmd in ("unplug", "replug", "present_positions", "release_hand", "move_by_hand", "peek"):
        return getattr(bus, cmd)(*args)
    if cmd == "stats":
        return {"packets_handled": bus.packets_handled, "partial_packets_dropped": bus.partial_packets_dropped}
    raise ValueError(f"unknown command {cmd!r}")


def main(argv: list[str] | None = None) -> int:
    from simgate.hardware.emulator.bus import EmulatedServoBus

    cfg = json.loads((argv if argv is not None else sys.argv[1:])[0])
    faults = cfg.pop("faults", {})

    stopping = False

    def _terminate(signum, frame):
        if not stopping:  # once the clean-up has begun, a second signal must not cut it short
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    bus = EmulatedServoBus(**cfg)
    try:
        bus.start()
        _apply_faults(bus, faults)
        print(json.dumps({"port": bus.port, "ids": bus.ids, "randomization": bus.randomization}), flush=True)
        for line in sys.stdin:
            msg = json.loads(line)
            if msg.get("cmd") == "stop":
                break
            try:
                out = {"ok": True, "result": _handle(bus, msg)}
            except Exception as exc:  # noqa: BLE001 - reported to the test side, which raises it
                out = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(out), flush=True)
    except (KeyboardInterrupt, BrokenPipeError):
        pass
    finally:
        # the test process dying closes stdin and sends SIGTERM at once: the second must not cut
        # the clean-up short (the pty symlink would stay), even if it lands as the clean-up begins
        while True:
            try:
                stopping = True
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                bus.stop()
                break
            except KeyboardInterrupt:
                continue
    return 0


if __name__ == "__main__":
    sys.exit(main())
