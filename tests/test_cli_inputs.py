"""Bad input to the ``execord`` command: a clear error that says what was wrong and what to
do, nothing recorded lost, no traceback (the CLI review's findings, one test or more each).

Every test runs the real CLI in a child process (``python -m execord``) on real SQLite files
that ``execord demo`` wrote; the PostgreSQL cases use URLs that cannot work, so they need no
database of their own.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import PG_ADMIN_URL, run_cli

pytestmark = pytest.mark.slow


# -- helpers ------------------------------------------------------------------------------------


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


def error(r: subprocess.CompletedProcess[str], *needles: str, code: int = 1) -> str:
    """The exit code, one ``execord: …`` line on stderr holding every needle, no traceback,
    no "internal error"."""
    both = r.stdout + r.stderr
    assert "Traceback" not in both and "internal error" not in both, both
    assert r.returncode == code, f"exit {r.returncode}, expected {code}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("execord: "), r.stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def store_state(db: Path) -> tuple[str, int, int]:
    """What must not change: the database file's bytes, its executions and its events."""
    with closing(sqlite3.connect(db)) as conn:
        n_exec = conn.execute("SELECT count(*) FROM executions").fetchone()[0]
        n_events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    return digest(db), n_exec, n_events


def blob_kept(db: Path, blob: str) -> bool:
    with closing(sqlite3.connect(db)) as conn:
        return bool(conn.execute("SELECT data IS NOT NULL FROM blobs WHERE digest = ?", (blob,)).fetchone()[0])


def erasures(db: Path) -> int:
    with closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("SELECT count(*) FROM erasures").fetchone()[0])


@dataclass
class Demo:
    folder: Path
    db: Path  # a demo store with a checkpoint signed by `key`
    bare: Path  # a demo store with no checkpoint
    key: Path
    pub: Path
    other_key: Path  # a valid ledger key that signed nothing here
    ids: list[str]
    bare_ids: list[str]
    bundle: Path  # a bundle of ids[0] that verifies with `pub`

    def cli(self, *args: str, db: Path | None = None, **kw: Any) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env={"EXECORD_DB": str(db or self.db), **kw.pop("env", {})}, **kw)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    folder = tmp_path_factory.mktemp("inputs")
    db, bare = folder / "store.db", folder / "bare.db"
    ids = json.loads(ok(run_cli("demo", "--db", str(db), "--format", "json")))["executions"]
    bare_ids = json.loads(ok(run_cli("demo", "--db", str(bare), "--format", "json")))["executions"]
    ok(run_cli("ledger", "keygen", "--name", "test.example/execord", "--out", str(folder / "keys")))
    ok(run_cli("ledger", "keygen", "--name", "other.example/execord", "--out", str(folder / "other")))
    key = folder / "keys" / "ledger.key"
    ok(run_cli("ledger", "checkpoint", "--key", str(key), "--db", str(db)))
    bundle = folder / "good.zip"
    ok(run_cli("executions", "export", ids[0], "--bundle", str(bundle), "--db", str(db)))
    yield Demo(folder, db, bare, key, folder / "keys" / "ledger.pub", folder / "other" / "ledger.key", ids,
               bare_ids, bundle)


