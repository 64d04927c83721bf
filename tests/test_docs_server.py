"""The server docs are true and complete: docs/api.md, docs/deployment.md, and the server
parts of docs/cli.md.

- docs/api.md's route table lists every route of ``execord.server.create_app(store)`` with
  its method and scopes (and no route the app lacks), each API route has its own section,
  its limits are the server's, and its JSON shapes (``<!-- api-shape: METHOD PATH -->``)
  have exactly the keys the server answers with;
- the JSON shapes of ``execord keys …`` and ``execord executions cancel`` in docs/cli.md
  (``<!-- server-shape: … -->``) have exactly the keys the commands print;
- docs/deployment.md's grants are ``APP_GRANTS`` and its metrics table is ``METRIC_NAMES``;
- every ``execord …`` line of a ```sh block names a real command with real options;
- the walkthrough of docs/deployment.md runs: its ``sh`` blocks, in order, against a real
  ``execord serve`` (SQLite, then PostgreSQL as the least-privilege role the page sets up),
  with its agent in other processes, and the server then shows what the page says.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import httpx
import pytest
from _server import ADMIN_KEY, ServerProcess, free_port, live_server
from test_docs import _check_names_a_real_command, _same_shape

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
API_MD = DOCS / "api.md"
DEPLOYMENT_MD = DOCS / "deployment.md"
CLI_MD = DOCS / "cli.md"
DOC_FILES = [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]
FENCE = re.compile(r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\b")
KEY = re.compile(r"\bek_[0-9a-f]+_[A-Za-z0-9_-]{20,}")
PLACEHOLDER = re.compile(r"<([a-z][a-z-]*)>")


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECORD_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("CI", None)
    env.update(extra)
    return env


def _execord(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "execord", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


# --- the routes of docs/api.md ---------------------------------------------------------------


def _scopes(dependant: Any) -> set[str]:
    """The scopes of the ``require(...)`` dependency somewhere under a route's dependant."""
    found: set[str] = set()
    stack = [dependant] if dependant is not None else []
    while stack:
        d = stack.pop()
        name = getattr(d.call, "__name__", "") if d.call is not None else ""
        if name.startswith("require_"):
            found.update(name.removeprefix("require_").split("_or_"))
        stack.extend(d.dependencies)
    return found


def _app_routes(app: Any) -> dict[tuple[str, str], set[str]]:
    """(method, path) → scopes of every route of the app (HEAD aside), included routers too."""
    out: dict[tuple[str, str], set[str]] = {}

    def add(path: str, methods: Any, dependant: Any) -> None:
        for method in sorted(set(methods or ()) - {"HEAD"}):
            out[(method, path)] = _scopes(dependant)

    for r in app.routes:
        contexts = getattr(r, "effective_route_contexts", None)  # FastAPI keeps included routers whole
        if contexts is not None:
            for c in contexts():
                add(c.path, c.methods, c.dependant)
        elif hasattr(r, "path"):
            add(r.path, getattr(r, "methods", None), getattr(r, "dependant", None))
    return out


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from execord.server import create_app
    from execord.store import open_store

    store = open_store(str(tmp_path_factory.mktemp("routes") / "execord.db"))
    yield create_app(store)
    store.close()


def _doc_routes() -> dict[tuple[str, str], set[str]]:
    text = _read(API_MD)
    m = re.search(r"<!-- routes:.*?-->\n(.*?)\n\n", text, re.S)
    assert m, "docs/api.md has no <!-- routes: … --> table"
    out = {}
    for line in m.group(1).splitlines():
        row = re.match(r"^\| `(\w+)` \| `([^`]+)` \| ([^|]*) \|", line)
        if row:
            out[(row.group(1), row.group(2))] = set(re.findall(r"`(\w+)`", row.group(3)))
    return out


