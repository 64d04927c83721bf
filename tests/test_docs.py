"""The docs are true and complete: their examples run, and they cover every feature.

- every ```python block in docs/*.md and README.md runs, alone, in an empty folder with no
  ``EXECORD_*`` variable set (a block whose first line is ``# docs: no-run`` is skipped);
- every ``execord …`` line of a ```bash block runs against a store ``execord demo`` made,
  and exits as its comment says (``# exit 1: …``, else 0); every ``execord …`` command named
  anywhere in the docs exists, with the options it is given;
- the JSON shapes in docs/cli.md have exactly the keys the commands print;
- docs/cli.md names every command and option, docs/record.md every event type with its
  required attrs, docs/sdk.md every setting (as an exact table), error class (as the real
  tree), and public name.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer.main

import execord
import execord.errors
from execord.cli import app
from execord.record import REQUIRED_ATTRS
from execord.runtime import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DOC_FILES = [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]
NO_RUN = "# docs: no-run"
FENCE = re.compile(r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
ID_PLACEHOLDERS = ("<id-prefix>", "<id>")


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _blocks(path: Path, lang: str) -> list[tuple[int, str, int]]:
    """(line number, body, offset of the opening fence) of each fenced block in ``lang``."""
    text = _read(path)
    return [
        (text.count("\n", 0, m.start()) + 1, m.group("body"), m.start())
        for m in FENCE.finditer(text)
        if m.group("lang") == lang
    ]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECORD_")}
    # The examples import this checkout's execord, whatever is installed.
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("CI", None)
    env.update(extra)
    return env


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# --- (a) every python block runs -------------------------------------------------------


PYTHON_BLOCKS = [
    pytest.param(path, line, body, id=f"{_rel(path)}:{line}")
    for path in DOC_FILES
    for line, body, _ in _blocks(path, "python")
]


def test_the_docs_have_python_examples() -> None:
    assert {p.values[0].name for p in PYTHON_BLOCKS} >= {"sdk.md", "record.md", "README.md"}


@pytest.fixture(scope="module")
def llm_apis() -> Iterator[dict[str, str]]:
    """A local stand-in for the OpenAI and Anthropic APIs, and the variables that point the
    official clients at it: what the examples of integrations.md talk to."""
    from _fake_llm import serve

    with serve() as env:
        yield env


@pytest.mark.slow
@pytest.mark.parametrize(("path", "line", "body"), PYTHON_BLOCKS)
def test_python_example_runs(path: Path, line: int, body: str, tmp_path: Path, llm_apis: dict[str, str]) -> None:
    if body.lstrip().startswith(NO_RUN):
        pytest.skip(f"{_rel(path)}:{line} is marked {NO_RUN!r}")
    script = tmp_path / "example.py"
    script.write_text(body, encoding="utf-8")
    r = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=_clean_env(**llm_apis), capture_output=True,
        text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, (
        f"{_rel(path)}:{line}: the example exited {r.returncode}\n"
        f"--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"
    )


def test_no_run_markers_are_rare() -> None:
    skipped = [p.id for p in PYTHON_BLOCKS if p.values[2].lstrip().startswith(NO_RUN)]
    assert len(skipped) <= 2, f"too many examples that do not run: {skipped}"


# --- (b) every execord command line runs -----------------------------------------------


def _strip_comment(line: str) -> tuple[str, str]:
    m = re.search(r"\s#\s?(.*)$", line)
    return (line[: m.start()].strip(), m.group(1).strip()) if m else (line.strip(), "")


def _command_lines() -> list[Any]:
    """Each ``execord …`` command of a bash block, with its expected exit code."""
    out = []
    for path in DOC_FILES:
        for line_no, body, _ in _blocks(path, "bash"):
            for i, raw in enumerate(body.splitlines()):
                command, comment = _strip_comment(raw)
                m = re.match(r"exit (\d+)", comment)
                expected = int(m.group(1)) if m else 0
                for part in (p.strip() for p in command.split("&&")):
                    tokens = shlex.split(part) if part else []
                    while tokens and re.match(r"^[A-Z_][A-Z0-9_]*=", tokens[0]):
                        tokens = tokens[1:]
                    if tokens[:1] == ["execord"]:
                        out.append(pytest.param(part, expected, id=f"{_rel(path)}:{line_no + i + 1}:{part}"))
    return out


COMMAND_LINES = _command_lines()


@cache
def _click_root() -> Any:
    return typer.main.get_command(app)


def _resolve_command(words: list[str]) -> tuple[Any, list[str], list[str]]:
    """The click command named by ``words`` (after ``execord``), its path, and the rest."""
    cmd, path = _click_root(), []
    rest = list(words)
    while rest and rest[0] in getattr(cmd, "commands", {}):
        cmd = cmd.commands[rest[0]]
        path.append(rest.pop(0))
    return cmd, path, rest


def _options(cmd: Any) -> set[str]:
    names = {"--help"}
    for p in cmd.params:
        names.update(o for o in [*p.opts, *p.secondary_opts] if o.startswith("-"))
    return names


def _check_names_a_real_command(text: str) -> list[str]:
    tokens = shlex.split(text.split("|")[0].split(">")[0])
    while tokens and re.match(r"^[A-Z_][A-Z0-9_]*=", tokens[0]):
        tokens = tokens[1:]
    assert tokens[0] == "execord", text
    cmd, path, rest = _resolve_command(tokens[1:])
    problems = []
    if not path:
        problems.append(f"{text!r}: names no execord command")
    elif hasattr(cmd, "commands") and rest and not rest[0].startswith("-"):
        problems.append(f"{text!r}: 'execord {' '.join(path)}' has no command {rest[0]!r}")
    for token in rest:
        if token.startswith("-") and token.split("=")[0] not in _options(cmd):
            problems.append(f"{text!r}: 'execord {' '.join(path)}' has no option {token}")
    return problems


def test_bash_blocks_name_real_commands_and_options() -> None:
    problems = [p for param in COMMAND_LINES for p in _check_names_a_real_command(param.values[0])]
    assert not problems, "\n".join(problems)


def test_inline_commands_in_prose_name_real_commands() -> None:
    problems = []
    for path in DOC_FILES:
        text = FENCE.sub("", _read(path))
        for m in re.finditer(r"`(execord [^`]+)`", text):
            mention = m.group(1).split("|")[0]
            # Placeholders (ID, <id>, …) are prose, not part of the command.
            words = [w for w in mention.split() if re.match(r"^[a-z][\w-]*$|^-", w)]
            if len(words) > 1:
                problems += _check_names_a_real_command(" ".join(words))
    assert not problems, "\n".join(problems)


def _execord(args: list[str], cwd: Path, env: dict[str, str] | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "execord", *args], cwd=cwd, env=env or _clean_env(),
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A folder where ``execord demo`` ran, and the id of the demo's ``refund`` execution."""
    folder = tmp_path_factory.mktemp("demo")
    assert _execord(["demo"], folder).returncode == 0
    (folder / "none.yaml").write_text("version: 1\n", encoding="utf-8")  # docs/cli.md's file with no rules
    r = _execord(["executions", "list", "--workflow", "refund", "--format", "json"], folder)
    assert r.returncode == 0, r.stderr
    return folder, json.loads(r.stdout)[0]["id"]


