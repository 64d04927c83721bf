"""The governance docs and the governance JSON Schema say what the loader does.

- docs/governance.schema.json is a valid draft 2020-12 schema whose keys, enums and
  patterns are the loader's (``execord/governance/_file.py``) and whose test contexts are
  ``execord.governance.VARIABLES``;
- every governance file in the docs (each ```yaml block of docs/governance.md and
  docs/cli.md, and each YAML file a docs example writes) and every ``*.yaml`` under
  examples/ validates against the schema, and the docs' files are accepted by the schema
  exactly when `execord.governance.load_spec` accepts them;
- a table of invalid files is refused by both, a table of odd but valid ones accepted by both;
- docs/governance.md names every key the loader accepts and every variable and field;
- the JSON shapes of the governance and approvals commands in docs/cli.md
  (``<!-- governance-shape: … -->``) have exactly the keys the commands print.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from execord.errors import GovernanceFileError
from execord.governance import EFFECTS, VARIABLES, load_spec, parse_duration, parse_usd
from execord.governance import _file as gov_file
from execord.governance._detectors import BUILTIN
from execord.governance._prices import OVERRIDE_KEYS
from execord.record import PHASES

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SCHEMA_PATH = DOCS / "governance.schema.json"
GOVERNANCE_MD = DOCS / "governance.md"
FENCE = re.compile(r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
TRIPLE = re.compile(r'"""(.*?)"""', re.S)


@cache
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@cache
def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema())


def parse(text: str) -> Any:
    """YAML as the loader reads it (YAML 1.2 booleans: the key ``on`` stays a string)."""
    return yaml.load(text, Loader=gov_file._Loader)  # noqa: S506 - a SafeLoader


def schema_errors(text: str) -> list[str]:
    data = parse(text)
    return [f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}" for e in validator().iter_errors(data)]


def loader_problems(text: str, tmp_path: Path, name: str = "execord.yaml") -> list[str]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    try:
        load_spec(path)
    except GovernanceFileError as exc:
        return [str(exc)]
    return []


def _blocks(path: Path, lang: str) -> list[tuple[int, str]]:
    text = path.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group("body"))
            for m in FENCE.finditer(text) if m.group("lang") == lang]


def _is_governance_file(text: str) -> bool:
    try:
        data = parse(text)
    except yaml.YAMLError:
        return False
    if "# docs: invalid" in text:
        return True
    return isinstance(data, dict) and bool(data) and all(isinstance(k, str) and k in gov_file._TOP_KEYS for k in data)


def _doc_files() -> list[Any]:
    """Every governance file in the docs: yaml blocks, and the YAML python examples write."""
    out = []
    for path in (GOVERNANCE_MD, DOCS / "cli.md", DOCS / "sdk.md"):
        if not path.exists():
            continue
        for line, body in _blocks(path, "yaml"):
            out.append(pytest.param(body, id=f"{path.name}:{line}:yaml"))
        for line, body in _blocks(path, "python"):
            for i, m in enumerate(TRIPLE.finditer(body)):
                text = textwrap.dedent(m.group(1))
                if _is_governance_file(text):
                    out.append(pytest.param(text, id=f"{path.name}:{line}:python#{i}"))
    return out


DOC_FILES = _doc_files()


# --- the schema itself -------------------------------------------------------------------------


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    assert schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema())


def _props(*path: str) -> dict[str, Any]:
    node: Any = schema()
    for part in path:
        node = node[part]
    return node


def test_the_schema_has_exactly_the_loader_s_keys() -> None:
    defs = schema()["$defs"]
    assert tuple(schema()["properties"]) == gov_file._TOP_KEYS
    assert tuple(defs["rule"]["properties"]) == gov_file._RULE_KEYS
    assert tuple(defs["budgets"]["properties"]["execution"]["properties"]) == gov_file._EXEC_BUDGET_KEYS
    assert tuple(defs["window"]["properties"]) == gov_file._WINDOW_KEYS
    assert tuple(defs["test"]["properties"]) == gov_file._TEST_KEYS
    assert set(defs["budgets"]["properties"]) == {"execution", "windows"}
    assert set(defs["detectors"]["properties"]) == {"secrets", "custom"}
    assert set(defs["window"]["properties"]["match"]["properties"]) == {"agent", "workflow"}
    assert tuple(defs["price"]["properties"]) == tuple(OVERRIDE_KEYS)
    # Where the loader refuses unknown keys, so does the schema.
    for node in (schema(), defs["rule"], defs["budgets"], defs["budgets"]["properties"]["execution"],
                 defs["window"], defs["window"]["properties"]["match"], defs["detectors"], defs["price"], defs["test"]):
        assert node["additionalProperties"] is False


def test_the_schema_s_enums_and_patterns_are_the_code_s() -> None:
    defs = schema()["$defs"]
    assert set(defs["phase"]["enum"]) == set(PHASES)
    assert tuple(defs["effect"]["enum"]) == EFFECTS
    assert tuple(defs["window"]["properties"]["scope"]["enum"]) == gov_file.WINDOW_SCOPES
    assert tuple(defs["window"]["properties"]["period"]["enum"]) == gov_file.WINDOW_PERIODS
    assert defs["id"]["pattern"] == gov_file._ID.pattern
    assert defs["detector_name"]["anyOf"][0]["enum"] == list(BUILTIN)
    assert defs["detectors"]["properties"]["custom"]["propertyNames"]["not"]["enum"] == list(BUILTIN)
    waits = defs["rule"]["allOf"][0]["then"]["properties"]["on"]["anyOf"][0]["enum"]
    assert tuple(waits) == gov_file._CAN_WAIT
    metrics = [m for m in defs["window"]["properties"] if m in gov_file.BUDGET_METRICS]
    assert tuple(metrics) == gov_file.BUDGET_METRICS
    assert [r["required"] for r in defs["window"]["anyOf"]] == [[m] for m in gov_file.BUDGET_METRICS]


def test_the_schema_s_test_context_is_the_rule_variables() -> None:
    context = schema()["$defs"]["test"]["properties"]["context"]["properties"]
    expected = {v.name: [f[0] for f in v.fields] if v.fields else None for v in VARIABLES if v.name != "now"}
    assert {name: list(node["properties"]) if "properties" in node else None for name, node in context.items()} == expected


@pytest.mark.parametrize("value", [0, 1, 30, "30s", "10m", "2h", "1d", "500ms", "1.5h", " 2 h ", "0s", "0.5s",
                                   "10 minutes", "1w", "-1s", "m", "", 1.5, True, "1e3s"])
def test_durations_agree_with_the_loader(value: Any) -> None:
    d = schema()["$defs"]
    loader = parse_duration(value)
    assert validator().evolve(schema=d["duration"] | {"$defs": d}).is_valid(value) == (loader is not None)
    positive = validator().evolve(schema=d["positive_duration"] | {"$defs": d}).is_valid(value)
    assert positive == (loader is not None and loader > 0)


@pytest.mark.parametrize("value", [0, 2, 2.5, "2.50", "$2.50", "1,000", " $ 3 ", "0.000001", -1, "-1", "two", "", True])
def test_amounts_agree_with_the_loader(value: Any) -> None:
    d = schema()["$defs"]
    assert validator().evolve(schema=d["usd"] | {"$defs": d}).is_valid(value) == (parse_usd(value) is not None)


# --- files: the docs', the examples', and tables of valid and invalid ones -------------------------


def test_the_docs_show_governance_files() -> None:
    ids = [p.id for p in DOC_FILES if p.id.startswith("governance.md")]
    assert len([i for i in ids if i.endswith(":yaml")]) >= 2 and len([i for i in ids if "python" in i]) >= 8, ids


@pytest.mark.parametrize("text", DOC_FILES)
def test_every_governance_file_in_the_docs_validates_against_the_schema_and_the_loader(text: str, tmp_path: Path) -> None:
    errors, problems = schema_errors(text), loader_problems(text, tmp_path)
    if "# docs: invalid" in text or problems:
        # A file shown to demonstrate errors: the schema must refuse it too.
        assert problems and errors, f"the loader says {problems}, the schema says {errors}"
    else:
        assert not errors, errors


def _example_files() -> list[Path]:
    return sorted(p for ext in ("*.yaml", "*.yml") for p in (ROOT / "examples").rglob(ext))


def test_every_example_governance_file_validates_against_the_schema() -> None:
    for path in _example_files():
        errors = schema_errors(path.read_text(encoding="utf-8"))
        assert not errors, f"{path.relative_to(ROOT)}: {errors}"


VALID = {
    "only-version": "version: 1\n",
    "null-sections": "policies:\nbudgets:\ndetectors:\npricing:\ntests:\n",
    "on-as-a-string": 'policies:\n  - {id: a, on: end, effect: warn}\n',
    "when-bare-true": "policies:\n  - {id: a, on: [admission], when: true, effect: allow}\n",
    "approvers-as-a-string": "policies:\n  - {id: a.b-c_1, on: llm.request, effect: require_approval, approvers: finance, timeout: 90}\n",
    "approval-defaults": "policies:\n  - {id: a, on: [tool.request, step.request], effect: require_approval, approvers: [x]}\n",
    "on-timeout-approve": "policies:\n  - {id: a, on: tool.request, effect: require_approval, approvers: [x], timeout: 500ms, on_timeout: approve}\n",
    "redact-paths": "policies:\n  - {id: a, on: tool.request, effect: redact, detectors: [email], paths: [$, '$.a.b', '*.email', 'messages.*.content']}\n",
    "custom-detector": "policies:\n  - {id: a, on: tool.request, effect: redact, detectors: [order_id]}\ndetectors:\n  secrets: false\n  custom: {order_id: 'ORD-[0-9]+', _x-y: 'a+'}\n",
    "amounts-and-durations": "budgets:\n  execution: {cost_usd: '$2.50', duration: 1.5h, steps: 0, per_tool: {a: 0}}\n",
    "window-without-match": "budgets:\n  windows:\n    - {id: w, scope: project, period: month, steps: 10}\n",
    "window-null-match": "budgets:\n  windows:\n    - {id: w, scope: agent, match: , period: hour, cost_usd: 1}\n",
    "pricing-strings": "pricing:\n  My-Model: {input_per_mtok_usd: '0.15', output_per_mtok_usd: 0.6, per_request_usd: '$0.01'}\n",
    "test-minimal": "tests:\n  - {phase: end, expect: {decision: allow}}\n",
    "test-rule-null": "tests:\n  - {name: n, phase: admission, context: {labels: {env: prod}}, expect: {decision: allow, rule: null}}\n",
}

INVALID = {
    "empty": "",  # an empty file is refused: a truncated file must not mean "no governance"
    "unknown-top-key": "polices: []\n",
    "version-2": "version: 2\n",
    "top-level-list": "- id: a\n",
    "unknown-rule-key": "policies:\n  - {id: a, on: end, effect: warn, priorty: 1}\n",
    "rule-without-id": "policies:\n  - {on: end, effect: warn}\n",
    "bad-rule-id": "policies:\n  - {id: '-a', on: end, effect: warn}\n",
    "unknown-phase": "policies:\n  - {id: a, on: tool.requests, effect: warn}\n",
    "no-phase": "policies:\n  - {id: a, on: [], effect: warn}\n",
    "unknown-effect": "policies:\n  - {id: a, on: end, effect: block}\n",
    "when-a-number": "policies:\n  - {id: a, on: end, effect: warn, when: 5}\n",
    "priority-not-whole": "policies:\n  - {id: a, on: end, effect: warn, priority: 1.5}\n",
    "approval-without-approvers": "policies:\n  - {id: a, on: tool.request, effect: require_approval}\n",
    "approval-at-a-response": "policies:\n  - {id: a, on: tool.response, effect: require_approval, approvers: [x]}\n",
    "approvers-on-a-deny": "policies:\n  - {id: a, on: end, effect: deny, approvers: [x]}\n",
    "timeout-on-a-warn": "policies:\n  - {id: a, on: end, effect: warn, timeout: 10m}\n",
    "zero-timeout": "policies:\n  - {id: a, on: tool.request, effect: require_approval, approvers: [x], timeout: 0s}\n",
    "bad-timeout": "policies:\n  - {id: a, on: tool.request, effect: require_approval, approvers: [x], timeout: 10 minutes}\n",
    "bad-on-timeout": "policies:\n  - {id: a, on: tool.request, effect: require_approval, approvers: [x], on_timeout: wait}\n",
    "redact-without-detectors": "policies:\n  - {id: a, on: tool.request, effect: redact}\n",
    "detectors-on-a-deny": "policies:\n  - {id: a, on: tool.request, effect: deny, detectors: [email]}\n",
    "bad-path": "policies:\n  - {id: a, on: tool.request, effect: redact, detectors: [email], paths: ['a..b']}\n",
    "unknown-budget-section": "budgets:\n  executions: {steps: 1}\n",
    "unknown-budget": "budgets:\n  execution: {tokens: 5}\n",
    "negative-count": "budgets:\n  execution: {llm_calls: -1}\n",
    "count-not-whole": "budgets:\n  execution: {steps: 2.5}\n",
    "bad-amount": "budgets:\n  execution: {cost_usd: two dollars}\n",
    "negative-amount": "budgets:\n  execution: {cost_usd: -1}\n",
    "bad-duration": "budgets:\n  execution: {duration: 10 minutes}\n",
    "bad-per-tool": "budgets:\n  execution: {per_tool: {a: many}}\n",
    "window-bad-scope": "budgets:\n  windows:\n    - {id: w, scope: team, period: day, cost_usd: 1}\n",
    "window-bad-period": "budgets:\n  windows:\n    - {id: w, scope: agent, period: week, cost_usd: 1}\n",
    "window-without-limit": "budgets:\n  windows:\n    - {id: w, scope: agent, period: day}\n",
    "window-bad-match": "budgets:\n  windows:\n    - {id: w, scope: agent, period: day, steps: 1, match: {team: a}}\n",
    "window-unknown-key": "budgets:\n  windows:\n    - {id: w, scope: agent, period: day, steps: 1, duration: 1h}\n",
    "unknown-detectors-key": "detectors:\n  secret: false\n",
    "secrets-not-a-bool": "detectors:\n  secrets: 'yes'\n",
    "custom-shadows-builtin": "detectors:\n  custom: {email: 'x+'}\n",
    "custom-bad-name": "detectors:\n  custom: {1st: 'x+'}\n",
    "pricing-unknown-key": "pricing:\n  m: {input_per_mtok_usd: 1, output_per_mtok_usd: 1, input_usd: 1}\n",
    "pricing-missing-output": "pricing:\n  m: {input_per_mtok_usd: 1}\n",
    "pricing-negative": "pricing:\n  m: {input_per_mtok_usd: -1, output_per_mtok_usd: 1}\n",
    "test-unknown-key": "tests:\n  - {phase: end, expect: {decision: allow}, given: {}}\n",
    "test-bad-phase": "tests:\n  - {phase: tool, expect: {decision: allow}}\n",
    "test-bad-decision": "tests:\n  - {phase: end, expect: {decision: block}}\n",
    "test-without-expect": "tests:\n  - {phase: end}\n",
}


@pytest.mark.parametrize("text", list(VALID.values()), ids=list(VALID))
def test_valid_files_are_accepted_by_both(text: str, tmp_path: Path) -> None:
    assert loader_problems(text, tmp_path) == []
    assert schema_errors(text) == []


@pytest.mark.parametrize("text", list(INVALID.values()), ids=list(INVALID))
def test_invalid_files_are_refused_by_both(text: str, tmp_path: Path) -> None:
    assert loader_problems(text, tmp_path), "the loader accepted it"
    assert schema_errors(text), "the schema accepted it"


# --- docs/governance.md covers every key and every variable --------------------------------------


def _doc() -> str:
    return GOVERNANCE_MD.read_text(encoding="utf-8")


@pytest.mark.parametrize("what", ["_TOP_KEYS", "_RULE_KEYS", "_EXEC_BUDGET_KEYS", "_WINDOW_KEYS", "_TEST_KEYS"])
def test_every_key_the_loader_accepts_is_in_governance_md(what: str) -> None:
    text = _doc()
    missing = [k for k in getattr(gov_file, what) if f"`{k}`" not in text and f"`{k}:" not in text]
    assert not missing, f"{what}: not in docs/governance.md: {missing}"


def test_every_variable_and_field_is_in_governance_md() -> None:
    text = _doc()
    names = [f"{v.name}.{f[0]}" for v in VARIABLES if v.fields for f in v.fields]
    names += [v.name for v in VARIABLES if v.fields is None]
    missing = [n for n in names if not re.search(rf"^\| `{re.escape(n)}` \|", text, re.M)]
    assert not missing, f"variables without a row in docs/governance.md: {missing}"


def test_every_phase_effect_detector_and_price_key_is_in_governance_md() -> None:
    text = _doc()
    names = [*PHASES, *EFFECTS, *BUILTIN, *OVERRIDE_KEYS, *gov_file.WINDOW_SCOPES, *gov_file.WINDOW_PERIODS]
    missing = [n for n in names if f"`{n}`" not in text]
    assert not missing, missing


# --- the JSON the governance and approvals commands print -----------------------------------------

SHAPE = re.compile(r"<!-- governance-shape: (?P<name>[\w ]+?) -->\s*```json[^\n]*\n(?P<body>.*?)^```", re.M | re.S)
SHAPES = ("governance validate", "governance test", "governance apply", "governance history", "governance show",
          "governance diff", "governance simulate", "approvals list", "approvals approve", "approvals reject")


def _documented_shapes() -> dict[str, Any]:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    return {m.group("name"): json.loads(m.group("body")) for m in SHAPE.finditer(text)}


def _shape_problems(doc: Any, actual: Any, where: str = "$") -> list[str]:
    """Where the documented JSON and the printed JSON differ in their keys.

    In a list of objects, each printed item must have the keys of some documented item, and
    each documented item those of some printed one (when something was printed).
    """
    if isinstance(doc, dict) and isinstance(actual, dict):
        if set(doc) != set(actual):
            return [f"{where}: documented only {sorted(set(doc) - set(actual))}; "
                    f"printed only {sorted(set(actual) - set(doc))}"]
        return [p for k in sorted(doc) for p in _shape_problems(doc[k], actual[k], f"{where}.{k}")]
    if isinstance(doc, list) and isinstance(actual, list) and doc and all(isinstance(d, dict) for d in doc):
        problems = []
        for i, a in enumerate(actual):
            if all(_shape_problems(d, a) for d in doc):
                problems.append(f"{where}[{i}]: printed keys {sorted(a) if isinstance(a, dict) else a} "
                                "match no documented item")
        if actual:
            for i, d in enumerate(doc):
                if all(_shape_problems(d, a) for a in actual):
                    problems.append(f"{where}[{i}]: documented keys {sorted(d)} match no printed item")
        return problems
    return []


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECORD_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _cli(folder: Path, *args: str, ok: bool = True) -> Any:
    r = subprocess.run([sys.executable, "-m", "execord", *args], cwd=folder, env=_env(), capture_output=True,
                       text=True, timeout=120, stdin=subprocess.DEVNULL)
    if ok:
        assert r.returncode == 0, f"execord {' '.join(args)}: exit {r.returncode}\n{r.stderr}"
    return json.loads(r.stdout)


AGENT = textwrap.dedent("""
    import execord
    execord.init(agent="support-bot", roles=["support"])

    @execord.tool
    def issue_refund(order_id: str, amount: int) -> str:
        return "refunded"

    @execord.workflow
    def refund(order_id: str, amount: int) -> str:
        return issue_refund(order_id, amount)

    for order, amount in (("A-1001", 20), ("A-1002", 5000), ("A-1003", 9000)):
        try:
            refund(order, amount)
        except execord.Halted:
            pass