def test_api_md_lists_every_route_with_its_method_and_scopes(app: Any) -> None:
    real, documented = _app_routes(app), _doc_routes()
    assert len(real) > 30
    missing = sorted(set(real) - set(documented))
    assert not missing, f"routes the app has that docs/api.md does not list: {missing}"
    extra = sorted(set(documented) - set(real))
    assert not extra, f"routes docs/api.md lists that the app does not have: {extra}"
    wrong = {f"{m} {p}": (sorted(documented[(m, p)]), sorted(s)) for (m, p), s in real.items()
             if documented[(m, p)] != s}
    assert not wrong, f"scopes in docs/api.md (documented, real): {wrong}"


def test_every_route_has_a_section_in_api_md(app: Any) -> None:
    text = _read(API_MD)
    missing = [f"{m} {p}" for m, p in _app_routes(app)
               if p != "/docs/oauth2-redirect" and f"### `{m} {p}`" not in text]
    assert not missing, f"routes without a '### `METHOD PATH`' section in docs/api.md: {missing}"


def test_api_md_limits_are_the_servers(app: Any) -> None:
    from execord.server import Limits

    rows = {}
    for line in _read(API_MD).split("<!-- limits:", 1)[1].split("\n\n", 1)[0].splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 3 and cells[1][:1].isdigit():
            rows[cells[0]] = int(cells[1].split()[0])
    limits = Limits()
    for f in fields(limits):
        hits = [v for k, v in rows.items() if f"(`{f.name}`)" in k]
        if f.name in ("max_body_bytes", "max_head_bytes", "max_batch_events", "max_event_bytes", "max_blob_bytes"):
            assert hits == [getattr(limits, f.name)], (f.name, hits)
    # The page and wait bounds are the app's parameter bounds (as OpenAPI states them).
    spec = app.openapi()["paths"]

    def maximum(path: str, name: str) -> Any:
        params = spec[path]["get"]["parameters"]
        schema = next(p["schema"] for p in params if p["name"] == name)
        return schema.get("maximum") or next(s["maximum"] for s in schema.get("anyOf", []) if "maximum" in s)

    assert rows["a page of executions (`limit`)"] == maximum("/api/v1/executions", "limit")
    assert rows["a page of events (`/events` `limit`)"] == maximum("/api/v1/executions/{execution_id}/events", "limit")
    assert rows["a page of approvals (`limit`)"] == maximum("/api/v1/approvals", "limit")
    assert rows["a long poll (`/approvals/{id}` `wait`)"] == maximum("/api/v1/approvals/{approval_id}", "wait")


# --- what deployment.md copies from the code -------------------------------------------------------


def test_deployment_md_grants_are_app_grants() -> None:
    from execord.store._schema_pg import APP_GRANTS

    block = re.search(r"<!-- app-grants -->\n```sql\n(.*?)```", _read(DEPLOYMENT_MD), re.S)
    assert block, "docs/deployment.md has no <!-- app-grants --> sql block"
    assert block.group(1).strip() == APP_GRANTS.format(role="execord_app").strip()


def test_deployment_md_lists_every_metric() -> None:
    from execord.server import METRIC_NAMES

    table = _read(DEPLOYMENT_MD).split("<!-- metrics:", 1)[1].split("\n\n", 1)[0]
    assert re.findall(r"^\| `(execord_\w+)` \|", table, re.M) == list(METRIC_NAMES)


def _sh_lines() -> list[str]:
    out = []
    for path in DOC_FILES:
        for m in FENCE.finditer(_read(path)):
            if m.group("lang") != "sh":
                continue
            for raw in m.group("body").replace("\\\n", " ").splitlines():
                line = re.sub(r"\s#\s.*$", "", raw).strip().removesuffix("&").strip()
                line = PLACEHOLDER.sub("X", line)
                tokens = shlex.split(line) if line else []
                while tokens and re.match(r"^[A-Z_][A-Z0-9_]*=", tokens[0]):
                    tokens = tokens[1:]
                if tokens[:1] == ["execord"]:
                    out.append(shlex.join(tokens))
    return out


