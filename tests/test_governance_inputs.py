"""Hostile and mistaken governance files: each is a clear problem with its file and line.

Through `load_spec`, the real ``execord governance`` command (a child process: exit 1, the
problem on stderr, no "internal error", nothing activated) and a real server's
``POST /api/v1/governance/apply`` (422 ``bad-governance-file`` with a problem list, quickly).
"""

from __future__ import annotations

import os
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from execord.errors import GovernanceFileError
from execord.governance import load_spec
from execord.store import open_store

LAUGHS = "".join(f"{n}: &{n} [{', '.join([f'*{p}' if p else 'x'] * 9)}]\n"
                 for p, n in zip([None, *"abcdefgh"], "abcdefghi", strict=True))
DEEP = "x: " + "[" * 2000 + "]" * 2000 + "\n"
RULE = "version: 1\npolicies:\n  - id: r1\n    on: tool.request\n    effect: deny\n"

# name: (file text, line of the problem, words the problem must say)
BAD = {
    "billion-laughs": (LAUGHS, None, ["more than 100,000 values", "aliases"]),
    "recursive-alias": ("a: &a [*a]\n", 1, ["alias *a", "recursive alias", "remove *a"]),
    "recursive-mapping-alias": ("version: 1\nx: &x\n  y: *x\n", 3, ["alias *x", "recursive alias"]),
    "deep-nesting": (DEEP, 1, ["nested more than 100 levels deep"]),
    "deep-through-aliases": ("a: &a " + "[" * 60 + "1" + "]" * 60 + "\nb: " + "[" * 60 + "*a" + "]" * 60 + "\n",
                             2, ["nested more than 100 levels deep once aliases"]),
    "duplicate-effect": (RULE + "    effect: allow\n", 6, ["duplicate key 'effect' (first at line 5)", "keep one"]),
    "duplicate-policies": (RULE + "policies: []\n", 6, ["duplicate key 'policies' (first at line 2)"]),
    "empty": ("", 1, ["the governance file is empty", "version: 1", "no rules on purpose"]),
    "only-comments": ("# nothing yet\n\n", 1, ["the governance file is empty"]),
    "null-document": ("~\n", 1, ["the governance file is empty"]),
    "huge-timeout": ("version: 1\npolicies:\n  - {id: a, on: tool.request, effect: require_approval, approvers: [x],\n"
                     "     timeout: 99999999999999999999d}\n", 4, ["rule a: timeout '99999999999999999999d' is too large",
                                                               "at most 3650d"]),
    "huge-cost": ("version: 1\nbudgets:\n  execution:\n    cost_usd: 1e300\n", 4,
                  ["budget cost_usd: '1e300' is too large", "at most $9,007,199,254"]),
    "huge-cost-float": ("version: 1\nbudgets:\n  execution:\n    cost_usd: 1.0e+300\n", 4, ["budget cost_usd: 1e+300 is too large"]),
    "huge-cost-string": ("version: 1\nbudgets:\n  execution:\n    cost_usd: \"" + "9" * 40 + "\"\n", 4,
                         ["budget cost_usd: '9999", "is too large"]),
    "huge-tokens": ("version: 1\nbudgets:\n  execution:\n    total_tokens: 99999999999999999999999999\n", 4,
                    ["budget total_tokens: 99999999999999999999999999 is too large", "at most 9,007,199,254,740,991"]),
    "huge-per-tool": ("version: 1\nbudgets:\n  execution:\n    per_tool:\n      refund: 99999999999999999999\n", 5,
                      ["per_tool refund: 99999999999999999999 is too large"]),
    "huge-window": ("version: 1\nbudgets:\n  windows:\n    - id: w\n      scope: agent\n      period: day\n"
                    "      steps: 99999999999999999999\n", 7, ["window w: steps 99999999999999999999 is too large"]),
    "huge-duration": ("version: 1\nbudgets:\n  execution:\n    duration: 4000d\n", 4, ["budget duration: '4000d' is too large"]),
    "huge-priority": (RULE + "    priority: 999999999999999999999999999999\n", 6,
                      ["rule r1: priority 999999999999999999999999999999 is too large", "lower runs first"]),
    "too-many-digits": ("version: 1\nbudgets:\n  execution:\n    steps: " + "9" * 5000 + "\n", 4, ["has too many digits"]),
    "huge-price": ("version: 1\npricing:\n  my-model: {input_per_mtok_usd: 99999999999999999999, output_per_mtok_usd: 1}\n",
                   3, ["input_per_mtok_usd: the amount is too large", "at most 1,000,000 USD"]),
    "version-a-string": ('version: "1"\n', 1, ["version must be the number 1, not the string '1'", "without quotes"]),
    "version-true": ("version: true\n", 1, ["version True is not supported"]),
    "detector-bad-regex": ("version: 1\ndetectors:\n  custom:\n    bad: \"[a\"\n", 4,
                           ["detector bad: bad regular expression '[a'", "check the escaping"]),
    "detector-not-a-string": ("version: 1\ndetectors:\n  custom:\n    x: 5\n", 4,
                              ["detector x: the regular expression must be a string, not int", "quote it"]),
    "cel-too-deep": (RULE + "    when: " + "(" * 200 + "true" + ")" * 200 + "\n", 6,
                     ["rule r1: size error in `when`", "nested too deeply or is too long"]),
    "cel-huge-literal": (RULE + "    when: usage.steps > 99999999999999999999999\n", 6, ["64-bit"]),
    "test-context-not-a-mapping": ("version: 1\ntests:\n  - name: t\n    phase: end\n    context: {tool: 5}\n"
                                   "    expect: {decision: allow}\n", 5, ["context.tool must be a mapping"]),
}


