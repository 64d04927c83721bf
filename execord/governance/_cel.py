"""CEL behind one small interface: compile and type-check once, evaluate many times.

Two engines implement it:

- ``cel-expr-python`` (Google's CEL runtime, the default): each expression is type-checked
  against protobuf message types built from `_context.VARIABLES`, so unknown names, unknown
  fields and type mismatches are errors when the file is loaded. It is then evaluated
  against plain maps, which is several times faster than building messages per call.
- ``common-expression-language`` (the fallback, where the first is unavailable): syntax and
  unknown top-level names are checked at load; field and type errors surface at run time
  (and fail closed).

A phase's rules are evaluated in one call: their expressions are compiled together into one
list expression, so 50 rules cost one trip into the CEL runtime, not 50. If that list
errors, the rules are evaluated one by one to find which ones erred.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ._context import VARIABLES

_POSITION = re.compile(r"<input>:(\d+):(\d+): (.*)")
_STATUS = re.compile(r"^[A-Z_]+: |\s*\[[A-Z_]+\]$")


@dataclass(frozen=True)
class CelProblem:
    """Why an expression was refused.

    Attributes:
        kind: syntax, unknown-name, type, not-boolean, size (nested too deeply or too long)
            or number (an integer literal beyond 64 bits).
        message: the compiler's words.
        line: 1-based line within the expression.
        column: 1-based column within that line.
    """

    kind: str
    message: str
    line: int = 1
    column: int = 1


class CelCompileError(Exception):
    """An expression that does not compile; carries a `CelProblem`."""

    def __init__(self, problem: CelProblem):
        super().__init__(problem.message)
        self.problem = problem


class CelEvalError(Exception):
    """An expression that failed while being evaluated (a missing key, a bad operand)."""


class Program(Protocol):
    """A compiled list of boolean expressions."""

    def run(self, context: Mapping[str, Any]) -> list[Any]:
        """Evaluate every expression; raise `CelEvalError` if any of them errors."""


class Evaluator(Protocol):
    """The interface the governance engine needs from a CEL implementation."""

    engine: str

    def check(self, source: str) -> None:
        """Raise `CelCompileError` unless ``source`` is a valid boolean rule expression."""

    def program(self, sources: Sequence[str]) -> Program:
        """Compile already-checked expressions into one program returning a list."""


def _classify(message: str) -> str:
    low = message.lower()
    if "recursion" in low or "exceeds codepoint limit" in low:
        return "size"  # nested too deeply or too long; both engines word it this way
    if "invalid int literal" in low or "invalid uint literal" in low:
        return "number"
    if "syntax error" in low:
        return "syntax"
    if "undeclared reference" in low or "undefined field" in low:
        return "unknown-name"
    return "type"


def _problem_from(text: str) -> CelProblem:
    m = _POSITION.search(text)
    if not m:
        first = text.strip().splitlines()[0] if text.strip() else text
        # "CANCELLED: Expression recursion limit exceeded. limit: 32 [CANCELLED]": drop the status codes.
        first = _STATUS.sub("", first) or first
        return CelProblem(_classify(first), first)
    message = m.group(3).split(" | ")[0].strip()
    message = message.split("\n")[0].strip()
    return CelProblem(_classify(message), message, int(m.group(1)), int(m.group(2)))


def _list_source(sources: Sequence[str]) -> str:
    return "[" + ", ".join(f"({s})" for s in sources) + "]"


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def referenced(sources: Sequence[str]) -> tuple[str, ...]:
    """The declared variables the expressions may use: only these are handed to CEL.

    Converting a variable into CEL values costs more than most rules; a name that merely
    looks like a variable (inside a string, say) only costs one needless conversion.
    """
    declared = {v.name for v in VARIABLES}
    found = set()
    for s in sources:
        found.update(n for n in _NAME.findall(s) if n in declared)
    return tuple(sorted(found))


def reads_field(sources: Sequence[str], variable: str, name: str) -> bool:
    """Whether the expressions may read ``variable.name``.

    False only when every mention of ``variable`` (as a word) is a selection of another
    field, ``variable.other``: a method or macro call on it, a bare mention (``variable["name"]``, ``size(variable)``,
    a macro over it), a mention inside a string or a field named ``name`` anywhere all
    count as reading it. Conservative by design: a wrong True costs an evaluation, a wrong
    False would hide what a rule saw.
    """
    word = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(variable)}(?![A-Za-z0-9_])")
    for s in sources:
        if re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", s):
            return True
        for m in word.finditer(s):
            if _SELECT.match(s, m.end()) is None or (m.start() > 0 and s[m.start() - 1] == "."):
                return True
    return False


# ``.field``, not ``.macro(`` (``llm.exists(k, …)`` reads every field).
_SELECT = re.compile(r"\s*\.\s*[A-Za-z_][A-Za-z0-9_]*(?![A-Za-z0-9_])(?!\s*\()")


class CelExprEvaluator:
    """`Evaluator` on cel-expr-python."""

    engine = "cel-expr-python"

    def __init__(self) -> None:
        from cel_expr_python import cel

        self._cel = cel
        pool = _descriptor_pool()
        T = cel.Type
        check_vars = {}
        eval_vars = {}
        for v in VARIABLES:
            if v.fields is not None:
                check_vars[v.name] = T(f"execord.context.{v.name.capitalize()}")
                eval_vars[v.name] = T.Map(T.STRING, T.DYN)
            else:
                check_vars[v.name] = eval_vars[v.name] = _scalar_type(T, v.type)
        self._check_env = cel.NewEnv(descriptor_pool=pool, variables=check_vars)
        self._eval_env = cel.NewEnv(variables=eval_vars)

    def check(self, source: str) -> None:
        """Type-check against the context's message types; the result must be a bool."""
        try:
            compiled = self._check_env.compile(source)
        except Exception as exc:  # the binding raises RuntimeError with the checker's text
            raise CelCompileError(_problem_from(str(exc))) from None
        kind = compiled.return_type().name().lower()
        if kind not in ("bool", "dyn"):
            raise CelCompileError(CelProblem("not-boolean", f"`when` must be a boolean expression; this one is {kind}"))

    def program(self, sources: Sequence[str]) -> Program:
        """One list expression over the evaluation environment (maps, not messages)."""
        return _CelExprProgram(self, [self._eval_env.compile(_list_source(sources))], len(sources), sources)


