"""The root Typer app and the console (stderr) every command module registers on."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, help="simgate: simulation -> research -> registry -> gateway -> arm")
console = Console(stderr=True)
