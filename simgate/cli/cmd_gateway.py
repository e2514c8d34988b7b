"""Commands of the gateway: tokens create|list|revoke, serve."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from simgate.cli._app import app
from simgate.errors import ConfigError

tokens_app = typer.Typer(no_args_is_help=True, help="Gateway bearer tokens (stored hashed).")
app.add_typer(tokens_app, name="tokens")
TOKENS_DEFAULT = Path(os.environ.get("SIMGATE_TOKENS", "gateway-tokens.json"))


@tokens_app.command("create")
def tokens_create(name: str, scope: str = typer.Option("read", help="read | act | admin"),
                  file: Path = typer.Option(TOKENS_DEFAULT)) -> None:
    """Create a token; it is printed once and only its hash is stored."""
    from simgate.gateway.access import TokenStore

    print(TokenStore(file).create(name, scope))


@tokens_app.command("list")
def tokens_list(file: Path = typer.Option(TOKENS_DEFAULT)) -> None:
    from simgate.gateway.access import TokenStore

    for t in TokenStore(file).list():
        print(f"{t['name']}\t{t['scope']}\t{'revoked' if t['revoked'] else 'active'}")


@tokens_app.command("revoke")
def tokens_revoke(name: str, file: Path = typer.Option(TOKENS_DEFAULT)) -> None:
    from simgate.gateway.access import TokenStore

    TokenStore(file).revoke(name)
    print(f"revoked {name}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def serve(
    ctx: typer.Context,
    backend: str | None = typer.Option(None, help="sim | serial | ros2 (overrides the settings file)"),
    config: Path | None = typer.Option(None, help="gateway settings YAML (host, port, backend, safety, files)"),
    robot: str | None = typer.Option(None, help="robot spec for --backend"),
    host: str | None = typer.Option(None, help="bind address (default 127.0.0.1)"),
    port: int | None = typer.Option(None),
    tokens: Path | None = typer.Option(None, help="token file (default gateway-tokens.json)"),
    audit: Path | None = typer.Option(None, help="audit log (default gateway-audit.jsonl)"),
) -> None:
    """Serve the arm over REST, WebSocket and MCP (uvicorn), behind the safety layer.

    With --backend ros2 the gateway is a ROS 2 node (simgate_gateway): its parameters come from
    `--ros-args --params-file launch/params/gateway.yaml` (flags given here win)."""
    import uvicorn

    from simgate.gateway.settings import GatewaySettings, build_app

    if backend == "ros2":
        from simgate.gateway.ros2_node import serve_ros2

        serve_ros2(list(ctx.args), robot=robot, config=config, host=host, port=port, tokens_file=tokens,
                   audit_file=audit)
        return
    if ctx.args:
        raise ConfigError(f"unexpected arguments {ctx.args} (--ros-args needs --backend ros2)")
    settings = GatewaySettings.load(config, host=host, port=port, tokens_file=tokens, audit_file=audit)
    if backend is not None:
        settings.backend = {"type": backend, **({"robot": robot} if robot else {})}
    elif robot is not None:
        settings.backend = {**settings.backend, "robot": robot}
    app, service = build_app(settings)
    # the control loop (sim physics, state poller) gets the GIL within 1 ms of asking, not 5 ms,
    # however busy the event loop is with readers
    sys.setswitchinterval(0.001)
    service.start()
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
    finally:
        service.close()
