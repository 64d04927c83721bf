"""docs/evidence.md is true: its walkthrough runs, its Python runs, its messages are real.

- the ``sh`` blocks between its walkthrough markers run in order, in an empty folder, through
  this checkout's ``execord``, with ``<id>`` standing for the newest ``refund`` execution of
  the store the line names (``--db``); each exits as its ``# exit N`` comment says, and the
  ```text block that follows an ``sh`` block is what its last command prints (ids, hashes,
  times and seconds aside);
- its JSON report has the keys the page shows, and says what the page says;
- its ``pycon`` blocks pass as doctests, in the walkthrough's folder;
- its by-hand script (no Execord in it) says OK on the walkthrough's bundles and FAIL on the
  forged one and on tampered ones;
- an event tampered with gives exactly the ``FAIL`` lines the page shows, and so does one
  whose chain was recomputed to hide it;
- its erasure command erases, and a bundle exported afterwards verifies and lists the
  erasure as the page shows;
- the JSON shapes marked ``evidence-shape`` in docs/cli.md are what the commands print.
"""

from __future__ import annotations

import ast
import doctest
import hashlib
import json
import os
import re
import shlex
import stat
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from test_docs import _same_shape
from typer.testing import CliRunner

from execord.cli import app
from execord.record import canonical_json

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
EVIDENCE_MD = ROOT / "docs" / "evidence.md"
CLI_MD = ROOT / "docs" / "cli.md"
TEXT = EVIDENCE_MD.read_text(encoding="utf-8")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\b")
SHAPE = re.compile(r"<!-- evidence-shape: (?P<name>[^>]+?) -->\s*```json[^\n]*\n(?P<body>.*?)^```", re.M | re.S)


def _norm(text: str) -> str:
    """Text with what differs from run to run replaced, and its whitespace collapsed."""
    text = UUID.sub("<uuid>", text)
    text = re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+Z", "<ts>", text)
    text = re.sub(r"\b[0-9a-f]{8,64}\b", "<hex>", text)
    text = re.sub(r"\bin \d+\.\d+s\b", "in <s>", text)
    return " ".join(text.split())


def _section(title: str) -> str:
    start = TEXT.index(f"\n## {title}\n")
    end = TEXT.find("\n## ", start + 1)
    return TEXT[start:] if end < 0 else TEXT[start:end]


def _blocks(text: str, lang: str) -> list[str]:
    return [m.group("body") for m in FENCE.finditer(text) if m.group("lang") == lang]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECORD_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("CI", None)
    return env


def _execord(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "execord", *args], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def _cli(*args: str) -> Any:
    """What ``execord ARGS --format json`` prints, run in this process (fast, for set-up and shapes)."""
    r = CliRunner().invoke(app, [*args, "--format", "json"])
    assert r.exit_code == 0, (args, r.output, r.exception)
    return json.loads(r.output)


def _newest_refund(db: Path) -> str:
    return _cli("executions", "list", "--db", str(db), "--workflow", "refund")[0]["id"]


# --- the walkthrough -----------------------------------------------------------------------------


@dataclass
class Ran:
    """One command of the walkthrough and what it did."""

    line: str
    expected: int
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stderr + self.stdout


@dataclass
class Walk:
    folder: Path
    ran: list[Ran] = field(default_factory=list)
    outputs: list[tuple[Ran, str]] = field(default_factory=list)  # (a block's last command, the text shown)

    def find(self, needle: str) -> Ran:
        return next(r for r in self.ran if needle in r.line)


def _walkthrough() -> list[tuple[str, str]]:
    m = re.search(r"<!-- walkthrough:start -->(.*?)<!-- walkthrough:end -->", TEXT, re.S)
    assert m, "docs/evidence.md has no walkthrough markers"
    return [(b.group("lang"), b.group("body")) for b in FENCE.finditer(m.group(1))]


def _shims(folder: Path) -> str:
    """A bin folder where ``execord`` and ``python`` are this checkout's, for the shell lines."""
    bin_dir = folder / "_bin"
    bin_dir.mkdir()
    for name, run in (("execord", f'"{sys.executable}" -m execord'), ("python", f'"{sys.executable}"')):
        path = bin_dir / name
        path.write_text(f'#!/bin/sh\nexec {run} "$@"\n')
        path.chmod(0o755)
    return str(bin_dir)


