"""Commands for hardware: backends, emulate, calibrate."""

from __future__ import annotations

from pathlib import Path

import typer

from simgate.cli._app import app, console
from simgate.errors import SimgateError


@app.command()
def backends() -> None:
    """List the hardware backends (chosen by `type:` in a backend config)."""
    from simgate.hardware.config import BACKENDS

    for name, what in BACKENDS.items():
        print(f"{name}\t{what}")


@app.command()
def emulate(
    protocol: str = typer.Option("feetech", help="feetech | dynamixel"),
    robot: str = typer.Option("so101", help="robot spec name or path"),
    baud: int = typer.Option(1_000_000),
    calibration_out: Path | None = typer.Option(None, "--calibration-out", help="write the matching calibration here"),
    randomize: bool = typer.Option(False, help="servos with the domain-randomization preset's dynamics (masses, damping)"),
    seed: int = typer.Option(0, help="seed of the randomization sample"),
    model: str | None = typer.Option(None, help="servo model: sts3215 (feetech default), xl430-w250 "
                                     "(dynamixel default), xm430-w350, xl330-m288"),
) -> None:
    """Run an emulated servo bus on a pseudo-terminal (its servos are PyBullet joints) until Ctrl-C."""
    import time

    from simgate.hardware.emulator.bus import EmulatedServoBus
    from simgate.hardware.serial.calibration import nominal_calibration

    if protocol not in ("feetech", "dynamixel"):
        raise SimgateError(f"--protocol must be 'feetech' or 'dynamixel', got {protocol!r}")
    import signal

    bus = EmulatedServoBus(protocol, robot, baud=baud, seed=seed, randomization="preset" if randomize else None,
                           model=model).start()

    def _terminate(signum, frame):  # SIGTERM: stop like Ctrl-C, so the pty symlink is removed
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    try:
        if calibration_out:
            nominal_calibration(bus.spec, bus.ids).save(calibration_out)
        print(bus.port, flush=True)
        console.print(f"{protocol} bus for {bus.spec.name} at {baud} baud; servo ids {bus.ids}; Ctrl-C to stop")
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        bus.stop()


@app.command()
def calibrate(
    port: str | None = typer.Option(None, help="serial device (interactive calibration)"),
    protocol: str = typer.Option("feetech", help="feetech | dynamixel"),
    robot: str = typer.Option("so101", help="robot spec name or path"),
    ids: str = typer.Option("", help="joint=id,... (default: 1..n in spec order)"),
    out: Path = typer.Option(Path("calibration.yaml")),
    baud: int = typer.Option(1_000_000),
    sweep_s: float = typer.Option(15.0, help="interactive: seconds to move every joint through its range"),
    joint: list[str] = typer.Option([], "--joint", help="from flags: NAME=OFFSET,DIRECTION,MIN,MAX (repeat)"),
    from_lerobot: Path | None = typer.Option(None, "--from-lerobot", help="convert a LeRobot calibration JSON"),
    zero_pose: list[str] = typer.Option([], "--zero-pose", help="with --from-lerobot: NAME=RAD, the URDF angle of a "
                                        "joint in the middle of its recorded range (default: the middle of the "
                                        "spec's range) (repeat)"),
) -> None:
    """Record a calibration: interactively (torque off, zero pose, range sweep), from --joint
    flags, or converted from a LeRobot calibration (--from-lerobot FILE --robot SPEC)."""
    from simgate.hardware.serial.calibrate import calibrate_from_flags, calibrate_interactive

    id_map = dict((k, int(v)) for k, v in (x.split("=") for x in ids.split(",") if x)) if ids else None
    if from_lerobot is not None:
        cal = _from_lerobot(from_lerobot, robot, zero_pose)
    elif joint:
        cal = calibrate_from_flags(robot, joint, id_map)
    elif port is None:
        raise SimgateError("calibrate: give --port (interactive), --joint flags or --from-lerobot FILE")
    else:
        cal = calibrate_interactive(port, protocol, robot, id_map, baud, sweep_s, prompt=typer.prompt, echo=console.print)
    cal.save(out)
    console.print(f"wrote {out}")


def _from_lerobot(path: Path, robot: str, zero_pose: list[str]):
    from simgate.hardware.serial.lerobot import import_lerobot, span_report
    from simgate.sim.robot_spec import load_robot_spec

    angles = {}
    for item in zero_pose:
        try:
            name, rad = item.split("=", 1)
            angles[name] = float(rad)
        except ValueError as exc:
            raise SimgateError(f"--zero-pose {item!r}: expected NAME=RAD") from exc
    spec = load_robot_spec(robot)
    cal = import_lerobot(path, spec, angles)
    console.print(f"LeRobot calibration {path} -> robot {spec.name}: zero pose = middle of each recorded range at "
                  + ("the spec's mid-range angles" if not angles else f"{angles} (others: spec mid-range)"))
    for line in span_report(cal, spec):
        console.print(f"  {line}")
    return cal
