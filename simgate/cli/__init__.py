"""The ``simgate`` command line. Every SimgateError becomes a one-line message and exit code 2.

One module per command group registers on the root app (``_app``); importing them here fixes the
order ``simgate --help`` lists them in.
"""

from __future__ import annotations

import importlib
import sys

from simgate.cli._app import app, console
from simgate.errors import SimgateError

# the system's order: simulation -> training/registry -> research -> gateway -> hardware -> tools
COMMAND_MODULES = ("cmd_sim", "cmd_policies", "cmd_research", "cmd_gateway", "cmd_hardware", "cmd_check",
                   "cmd_tools")
for _name in COMMAND_MODULES:
    importlib.import_module(f"simgate.cli.{_name}")

__all__ = ["app", "main"]


def main() -> None:
    try:
        app()
    except SimgateError as exc:
        console.print(f"[red]error:[/red] {exc}")
        sys.exit(2)
