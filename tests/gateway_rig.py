"""A live gateway (uvicorn on loopback, in this process) around any backend, with tokens of each
scope - for tests that attack it from outside. simgate's pytest plugin builds it
(:func:`simgate.testing.rigs.in_process_gateway`); this keeps the dict the tests index."""

import contextlib

from simgate.gateway.access import TokenStore
from simgate.testing.rigs import in_process_gateway


@contextlib.contextmanager
def live_gateway(backend, tmp_path, safety=None):
    with in_process_gateway(backend, tmp_path, safety) as gw:
        yield {"url": gw.url, "tokens": gw.tokens, "service": gw.service, "token_store": TokenStore(gw.tokens_path),
               "audit": gw.audit_path}


def H(tok):
    return {"Authorization": f"Bearer {tok}"}
