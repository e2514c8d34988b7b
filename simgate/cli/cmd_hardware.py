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
) -> None:
    """Run an emulated servo bus on a pseudo-terminal (its servos are PyBullet joints) until Ctrl-C."""
    import time

    from simgate.hardware.emulator.bus import EmulatedServoBus
    from simgate.hardware.serial.calibration import nominal_calibration

    if protocol not in ("feetech", "dynamixel"):
        raise SimgateError(f"--protocol must be 'feetech' or 'dynamixel', got {protocol!r}")
    bus = EmulatedServoBus(protocol, robot, baud=baud, seed=seed, randomization="preset" if randomize else None).start()
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
    port: str = typer.Option(..., help="serial device"),
    protocol: str = typer.Option("feetech", help="feetech | dynamixel"),
    robot: str = typer.Option("so101"),
    ids: str = typer.Option("", help="joint=id,... (default: 1..n in spec order)"),
    out: Path = typer.Option(Path("calibration.yaml")),
    baud: int = typer.Option(1_000_000),
    sweep_s: float = typer.Option(15.0, help="interactive: seconds to move every joint through its range"),
    joint: list[str] = typer.Option([], "--joint", help="from flags: NAME=OFFSET,DIRECTION,MIN,MAX (repeat)"),
) -> None:
    """Record a calibration: interactively (torque off, zero pose, range sweep) or from --joint flags."""
    from simgate.hardware.serial.calibrate import calibrate_from_flags, calibrate_interactive

    id_map = dict((k, int(v)) for k, v in (x.split("=") for x in ids.split(",") if x)) if ids else None
    if joint:
        cal = calibrate_from_flags(robot, joint, id_map)
    else:
        cal = calibrate_interactive(port, protocol, robot, id_map, baud, sweep_s, prompt=typer.prompt, echo=console.print)
    cal.save(out)
    console.print(f"wrote {out}")