@pytest.fixture
def copy(demo: Demo, tmp_path: Path) -> Path:
    """A private copy of the demo store, for a test that changes it (or must show it did not)."""
    target = tmp_path / "copy.db"
    with closing(sqlite3.connect(demo.db)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
    return target


# -- 1. exports never overwrite the store, nor an existing file without --force -----------------


@pytest.mark.parametrize("how", ["--bundle", "-o", "-o html"])
def test_an_export_onto_the_store_itself_is_refused_even_with_force(demo: Demo, copy: Path, how: str) -> None:
    before = store_state(copy)
    option, *fmt = how.split()
    extra = ["--format", fmt[0]] if fmt else []
    for force in ([], ["--force"]):
        line = error(demo.cli("executions", "export", demo.ids[0], option, str(copy), *extra, *force, db=copy),
                     f"{copy} is the store's own file", "choose another output file")
        assert "Traceback" not in line
    # Through another name for the same file (a symlink), and onto its write-ahead log.
    link = copy.parent / "link.zip"
    link.symlink_to(copy)
    error(demo.cli("executions", "export", demo.ids[0], option, str(link), *extra, "--force", db=copy),
          "is the store's own file")
    error(demo.cli("executions", "export", demo.ids[0], option, f"{copy}-wal", *extra, "--force", db=copy),
          "is the store's own file")
    assert store_state(copy) == before
    assert ok(demo.cli("verify", db=copy)).rstrip().endswith("OK")


def test_an_existing_file_is_kept_unless_force(demo: Demo, tmp_path: Path) -> None:
    for option, extra in (("--bundle", []), ("-o", []), ("-o", ["--format", "html"])):
        target = tmp_path / f"out{option}{len(extra)}"
        target.write_bytes(b"keep me")
        error(demo.cli("executions", "export", demo.ids[0], option, str(target), *extra),
              f"{target} exists; pass --force to replace it")
        assert target.read_bytes() == b"keep me"
        assert f"wrote {target}" in ok(demo.cli("executions", "export", demo.ids[0], option, str(target), *extra,
                                                "--force"))
        assert target.read_bytes() != b"keep me"
    # The replaced bundle is a whole, verifiable one, readable as a plain open() would leave it.
    bundle = tmp_path / "out--bundle0"
    assert "VERIFIED" in ok(run_cli("verify", str(bundle), "--key", str(demo.pub)))
    assert bundle.stat().st_mode & 0o044  # not mkstemp's 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out--bundle0", "out-o0", "out-o2"]  # no temp file left


def test_a_failed_export_leaves_no_file_and_the_old_one_whole(demo: Demo, tmp_path: Path) -> None:
    """On a store with no checkpoint and no key, the bundle cannot be made: nothing is written,
    no temporary file stays behind, and a file --force would have replaced is unchanged."""
    new = tmp_path / "new.zip"
    error(demo.cli("executions", "export", demo.bare_ids[0], "--bundle", str(new), db=demo.bare),
          "no checkpoint has been signed yet")
    assert list(tmp_path.iterdir()) == []
    old = tmp_path / "old.zip"
    old.write_bytes(b"an older bundle")
    error(demo.cli("executions", "export", demo.bare_ids[0], "--bundle", str(old), "--force", db=demo.bare),
          "no checkpoint has been signed yet")
    assert old.read_bytes() == b"an older bundle"
    assert [p.name for p in tmp_path.iterdir()] == ["old.zip"]


def test_an_export_into_a_folder_or_nowhere_says_so(demo: Demo, tmp_path: Path) -> None:
    error(demo.cli("executions", "export", demo.ids[0], "--bundle", str(tmp_path)), f"{tmp_path} is a folder")
    error(demo.cli("executions", "export", demo.ids[0], "-o", str(tmp_path / "no" / "x.json")),
          f"cannot write {tmp_path / 'no' / 'x.json'}: No such file or directory")


# -- 8. export options that conflict; the same id twice ------------------------------------------


def test_export_refuses_conflicting_options_and_writes_nothing(demo: Demo, tmp_path: Path) -> None:
    x, y = tmp_path / "x.zip", tmp_path / "y.json"
    error(demo.cli("executions", "export", demo.ids[0], "--bundle", str(x), "-o", str(y)),
          "--bundle and --output both name the file to write")
    error(demo.cli("executions", "export", demo.ids[0], "--bundle", str(x), "-f", "html"),
          "--format html does not apply to a bundle")
    error(demo.cli("executions", "export", demo.ids[0], "--bundle", str(x), "--format", "json"),
          "--format json does not apply to a bundle")
    assert list(tmp_path.iterdir()) == []


def test_an_id_named_twice_is_bundled_and_counted_once(demo: Demo, tmp_path: Path) -> None:
    bundle = tmp_path / "d.zip"
    prefix = demo.ids[0][:13]
    out = ok(demo.cli("executions", "export", demo.ids[0], prefix, "--bundle", str(bundle)))
    assert out.startswith(f"wrote {bundle}: 1 executions;")
    with zipfile.ZipFile(bundle) as z:
        assert len(json.loads(z.read("manifest.json"))["executions"]) == 1
    assert "VERIFIED" in ok(run_cli("verify", str(bundle), "--key", str(demo.pub)))


# -- 2. read commands make no store of an empty file; PostgreSQL URLs -------------------------------


def test_an_empty_file_is_not_a_store_for_reading_commands(demo: Demo, tmp_path: Path) -> None:
    zero = tmp_path / "zero.txt"
    zero.write_bytes(b"")
    message = f"{zero} is empty, not an Execord database"
    error(run_cli("verify", "--db", str(zero)), message, code=2)
    for args in (["executions", "list"], ["keys", "list"], ["approvals", "list"], ["ledger", "checkpoint", "--latest"],
                 ["executions", "get", "01"], ["blobs", "erase", "sha256:" + "0" * 64, "-r", "x", "--key", str(demo.key)]):
        error(run_cli(*args, "--db", str(zero)), message, "`execord demo`")
    assert zero.read_bytes() == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zero.txt"]  # no -wal, no -shm either
    # A command that makes a store still makes one there.
    ok(run_cli("demo", "--db", str(zero)))
    assert ok(run_cli("verify", "--db", str(zero))).rstrip().endswith("OK")


@pytest.mark.parametrize("url", ["postgresql://", "postgres://", "postgresql://postgres@127.0.0.1:5432/",
                                 "postgresql://127.0.0.1"])
def test_a_postgresql_url_must_name_its_database(url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PGDATABASE", "PGSERVICE")}
    for args in (["executions", "list"], ["keys", "create"], ["governance", "history"]):
        r = subprocess.run([sys.executable, "-m", "execord", *args, "--db", url], capture_output=True, text=True,
                           env={k: v for k, v in env.items() if not k.startswith("EXECORD_")}, timeout=60)
        error(r, "has no database name", "name the database: postgresql://user@host:5432/DBNAME")
    error(run_cli("verify", "--db", url), "has no database name", code=2)


def _pg_up() -> bool:
    import psycopg

    try:
        psycopg.connect(PG_ADMIN_URL, connect_timeout=3).close()
    except psycopg.Error:
        return False
    return True


@pytest.mark.parametrize(("url", "cause"), [
    ("postgresql://postgres@127.0.0.1:1/test", "Connection refused"),
    ("postgresql://postgres:s3cret@127.0.0.1:notaport/test", 'invalid integer value "notaport"'),
    ("postgresql://postgres@127.0.0.1:5432/execord_no_such_database", 'database "execord_no_such_database" does '
                                                                      "not exist"),
])
def test_a_bad_postgresql_url_fails_at_once_with_the_cause(url: str, cause: str) -> None:
    if "5432" in url and not _pg_up():
        pytest.skip("no PostgreSQL at 127.0.0.1:5432")
    t0 = time.monotonic()
    r = run_cli("executions", "list", "--db", url)
    seconds = time.monotonic() - t0
    line = error(r, "cannot be reached or used", cause)
    assert "error connecting in" not in r.stderr and "pool initialization" not in r.stderr
    assert "s3cret" not in line  # the password is not repeated
    assert seconds < 8, f"took {seconds:.1f}s"  # the pool's timeout is 10 s; the interpreter's start is the rest
    error(run_cli("verify", "--db", url), cause, code=2)


# -- 3. an erasure with a key that is not the ledger's ------------------------------------------------


def _a_blob(db: Path) -> str:
    with closing(sqlite3.connect(db)) as conn:
        return str(conn.execute("SELECT digest FROM blobs WHERE data IS NOT NULL ORDER BY digest").fetchone()[0])


def test_erase_refuses_a_key_that_did_not_sign_the_checkpoints(demo: Demo, copy: Path) -> None:
    blob = _a_blob(copy)
    line = error(demo.cli("blobs", "erase", blob, "--reason", "GDPR 1", "--key", str(demo.other_key), db=copy),
                 f"{demo.other_key} is not this ledger's key", "signed by test.example/execord key",
                 "other.example/execord key", "Nothing was erased", "execord ledger checkpoint --key NEW.key")
    assert "PRIVATE" not in line
    assert blob_kept(copy, blob) and erasures(copy) == 0
    # The ledger's own key erases, and a bundle made afterwards still verifies.
    ok(demo.cli("blobs", "erase", blob, "--reason", "GDPR 1", "--key", str(demo.key), db=copy))
    assert not blob_kept(copy, blob) and erasures(copy) == 1
    assert ok(demo.cli("verify", "--key", str(demo.pub), db=copy)).rstrip().endswith("OK")


def test_after_a_new_key_erase_follows_the_latest_checkpoint(demo: Demo, copy: Path, tmp_path: Path) -> None:
    """The documented rotation: a new key signs the old erasures at once (sign-erasures takes
    any key, it only adds signatures); it erases once it has signed a checkpoint, and the old
    key then no longer does."""
    first, second = _a_blob(copy), None
    ok(demo.cli("blobs", "erase", first, "--reason", "before", "--key", str(demo.key), db=copy))
    ok(run_cli("ledger", "keygen", "--name", "test.example/execord", "--out", str(tmp_path / "new")))
    new_key = tmp_path / "new" / "ledger.key"
    assert "1 erasure not signed" in ok(demo.cli("blobs", "sign-erasures", "--key", str(new_key), db=copy))
    second = _a_blob(copy)
    error(demo.cli("blobs", "erase", second, "--reason", "too soon", "--key", str(new_key), db=copy),
          "is not this ledger's key", "Nothing was erased")
    assert blob_kept(copy, second)
    ok(demo.cli("ledger", "checkpoint", "--key", str(new_key), db=copy))
    error(demo.cli("blobs", "erase", second, "--reason", "old key", "--key", str(demo.key), db=copy),
          "is not this ledger's key")
    assert blob_kept(copy, second)
    ok(demo.cli("blobs", "sign-erasures", "--key", str(new_key), "--yes", db=copy))
    ok(demo.cli("blobs", "erase", second, "--reason", "now", "--key", str(new_key), db=copy))
    assert erasures(copy) == 2
    assert ok(demo.cli("verify", "--key", str(tmp_path / "new" / "ledger.pub"), db=copy)).rstrip().endswith("OK")


def test_erase_on_a_store_without_a_checkpoint_takes_any_key(demo: Demo, tmp_path: Path) -> None:
    db = tmp_path / "bare.db"
    with closing(sqlite3.connect(demo.bare)) as src, closing(sqlite3.connect(db)) as dst:
        src.backup(dst)
    blob = _a_blob(db)
    ok(run_cli("blobs", "erase", blob, "--reason", "first", "--key", str(demo.other_key), "--db", str(db)))
    assert not blob_kept(db, blob)


# -- 4. key files that are not key files ------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_keys(demo: Demo) -> dict[str, tuple[Path, str]]:
    folder = demo.folder / "bad-keys"
    folder.mkdir()
    garbage = folder / "garbage.key"
    garbage.write_bytes(bytes(range(128, 256)) * 2)
    bom = folder / "bom.key"
    bom.write_bytes(b"\xef\xbb\xbf" + demo.key.read_bytes())
    bom_pub = folder / "bom.pub"
    bom_pub.write_bytes(b"\xef\xbb\xbf" + demo.pub.read_bytes())
    return {"garbage": (garbage, "it is not UTF-8 text"), "bom": (bom, "byte-order mark"),
            "bom-pub": (bom_pub, "byte-order mark")}


@pytest.mark.parametrize("which", ["garbage", "bom"])
def test_a_private_key_file_that_is_not_one_is_named(demo: Demo, copy: Path, bad_keys: dict[str, Any],
                                                      which: str, tmp_path: Path) -> None:
    path, why = bad_keys[which]
    before = store_state(copy)
    needles = (f"{path} is not a ledger key file", why)
    error(demo.cli("ledger", "checkpoint", "--key", str(path), db=copy), *needles)
    error(demo.cli("blobs", "erase", _a_blob(copy), "-r", "x", "--key", str(path), db=copy), *needles)
    error(demo.cli("executions", "export", demo.bare_ids[0], "--bundle", str(tmp_path / "b.zip"), "--key",
                   str(path), db=demo.bare), *needles)
    served = tmp_path / "served.db"
    error(run_cli("serve", "--db", str(served), "--port", "0", "--ledger-key", str(path), timeout=30), *needles)
    assert not served.exists()  # refused before the store was made (and an admin key printed)
    assert store_state(copy) == before and not (tmp_path / "b.zip").exists()


@pytest.mark.parametrize("which", ["garbage", "bom-pub"])
def test_a_public_key_file_that_is_not_one_is_named(demo: Demo, bad_keys: dict[str, Any], which: str) -> None:
    path, why = bad_keys[which]
    error(run_cli("verify", str(demo.bundle), "--key", str(path)), f"{path} is not a ledger key file", why, code=2)
    error(demo.cli("verify", "--key", str(path)), f"{path} is not a ledger key file", why, code=2)


# -- 5. keygen --out that is a file ---------------------------------------------------------------


def test_keygen_out_that_is_a_file_is_named(tmp_path: Path) -> None:
    f = tmp_path / "ok.json"
    f.write_text("{}")
    error(run_cli("ledger", "keygen", "--out", str(f)), f"{f} is a file, not a folder")
    error(run_cli("ledger", "keygen", "--out", str(f / "sub")), f"cannot make the folder {f / 'sub'}",
          "Not a directory")
    assert f.read_text() == "{}"


# -- 6. proof sizes past what the database holds ---------------------------------------------------


def test_a_huge_proof_size_is_a_clear_error(demo: Demo) -> None:
    huge = "99999999999999999999"
    for args in (["--from", huge, "--to", huge], ["--from", "1", "--to", huge], [demo.ids[0], "--size", huge]):
        error(demo.cli("ledger", "proof", *args), f"there is no tree of size {huge}")
    error(demo.cli("ledger", "proof", "--from", huge), "a consistency proof goes from a smaller tree to a larger one")


# -- 7. `execord verify`: 2 for anything but a record that fails ---------------------------------------


def test_verify_usage_and_store_problems_exit_2(demo: Demo, tmp_path: Path) -> None:
    b = str(demo.bundle)
    cases = [
        (["verify", b, "-f", "yaml"], "unknown --format 'yaml'"),
        (["verify", b, "--bogus"], "No such option: --bogus"),
        (["verify", b, "extra.zip"], "unexpected extra argument"),
        (["verify", "--db", str(tmp_path / "typo.db")], "no Execord database at"),
        (["verify", "--db", str(demo.db), "--key", str(tmp_path / "nope.pub")], "cannot read the public key"),
        (["verify", "--pinned", str(tmp_path / "p.txt")], "--pinned checks a bundle: give the bundle file too"),
        (["verify", b, "--key", ""], "--key is empty"),
        (["verify", b, "--key", "  "], "--key is empty"),
        (["verify", b, "--deep"], "--deep applies to checking a store, not a bundle"),
        (["verify", b, "--db", str(demo.db)], "--db applies to checking a store"),
        (["verify", b, "--deep", "--db", str(demo.db)], "--deep and --db apply to checking a store"),
    ]
    for args, needle in cases:
        error(run_cli(*args), needle, code=2)
    r = run_cli("verify", b, "--deep", "--format", "json")
    assert r.returncode == 2 and json.loads(r.stdout)["unusable"].startswith("--deep applies")
    # EXECORD_DB in the environment is not --db given with the bundle; the plain command still verifies.
    assert "VERIFIED" in ok(run_cli("verify", b, "--key", str(demo.pub), env={"EXECORD_DB": str(demo.db)}))
    assert "VERIFIED" in ok(run_cli("verify", b, "--key", demo.pub.read_text().strip()))


# -- 9. the demo's hint names its store -----------------------------------------------------------


def test_the_demo_hint_names_the_store_it_used(tmp_path: Path) -> None:
    db = tmp_path / "my demo" / "d.db"
    last = ok(run_cli("demo", "--db", str(db))).splitlines()[-1]
    quoted = f"--db '{db}'"
    assert last.count(quoted) == 3, last
    for hint in last.removeprefix("next: ").split("  ·  "):
        import shlex

        words = shlex.split(hint)
        assert words[0] == "execord"
        ok(run_cli(*words[1:]))  # what it says to run next runs, from another folder
    default = tmp_path / "here"
    default.mkdir()
    r = subprocess.run([sys.executable, "-m", "execord", "demo"], cwd=default, capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if not k.startswith("EXECORD_")}, timeout=120)
    assert "--db" not in ok(r).splitlines()[-1]


# -- 10. keys revoke with the whole key -----------------------------------------------------------------


def test_revoking_by_the_whole_key_does_not_print_it(demo: Demo, copy: Path) -> None:
    made = json.loads(ok(demo.cli("keys", "create", "--name", "ci", "--format", "json", db=copy)))
    secret = made["key"]
    line = error(demo.cli("keys", "revoke", secret, db=copy), "that looks like a whole key",
                 f"pass its id {made['id']}")
    assert secret.split("_", 2)[2] not in line
    rows = json.loads(ok(demo.cli("keys", "list", "--format", "json", db=copy)))
    assert [r["revoked_at"] for r in rows if r["id"] == made["id"]] == [None]  # nothing was revoked
    ok(demo.cli("keys", "revoke", made["id"], db=copy))


# -- 11. control characters in tables ----------------------------------------------------------------


def test_control_characters_are_shown_not_sent_to_the_terminal(demo: Demo, tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    gov = tmp_path / "gov.yaml"
    gov.write_text("policies:\n  - id: no-shell\n    on: tool.request\n    when: tool.name == \"shell\"\n"
                   "    effect: deny\n", encoding="utf-8")
    evil = "evil\x1b[31mred\x9b2J\x07\x08end"
    ok(run_cli("governance", "apply", str(gov), "--by", evil, "--db", str(db)))
    table = ok(run_cli("governance", "history", "--db", str(db)))
    assert "\x1b" not in table and "\x9b" not in table and "\x08" not in table
    assert "evil\\x1b[31mred\\x9b2J" in table and "\\x08end" in table
    shown = json.loads(ok(run_cli("governance", "history", "--db", str(db), "--format", "json")))
    assert shown[0]["activated_by"] == evil  # JSON carries the value as it is
    with closing(sqlite3.connect(db)) as conn:
        stored = [v for row in conn.execute("SELECT * FROM governance_activations") for v in row]
    assert evil in stored  # and so does the store


# -- 12. EXECORD_DEBUG -----------------------------------------------------------------------------------


_BOOM = """
import sys
import execord.cli as cli

def boom(**kw):
    raise RuntimeError("a bug")

cli.app = boom
sys.argv = ["execord", "executions", "list"]
cli.main()
"""


@pytest.mark.parametrize(("value", "traceback"), [("0", False), ("false", False), ("No", False), ("", False),
                                                  ("off", False), ("1", True), ("yes", True)])
def test_execord_debug_zero_means_off(value: str, traceback: bool) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECORD_")}
    r = subprocess.run([sys.executable, "-c", _BOOM], capture_output=True, text=True,
                       env={**env, "EXECORD_DEBUG": value}, timeout=60)
    assert ("Traceback" in r.stderr) == traceback, r.stderr
    if not traceback:
        assert r.returncode == 2
        assert r.stderr.strip() == ("execord: internal error (RuntimeError: a bug); rerun with EXECORD_DEBUG=1 "
                                    "for the traceback and report it")


def test_bytes_on_the_command_line_that_are_not_utf8_are_named(tmp_path: Path) -> None:
    """Not a review finding, but the same rule: bytes that are not UTF-8 (here in --by) were an
    "internal error"; nothing is recorded from the command."""
    db = tmp_path / "g.db"
    gov = tmp_path / "gov.yaml"
    gov.write_text("policies:\n  - id: no-shell\n    on: tool.request\n    when: tool.name == \"shell\"\n"
                   "    effect: deny\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECORD_")}
    r = subprocess.run([sys.executable.encode(), b"-m", b"execord", b"governance", b"apply", bytes(gov), b"--by",
                        b"evil\x9b", b"--db", bytes(db)], capture_output=True, text=True, env=env, timeout=60)
    error(r, "a value on the command line is not UTF-8 text", "\\x9b", "give it as UTF-8")
    assert json.loads(ok(run_cli("governance", "history", "--db", str(db), "--format", "json"))) == []


def test_serve_on_a_port_in_use_fails_before_it_makes_a_store_or_an_admin_key(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        db = tmp_path / "fresh.db"
        r = run_cli("serve", "--db", str(db), "--port", str(port), timeout=30)
    error(r, f"cannot listen on 127.0.0.1:{port}", "choose another --port")
    assert not db.exists() and "admin key" not in r.stderr
    r = run_cli("serve", "--db", str(db), "--host", "not a host", timeout=30)
    error(r, "--host 'not a host' is not an address to listen on")
    assert not db.exists()
