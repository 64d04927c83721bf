"""The governance file loader (issue #3, point 1; DESIGN §5): every problem with its file,
line and a hint; folders merge; the YAML 1.1 ``on:`` trap; budgets in micro-USD and ms; and
content-addressed version ids.

Each problem case is a small governance file with the line the problem must be reported at
marked ``# <``; the case says which words the message and the hint must contain.
"""

from __future__ import annotations

import hashlib
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from execord.errors import GovernanceError, GovernanceFileError
from execord.governance import build_version, load_spec
from execord.record import canonical_json

MARK = "# <"


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def _marked_lines(path: Path) -> list[int]:
    return [i for i, line in enumerate(path.read_text().splitlines(), start=1) if MARK in line]


def _problems(target: Path) -> list[tuple[str, int, str, str]]:
    """(file, line, message, hint) of every problem `load_spec` reports, in its order."""
    with pytest.raises(GovernanceFileError) as info:
        load_spec(target)
    assert isinstance(info.value, GovernanceError)
    return [(w.file, w.line, m, h) for w, m, h in info.value.problems]  # type: ignore[attr-defined]


# -- one problem per file -------------------------------------------------------------------

RULE = """
version: 1
policies:
  - id: r1
    on: [tool.request]
    effect: deny
"""

# (id, file, words in the message, words in the hint)
PROBLEMS: list[tuple[str, str, str, str]] = [
    ("unknown-top-key", """
        version: 1
        polices: []  # <
        """, "unknown key 'polices' in the governance file", "did you mean 'policies'?"),
    ("unknown-rule-key", """
        version: 1
        policies:
          - id: r1
            on: [tool.request]
            effect: deny
            priorty: 3  # <
        """, "unknown key 'priorty' in a rule", "did you mean 'priority'?"),
    ("unknown-budget-key", """
        version: 1
        budgets:
          execution:
            total_token: 5  # <
        """, "unknown key 'total_token' in budgets.execution", "did you mean 'total_tokens'?"),
    ("unknown-key-no-near-match", """
        version: 1
        budgets:
          execution:
            zzzzzz: 5  # <
        """, "unknown key 'zzzzzz'", "allowed: cost_usd"),
    ("duplicate-rule-id", """
        version: 1
        policies:
          - id: same
            on: [tool.request]
            effect: warn
          - id: same  # <
            on: [tool.response]
            effect: warn
        """, "duplicate rule id 'same' (first at {file}:3)", "give each rule its own id"),
    ("bad-rule-id", """
        version: 1
        policies:
          - id: "has spaces"  # <
            on: [tool.request]
            effect: deny
        """, "rule id 'has spaces' is missing or not a simple name", "letters, digits"),
    ("cel-syntax", """
        version: 1
        policies:
          - id: r1
            on: [tool.request]
            when: tool.name ==  # <
            effect: deny
        """, "rule r1: syntax error in `when`", "check the CEL syntax"),
    ("cel-unknown-variable", """
        version: 1
        policies:
          - id: r1
            on: [tool.request]
            when: tenant.name == "acme"  # <
            effect: deny
        """, "rule r1: unknown-name error in `when`", "variables: agent, workflow"),
    ("cel-unknown-field", """
        version: 1
        policies:
          - id: r1
            on: [tool.request]
            when: agent.nmae == "support"  # <
            effect: deny
        """, "nmae", "variables: agent"),
    ("cel-type-mismatch", """
        version: 1
        policies:
          - id: r1
            on: [llm.request]
            when: usage.total_tokens > "x"  # <
            effect: deny
        """, "rule r1: type error in `when`", "compare like with like"),
    ("cel-not-boolean", """
        version: 1
        policies:
          - id: r1
            on: [tool.request]
            when: usage.steps + 1  # <
            effect: deny
        """, "not-boolean error", "a condition must be true or false"),
    ("when-not-text", """
        version: 1
        policies:
          - id: r1
            on: [tool.request]
            when: [1, 2]  # <
            effect: deny
        """, "rule r1: `when` must be a CEL expression", 'when: tool.name == "shell"'),
    ("unknown-phase", """
        version: 1
        policies:
          - id: r1
            on: [tool.requets]  # <
            effect: deny
        """, "rule r1: unknown phase 'tool.requets'", "did you mean 'tool.request'?"),
    ("no-phase", """
        version: 1
        policies:
          - id: r1  # <
            effect: deny
        """, "rule r1: `on` must name one or more phases", "phases: admission"),
    ("bad-effect", """
        version: 1
        policies:
          - id: r1
            on: [tool.request]
            effect: deni  # <
        """, "rule r1: effect 'deni' is not one of", "pick one of the five effects"),
    ("bad-priority", """
        version: 1
        policies:
          - id: r1
            on: [tool.request]
            effect: deny
            priority: high  # <
        """, "rule r1: priority must be a whole number", "lower runs first"),
    ("unknown-detector", """
        version: 1
        policies:
          - id: r1
            on: [tool.request]
            effect: redact
            detectors: [emial]  # <
        """, "rule r1: unknown detector 'emial'", "did you mean 'email'?"),
    ("redact-without-detectors", """
        version: 1
        policies:
          - id: r1  # <
            on: [tool.request]
            effect: redact
        """, "rule r1: redact needs detectors", "detectors: [email, phone, payment_card]"),
    ("detectors-on-a-deny", """
        version: 1
        policies:
          - id: r1  # <
            on: [tool.request]
            effect: deny
            detectors: [email]
        """, "rule r1: detectors/paths only apply to redact", "effect: redact"),
    ("bad-redaction-path", """
        version: 1
        policies:
          - id: r1
            on: [tool.request]
            effect: redact
            detectors: [email]
            paths: ["args..email"]  # <
        """, "rule r1: bad path 'args..email'", "dotted keys"),
    ("bad-custom-regex", """
        version: 1
        detectors:
          custom:
            order_id: "ORD-[0-9"  # <
        """, "detector order_id: ", "escaping"),
    ("custom-detector-shadows-builtin", """
        version: 1
        detectors:
          custom:
            email: "x+@y"  # <
        """, "shadows the builtin detector", "check the name"),
    ("secrets-not-a-boolean", """
        version: 1
        detectors:
          secrets: "maybe"  # <
        """, "detectors.secrets must be true or false", "on by default"),
    ("bad-duration-timeout", """
        version: 1
        policies:
          - id: r1
            on: [tool.request]
            effect: require_approval
            approvers: [finance]
            timeout: 5 parsecs  # <
        """, "rule r1: bad duration '5 parsecs'", "use 30s, 10m, 2h or 1d"),
    ("zero-timeout", """
        version: 1
        policies:
          - id: r1
            on: [tool.request]
            effect: require_approval
            approvers: [finance]
            timeout: 0s  # <
        """, "rule r1: bad duration '0s'", "use 30s"),
    ("bad-duration-budget", """
        version: 1
        budgets:
          execution:
            duration: 10 minutes  # <
        """, "budget duration: bad duration '10 minutes'", "use 30s, 10m, 2h or 1d"),
    ("bad-amount", """
        version: 1
        budgets:
          execution:
            cost_usd: two dollars  # <
        """, "budget cost_usd: bad amount 'two dollars'", "a dollar amount like 2.00"),
    ("negative-amount", """
        version: 1
        budgets:
          execution:
            cost_usd: -1  # <
        """, "budget cost_usd: bad amount -1", "a dollar amount"),
    ("amount-finer-than-a-micro-dollar", """
        version: 1
        budgets:
          execution:
            cost_usd: 0.0000001  # <
        """, "budget cost_usd: bad amount", "a dollar amount"),
    ("bad-count", """
        version: 1
        budgets:
          execution:
            tool_calls: 2.5  # <
        """, "budget tool_calls: bad count 2.5", "a whole number"),
    ("bad-per-tool-count", """
        version: 1
        budgets:
          execution:
            per_tool:
              issue_refund: -3  # <
        """, "per_tool issue_refund: -3 is not a whole number", "issue_refund: 3"),
    ("approval-without-approvers", """
        version: 1
        policies:
          - id: r1  # <
            on: [tool.request]
            effect: require_approval
        """, "rule r1: require_approval needs approvers", "approvers: [finance]"),
    ("approval-on-a-response-phase", """
        version: 1
        policies:
          - id: r1
            on: [tool.response]  # <
            effect: require_approval
            approvers: [finance]
        """, "rule r1: require_approval can only hold an action before it runs, not at tool.response",
     "tool.request"),
    ("approvers-on-a-deny", """
        version: 1
        policies:
          - id: r1  # <
            on: [tool.request]
            effect: deny
            approvers: [finance]
        """, "approvers/timeout/on_timeout only apply to require_approval", "change the effect"),
    ("bad-on-timeout", """
        version: 1
        policies:
          - id: r1
            on: [tool.request]
            effect: require_approval
            approvers: [finance]
            on_timeout: shrug  # <
        """, "on_timeout must be reject or approve", "reject halts"),
    ("window-bad-scope", """
        version: 1
        budgets:
          windows:
            - id: w
              scope: team  # <
              period: day
              cost_usd: 10
        """, "window w: scope must be one of agent, workflow, project", "scope: workflow"),
    ("window-bad-period", """
        version: 1
        budgets:
          windows:
            - id: w
              scope: agent
              period: week  # <
              cost_usd: 10
        """, "window w: period must be one of hour, day, month", "period: day"),
    ("window-no-limit", """
        version: 1
        budgets:
          windows:
            - id: w  # <
              scope: agent
              period: day
        """, "window w: no limit given", "set one of: cost_usd"),
    ("window-bad-amount", """
        version: 1
        budgets:
          windows:
            - id: w
              scope: agent
              period: day
              tool_calls: 5
              cost_usd: lots  # <
        """, "window w: bad cost_usd 'lots'", "a dollar amount"),
    ("window-bad-match", """
        version: 1
        budgets:
          windows:
            - id: w
              scope: agent
              period: day
              match: {team: ops}  # <
              cost_usd: 1
        """, "window w: match may name an agent and/or a workflow", "match: {workflow: support}"),
    ("window-duplicate-id", """
        version: 1
        budgets:
          windows:
            - id: w
              scope: agent
              period: day
              cost_usd: 1
            - id: w  # <
              scope: workflow
              period: day
              cost_usd: 2
        """, "window budget id 'w'", "give each window its own id"),
    ("window-unknown-key", """
        version: 1
        budgets:
          windows:
            - id: w
              scope: agent
              period: day
              cost_usd: 1
              perod: day  # <
        """, "unknown key 'perod' in a window budget", "did you mean 'period'?"),
    ("pricing-bad-amount", """
        version: 1
        pricing:
          acme-1: {input_per_mtok_usd: abc, output_per_mtok_usd: 2}  # <
        """, "pricing acme-1: ", "input_per_mtok_usd, output_per_mtok_usd"),
    ("pricing-unknown-key", """
        version: 1
        pricing:
          acme-1: {input_usd: 1, output_per_mtok_usd: 2}  # <
        """, "unknown key 'input_usd'", "USD per million tokens"),
    ("pricing-missing-price", """
        version: 1
        pricing:
          acme-1: {input_per_mtok_usd: 1}  # <
        """, "pricing acme-1: ", "USD per million tokens"),
    ("pricing-not-a-mapping", """
        version: 1
        pricing: [acme-1]  # <
        """, "pricing must map model names to prices", "docs/governance.md"),
    ("test-case-bad-phase", """
        version: 1
        tests:
          - name: t
            phase: tool.req  # <
            context: {}
            expect: {decision: allow}
        """, "test 't': phase 'tool.req' is unknown", "phases: admission"),
    ("test-case-bad-expect", """
        version: 1
        tests:
          - name: t
            phase: tool.request
            context: {}
            expect: {decision: block}  # <
        """, "test 't': expect.decision must be one of", "expect: {decision: deny"),
    ("unsupported-version", """
        version: 2  # <
        """, "version 2 is not supported", "version: 1"),
    ("not-a-mapping", """
        - version: 1  # <
        """, "a governance file must be a mapping at the top", "version: 1"),
    ("not-yaml", """
        version: 1
        policies:
          - id: r1
            on: [tool.request
            effect: deny  # <
        """, "not valid YAML", "indentation and quoting"),
]

