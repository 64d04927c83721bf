"""Real Execord servers for tests: uvicorn in a thread (in-process) or `execord serve` in a
child process (for crash tests), on a free port, over a real SQLite file or PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "ek_a11a11a11a11_admin-key-for-tests-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Live:
    """A running server: its URL, its store, and a client with the admin key."""

    url: str
    store: Any
    app: Any
    admin: httpx.Client
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, key: str | None) -> httpx.Client:
        """A client sending ``key`` (closed when the server stops)."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        c = httpx.Client(base_url=self.url, headers=headers, timeout=30)
        self.clients.append(c)
        return c

    def key(self, *scopes: str, project: str = "default", name: str | None = None) -> str:
        """A new API key with these scopes (made through the API, as an admin would)."""
        r = self.admin.post("/api/v1/keys", json={"project": project, "scopes": list(scopes), "name": name})
        assert r.status_code == 201, r.text
        return str(r.json()["key"])


@contextlib.contextmanager
def live_server(target: str, *, port: int | None = None, **settings: Any) -> Iterator[Live]:
    """``execord serve`` in this process (uvicorn in a thread) over the store at ``target``."""
    import uvicorn

    from execord.cli._serve import bootstrap_admin
    from execord.server import ServerSettings, create_app
    from execord.store import open_store

    store = open_store(target)
    bootstrap_admin(store, ADMIN_KEY)
    settings.setdefault("poll_s", 0.2)
    app = create_app(store, ServerSettings(**settings))
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    url = f"http://127.0.0.1:{port}"
    admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
    live = Live(url, store, app, admin)
    try:
        yield live
    finally:
        for c in live.clients:
            c.close()
        admin.close()
        server.should_exit = True
        thread.join(timeout=10)
        store.close()


class ServerProcess:
    """``execord serve`` as a child process that a test can SIGKILL and start again."""

    def __init__(self, db: str, *, port: int | None = None, cwd: Path | None = None, env: dict[str, str] | None = None,
                 reap_interval: float = 0.5):
        self.db = db
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cwd = cwd
        self.env = env or {}
        self.reap_interval = reap_interval
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = (cwd or Path(".")) / f"serve-{self.port}.log"

    def start(self, timeout: float = 20) -> ServerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EXECORD_")}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
        env.update({"EXECORD_ADMIN_KEY": ADMIN_KEY, **self.env})
        out = open(self.log, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "execord", "serve", "--db", self.db, "--port", str(self.port),
             "--reap-interval", str(self.reap_interval), "--log-level", "warning"],
            cwd=self.cwd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"execord serve exited {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"execord serve did not become ready:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self, key: str = ADMIN_KEY) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def sdk_env(url: str, key: str, spool: Path, **extra: str) -> dict[str, str]:
    """The environment of an agent process recording through a server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECORD_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.update({"EXECORD_URL": url, "EXECORD_API_KEY": key, "EXECORD_SPOOL_DIR": str(spool), **extra})
    return env