def test_bash_blocks_have_commands() -> None:
    named = {" ".join(_resolve_command(shlex.split(p.values[0])[1:])[1]) for p in COMMAND_LINES}
    leaves = {" ".join(path) for path, cmd in _all_commands() if not hasattr(cmd, "commands")}
    assert leaves <= named, f"commands without a runnable example: {sorted(leaves - named)}"


@pytest.mark.slow
@pytest.mark.parametrize(("line", "expected"), COMMAND_LINES)
def test_bash_command_runs(line: str, expected: int, demo_store: tuple[Path, str]) -> None:
    folder, refund_id = demo_store
    for placeholder in ID_PLACEHOLDERS:
        line = line.replace(placeholder, refund_id[:18])
    tokens = shlex.split(line)
    env = _clean_env()
    while tokens and re.match(r"^[A-Z_][A-Z0-9_]*=", tokens[0]):
        key, _, value = tokens.pop(0).partition("=")
        env[key] = value
    redirect = None
    if ">" in tokens:
        at = tokens.index(">")
        tokens, redirect = tokens[:at], tokens[at + 1]
    r = _execord(tokens[1:], folder, env)
    both = r.stdout + r.stderr
    assert "Traceback" not in both, both
    assert r.returncode == expected, f"{line}: exit {r.returncode}, documented {expected}\n{both}"
    if expected == 1:
        assert r.stderr.startswith("execord: ") and r.stderr.count("\n") == 1, r.stderr
    if redirect:
        (folder / redirect).write_text(r.stdout, encoding="utf-8")
        assert json.loads(r.stdout)