_XFAIL: dict[str, str] = {}  # case id -> reason, for a known bug pinned by its case


def _params() -> list[object]:
    out: list[object] = []
    for case in PROBLEMS:
        marks = [pytest.mark.xfail(strict=True, reason=_XFAIL[case[0]])] if case[0] in _XFAIL else []
        out.append(pytest.param(*case[1:], id=case[0], marks=marks))
    return out


@pytest.mark.parametrize(("text", "message", "hint"), _params())
def test_each_problem_with_file_line_and_hint(tmp_path: Path, text: str, message: str, hint: str) -> None:
    path = _write(tmp_path / "execord.yaml", text)
    problems = _problems(path)
    assert len(problems) == 1, problems
    file, line, got_message, got_hint = problems[0]
    assert file == str(path)
    assert line == _marked_lines(path)[0], problems[0]
    assert message.format(file=path) in got_message
    assert hint in got_hint


def test_the_error_text_has_one_line_per_problem(tmp_path: Path) -> None:
    path = _write(tmp_path / "execord.yaml", """
        version: 1
        policies:
          - id: r1
            on: [tool.request]
            when: agent.nmae == "x"
            effect: deny
        budgets:
          execution:
            cost_usd: abc
        """)
    with pytest.raises(GovernanceFileError) as info:
        load_spec(path)
    lines = str(info.value).splitlines()
    assert lines[0] == "2 problems in the governance file:"
    assert lines[1].startswith(f"{path}:5: rule r1: unknown-name error in `when`") and lines[1].endswith(")")
    assert lines[2] == f'{path}:9: budget cost_usd: bad amount \'abc\' (a dollar amount like 2.00 or "$2.00")'


