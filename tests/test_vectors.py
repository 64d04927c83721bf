"""Walk every vector file in tests/vectors/ and report every failure at once (STYLE.md, "Tests").

The vectors are written by scripts/gen_vectors.py; `test_generator_check_*` makes sure they are
what a fresh run would write.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import rfc8785

from execord.record import build_event, canonical_json, events_root, genesis_hash, parse_event

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "vectors"
GEN = ROOT / "scripts" / "gen_vectors.py"
SAFE = 2**53 - 1


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _ijson_int(text: str) -> int | float:
    # I-JSON numbers are doubles: an integer past 2**53 can only have come from a float.
    n = int(text)
    return n if -SAFE <= n <= SAFE else float(n)


def _is_canonical(body: bytes) -> bool:
    try:
        return canonical_json(json.loads(body, parse_int=_ijson_int)) == body
    except ValueError:
        return False


def first_broken_seq(execution_id: str, events: list[tuple[bytes, bytes]]) -> int | None:
    """Walk a stored chain of (body, hash); the position of the first event that fails, or None."""
    prev = _sha(execution_id.encode())
    for i, (body, hash_) in enumerate(events):
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            return i
        if (
            type(obj) is not dict
            or obj.get("v") != 1
            or obj.get("seq") != i
            or obj.get("execution_id") != execution_id
            or obj.get("prev_hash") != prev.hex()
            or "hash" in obj
            or not _is_canonical(body)
            or _sha(prev + body) != hash_
        ):
            return i
        prev = hash_
    return None


# --- one checker per kind; each yields a message per failure ---------------------------------


def check_canonical_json(v: dict[str, Any]) -> Iterator[str]:
    for case in v["cases"]:
        obj = json.loads(case["input"])
        want = case["expected"].encode("utf-8")
        got = canonical_json(obj)
        if got != want:
            yield f"{case['name']}: canonical_json gave {got!r}, expected {want!r}"
        if rfc8785.dumps(obj) != want:
            yield f"{case['name']}: rfc8785 disagrees with the vector"
    for case in v["rejected"]:
        obj = json.loads(case["input"])
        for name, fn in (("canonical_json", canonical_json), ("rfc8785", rfc8785.dumps)):
            try:
                fn(obj)
            except ValueError:
                continue
            yield f"{case['name']}: {name} accepted {case['input']!r}"


def check_event_hashes(v: dict[str, Any]) -> Iterator[str]:
    g = v["genesis"]
    if _sha(g["execution_id"].encode()).hex() != g["hash"] or genesis_hash(g["execution_id"]).hex() != g["hash"]:
        yield "genesis: hash is not SHA-256 of the execution id"
    for case in v["events"]:
        i = case["input"]
        prev = bytes.fromhex(i["prev_hash"])
        body, want = case["body"].encode("utf-8"), bytes.fromhex(case["hash"])
        if _sha(prev + body) != want:
            yield f"{case['name']}: hash != SHA-256(prev_hash || body)"
        ev = build_event(i["execution_id"], i["seq"], i["type"], i["ts"], i["attrs"], prev,
                         step_id=i["step_id"], parent_step_id=i["parent_step_id"])
        if ev.body != body:
            yield f"{case['name']}: build_event body differs: {ev.body!r}"
        if ev.hash != want:
            yield f"{case['name']}: build_event hash {ev.hash.hex()} != {case['hash']}"
        back = parse_event(body, want)
        if (back.execution_id, back.seq, back.type, back.ts, back.step_id, back.parent_step_id,
                back.attrs, back.prev_hash) != (i["execution_id"], i["seq"], i["type"], i["ts"],
                                                 i["step_id"], i["parent_step_id"], i["attrs"], prev):
            yield f"{case['name']}: parse_event does not give back the input"
        if not _is_canonical(body):
            yield f"{case['name']}: body is not canonical"


def check_chain(v: dict[str, Any]) -> Iterator[str]:
    events = [(e["body"].encode("utf-8"), bytes.fromhex(e["hash"])) for e in v["events"]]
    got = first_broken_seq(v["execution_id"], events)
    if got != v["first_bad_seq"]:
        yield f"{v['name']}: first failing seq is {got}, expected {v['first_bad_seq']}"
    if v["name"] == "valid":
        if v["first_bad_seq"] is not None or len(events) != 5:
            yield "valid: must be a 5-event chain that verifies"
        for e in v["events"]:
            if _sha(bytes.fromhex(e["prev_hash"]) + e["body"].encode()).hex() != e["hash"]:
                yield f"valid: seq {e['seq']}: hash != SHA-256(prev_hash || body)"
    elif not v["name"].startswith("chain_") or v["first_bad_seq"] is None:
        yield f"{v['name']}: a negative vector is named chain_<corruption> and has a first_bad_seq"


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def check_events_root(v: dict[str, Any]) -> Iterator[str]:
    hashes = [bytes.fromhex(leaf["event_hash"]) for leaf in v["leaves"]]
    for leaf, h in zip(v["leaves"], hashes, strict=True):
        if _sha(b"\x00" + h).hex() != leaf["leaf_hash"]:
            yield f"leaf {leaf['index']}: leaf_hash != SHA-256(0x00 || event_hash)"
    if [r["size"] for r in v["roots"]] != list(range(9)):
        yield "roots: sizes must be 0..8"
    for r in v["roots"]:
        n, want = r["size"], r["root"]
        if events_root(hashes[:n]).hex() != want:
            yield f"size {n}: events_root gave {events_root(hashes[:n]).hex()}, expected {want}"
        if n == 0 and want != _sha(b"").hex():
            yield "size 0: root is not SHA-256 of nothing"
        if n == 1 and want != _sha(b"\x00" + hashes[0]).hex():
            yield "size 1: root is not the leaf hash"
        if n >= 2:
            k = r["split"]
            if k != _split(n) or r["left"] != events_root(hashes[:k]).hex() \
                    or r["right"] != events_root(hashes[k:n]).hex():
                yield f"size {n}: split, left or right is wrong"
            if _sha(b"\x01" + bytes.fromhex(r["left"]) + bytes.fromhex(r["right"])).hex() != want:
                yield f"size {n}: root != SHA-256(0x01 || left || right)"
    for neg in v["negative"]:
        if events_root(hashes[: neg["size"]]).hex() == neg["root"]:
            yield f"{neg['name']}: a wrong root verified"


CHECKERS: dict[str, Callable[[dict[str, Any]], Iterator[str]]] = {
    "canonical_json": check_canonical_json,
    "event_hashes": check_event_hashes,
    "chain": check_chain,
    "events_root": check_events_root,
}


def _vector_files() -> list[Path]:
    return sorted(VECTORS.rglob("*.json"))


def test_every_vector_file():
    failures: list[str] = []
    kinds: Counter[str] = Counter()
    for path in _vector_files():
        rel = path.relative_to(VECTORS)
        try:
            v = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            failures.append(f"{rel}: not JSON: {exc}")
            continue
        kind = v.get("kind") if isinstance(v, dict) else None
        checker = CHECKERS.get(kind)  # type: ignore[arg-type]
        if checker is None:
            continue  # another part's vectors (ledger, checkpoints): checked by its own tests
        kinds[kind] += 1
        if kind == "chain" and v.get("name") != path.stem:
            failures.append(f"{rel}: name {v.get('name')!r} is not the file name")
        try:
            failures.extend(f"{rel}: {msg}" for msg in checker(v))
        except Exception as exc:  # noqa: BLE001 - report it with the others
            failures.append(f"{rel}: checker raised {type(exc).__name__}: {exc}")
    assert set(kinds) == set(CHECKERS), f"vector kinds found: {dict(kinds)}"
    assert kinds["chain"] >= 15
    assert failures == [], f"{len(failures)} vector failure(s):\n" + "\n".join(failures)


def _recomputes() -> list[tuple[str, str, str]]:
    """(where, one-liner, expected hex) for every recompute field in the record's vectors."""
    out = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key.endswith("recompute"):
                    # "x_recompute" recomputes field "x"; a bare "recompute", the hash or root.
                    target = key.removesuffix("_recompute") if key != "recompute" else \
                        ("hash" if "hash" in node else "root")
                    out.append((f"{where}.{key}", value, node[target]))
                else:
                    walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    for path in _vector_files():
        v = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(v, dict) and v.get("kind") in CHECKERS:
            walk(v, str(path.relative_to(VECTORS)))
    return out