# --- JSON shapes in docs/cli.md ------------------------------------------------------------

SHAPE = re.compile(r"<!-- shape: (?P<name>[\w ]+?) -->\s*```json[^\n]*\n(?P<body>.*?)^```", re.M | re.S)
SHAPE_COMMANDS = {
    "executions list": ["executions", "list", "--workflow", "refund", "--format", "json"],
    "executions get": ["executions", "get", "{id}", "--format", "json"],
    "executions steps": ["executions", "steps", "{id}", "--format", "json"],
    "executions timeline": ["executions", "timeline", "{id}", "--format", "json"],
    "executions watch": ["executions", "watch", "{id}", "--format", "json"],
    "executions replay": ["executions", "replay", "{id}", "--format", "json"],
    "executions export": ["executions", "export", "{id}"],
    "verify": ["verify", "--format", "json"],
}


def _parse_json_or_lines(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def _same_shape(doc: Any, actual: Any, where: str = "$") -> list[str]:
    """Where the documented JSON and the printed JSON differ in their keys."""
    if isinstance(doc, dict) and isinstance(actual, dict):
        if doc and actual and all(k.startswith("sha256:") for k in [*doc, *actual]):
            return _same_shape(next(iter(doc.values())), next(iter(actual.values())), f"{where}[digest]")
        problems = []
        if set(doc) != set(actual):
            problems.append(
                f"{where}: documented but not printed {sorted(set(doc) - set(actual))}; "
                f"printed but not documented {sorted(set(actual) - set(doc))}"
            )
        for k in sorted(set(doc) & set(actual)):
            problems += _same_shape(doc[k], actual[k], f"{where}.{k}")
        return problems
    if isinstance(doc, list) and isinstance(actual, list):
        if doc and all(isinstance(d, dict) and "seq" in d for d in doc):
            by_seq = {a.get("seq"): a for a in actual if isinstance(a, dict)}
            pairs = [(d, by_seq[d["seq"]]) for d in doc if d["seq"] in by_seq]
        else:
            pairs = list(zip(doc, actual, strict=False))
        return [p for i, (d, a) in enumerate(pairs) for p in _same_shape(d, a, f"{where}[{i}]")]
    return []


def _shapes() -> dict[str, str]:
    return {m.group("name"): m.group("body") for m in SHAPE.finditer(_read(DOCS / "cli.md"))}


def test_every_json_block_parses() -> None:
    bad = []
    for path in DOC_FILES:
        for line, body, _ in _blocks(path, "json"):
            try:
                _parse_json_or_lines(body)
            except json.JSONDecodeError as exc:
                bad.append(f"{_rel(path)}:{line}: {exc}")
    assert not bad, "\n".join(bad)


def test_the_issue_s_json_shapes_are_documented() -> None:
    assert set(_shapes()) == set(SHAPE_COMMANDS)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SHAPE_COMMANDS))
def test_documented_json_shape_matches_the_command(name: str, demo_store: tuple[Path, str]) -> None:
    folder, refund_id = demo_store
    doc = _parse_json_or_lines(_shapes()[name])
    r = _execord([a.format(id=refund_id) for a in SHAPE_COMMANDS[name]], folder)
    assert r.returncode == 0, r.stderr
    actual = _parse_json_or_lines(r.stdout)
    problems = _same_shape(doc, actual)
    assert not problems, f"docs/cli.md shape {name!r} differs from the command's output:\n" + "\n".join(problems)


def test_summary_keys_are_the_store_s() -> None:
    from execord.store import SUMMARY_KEYS

    doc = json.loads(_shapes()["executions list"])[0]
    assert list(doc) == list(SUMMARY_KEYS)
    text = _read(DOCS / "cli.md")
    for key in SUMMARY_KEYS:
        assert f"`{key}`" in text, key


# --- (c) every feature is documented ---------------------------------------------------------