def test_several_problems_at_once_sorted_by_line(tmp_path: Path) -> None:
    # The unknown detector is found after every rule is read, and the approval problem
    # sits on a rule's first line: the report is sorted by line all the same.
    path = _write(tmp_path / "execord.yaml", """
        version: 1
        policies:
          - id: a
            on: [tool.request]
            when: usage.steps > "1000"  # <
            effect: deny
          - id: b
            on: [tool.request]
            effect: redact
            detectors: [emial]  # <
          - id: a  # <
            on: [tool.requets]  # <
            effect: require_approval
        budgets:
          execution:
            duration: soon  # <
            tool_calls: many  # <
          windows:
            - id: w  # <
              scope: agent
              period: day
        """)
    problems = _problems(path)
    lines = [p[1] for p in problems]
    assert lines == sorted(lines)
    # b's unknown detector is reported on its `detectors:` line; a's second definition has four
    # problems (duplicate id, unknown phase, a phase that cannot wait, no approvers).
    assert sorted(set(lines)) == _marked_lines(path)
    assert len(problems) == 9, problems


def test_multi_line_expression_problem_points_inside_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "execord.yaml", """
        version: 1
        policies:
          - id: r1
            on: [tool.request]
            when: tool.name == "x" && agent.nmae == "y"  # <
            effect: deny
        """)
    assert [p[1] for p in _problems(path)] == _marked_lines(path)