def test_sh_blocks_name_real_commands_and_options() -> None:
    lines = _sh_lines()
    assert len(lines) >= 15
    problems = [p for line in lines for p in _check_names_a_real_command(line)]
    assert not problems, "\n".join(problems)


# --- JSON shapes ---------------------------------------------------------------------------------


def _marked_shapes(path: Path, marker: str) -> dict[str, Any]:
    pattern = rf"<!-- {marker}: (?P<name>[^>]+?) -->\s*```json[^\n]*\n(?P<body>.*?)^```"
    return {m.group("name"): json.loads(m.group("body")) for m in re.finditer(pattern, _read(path), re.M | re.S)}


@pytest.mark.slow
def test_cli_md_server_shapes_are_what_the_commands_print(tmp_path: Path) -> None:
    from execord.runtime import Execord

    shapes = _marked_shapes(CLI_MD, "server-shape")
    assert set(shapes) == {"keys create", "keys list", "keys revoke", "executions cancel"}
    db = str(tmp_path / "execord.db")
    env = _env(EXECORD_DB=db)

    def cli(*args: str) -> Any:
        r = _execord([*args, "--format", "json"], tmp_path, env)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    actual = {"keys create": cli("keys", "create", "--scopes", "ingest", "--name", "agents")}
    actual["keys list"] = cli("keys", "list")
    actual["keys revoke"] = cli("keys", "revoke", actual["keys create"]["id"])
    ex = Execord(agent="crawler", db=db)
    with ex.execution("crawl") as run:
        actual["executions cancel"] = cli("executions", "cancel", run.id, "--reason", "looping")
    ex.close()
    problems = [p for name, doc in shapes.items() for p in _same_shape(doc, actual[name], name)]
    assert not problems, "\n".join(problems)


GOVERNANCE = """
policies:
  - id: big-refunds
    on: tool.request
    when: tool.name == "issue_refund" && tool.args.amount > 1000
    effect: require_approval
    approvers: [finance]
    timeout: 30m
    message: Refunds over 1000 need finance.
"""