def _problems(path: Path) -> list[tuple[str, str, str]]:
    with pytest.raises(GovernanceFileError) as info:
        load_spec(path)
    return [(str(w), m, h) for w, m, h in info.value.problems]


@pytest.mark.parametrize("name", list(BAD))
def test_each_bad_file_is_one_clear_problem_at_its_line(name: str, tmp_path: Path) -> None:
    text, line, words = BAD[name]
    path = tmp_path / "execord.yaml"
    path.write_text(text, encoding="utf-8")
    started = time.monotonic()
    problems = _problems(path)
    assert time.monotonic() - started < 5, "refusing it took too long"
    assert len(problems) == 1, problems
    where, message, hint = problems[0]
    if line is not None:
        assert where == f"{path}:{line}", problems
    said = f"{message} ({hint})"
    for word in words:
        assert word in said, said
    assert said.count("detector bad:") <= 1 and said.count("(") <= 3, f"repeated: {said}"


def test_every_duplicate_key_is_reported_not_just_the_first(tmp_path: Path) -> None:
    path = tmp_path / "execord.yaml"
    path.write_text(RULE + "    effect: allow\n    on: end\n", encoding="utf-8")
    assert [(w.rsplit(":", 1)[1], m) for w, m, _ in _problems(path)] == [
        ("6", "duplicate key 'effect' (first at line 5)"), ("7", "duplicate key 'on' (first at line 4)")]


def test_merge_keys_may_override_without_counting_as_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "execord.yaml"
    path.write_text("version: 1\npolicies:\n  - <<: {id: a, on: end, effect: warn}\n    id: b\n", encoding="utf-8")
    assert [r.id for r in load_spec(path).rules] == ["b"]


def test_version_may_be_left_out_and_a_file_of_just_version_1_has_no_rules(tmp_path: Path) -> None:
    path = tmp_path / "execord.yaml"
    path.write_text("version: 1\n", encoding="utf-8")
    assert load_spec(path).rules == ()
    path.write_text("policies:\n  - {id: a, on: end, effect: warn}\n", encoding="utf-8")
    assert [r.id for r in load_spec(path).rules] == ["a"]


def test_the_largest_allowed_values_are_accepted(tmp_path: Path) -> None:
    from execord.governance import build_version

    path = tmp_path / "execord.yaml"
    path.write_text(textwrap.dedent("""\
        version: 1
        policies:
          - {id: a, on: tool.request, effect: require_approval, approvers: [x], timeout: 3650d, priority: -9007199254740991}
        budgets:
          execution: {cost_usd: "$9,007,199,254", total_tokens: 9007199254740991, duration: 3650d}
        pricing:
          my-model: {input_per_mtok_usd: 1000000, output_per_mtok_usd: "0.000001"}
        """), encoding="utf-8")
    spec = load_spec(path)
    assert spec.execution_budgets["cost_micros"] == 9_007_199_254_000_000
    build_version(spec)  # its canonical JSON holds every number