def test_block_scalar_expression_problem_is_on_the_line_of_the_bad_name(tmp_path: Path) -> None:
    path = _write(tmp_path / "execord.yaml", """
        version: 1
        policies:
          - id: r1
            on: [tool.request]
            when: |
              tool.name == "x" &&
              agent.nmae == "y"
            effect: deny
        """)
    assert [p[1] for p in _problems(path)] == [7]


def test_two_pricing_names_for_one_model_are_a_file_problem(tmp_path: Path) -> None:
    path = _write(tmp_path / "execord.yaml", """
        version: 1
        pricing:
          Acme-1: {input_per_mtok_usd: 1, output_per_mtok_usd: 2}
          acme-1: {input_per_mtok_usd: 1, output_per_mtok_usd: 3}  # <
        """)
    assert [p[1] for p in _problems(path)] == _marked_lines(path)


def test_missing_file_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(GovernanceFileError, match="no governance file at"):
        load_spec(tmp_path / "nope.yaml")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README.md").write_text("not yaml")
    with pytest.raises(GovernanceFileError, match="holds no .yaml or .yml files"):
        load_spec(tmp_path / "empty")


def test_an_empty_file_is_refused_and_version_1_alone_is_no_rules(tmp_path: Path) -> None:
    # A truncated or blanked file must not quietly mean "no governance": it is refused, and
    # a file holding just `version: 1` is how to run with no rules on purpose.
    with pytest.raises(GovernanceFileError) as err:
        load_spec(_write(tmp_path / "execord.yaml", "# nothing yet\n"))
    assert "the governance file is empty" in str(err.value) and "version: 1" in str(err.value)
    spec = load_spec(_write(tmp_path / "execord.yaml", "version: 1\n"))
    assert spec.rules == () and spec.execution_budgets == {} and spec.secrets is True


