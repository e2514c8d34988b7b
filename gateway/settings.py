"""One typed settings object for `simgate serve` (YAML file and/or flags)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simgate.errors import ConfigError
from simgate.hardware.safety import SafetyConfig


class GatewaySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = Field("127.0.0.1", description="bind address; localhost unless you mean it")
    port: int = Field(8000, ge=0, le=65535)
    backend: dict[str, Any] = Field(default_factory=lambda: {"type": "sim", "robot": "panda"})
    safety: SafetyConfig = SafetyConfig()
    tokens_file: Path = Path("gateway-tokens.json")
    audit_file: Path = Path("gateway-audit.jsonl")
    registry_dir: Path | None = None
    rate_limit_hz: float = Field(250.0, gt=0)
    rate_limit_burst: int = Field(500, ge=1)
    lease_ttl_s: float = Field(5.0, gt=0)
    readers_rate_hz: float = Field(1200.0, gt=0, description="state answers per second for all readers together: "
                                                             "past it readers wait, so actuation keeps the loop")

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides) -> GatewaySettings:
        data: dict[str, Any] = {}
        if path is not None:
            p = Path(path)
            if not p.exists():
                raise ConfigError(f"gateway settings file not found: {p}")
            data = yaml.safe_load(p.read_text()) or {}
        data.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            errs = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"gateway settings: {errs}") from exc


def build_app(settings: GatewaySettings, backend=None):
    """(app, service) from settings: backend -> ArmService (safety, audit, lease) -> FastAPI/MCP.
    ``backend``: an already-built backend instead of the one ``settings.backend`` describes."""
    from simgate.gateway.access import AuditLog, RateLimiter, TokenStore
    from simgate.gateway.app import create_app
    from simgate.gateway.service import ArmService
    from simgate.hardware.config import make_backend, parse_backend_config

    backend = backend or make_backend(parse_backend_config(settings.backend))
    service = ArmService(backend, AuditLog(settings.audit_file), settings.safety, settings.lease_ttl_s)
    app = create_app(service, TokenStore(settings.tokens_file),
                     RateLimiter(settings.rate_limit_hz, settings.rate_limit_burst), settings.registry_dir,
                     readers_rate_hz=settings.readers_rate_hz)
    return app, service