def _until(what: str, fn: Any, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_api_md_shapes_are_what_the_server_answers(tmp_path: Path) -> None:
    from execord.runtime import Execord

    shapes = _marked_shapes(API_MD, "api-shape")
    assert len(shapes) >= 10
    db = str(tmp_path / "execord.db")
    actual: dict[str, Any] = {}
    with live_server(db) as live:
        admin = live.admin
        actual["POST /api/v1/governance/apply"] = admin.post("/api/v1/governance/apply",
                                                             json={"source": GOVERNANCE}).json()
        made = admin.post("/api/v1/keys", json={"scopes": ["read", "approve", "operate"], "name": "operators"})
        assert made.status_code == 201
        actual["POST /api/v1/keys"] = made.json()
        ops = live.client(made.json()["key"])
        agent_key = live.key("ingest")
        agent = live.client(agent_key)

        # An embedded agent writes the same SQLite file; the server sees it and decides for it.
        ex = Execord(agent="refund-bot", db=db)

        @ex.tool
        def issue_refund(order_id: str, amount: int) -> str:
            return "refunded"

        @ex.workflow
        def refund(order_id: str, amount: int) -> str:
            return issue_refund(order_id, amount)

        worker = threading.Thread(target=refund, args=("A-1002", 5000))
        worker.start()
        pending = _until("a pending approval", lambda: ops.get("/api/v1/approvals").json()["items"])
        actual["GET /api/v1/approvals"] = {"items": pending}
        eid = pending[0]["execution_id"]
        actual["GET /api/v1/unified/executions/{execution_id}"] = ops.get(f"/api/v1/unified/executions/{eid}").json()
        assert ops.post(f"/api/v1/approvals/{pending[0]['id']}/approve", json={"comment": "ok"}).status_code == 200
        worker.join(20)
        assert not worker.is_alive()
        with ex.execution("audit") as run:
            r = ops.post(f"/api/v1/unified/executions/{run.id}/cancel", json={"reason": "looping"})
            assert r.status_code == 202, r.text
            actual["POST /api/v1/unified/executions/{execution_id}/cancel"] = r.json()
        ex.close()

        actual["GET /api/v1/executions"] = ops.get("/api/v1/executions", params={"limit": 1}).json()
        actual["GET /api/v1/executions/{execution_id}/seal"] = ops.get(f"/api/v1/executions/{eid}/seal").json()
        step = ops.get(f"/api/v1/executions/{eid}/steps").json()["items"][0]
        actual["GET /api/v1/blobs/{digest}"] = ops.get(f"/api/v1/blobs/{step['input']['$blob']}").json()
        start = {"execution_id": str(uuid.uuid4()), "agent": {"name": "a"}, "workflow": {"name": "w"}}
        actual["POST /api/v1/executions/start"] = agent.post("/api/v1/executions/start", json=start).json()
        actual["POST /api/v1/heartbeat"] = agent.post("/api/v1/heartbeat",
                                                      json={"executions": {start["execution_id"]: {}}}).json()
    assert set(shapes) <= set(actual), sorted(set(shapes) - set(actual))
    assert actual["GET /api/v1/executions"]["next_cursor"] is not None
    problems = [p for name, doc in shapes.items() for p in _same_shape(doc, actual[name], name)]
    assert not problems, "docs/api.md shapes differ from the server's answers:\n" + "\n".join(problems)


# --- the walkthrough of deployment.md -----------------------------------------------------------------


def _walkthrough() -> list[tuple[str, str]]:
    text = _read(DEPLOYMENT_MD)
    m = re.search(r"<!-- walkthrough:start -->(.*?)<!-- walkthrough:end -->", text, re.S)
    assert m, "docs/deployment.md has no walkthrough markers"
    return [(b.group("lang"), b.group("body")) for b in FENCE.finditer(m.group(1))]


def test_the_walkthrough_has_a_server_an_agent_and_every_step() -> None:
    blocks = _walkthrough()
    langs = [lang for lang, _ in blocks]
    assert langs.count("yaml") == 1 and langs.count("python") == 1
    sh = "\n".join(body for lang, body in blocks if lang == "sh")
    for step in ("execord serve", "execord keys create --scopes ingest", "python agent.py", "/stream",
                 "execord executions list", "execord approvals approve", "execord executions cancel"):
        assert step in sh, step


@dataclass
class Walk:
    """The state of one run of the walkthrough: its folder, environment, server and children."""

    folder: Path
    db: str | None = None
    server: ServerProcess | None = None
    env: dict[str, str] = field(default_factory=_env)
    values: dict[str, str] = field(default_factory=dict)
    background: list[tuple[str, subprocess.Popen[str], Path]] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)

    def substitute(self, line: str) -> str:
        port = str(self.server.port) if self.server else "8080"
        line = line.replace("127.0.0.1:8080", f"127.0.0.1:{port}")

        def known(m: re.Match[str]) -> str:
            return self.values.get(m.group(1), m.group(0))

        return PLACEHOLDER.sub(known, line)

    def expand(self, token: str) -> str:
        return re.sub(r"\$\{?(\w+)\}?", lambda m: self.env.get(m.group(1), ""), token)

    def run_line(self, raw: str) -> None:
        m = re.search(r"\s#\s?(.*)$", raw)
        command, comment = (raw[: m.start()], m.group(1)) if m else (raw, "")
        command = self.substitute(command.strip())
        if not command:
            return
        wanted = [w for w in PLACEHOLDER.findall(comment) if w not in self.values]
        background = command.endswith("&")
        tokens = shlex.split(command.removesuffix("&"))
        if tokens[0] == "export":
            for assignment in tokens[1:]:
                key, _, value = assignment.partition("=")
                self.env[key] = self.expand(value)
            return
        extra = {}
        while re.match(r"^[A-Z_][A-Z0-9_]*=", tokens[0]):
            key, _, value = tokens.pop(0).partition("=")
            extra[key] = self.expand(value)
        assert not PLACEHOLDER.search(" ".join(tokens)), f"{raw!r}: a placeholder no earlier command printed"
        if tokens[:2] == ["execord", "serve"]:
            self.serve(tokens)
        elif background:
            self.start(command, tokens, extra)
        elif tokens[0] == "execord":
            self.execord(raw, tokens, extra, wanted)
        else:
            raise AssertionError(f"the walkthrough test does not know how to run {raw!r}")

    def serve(self, tokens: list[str]) -> None:
        assert not _check_names_a_real_command(shlex.join(tokens))
        db = tokens[tokens.index("--db") + 1] if "--db" in tokens else ".execord/execord.db"
        self.server = ServerProcess(self.db or str(self.folder / db), cwd=self.folder).start(timeout=30)
        self.values["admin-key"] = ADMIN_KEY  # ServerProcess gives it as EXECORD_ADMIN_KEY

    def execord(self, raw: str, tokens: list[str], extra: dict[str, str], wanted: list[str]) -> None:
        assert not _check_names_a_real_command(shlex.join(tokens)), raw
        deadline = time.monotonic() + 30
        while True:
            r = _execord(tokens[1:], self.folder, {**self.env, **extra}, timeout=90)
            assert r.returncode == 0, f"{raw}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
            captured = {w: self._capture(w, r.stdout) for w in wanted}
            if all(captured.values()):
                break
            assert time.monotonic() < deadline, f"{raw}: its output never showed {wanted}:\n{r.stdout}"
            time.sleep(0.3)
        self.values.update({w: v for w, v in captured.items() if v})
        self.outputs[" ".join(tokens[1:3])] = r.stdout

    @staticmethod
    def _capture(name: str, output: str) -> str | None:
        pattern = KEY if name.endswith("-key") else UUID
        m = pattern.search(output)
        return m.group(0) if m else None

    def start(self, command: str, tokens: list[str], extra: dict[str, str]) -> None:
        env = {**self.env, **extra, "EXECORD_SPOOL_DIR": str(self.folder / "spool")}
        if tokens[0] == "python":
            argv = [sys.executable, *tokens[1:]]
        elif tokens[0] == "curl" and shutil.which("curl"):
            argv = [shutil.which("curl") or "curl", *(self.expand(t) for t in tokens[1:])]
        elif tokens[0] == "curl":
            argv = [sys.executable, "-c", _CURL_N, *(self.expand(t) for t in tokens[1:])]
        else:
            raise AssertionError(f"the walkthrough test does not know how to start {command!r}")
        out = self.folder / f"background-{len(self.background)}.out"
        with open(out, "w") as f:
            proc = subprocess.Popen(argv, cwd=self.folder, env=env, stdout=f, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, text=True)
        self.background.append((command, proc, out))

    def finish(self) -> dict[str, str]:
        """Wait for every background process; their output, by command."""
        done = {}
        for command, proc, out in self.background:
            try:
                rc = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise AssertionError(f"{command!r} did not end:\n{out.read_text()}") from None
            assert rc == 0, f"{command!r} exited {rc}:\n{out.read_text()}"
            done[command] = out.read_text()
        return done

    def stop(self) -> None:
        for _, proc, _ in self.background:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        if self.server is not None:
            self.server.stop()