class _CelExprProgram:
    def __init__(self, ev: CelExprEvaluator, compiled: list[Any], size: int, sources: Sequence[str]):
        self._ev = ev
        self._compiled = compiled[0]
        self._size = size
        self._sources = list(sources)
        self._needed = referenced(sources)
        self._singles: list[Any] | None = None

    def run(self, context: Mapping[str, Any]) -> list[Any]:
        try:
            value = self._compiled.eval(data={k: context[k] for k in self._needed})
            if value.type().name().lower() == "error":
                raise CelEvalError(str(value.value()))
            return list(value.plain_value())
        except CelEvalError:
            raise
        except Exception as exc:
            raise CelEvalError(str(exc)) from None

    def run_each(self, context: Mapping[str, Any]) -> list[Any]:
        """Evaluate the expressions one by one: a value, or the `CelEvalError` it raised."""
        if self._singles is None:
            self._singles = [self._ev._eval_env.compile(s) for s in self._sources]
        out: list[Any] = []
        data = {k: context[k] for k in self._needed}
        for expr in self._singles:
            try:
                value = expr.eval(data=data)
                out.append(CelEvalError(str(value.value())) if value.type().name().lower() == "error" else value.plain_value())
            except Exception as exc:
                out.append(CelEvalError(str(exc)))
        return out


class CommonCelEvaluator:
    """`Evaluator` on common-expression-language (the fallback)."""

    engine = "common-expression-language"

    def __init__(self) -> None:
        import cel

        self._cel = cel
        self._known = {v.name for v in VARIABLES}

    def check(self, source: str) -> None:
        """Parse, and refuse top-level names that are not declared."""
        try:
            compiled = self._cel.compile(source)
        except Exception as exc:
            raise CelCompileError(_problem_from(str(exc))) from None
        unknown = sorted(set(compiled.variables()) - self._known)
        if unknown:
            raise CelCompileError(CelProblem("unknown-name", f"undeclared reference to {unknown[0]!r}"))

    def program(self, sources: Sequence[str]) -> Program:
        """One list expression."""
        return _CommonProgram(self._cel, sources)


class _CommonProgram:
    def __init__(self, cel: Any, sources: Sequence[str]):
        self._cel = cel
        self._compiled = cel.compile(_list_source(sources))
        self._sources = list(sources)

    def run(self, context: Mapping[str, Any]) -> list[Any]:
        try:
            return list(self._compiled.execute(dict(context)))
        except Exception as exc:
            raise CelEvalError(f"{type(exc).__name__}: {exc}") from None

    def run_each(self, context: Mapping[str, Any]) -> list[Any]:
        out: list[Any] = []
        for s in self._sources:
            try:
                out.append(self._cel.compile(s).execute(dict(context)))
            except Exception as exc:
                out.append(CelEvalError(f"{type(exc).__name__}: {exc}"))
        return out


def default_evaluator() -> Evaluator:
    """cel-expr-python when it imports, else common-expression-language."""
    global _DEFAULT
    if _DEFAULT is None:
        try:
            _DEFAULT = CelExprEvaluator()
        except ImportError:
            _DEFAULT = CommonCelEvaluator()
    return _DEFAULT


_DEFAULT: Evaluator | None = None


def now_value() -> dt.datetime:
    """``now`` for a rule: an aware UTC datetime."""
    return dt.datetime.now(dt.UTC)


# -- the message types expressions are checked against ------------------------------------

_PROTO_SCALARS = {"string": 9, "int": 3, "bool": 8, "double": 1}  # FieldDescriptorProto.Type


def _scalar_type(T: Any, type_: str) -> Any:
    if type_ == "timestamp":
        return T.TIMESTAMP
    if type_ == "map<string,string>":
        return T.Map(T.STRING, T.STRING)
    if type_ == "map<string,int>":
        return T.Map(T.STRING, T.INT)
    return T.DYN


def _descriptor_pool() -> Any:
    from google.protobuf import descriptor_pb2, descriptor_pool, struct_pb2

    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(struct_pb2.DESCRIPTOR.serialized_pb)
    fdp = descriptor_pb2.FileDescriptorProto(
        name="execord_context.proto", package="execord.context", syntax="proto3",
        dependency=["google/protobuf/struct.proto"],
    )
    for v in VARIABLES:
        if v.fields is None:
            continue
        msg = fdp.message_type.add(name=v.name.capitalize())
        for number, (name, type_, _meaning) in enumerate(v.fields, start=1):
            _add_field(msg, name, number, type_)
    pool.Add(fdp)
    return pool


def _add_field(msg: Any, name: str, number: int, type_: str) -> None:
    optional, repeated, message = 1, 3, 11
    if type_ in _PROTO_SCALARS:
        msg.field.add(name=name, number=number, type=_PROTO_SCALARS[type_], label=optional)
    elif type_ == "list<string>":
        msg.field.add(name=name, number=number, type=9, label=repeated)
    elif type_ == "dyn":
        msg.field.add(name=name, number=number, type=message, label=optional, type_name=".google.protobuf.Value")
    else:
        raise ValueError(f"context field {name}: type {type_} has no message form")