# -- folders --------------------------------------------------------------------------------


def test_a_folder_of_yaml_files_merges(tmp_path: Path) -> None:
    folder = tmp_path / "governance"
    folder.mkdir()
    _write(folder / "10-policies.yaml", """
        version: 1
        policies:
          - id: no-shell
            on: [tool.request]
            when: tool.name == "shell"
            effect: deny
        """)
    _write(folder / "20-more.yml", """
        version: 1
        policies:
          - id: mask
            on: [tool.request]
            effect: redact
            detectors: [email, order_id]
        detectors:
          custom:
            order_id: "ORD-[0-9]{6}"
        budgets:
          execution:
            tool_calls: 5
            per_tool: {issue_refund: 1}
        """)
    (folder / "notes.md").write_text("policies: [ignored]")
    spec = load_spec(folder)
    assert sorted(r.id for r in spec.rules) == ["mask", "no-shell"]
    assert spec.execution_budgets == {"tool_calls": 5} and spec.per_tool == {"issue_refund": 1}
    assert spec.custom_detectors == {"order_id": "ORD-[0-9]{6}"}
    assert spec.sources == (str(folder / "10-policies.yaml"), str(folder / "20-more.yml"))
    # The folder and a single file holding the same content are the same version.
    single = _write(tmp_path / "one.yaml", """
        version: 1
        policies:
          - id: no-shell
            on: [tool.request]
            when: tool.name == "shell"
            effect: deny
          - id: mask
            on: [tool.request]
            effect: redact
            detectors: [email, order_id]
        detectors:
          custom:
            order_id: "ORD-[0-9]{6}"
        budgets:
          execution:
            tool_calls: 5
            per_tool: {issue_refund: 1}
        """)
    assert build_version(spec)[0].id == build_version(load_spec(single))[0].id


def test_a_duplicate_id_across_files_is_reported_in_the_second_file(tmp_path: Path) -> None:
    folder = tmp_path / "governance"
    folder.mkdir()
    a = _write(folder / "a.yaml", """
        version: 1
        policies:
          - id: no-shell
            on: [tool.request]
            effect: deny
        budgets:
          execution:
            tool_calls: 5
        """)
    b = _write(folder / "b.yaml", """
        version: 1
        policies:
          - id: other
            on: [tool.request]
            effect: warn
          - id: no-shell  # <
            on: [tool.response]
            effect: warn
        budgets:
          execution:  # <
            tool_calls: 6
        """)
    problems = _problems(folder)
    assert [(f, line) for f, line, _, _ in problems] == [(str(b), n) for n in _marked_lines(b)]
    assert f"duplicate rule id 'no-shell' (first at {a}:3)" in problems[0][2]
    assert "budget tool_calls is set in more than one file" in problems[1][2]