""")


def _cli_md_governance_file() -> str:
    """The governance file the examples of docs/cli.md use (its first yaml block)."""
    return _blocks(DOCS / "cli.md", "yaml")[0][1]


def _wait_for_pending(folder: Path, timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = subprocess.run([sys.executable, "-m", "execord", "approvals", "list", "--format", "json"], cwd=folder,
                           env=_env(), capture_output=True, text=True, timeout=60)
        if r.returncode == 0 and (rows := json.loads(r.stdout)):
            return list(rows)
        time.sleep(0.1)
    raise AssertionError("no approval became pending")


def run_governance_commands(folder: Path) -> dict[str, Any]:
    """Every governance and approvals command, for real, with --format json."""
    (folder / "execord.yaml").write_text(_cli_md_governance_file(), encoding="utf-8")
    out: dict[str, Any] = {}
    out["governance validate"] = _cli(folder, "governance", "validate", "execord.yaml", "--format", "json")
    out["governance test"] = _cli(folder, "governance", "test", "execord.yaml", "--format", "json")
    out["governance apply"] = _cli(folder, "governance", "apply", "execord.yaml", "--by", "alice", "--format", "json")
    agent = subprocess.Popen([sys.executable, "-c", AGENT], cwd=folder, env=_env(), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pending = _wait_for_pending(folder)
        out["approvals list"] = pending
        out["approvals approve"] = _cli(folder, "approvals", "approve", pending[0]["id"][:13], "--comment",
                                        "customer verified", "--reviewer", "maria", "--format", "json")
        pending = _wait_for_pending(folder)
        out["approvals reject"] = _cli(folder, "approvals", "reject", pending[0]["id"], "-m", "too much",
                                       "--format", "json")
        _, stderr = agent.communicate(timeout=60)
        assert agent.returncode == 0, stderr
    finally:
        agent.kill()
    stricter = _cli_md_governance_file().replace("amount > 1000", "amount > 10").replace("id: mask-emails", "id: mask-contacts")
    (folder / "stricter.yaml").write_text(stricter, encoding="utf-8")
    out["governance history"] = _cli(folder, "governance", "history", "--format", "json")
    out["governance show"] = _cli(folder, "governance", "show", "--format", "json")
    out["governance diff"] = _cli(folder, "governance", "diff", out["governance apply"]["version"], "stricter.yaml",
                                  "--format", "json")
    out["governance simulate"] = _cli(folder, "governance", "simulate", "stricter.yaml", "--format", "json")
    return out


def test_every_governance_and_approvals_command_has_a_documented_shape() -> None:
    assert set(_documented_shapes()) == set(SHAPES)


@pytest.fixture(scope="module")
def printed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_governance_commands(tmp_path_factory.mktemp("governance-cli"))


@pytest.mark.slow
@pytest.mark.parametrize("name", SHAPES)
def test_documented_json_shape_matches_the_command(name: str, printed: dict[str, Any]) -> None:
    problems = _shape_problems(_documented_shapes()[name], printed[name])
    assert not problems, f"docs/cli.md shape {name!r} differs from what the command prints:\n" + "\n".join(problems)


@pytest.mark.slow
def test_the_cli_md_walkthrough_does_what_it_says(printed: dict[str, Any]) -> None:
    assert printed["governance validate"]["ok"] is True
    assert printed["governance test"]["failed"] == 0
    assert printed["governance apply"]["created"] is True
    assert [r["status"] for r in (printed["approvals approve"], printed["approvals reject"])] == ["approved", "rejected"]
    assert printed["approvals approve"]["reviewer"] == "maria"
    assert {c["change"] for c in printed["governance diff"]["changes"]} == {"added", "removed", "changed"}
    assert printed["governance simulate"]["changes"] and not printed["governance simulate"]["integrity_problems"]