def _run_line(raw: str, walk: Walk, env: dict[str, str]) -> Ran | None:
    m = re.search(r"\s#\s?(.*)$", raw)
    command, comment = (raw[: m.start()].strip(), m.group(1)) if m else (raw.strip(), "")
    if not command or command.startswith("#"):
        return None
    code = re.match(r"exit (\d+)", comment)
    if "<id>" in command:
        db = re.search(r"--db\s+(\S+)", command)
        assert db, f"{raw!r}: <id> needs a --db to say which store"
        command = command.replace("<id>", _newest_refund(walk.folder / db.group(1)))
    assert not re.search(r"<[a-z-]+>", command), f"{raw!r}: a placeholder the test does not know"
    r = subprocess.run(["sh", "-c", command], cwd=walk.folder, env=env, capture_output=True, text=True,
                       timeout=120, stdin=subprocess.DEVNULL)
    ran = Ran(raw.strip(), int(code.group(1)) if code else 0, r.returncode, r.stdout, r.stderr)
    walk.ran.append(ran)
    return ran


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory) -> Walk:
    """The walkthrough of docs/evidence.md, run once in an empty folder."""
    w = Walk(tmp_path_factory.mktemp("evidence"))
    env = _env()
    env["PATH"] = os.pathsep.join([_shims(w.folder), env.get("PATH", "")])
    blocks = _walkthrough()
    for i, (lang, body) in enumerate(blocks):
        if lang != "sh":
            continue
        last = None
        for raw in body.replace("\\\n", " ").splitlines():
            last = _run_line(raw, w, env) or last
        if last is not None and i + 1 < len(blocks) and blocks[i + 1][0] == "text":
            w.outputs.append((last, blocks[i + 1][1]))
    return w


def test_the_walkthrough_makes_a_bundle_and_checks_it_every_way() -> None:
    sh = "\n".join(body for lang, body in _walkthrough() if lang == "sh")
    for step in ("execord demo --db", "execord ledger keygen", "execord ledger checkpoint --key",
                 "--bundle incident.zip", "execord verify incident.zip --key acme.pub",
                 "--pinned q3/checkpoint.txt", "--format json", "execord verify forged.zip --key acme.pub",
                 "# exit 1", "# exit 2"):
        assert step in sh, step


def test_every_walkthrough_command_exits_as_documented(walk: Walk) -> None:
    assert len(walk.ran) >= 20
    problems = [f"{r.line}: exit {r.returncode}, documented {r.expected}\n{r.output}"
                for r in walk.ran if r.returncode != r.expected]
    assert not problems, "\n".join(problems)
    for r in walk.ran:
        assert "Traceback" not in r.output, r.output
        if r.expected == 2:  # unusable: one line, and no verdict
            assert r.stderr.startswith("execord: cannot verify ") and r.stderr.count("\n") == 1, r.stderr
            assert r.stdout == ""


def test_the_private_key_is_mode_0600_and_the_public_key_one_line(walk: Walk) -> None:
    key, pub = walk.folder / "keys" / "ledger.key", walk.folder / "keys" / "ledger.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_text().startswith("PRIVATE+KEY+acme.example/execord+")
    assert re.fullmatch(r"acme\.example/execord\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44}\n", pub.read_text())


def test_the_outputs_shown_are_what_the_commands_print(walk: Walk) -> None:
    assert len(walk.outputs) >= 4
    for ran, shown in walk.outputs:
        assert _norm(ran.output) == _norm(shown), f"{ran.line}\n--- printed\n{ran.output}\n--- documented\n{shown}"


def test_without_key_it_passes_with_the_caution_the_page_quotes(walk: Walk) -> None:
    ran = walk.find("execord verify forged.zip ")
    assert ran.line.startswith("execord verify forged.zip ") and "--key" not in ran.line.split("#")[0]
    assert ran.returncode == 0 and ran.stdout.startswith("VERIFIED forged.zip")
    caution = re.search(r"with\s+the line `(Caution: [^`]+)`", TEXT, re.S)
    assert caution, "the page no longer quotes the caution"
    assert _norm(caution.group(1)) in _norm(ran.stdout)


