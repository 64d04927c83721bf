"""``execord serve``: the REST API, the stream and the metrics, over SQLite or PostgreSQL."""

from __future__ import annotations

import os
import re
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import ConfigError

_KEY = re.compile(r"^ek_[0-9a-f]{6,32}_[A-Za-z0-9_-]{20,}$")


def bootstrap_admin(store: object, given: str | None) -> str | None:
    """On an empty store, the first admin key (project ``default``): ``given`` or a new one.

    Returns the new key when this call made one (to print once), else None.
    """
    if given is not None and not _KEY.match(given):
        raise ConfigError("EXECORD_ADMIN_KEY must look like ek_<hex id>_<secret of 20+ characters>; "
                          "make one with: python -c \"import secrets; print('ek_' + secrets.token_hex(6) + '_' + "
                          "secrets.token_urlsafe(32))\"")
    if given is not None:
        store.ensure_key(given, "default", ["admin"], name="bootstrap-admin")  # type: ignore[attr-defined]
        return None
    if store.count_keys() > 0:  # type: ignore[attr-defined]
        return None
    key, _ = store.create_key("default", ["admin"], name="bootstrap-admin", by="execord serve")  # type: ignore[attr-defined]
    return key


def serve(
    db: Annotated[str | None, typer.Option("--db", envvar="EXECORD_DB",
                                           help="An SQLite file or a postgresql:// URL (default ./.execord/execord.db).",
                                           show_default=False)] = None,
    host: Annotated[str, typer.Option(help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="The port to listen on.")] = 8080,
    pool_size: Annotated[int, typer.Option(min=1, max=200, help="PostgreSQL connections per process.")] = 16,
    reap_interval: Annotated[float, typer.Option(min=0.1, help="Seconds between looks for lapsed leases.")] = 2.0,
    log_level: Annotated[str, typer.Option(help="critical, error, warning, info or debug.")] = "info",
    ledger_key: Annotated[Path | None, typer.Option("--ledger-key", envvar="EXECORD_LEDGER_KEY", show_default=False,
                                                    help="Sign ledger checkpoints with this key (from `execord "
                                                         "ledger keygen`; env EXECORD_LEDGER_KEY).")] = None,
    checkpoint_every: Annotated[int, typer.Option(min=1, help="Sign a checkpoint once this many executions "
                                                              "were sealed since the last one.")] = 1000,
    checkpoint_interval: Annotated[float, typer.Option(min=0.1, help="… or once this many seconds passed "
                                                                     "with any new seal.")] = 60.0,
) -> None:
    """Run the Execord server: REST API at /api/v1, OpenAPI at /docs, /healthz, /readyz, /metrics.

    The first start on an empty store prints an admin key once (or takes EXECORD_ADMIN_KEY).

    Example: execord serve --db postgresql://execord@db/execord --host 0.0.0.0 --port 8080
    """
    import uvicorn

    from ..server import Limits, ServerSettings, create_app
    from ..store import DEFAULT_DB, open_store

    if log_level not in ("critical", "error", "warning", "info", "debug"):
        raise ConfigError(f"--log-level {log_level!r}: use critical, error, warning, info or debug")
    sock = _listen(host, port)  # first: a port in use makes no store and prints no admin key
    port = sock.getsockname()[1]
    signer = None
    if ledger_key is not None:  # before the store: a bad key file makes no store and no admin key
        from ..ledger._log import read_signer

        signer = read_signer(ledger_key)
    store = open_store(db or DEFAULT_DB, pool_size=pool_size)
    made = bootstrap_admin(store, os.environ.get("EXECORD_ADMIN_KEY"))
    if made is not None:
        sys.stderr.write(
            "execord: this store had no API keys; here is its admin key (project default). It is shown once:\n"
            f"\n    {made}\n\n"
            "  export EXECORD_API_KEY=<that key>; make narrower ones with `execord keys create`.\n"
        )
        sys.stderr.flush()
    app = create_app(store, ServerSettings(reap_interval_s=reap_interval, ledger_signer=signer,
                                           checkpoint_every=checkpoint_every,
                                           checkpoint_interval_s=checkpoint_interval))
    where = store.target if store.backend == "sqlite" else "PostgreSQL"  # type: ignore[attr-defined]
    sys.stderr.write(f"execord: serving {where} at http://{host}:{port} (API /api/v1, docs /docs)\n")
    sys.stderr.flush()
    # h11, not httptools: h11 stops reading a request head that grows past the limit (httptools
    # would read headers of any size into memory); the app answers a smaller oversize one 431.
    config = uvicorn.Config(app, log_level=log_level, access_log=log_level == "debug", timeout_graceful_shutdown=5,
                            http="h11", h11_max_incomplete_event_size=Limits().max_head_bytes)
    uvicorn.Server(config).run(sockets=[sock])


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything else is done (uvicorn serves on it)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"--host {host!r} is not an address to listen on ({getattr(exc, 'strerror', None) or exc}): "
                          "give an IP address such as 127.0.0.1 or 0.0.0.0, or a host name of this machine") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (is another server running there? "
                          "choose another --port)") from None
    return sock