@pytest.mark.skipif(not (shutil.which("sh") and shutil.which("sha256sum")), reason="needs sh and sha256sum")
def test_recompute_one_liners_give_the_hashes():
    cases = _recomputes()
    assert len(cases) >= 40
    script = "\n".join(cmd for _, cmd, _ in cases) + "\n"
    out = subprocess.run(["sh", "-s"], input=script.encode(), capture_output=True, check=True, timeout=60)
    got = [line.split()[0] for line in out.stdout.decode().splitlines()]
    assert len(got) == len(cases)
    failures = [f"{where}: {g} != {want}" for (where, _, want), g in zip(cases, got, strict=True) if g != want]
    assert failures == [], "\n".join(failures)


def _gen(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(GEN), *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_generator_check_passes_on_the_committed_vectors():
    run = _gen("--check")
    assert run.returncode == 0, run.stderr
    assert "vectors are current" in run.stdout


def test_generator_is_deterministic_and_check_catches_drift(tmp_path):
    out = tmp_path / "vectors"
    assert _gen("--check", "--out", out).returncode == 1  # nothing there yet

    assert _gen("--out", out).returncode == 0
    ours = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.json")}
    theirs = {p.relative_to(VECTORS): p.read_bytes() for p in _vector_files()
              if p.relative_to(VECTORS) in ours}
    assert ours == theirs  # a fresh run writes the committed bytes
    assert _gen("--check", "--out", out).returncode == 0

    target = out / "chain" / "chain_flip_byte_seq3.json"
    target.write_text(target.read_text(encoding="utf-8").replace('"first_bad_seq": 3', '"first_bad_seq": 4'),
                      encoding="utf-8")
    run = _gen("--check", "--out", out)
    assert run.returncode == 1
    assert "chain/chain_flip_byte_seq3.json: differs" in run.stderr
    (out / "events_root.json").unlink()
    assert "events_root.json: missing" in _gen("--check", "--out", out).stderr


@pytest.mark.parametrize(
    ("name", "expected"),
    [("chain_flip_byte_seq3", 3), ("chain_swapped_events_2_3", 2), ("chain_wrong_genesis", 0),
     ("chain_rehashed_edit_seq1", 2), ("valid", None)],
)
def test_named_chain_vectors(name, expected):
    # The brief's examples, pinned by name so a renamed or dropped vector shows up here.
    v = json.loads((VECTORS / "chain" / f"{name}.json").read_text(encoding="utf-8"))
    assert v["first_bad_seq"] == expected
    events = [(e["body"].encode(), bytes.fromhex(e["hash"])) for e in v["events"]]
    assert first_broken_seq(v["execution_id"], events) == expected


# -- the product's verifier against the same chain vectors ------------------------------------

# Re-encodings that keep the JSON's meaning but not its canonical bytes (and were re-hashed)
# are only caught by the deep check, which parses every event.
_CANONICAL_FORM_ONLY = {"chain_reordered_keys_seq2", "chain_trailing_space_seq4"}


@pytest.mark.parametrize("deep", [False, True], ids=["fast", "deep"])
def test_verify_chain_finds_every_corruption_at_its_seq(deep: bool) -> None:
    from execord.record import verify_chain

    wrong = []
    for path in sorted((VECTORS / "chain").glob("*.json")):
        v = json.loads(path.read_text())
        rows = [(i, bytes.fromhex(e["hash"]), e["body"].encode()) for i, e in enumerate(v["events"])]
        _count, problem = verify_chain(v["execution_id"], rows, deep=deep)
        want = v.get("first_bad_seq")
        if not deep and v["name"] in _CANONICAL_FORM_ONLY:
            want = None
        got = None if problem is None else problem.seq
        if got != want:
            wrong.append(f"{v['name']}: want {want}, got {got} ({problem})")
    assert not wrong, "\n".join(wrong)