def test_the_json_report_is_the_documented_one(walk: Walk) -> None:
    shapes = {m.group("name"): json.loads(m.group("body")) for m in SHAPE.finditer(TEXT)}
    assert set(shapes) == {"verify BUNDLE"}
    ran = walk.find("--format json")
    report = json.loads(ran.stdout)
    assert _same_shape(shapes["verify BUNDLE"], report) == []
    assert report["ok"] and report["pinned"]["tree_size"] == 6 and report["checkpoint"]["tree_size"] == 12
    assert report["key_from_bundle"] is False
    assert [_norm(x) for x in report["proven"]] == [_norm(x) for x in shapes["verify BUNDLE"]["proven"]]
    keys = re.findall(r"^\| `(\w+)`(?:, `(\w+)`)? \|", _section("Verify a bundle, step by step"), re.M)
    assert {k for pair in keys for k in pair if k} == set(report)


# --- the Python on the page ------------------------------------------------------------------------


def test_the_pycon_examples_pass_as_doctests(walk: Walk, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = _blocks(TEXT, "pycon")
    assert len(blocks) >= 2
    monkeypatch.chdir(walk.folder)  # the second example reads the walkthrough's bundles
    parser, out = doctest.DocTestParser(), []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for n, block in enumerate(blocks):
        test = parser.get_doctest(block, {}, f"evidence.md pycon {n}", str(EVIDENCE_MD), 0)
        assert test.examples
        runner.run(test, out=out.append)
    assert runner.failures == 0, "".join(out)


def _script(folder: Path) -> Path:
    found = [b for b in _blocks(TEXT, "python") if "def check(" in b]
    assert len(found) == 1
    path = folder / "check_bundle.py"
    path.write_text(found[0], encoding="utf-8")
    return path


def _by_hand(script: Path, bundle: Path, key: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECORD_") and k != "PYTHONPATH"}
    return subprocess.run([sys.executable, str(script), str(bundle), str(key)], cwd=bundle.parent, env=env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_the_by_hand_script_uses_no_execord() -> None:
    source = next(b for b in _blocks(TEXT, "python") if "def check(" in b)
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            modules.add((node.module or "").split(".")[0])
    assert modules == {"base64", "hashlib", "json", "re", "sys", "zipfile", "cryptography"}


def test_the_by_hand_script_accepts_the_bundles_and_refuses_the_forged_one(walk: Walk, tmp_path: Path) -> None:
    script = _script(tmp_path)
    key = walk.folder / "acme.pub"
    shown = _blocks(_section("Checking a bundle by hand"), "text")[0].splitlines()[1]
    r = _by_hand(script, walk.folder / "incident.zip", key)
    assert r.returncode == 0, r.stderr
    assert _norm(r.stdout) == _norm(shown)
    assert _by_hand(script, walk.folder / "q3.zip", key).stdout.startswith("OK: 1 executions, 6 events")
    forged = _by_hand(script, walk.folder / "forged.zip", key)
    assert forged.returncode == 1 and "FAIL: checkpoint.txt carries no valid signature" in forged.stderr
    # Run alone, as tests/test_docs.py runs every python block, it only says how to use it.
    alone = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert alone.returncode == 0 and alone.stdout.startswith("Check an Execord bundle without Execord")


# --- tampering -----------------------------------------------------------------------------------------


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _write(files: dict[str, bytes], path: Path, *, fix_manifest: bool) -> Path:
    if fix_manifest:
        manifest = json.loads(files["manifest.json"])
        manifest["files"] = {n: "sha256:" + hashlib.sha256(d).hexdigest()
                             for n, d in sorted(files.items()) if n != "manifest.json"}
        files = {**files, "manifest.json": json.dumps(manifest, indent=2).encode()}
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def _edited(bodies: list[bytes], seq: int) -> list[bytes]:
    """The events with seq's ``ts`` moved by one microsecond, everything else as it was."""
    event = json.loads(bodies[seq])
    ts = event["ts"]
    event["ts"] = ts[:-2] + str((int(ts[-2]) + 1) % 10) + "Z"
    return [*bodies[:seq], canonical_json(event), *bodies[seq + 1:]]


def _rechained(eid: str, bodies: list[bytes]) -> list[bytes]:
    """The events with every prev_hash recomputed, so that the chain holds again."""
    prev, out = hashlib.sha256(eid.encode()).digest(), []
    for body in bodies:
        event = json.loads(body)
        event["prev_hash"] = prev.hex()
        body = canonical_json(event)
        out.append(body)
        prev = hashlib.sha256(prev + body).digest()
    return out


def _failures_shown() -> list[str]:
    return _blocks(_section("What the failures look like"), "text")


def _verify(folder: Path, bundle: Path) -> subprocess.CompletedProcess[str]:
    return _execord(["verify", bundle.name, "--key", "acme.pub"], folder)


def test_a_tampered_event_gives_the_documented_failures(walk: Walk, tmp_path: Path) -> None:
    files = _members(walk.folder / "incident.zip")
    eid = json.loads(files["manifest.json"])["executions"][0]
    name = f"executions/{eid}/events.jsonl"
    bodies = files[name].split(b"\n")[:-1]
    edited, rechained = _edited(bodies, 1), _rechained(eid, _edited(bodies, 1))
    shown = _failures_shown()
    bundle = walk.folder / "tampered.zip"
    script = _script(tmp_path)

    _write({**files, name: b"\n".join(edited) + b"\n"}, bundle, fix_manifest=False)
    r = _verify(walk.folder, bundle)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert _norm(r.stderr + r.stdout) == _norm(shown[0])
    hand = _by_hand(script, bundle, walk.folder / "acme.pub")
    assert hand.returncode == 1 and "the chain breaks at seq 2" in hand.stderr

    # With the manifest rewritten too, the chain alone still says which event changed.
    _write({**files, name: b"\n".join(edited) + b"\n"}, bundle, fix_manifest=True)
    r = _verify(walk.folder, bundle)
    assert r.returncode == 1
    assert _norm(r.stderr + r.stdout) == _norm("\n".join(shown[0].splitlines()[1:]).replace("2 problems", "1 problems"))

    # With the chain recomputed, the ledger leaf rebuilt from the events is not the signed one.
    _write({**files, name: b"\n".join(rechained) + b"\n"}, bundle, fix_manifest=True)
    r = _verify(walk.folder, bundle)
    assert r.returncode == 1
    assert _norm(r.stderr + r.stdout) == _norm(shown[1])
    hand = _by_hand(script, bundle, walk.folder / "acme.pub")
    assert hand.returncode == 1 and "is not in the signed tree" in hand.stderr


def test_every_message_in_the_table_is_one_verify_can_print() -> None:
    sources = "".join((ROOT / "execord" / p).read_text() for p in ("ledger/_verify.py", "ledger/_note.py",
                                                                    "ledger/_erasure.py", "record/_verify.py"))
    joined = re.sub(r'"\s*\n\s*f?"', "", sources)  # implicit concatenation across lines
    literal = re.sub(r"\{[^}]*\}", "", joined)
    table = _section("What the failures look like").split("| what was done |", 1)[1]
    for message in [m for m in re.findall(r"`([^`]+)`", table) if len(m) >= 25]:
        # What is filled in (numbers, hashes, ids, names, field lists) splits a message in fragments.
        for fragment in re.split(r"…|: |acme\.example/execord|[0-9a-f]{8,}|\b\d+\b|'[^']*'|\([0-9a-f]{8}\)|sha256:\w+|gv_\w*|\b\w+_\w+\b",
                                 message):
            fragment = fragment.strip(" ,:")
            if len(fragment) >= 12:
                assert fragment in literal, f"{fragment!r} (from {message!r}) is in no message of the verifier"


# --- erasure ---------------------------------------------------------------------------------------------


def test_erasure_as_the_page_shows_it(walk: Walk, tmp_path: Path) -> None:
    lines = [ln for b in _blocks(_section("Erasure"), "sh") for ln in b.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("execord blobs erase sha256:")
    r = _execord(shlex.split(lines[0])[1:], walk.folder)
    assert r.returncode == 0, r.stderr
    eid = _newest_refund(walk.folder / "acme.db")
    r = CliRunner().invoke(app, ["executions", "export", eid, "--bundle", str(walk.folder / "erased.zip"),
                                 "--db", str(walk.folder / "acme.db")])
    assert r.exit_code == 0, (r.output, r.exception)
    files = _members(walk.folder / "erased.zip")
    digest = shlex.split(lines[0])[3]
    assert digest not in [json.loads(line)["digest"] for line in files["blobs.jsonl"].splitlines()]
    assert [e["digest"] for e in json.loads(files["erasures.json"])] == [digest]

    r = _verify(walk.folder, walk.folder / "erased.zip")
    assert r.returncode == 0, r.stderr
    shown = [ln for ln in _blocks(_section("Erasure"), "text")[0].splitlines() if "erased:" in ln]
    assert [_norm(ln) for ln in r.stdout.splitlines() if "erased:" in ln] == [_norm(ln) for ln in shown]
    report = _cli("verify", str(walk.folder / "erased.zip"), "--key", str(walk.folder / "acme.pub"))
    assert report["ok"] and report["erasures"][0]["reason"] == "GDPR request 2291"
    assert _by_hand(_script(tmp_path), walk.folder / "erased.zip", walk.folder / "acme.pub").returncode == 0

    # The bytes gone without an erasure entry: the failure the page's table names.
    bare = _write({**files, "erasures.json": b"[]\n"}, walk.folder / "bare.zip", fix_manifest=True)
    r = _verify(walk.folder, bare)
    assert r.returncode == 1 and "is missing and no erasure of it is recorded" in " ".join(r.stderr.split())
    # The entry's reason edited after signing: Execord and the script by hand both refuse it.
    (entry,) = json.loads(files["erasures.json"])
    edited = _write({**files, "erasures.json": json.dumps([{**entry, "reason": "routine"}]).encode()},
                    walk.folder / "edited.zip", fix_manifest=True)
    r = _verify(walk.folder, edited)
    assert r.returncode == 1 and "was changed after it was signed" in " ".join(r.stderr.split()), r.stderr
    hand = _by_hand(_script(tmp_path), edited, walk.folder / "acme.pub")
    assert hand.returncode == 1 and f"the erasure of blob {digest} is not what was signed" in hand.stdout + hand.stderr


# --- the JSON shapes of the ledger commands in docs/cli.md -----------------------------------------------


def test_cli_md_ledger_shapes_are_what_the_commands_print(tmp_path: Path) -> None:
    shapes = {m.group("name"): json.loads(m.group("body")) for m in SHAPE.finditer(CLI_MD.read_text())}
    assert set(shapes) == {"ledger keygen", "ledger checkpoint", "ledger proof", "ledger proof --from", "blobs erase"}
    db = str(tmp_path / "s.db")
    assert _execord(["demo", "--db", db], tmp_path).returncode == 0
    actual = {"ledger keygen": _cli("ledger", "keygen", "--name", "acme.example/execord", "--out", str(tmp_path))}
    actual["ledger checkpoint"] = _cli("ledger", "checkpoint", "--key", str(tmp_path / "ledger.key"), "--db", db)
    actual["ledger proof"] = _cli("ledger", "proof", _newest_refund(tmp_path / "s.db"), "--db", db)
    actual["ledger proof --from"] = _cli("ledger", "proof", "--from", "3", "--db", db)
    actual["blobs erase"] = _cli("blobs", "erase", shapes["blobs erase"]["digest"], "--reason", "GDPR request 2291",
                                 "--key", str(tmp_path / "ledger.key"), "--db", db)
    problems = [p for name, doc in shapes.items() for p in _same_shape(doc, actual[name], name)]
    assert not problems, "\n".join(problems)
    assert actual["ledger checkpoint"]["note"].startswith("acme.example/execord\n6\n")
    assert actual["ledger checkpoint"]["key_id"] == actual["ledger keygen"]["key_id"]
    assert actual["ledger proof"]["root"] == actual["ledger checkpoint"]["root"]