def test_a_duplicate_window_id_across_files_is_reported(tmp_path: Path) -> None:
    folder = tmp_path / "governance"
    folder.mkdir()
    _write(folder / "a.yaml", """
        version: 1
        budgets:
          windows:
            - {id: daily, scope: workflow, period: day, cost_usd: 5}
        """)
    b = _write(folder / "b.yaml", """
        version: 1
        budgets:
          windows:
            - {id: daily, scope: agent, period: day, tool_calls: 5}  # <
        """)
    problems = _problems(folder)
    assert [(f, line) for f, line, _, _ in problems] == [(str(b), _marked_lines(b)[0])]


def test_secrets_setting_survives_a_later_file_that_does_not_mention_it(tmp_path: Path) -> None:
    folder = tmp_path / "governance"
    folder.mkdir()
    _write(folder / "a.yaml", "version: 1\ndetectors:\n  secrets: false\n")
    _write(folder / "b.yaml", "version: 1\ndetectors:\n  custom:\n    order_id: 'ORD-[0-9]{6}'\n")
    assert load_spec(folder).secrets is False


# -- YAML 1.1 and a valid file --------------------------------------------------------------


def test_on_as_a_key_stays_a_string(tmp_path: Path) -> None:
    text = """
        version: 1
        policies:
          - id: r1
            on: tool.request
            effect: deny
          - id: r2
            on: [llm.request, llm.response]
            when: true
            effect: warn
        detectors:
          secrets: false
        """
    # The trap: a YAML 1.1 loader reads the key `on` as the boolean True.
    assert True in yaml.safe_load(textwrap.dedent(text))["policies"][0]
    spec = load_spec(_write(tmp_path / "execord.yaml", text))
    assert [(r.id, r.on, r.when) for r in spec.rules] == [
        ("r1", ("tool.request",), None), ("r2", ("llm.request", "llm.response"), "true")]
    assert spec.secrets is False


DESIGN_FILE = """
    version: 1
    policies:
      - id: no-shell
        on: [tool.request]
        when: tool.name == "shell" && !("ops" in agent.roles)
        effect: deny
        message: Only ops agents may run shell commands.
      - id: big-refunds-need-approval
        on: [tool.request]
        when: tool.name == "issue_refund" && tool.args.amount > 1000
        effect: require_approval
        approvers: [finance]
        timeout: 30m
        on_timeout: reject
      - id: mask-contact-data
        on: [tool.request, tool.response, llm.request]
        effect: redact
        detectors: [email, phone, payment_card]
    budgets:
      execution:            # per execution; ids are execution.<metric>
        cost_usd: 2.00
        total_tokens: 200000
        tool_calls: 50
        duration: 10m
        per_tool: {issue_refund: 3}
      windows:
        - id: support-daily-spend
          scope: workflow
          match: {workflow: support}
          period: day
          cost_usd: 100
        - id: agent-hourly
          scope: agent
          period: hour
          cost_usd: "$0.25"
          llm_calls: 40
    tests:
      - name: shell is denied
        phase: tool.request
        context: {tool: {name: shell}}
        expect: {decision: deny, rule: no-shell}
    """


def test_the_design_file_loads_with_budgets_in_micro_usd_and_ms(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path / "execord.yaml", DESIGN_FILE))
    assert [r.id for r in spec.rules] == ["no-shell", "big-refunds-need-approval", "mask-contact-data"]
    approval = spec.rules[1]
    assert (approval.approvers, approval.timeout_s, approval.on_timeout) == (("finance",), 1800, "reject")
    assert spec.rules[2].detectors == ("email", "phone", "payment_card")
    assert spec.rules[0].message == "Only ops agents may run shell commands."
    assert spec.execution_budgets == {"cost_micros": 2_000_000, "total_tokens": 200_000, "tool_calls": 50,
                                      "duration_ms": 600_000}
    assert spec.per_tool == {"issue_refund": 3}
    daily, hourly = spec.windows
    assert (daily.id, daily.scope, daily.match, daily.period, daily.limits) == (
        "support-daily-spend", "workflow", {"workflow": "support"}, "day", {"cost_micros": 100_000_000})
    assert hourly.limits == {"cost_micros": 250_000, "llm_calls": 40}
    assert len(spec.tests) == 1 and spec.tests[0]["expect"] == {"decision": "deny", "rule": "no-shell"}


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400), ("90", 90), ("1.5m", 90),
])
def test_approval_timeouts(tmp_path: Path, text: str, seconds: int) -> None:
    spec = load_spec(_write(tmp_path / "execord.yaml", f"""
        version: 1
        policies:
          - id: r1
            on: [step.request]
            effect: require_approval
            approvers: [ops]
            timeout: {text}
        """))
    assert spec.rules[0].timeout_s == seconds