# Where curl is missing: ``curl -sN -H "Authorization: …" URL`` with httpx, printing the stream.
_CURL_N = """
import sys, httpx
args, headers, url = sys.argv[1:], {}, None
while args:
    a = args.pop(0)
    if a == "-H":
        k, _, v = args.pop(0).partition(":")
        headers[k.strip()] = v.strip()
    elif not a.startswith("-"):
        url = a
with httpx.stream("GET", url, headers=headers, timeout=None) as r:
    for chunk in r.iter_text():
        sys.stdout.write(chunk)
        sys.stdout.flush()
"""


def _perform(walk: Walk) -> dict[str, str]:
    for lang, body in _walkthrough():
        if lang == "yaml":
            (walk.folder / "execord.yaml").write_text(body, encoding="utf-8")
        elif lang == "python":
            (walk.folder / "agent.py").write_text(body, encoding="utf-8")
        elif lang == "sh":
            for line in body.splitlines():
                walk.run_line(line)
    return walk.finish()


def _check_what_the_server_shows(walk: Walk, done: dict[str, str]) -> None:
    text = _read(DEPLOYMENT_MD)
    v = walk.values
    assert {"admin-key", "agent-key", "operator-key", "execution-id", "approval-id", "audit-id"} <= set(v)
    assert v["audit-id"] in walk.outputs["executions list"]
    agent_out = "\n".join(out for cmd, out in done.items() if "agent.py" in cmd)
    for said in ("refunded 5000 on A-1002", "audit stopped by key:operators: wrong batch"):
        assert said in text and said in agent_out, (said, agent_out)
    stream = next(out for cmd, out in done.items() if cmd.startswith("curl"))
    for line in ("event: status", "id: 0", "event: approval.decided", "event: execution.ended"):
        assert line in stream, (line, stream[:2000])

    assert walk.server is not None
    with walk.server.client(v["operator-key"]) as ops:
        refund = ops.get(f"/api/v1/executions/{v['execution-id']}").json()["execution"]
        assert (refund["workflow"], refund["agent"], refund["status"]) == ("refund", "refund-bot", "succeeded")
        approval = ops.get(f"/api/v1/approvals/{v['approval-id']}").json()
        assert (approval["status"], approval["reviewer"], approval["comment"]) == (
            "approved", "key:operators", "customer verified by phone")
        audit = ops.get(f"/api/v1/executions/{v['audit-id']}").json()["execution"]
        assert (audit["status"], audit["failure_class"]) == ("cancelled", "cancelled")
        assert audit["cancel"] == {"by": "key:operators", "reason": "wrong batch"}
    # And the CLI, through the server, lists both executions of the agent.
    r = _execord(["executions", "list", "--agent", "refund-bot", "--format", "json"], walk.folder, walk.env)
    assert r.returncode == 0, r.stderr
    assert {row["id"] for row in json.loads(r.stdout)} >= {v["execution-id"], v["audit-id"]}


