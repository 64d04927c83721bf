"""The ``execord`` command: verb → noun, a table by default, ``--format json`` everywhere."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer
import typer.core
import typer.main
import typer.models

from ..errors import ExecordError
from ._common import debug_enabled
from ._demo import demo
from ._serve import serve
from ._verify import verify

# Typer ships its own copy of click; take its exception classes from there, whichever it is.
_click_exceptions = sys.modules[typer.BadParameter.__module__]
_UsageError = _click_exceptions.UsageError
_NoArgsIsHelp = getattr(_click_exceptions, "NoArgsIsHelpError", None) or type("_Never", (Exception,), {})
_Abort = typer.Abort

# The command groups, each in its own module, imported only when its name is looked up: a
# command then loads what it needs and no more (`execord verify BUNDLE` loads neither the
# store nor governance). In the order `execord --help` lists them, after the commands.
GROUPS = {
    "executions": "._executions",
    "governance": "._governance",
    "approvals": "._approvals",
    "keys": "._keys",
    "ledger": "._ledger",
    "blobs": "._blobs",
}


class _Commands(dict[str, Any]):
    """A group's commands by name, where a command group's click object is built on first use."""

    def __init__(self, commands: dict[str, Any], lazy: dict[str, str]):
        super().__init__(commands)
        self._lazy = {name: module for name, module in lazy.items() if name not in commands}
        for name in self._lazy:
            super().__setitem__(name, None)

    def _load(self, name: str) -> Any:
        module = self._lazy.pop(name, None)
        if module is not None:
            sub = importlib.import_module(module, __name__).app
            # What `Typer.add_typer(sub, name=name)` makes of it, built when first asked for.
            super().__setitem__(name, typer.main.get_group_from_info(
                typer.models.TyperInfo(sub, name=name), pretty_exceptions_short=app.pretty_exceptions_short,
                suggest_commands=app.suggest_commands, rich_markup_mode=app.rich_markup_mode))
        return super().get(name)

    def __getitem__(self, name: str) -> Any:
        if name not in self:
            raise KeyError(name)
        return self._load(name)

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return self._load(name) if name in self else default

    def values(self) -> Any:  # type: ignore[override]
        return [self._load(name) for name in self]

    def items(self) -> Any:  # type: ignore[override]
        return [(name, self._load(name)) for name in self]


class _Group(typer.core.TyperGroup):
    """The top-level group: its command groups are imported when looked up (`GROUPS`)."""

    def __init__(self, *args: Any, commands: dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(*args, commands=_Commands(commands or {}, GROUPS), **kwargs)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)


app = typer.Typer(
    name="execord",
    help="Execord: the durable, verifiable execution record of your AI agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=_Group,
)
app.command("verify")(verify)
app.command("demo")(demo)
app.command("serve")(serve)


_VERIFY_OPTIONS = {"--key": "key", "-k": "key", "--pinned": "pinned", "--format": "fmt", "-f": "fmt"}


def _plain_verify(argv: list[str]) -> dict[str, str] | None:
    """``execord verify BUNDLE`` with at most --key, --pinned and --format, each once, each
    ``--name value`` or ``--name=value``: its arguments, read without typer. None for any
    other command line, which typer reads as usual.

    An auditor's `execord verify BUNDLE --key PUB` then starts without building the whole
    command tree or typer's parameter conversion (which imports pydantic: a fifth of the
    command's time on a 10,000-execution bundle). It runs the same `verify` function.
    """
    if len(argv) < 2 or argv[0] != "verify":
        return None
    found: dict[str, str] = {}
    rest = iter(argv[1:])
    for token in rest:
        name, eq, value = token.partition("=") if token.startswith("--") else (token, "", "")
        if token.startswith("-"):
            key = _VERIFY_OPTIONS.get(name)
            if key is None or key in found:
                return None
            if not eq:
                value = next(rest, "")
            if not value or value.startswith("-"):
                return None
            found[key] = value
        elif "bundle" in found or not token:
            return None
        else:
            found["bundle"] = token
    return found if "bundle" in found else None


def main() -> None:
    """Run the CLI; a known failure is one line on stderr and exit code 1, never a traceback."""
    try:
        plain = _plain_verify(sys.argv[1:])
        if plain is not None:
            from pathlib import Path

            try:
                verify(Path(plain["bundle"]), key=plain.get("key"),
                       pinned=Path(plain["pinned"]) if "pinned" in plain else None, fmt=plain.get("fmt", "table"))
                code = 0
            except typer.Exit as exc:
                code = exc.exit_code
        else:
            code = app(standalone_mode=False)
    except _NoArgsIsHelp:
        sys.exit(0)  # typer has printed the help already
    except _UsageError as exc:
        # Typer's own checks (a bad option value, a missing argument): one line, like ours.
        where = f" (see: {exc.ctx.command_path} --help)" if exc.ctx else ""
        sys.stderr.write(f"execord: {exc.format_message()}{where}\n")
        # `execord verify` promises 1 for a record that fails: a mistyped command line is 2.
        sys.exit(2 if sys.argv[1:2] == ["verify"] else 1)
    except _Abort:
        sys.stderr.write("execord: aborted\n")
        sys.exit(130)
    except ExecordError as exc:
        sys.stderr.write(f"execord: {exc}\n")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.stderr.write("execord: interrupted\n")
        sys.exit(130)
    except Exception as exc:
        if debug_enabled():
            raise
        if isinstance(exc, UnicodeEncodeError) and exc.reason == "surrogates not allowed":
            # Bytes on the command line that are not UTF-8 reach Python as lone surrogates.
            bad = ascii(exc.object[exc.start:exc.end].encode("utf-8", "surrogateescape"))
            sys.stderr.write(f"execord: a value on the command line is not UTF-8 text (the bytes {bad}): "
                             "give it as UTF-8\n")
            sys.exit(1)
        sys.stderr.write(
            f"execord: internal error ({type(exc).__name__}: {exc}); "
            "rerun with EXECORD_DEBUG=1 for the traceback and report it\n"
        )
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["app", "main"]