def _all_commands(cmd: Any = None, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    cmd = cmd or _click_root()
    out = []
    for name, sub in getattr(cmd, "commands", {}).items():
        out.append(((*path, name), sub))
        out += _all_commands(sub, (*path, name))
    return out


def test_every_cli_command_and_option_is_in_cli_md() -> None:
    text = _read(DOCS / "cli.md")
    missing = []
    for path, cmd in _all_commands():
        name = "execord " + " ".join(path)
        if f"`{name}" not in text:
            missing.append(name)
        if not hasattr(cmd, "commands"):
            heading = re.search(rf"^## `{re.escape(name)}\b.*?(?=^## )", text, re.M | re.S)
            if heading is None:
                missing.append(f"a '## `{name}`' section")
                continue
            section = heading.group(0)
            for opt in sorted(_options(cmd) - {"--help"}):
                if opt.startswith("--") and f"`{opt}" not in section and f" {opt}`" not in section:
                    missing.append(f"{name} {opt}")
    assert not missing, f"not in docs/cli.md: {missing}"


def test_every_event_type_and_required_attr_is_in_record_md() -> None:
    rows = {}
    for line in _read(DOCS / "record.md").splitlines():
        m = re.match(r"^\| `([\w.]+)` \| (.*)$", line)
        if m and m.group(1) in REQUIRED_ATTRS:
            rows[m.group(1)] = m.group(2).split(" | ")[0]
    missing = [t for t in REQUIRED_ATTRS if t not in rows]
    assert not missing, f"event types without a row in docs/record.md: {missing}"
    for type_, attrs in REQUIRED_ATTRS.items():
        documented = re.findall(r"`(\w+)`", rows[type_])
        assert documented == list(attrs), f"{type_}: docs say {documented}, REQUIRED_ATTRS says {list(attrs)}"


def _between(text: str, name: str) -> str:
    m = re.search(rf"<!-- {name}:start.*?-->\n(.*?)<!-- {name}:end -->", text, re.S)
    assert m, f"docs/sdk.md has no {name} markers"
    return m.group(1)


def test_settings_table_is_execord_runtime_settings() -> None:
    table = _between(_read(DOCS / "sdk.md"), "settings-table").strip().splitlines()
    escaped = {s.name: s.help.replace("|", "\\|") for s in SETTINGS}
    expected = [
        "| setting | environment variable | default | meaning |",
        "|---|---|---|---|",
        *(f"| `{s.name}` | `{s.env}` | `{s.default!r}` | {escaped[s.name]} |" for s in SETTINGS),
    ]
    assert table == expected


def test_every_setting_and_env_var_is_in_sdk_md() -> None:
    text = _read(DOCS / "sdk.md")
    for s in SETTINGS:
        assert f"`{s.name}`" in text and f"`{s.env}`" in text, s.name


def _tree(block: str) -> list[tuple[int, str]]:
    out = []
    for line in block.splitlines():
        m = re.search(r"[A-Z]\w+", line)
        if m and not line.startswith("```"):
            out.append((m.start() // 4, m.group(0)))
    return out


def test_error_tree_in_sdk_md_is_the_real_one() -> None:
    tree = _tree(_between(_read(DOCS / "sdk.md"), "error-tree"))
    names = [n for _, n in tree]
    assert sorted(names) == sorted(execord.errors.__all__)
    parents: list[str] = []
    for depth, name in tree:
        parents = parents[:depth]
        cls = getattr(execord.errors, name)
        expected_parent = cls.__bases__[0].__name__ if parents else "Exception"
        assert expected_parent == (parents[-1] if parents else "Exception"), (
            f"{name}: docs put it under {parents[-1] if parents else 'the root'}, its base is {expected_parent}"
        )
        parents.append(name)


def test_every_error_class_is_in_sdk_md() -> None:
    text = _read(DOCS / "sdk.md")
    missing = [n for n in execord.errors.__all__ if not re.search(rf"\b{n}\b", text)]
    assert not missing


def test_every_public_name_is_in_sdk_md() -> None:
    text = _read(DOCS / "sdk.md")
    missing = [n for n in execord.__all__ if not re.search(rf"`(execord\.)?{re.escape(n)}[`(]", text)]
    assert not missing, f"execord.__all__ names missing from docs/sdk.md: {missing}"


def test_readme_links_to_every_doc_page() -> None:
    readme = _read(ROOT / "README.md")
    for page in ("sdk.md", "cli.md", "record.md"):
        assert f"docs/{page}" in readme