# -- version ids ----------------------------------------------------------------------------

def _replace(old: str, new: str) -> Callable[[str], str]:
    def change(text: str) -> str:
        assert old in text
        return text.replace(old, new, 1)

    return change


# (id, what is done to the design file, same version?)
MUTATIONS: list[tuple[str, Callable[[str], str], bool]] = [
    ("unchanged", lambda t: t, True),
    ("comment-added", _replace("version: 1", "version: 1  # reviewed by finance"), True),
    ("tests-changed", _replace("expect: {decision: deny, rule: no-shell}", "expect: {decision: allow}"), True),
    ("tests-removed", lambda t: t.split("tests:\n")[0], True),
    ("block-style-per-tool", _replace("per_tool: {issue_refund: 3}", "per_tool:\n      issue_refund: 3"), True),
    ("amount-written-differently", _replace("cost_usd: 2.00", 'cost_usd: "$2"'), True),
    ("rule-condition-changed", _replace("tool.args.amount > 1000", "tool.args.amount > 500"), False),
    ("rule-message-changed", _replace("Only ops agents", "Only ops people"), False),
    ("rule-effect-changed", _replace("effect: deny", "effect: warn"), False),
    ("rule-priority-added", _replace("effect: deny", "effect: deny\n    priority: 1"), False),
    ("budget-changed", _replace("tool_calls: 50", "tool_calls: 51"), False),
    ("approval-timeout-changed", _replace("timeout: 30m", "timeout: 31m"), False),
    ("secrets-off", lambda t: t + "detectors: {secrets: false}\n", False),
]


@pytest.mark.parametrize(("change", "same"), [pytest.param(m[1], m[2], id=m[0]) for m in MUTATIONS])
def test_version_id_is_content_addressed(tmp_path: Path, change: Callable[[str], str], same: bool) -> None:
    base = _write(tmp_path / "execord.yaml", DESIGN_FILE)
    other = tmp_path / "elsewhere" / "governance.yaml"
    other.parent.mkdir()
    other.write_text(change(base.read_text()))
    v1, v2 = build_version(load_spec(base))[0], build_version(load_spec(other))[0]
    assert (v1.id == v2.id) is same
    assert (v1.digest == v2.digest) is same


def test_same_file_same_version_twice_and_the_id_is_the_digest(tmp_path: Path) -> None:
    path = _write(tmp_path / "execord.yaml", DESIGN_FILE)
    v1, table = build_version(load_spec(path))
    v2, _ = build_version(load_spec(path))
    assert v1 == v2
    digest = hashlib.sha256(canonical_json(v1.document)).hexdigest()
    assert v1.digest == f"sha256:{digest}" and v1.id == f"gv_{digest[:16]}"
    assert v1.document["pricing"]["digest"] == table.digest
    assert "tests" not in v1.document


def test_rule_order_in_the_file_does_not_change_the_version(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.yaml", """
        version: 1
        policies:
          - {id: one, on: [tool.request], effect: warn}
          - {id: two, on: [tool.request], effect: deny}
        """)
    b = _write(tmp_path / "b.yaml", """
        version: 1
        policies:
          - {id: two, on: [tool.request], effect: deny}
          - {id: one, on: [tool.request], effect: warn}
        """)
    assert build_version(load_spec(a))[0].id == build_version(load_spec(b))[0].id