# --- PostgreSQL, as the least-privilege role of deployment.md ---------------------------------------------


def _pg_section() -> str:
    text = _read(DEPLOYMENT_MD)
    return text.split("### PostgreSQL: a least-privilege role", 1)[1].split("\n### ", 1)[0]


@dataclass
class PgNames:
    """Unique names for the roles and database of one test run, on the test's PostgreSQL."""

    admin_url: str
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def hostport(self) -> str:
        return self.admin_url.split("@", 1)[1].split("/", 1)[0]

    def rename(self, text: str) -> str:
        text = re.sub(r"\bexecord_owner\b", f"execord_owner_{self.suffix}", text)
        text = re.sub(r"\bexecord_app\b", f"execord_app_{self.suffix}", text)
        text = text.replace("@db.internal:5432/execord", f"@{self.hostport}/execord_{self.suffix}")
        return re.sub(r"\bDATABASE execord\b", f"DATABASE execord_{self.suffix}", text)

    def sql(self, url: str, script: str) -> None:
        import psycopg

        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            for statement in filter(None, (s.strip() for s in script.split(";"))):
                conn.execute(statement)


@pytest.fixture
def pg_app_url(tmp_path: Path) -> Iterator[str]:
    """The documented PostgreSQL setup done for real: roles, database, the owner's migration,
    the grants; yields the URL ``execord serve`` uses as the application role."""
    from conftest import PG_ADMIN_URL

    names = PgNames(PG_ADMIN_URL)
    try:
        names.sql(PG_ADMIN_URL, "SELECT 1")
    except Exception as exc:  # CI starts PostgreSQL (.ci/run); run with --store sqlite to leave it out
        pytest.fail(f"no PostgreSQL at {PG_ADMIN_URL}: {exc}")
    section = _pg_section()
    sql_blocks = [m.group("body") for m in FENCE.finditer(section) if m.group("lang") == "sql"]
    sh_lines = [line for m in FENCE.finditer(section) if m.group("lang") == "sh" for line in m.group("body").splitlines()]
    assert len(sql_blocks) == 2 and len(sh_lines) == 1, (sql_blocks, sh_lines)
    try:
        names.sql(PG_ADMIN_URL, names.rename(sql_blocks[0]))  # as a superuser: roles, database
        migrate = shlex.split(names.rename(sh_lines[0]))
        assert migrate[:2] == ["execord", "verify"] and not _check_names_a_real_command(sh_lines[0])
        r = _execord(migrate[1:], tmp_path, _env())  # as the owner: the tables
        assert r.returncode == 0 and r.stdout.rstrip().endswith("OK"), r.stdout + r.stderr
        owner_url = migrate[migrate.index("--db") + 1]
        names.sql(owner_url, names.rename(sql_blocks[1]))  # as the owner: the grants
        serve = re.search(r"execord serve --db (postgresql://\S+)", _read(DEPLOYMENT_MD))
        assert serve, "docs/deployment.md shows no `execord serve --db postgresql://…`"
        yield names.rename(serve.group(1))
    finally:
        s = names.suffix
        try:
            names.sql(PG_ADMIN_URL, f"DROP DATABASE IF EXISTS execord_{s} WITH (FORCE); "
                                    f"DROP ROLE IF EXISTS execord_app_{s}; DROP ROLE IF EXISTS execord_owner_{s}")
        except Exception:
            pass