def test_a_broken_symlink_in_a_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "governance"
    folder.mkdir()
    (folder / "a.yaml").write_text(RULE, encoding="utf-8")
    (folder / "b.yaml").symlink_to(tmp_path / "gone.yaml")
    [(where, message, hint)] = _problems(folder)
    assert where == f"{folder / 'b.yaml'}:1"
    assert message == f"b.yaml is a broken symbolic link (to {tmp_path / 'gone.yaml'})" and "remove it" in hint


# -- the command --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["billion-laughs", "recursive-alias", "deep-nesting", "duplicate-effect", "empty",
                                  "huge-cost", "huge-timeout", "version-a-string", "detector-bad-regex"])
def test_the_command_prints_the_problem_exits_1_and_activates_nothing(name: str, cli: Any, db_path: str,
                                                                      tmp_path: Path) -> None:
    text, line, words = BAD[name]
    path = tmp_path / "execord.yaml"
    path.write_text(text, encoding="utf-8")
    for command in ("validate", "apply"):
        r = cli("governance", command, str(path), timeout=30)
        assert r.returncode == 1, (command, r.stdout, r.stderr)
        assert "internal error" not in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert words[0] in r.stderr, r.stderr
        if line is not None:
            assert f"{path}:{line}: " in r.stderr, r.stderr
    if os.path.exists(db_path):
        store = open_store(db_path)
        try:
            assert store.active_governance() is None
        finally:
            store.close()


@pytest.mark.slow
def test_the_command_applies_dev_null_as_an_error(cli: Any, db_path: str) -> None:
    r = cli("governance", "apply", os.devnull)
    assert r.returncode == 1 and f"{os.devnull}:1: the governance file is empty" in r.stderr, r.stderr


@pytest.mark.slow
def test_diff_and_show_say_no_such_file_for_a_missing_path(cli: Any, tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(RULE, encoding="utf-8")
    r = cli("governance", "diff", str(good), "/nope.yaml")
    assert r.returncode == 1 and "no such file: /nope.yaml" in r.stderr, r.stderr
    r = cli("governance", "diff", "nope/", str(good))
    assert r.returncode == 1 and "no such file: nope/" in r.stderr, r.stderr
    r = cli("governance", "show", "missing.yml")
    assert r.returncode == 1 and "no such file: missing.yml" in r.stderr, r.stderr
    r = cli("governance", "show", str(good))
    assert r.returncode == 1 and f"execord governance validate {good}" in r.stderr, r.stderr
    r = cli("governance", "diff", str(good), "gv_0000")  # not a path: still a version id
    assert r.returncode == 1 and "no governance version gv_0000" in r.stderr, r.stderr


# -- the server ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from _server import live_server

    with live_server(str(tmp_path_factory.mktemp("server") / "execord.db")) as server:
        yield server


@pytest.mark.slow
@pytest.mark.parametrize("name", ["billion-laughs", "recursive-alias", "deep-nesting", "duplicate-policies", "empty",
                                  "huge-tokens", "huge-priority", "too-many-digits", "detector-not-a-string"])
def test_the_server_answers_422_with_the_problem_quickly(name: str, live: Any) -> None:
    text, line, words = BAD[name]
    active = live.admin.get("/api/v1/governance/active").json()["version_id"]
    started = time.monotonic()
    r = live.admin.post("/api/v1/governance/apply", json={"source": text, "filename": "mine.yaml"})
    assert time.monotonic() - started < 10, "the server took too long"
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["type"].endswith("bad-governance-file") and body["problems"], body
    assert words[0] in r.text, body
    if line is not None:
        assert f"mine.yaml:{line}" in r.text and "/tmp" not in r.text, body
    assert live.admin.get("/api/v1/governance/active").json()["version_id"] == active


@pytest.mark.slow
def test_the_server_takes_a_filename_longer_in_bytes_than_the_filesystem_allows(live: Any) -> None:
    name = "é" * 195 + ".yaml"  # 200 characters, 395 bytes
    r = live.admin.post("/api/v1/governance/apply", json={"source": RULE + "    effect: warn\n", "filename": name})
    assert r.status_code == 422 and f"{name}:6: duplicate key 'effect'" in r.text, r.text
    r = live.admin.post("/api/v1/governance/apply", json={"source": RULE, "filename": name})
    assert r.status_code == 200, r.text
    history = live.admin.get("/api/v1/governance/history").json()["items"]
    assert history[-1]["source"] == f"api:{name}"