@pytest.mark.slow
@pytest.mark.parametrize("store_kind", ["sqlite", "postgres"])
def test_the_walkthrough_runs_against_a_real_server(store_kind: str, tmp_path: Path,
                                                    request: pytest.FixtureRequest) -> None:
    chosen = request.config.getoption("--store") or [store_kind]
    if store_kind not in chosen:
        pytest.skip(f"--store {chosen} leaves out {store_kind}")
    walk = Walk(tmp_path)
    if store_kind == "postgres":
        walk.db = request.getfixturevalue("pg_app_url")
    t0 = time.monotonic()
    try:
        done = _perform(walk)
        _check_what_the_server_shows(walk, done)
    finally:
        walk.stop()
    assert time.monotonic() - t0 < 90, "the walkthrough got slow"


@pytest.mark.slow
def test_the_first_start_prints_the_admin_key_once(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "execord", "serve", "--db", "execord.db", "--port", str(port),
            "--log-level", "warning"]

    def start() -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen(argv, cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        assert proc.stderr is not None
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if "execord: serving" in line:
                break
        return proc, "".join(lines)

    def stop(proc: subprocess.Popen[str]) -> None:
        proc.terminate()
        proc.communicate(timeout=15)  # and close the pipe

    proc, said = start()
    try:
        key = KEY.search(said)
        assert key and "It is shown once" in said, said
        _until("the server", lambda: _ready(port))
        r = httpx.get(f"http://127.0.0.1:{port}/api/v1/keys", headers={"Authorization": f"Bearer {key.group(0)}"})
        assert r.status_code == 200 and [k["scopes"] for k in r.json()["items"]] == [["admin"]]
    finally:
        stop(proc)
    proc, said = start()  # the same store again: no new key
    try:
        assert not KEY.search(said), said
    finally:
        stop(proc)


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
