"""The live objects of a run: `ExecutionHandle` and `StepHandle`."""

from __future__ import annotations

import os
import time
from typing import Any

from ..errors import Cancelled, ExecutionSealed, Halted
from ..governance import Usage
from ..record import (
    CANCEL_REQUESTED,
    EXECUTION_ENDED,
    EXECUTION_STARTED,
    LOG,
    STEP_ENDED,
    STEP_STARTED,
    Blob,
    Event,
    build_event,
    failure_class_for,
    genesis_hash,
    now_ts,
    now_us,
)
from ._capture import capture
from ._governed import Governed, Pinned, static_context
from ._host import hostname, proc_start
from ._steps import GovernedSteps
from ._writer import Writer

SDK_NAME = "execord-python"
_MESSAGE_CHARS = 4000


def error_info(exc: BaseException) -> dict[str, Any]:
    """``{type, message}`` of an exception, the type qualified by its module."""
    t = type(exc)
    name = t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
    try:
        message = str(exc)
    except Exception:
        message = "<str() failed>"
    return {"type": name, "message": message[:_MESSAGE_CHARS]}


class StepHandle:
    """One step while it runs: give it an output or usage before it ends.

    Attributes:
        id: the step's id (UUIDv7).
        kind: llm, tool, retrieval, agent or custom.
        name: the step's name.
        parent_step_id: the enclosing step, if any.
        execution: the execution it belongs to.
        input: the step's input as governance let it through (redacted where a rule or a
            secret detector matched): with ``with execord.step(..., input=x) as s``, send
            ``s.input`` on, not ``x``.
    """

    __slots__ = (
        "id", "kind", "name", "parent_step_id", "execution", "_t0", "output", "has_output",
        "usage", "cost_micros", "price_source", "ended", "input", "request_decision",
    )

    def __init__(self, execution: ExecutionHandle, step_id: str, kind: str, name: str, parent_step_id: str | None):
        self.execution = execution
        self.id = step_id
        self.kind = kind
        self.name = name
        self.parent_step_id = parent_step_id
        self._t0 = time.perf_counter_ns()
        self.output: Any = None
        self.has_output = False
        self.usage: dict[str, int] | None = None
        self.cost_micros: int | None = None
        self.price_source: str | None = None
        self.ended = False
        self.input: Any = None
        self.request_decision: Any = None  # the request phase's Decision, when one was made

    def set_output(self, value: Any) -> None:
        """Record ``value`` as the step's output (a context-managed step has no return value)."""
        self.output = value
        self.has_output = True

    def record_usage(
        self,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cached_input_tokens: int = 0,
        reasoning_tokens: int = 0,
        cost_micros: int | None = None,
        price_source: str | None = None,
    ) -> None:
        """Record the tokens (and, if known, the cost in micro-USD) an LLM step used."""
        self.usage = {
            "input_tokens": int(input_tokens),
            "output_tokens": int(output_tokens),
            "cached_input_tokens": int(cached_input_tokens),
            "reasoning_tokens": int(reasoning_tokens),
        }
        if cost_micros is not None:
            self.cost_micros = int(cost_micros)
        self.price_source = price_source

    def latency_ms(self) -> float:
        """Milliseconds since the step started, to the microsecond."""
        return round((time.perf_counter_ns() - self._t0) / 1e6, 3)


class ExecutionHandle(GovernedSteps):
    """One running execution. Get it from `execord.current()` or ``with execord.execution()``.

    Attributes:
        id: the execution's id (UUIDv7).
        workflow: the workflow's name.
        agent: the agent's name.
        execution_type: what kind of run this is (``workflow`` unless said otherwise).
        parent_execution_id: the execution this one was started inside, if any.
        labels: the labels given at start.
        status: running, awaiting_approval, or the terminal status once ended.
    """

    def __init__(
        self,
        writer: Writer,
        settings: dict[str, Any],
        *,
        execution_id: str,
        workflow: str,
        workflow_version: str | None,
        agent: str,
        execution_type: str,
        parent_execution_id: str | None,
        labels: dict[str, str],
    ):
        self._writer = writer
        self._settings = settings
        self.id = execution_id
        self.workflow = workflow
        self.workflow_version = workflow_version
        self.agent = agent
        self.execution_type = execution_type
        self.parent_execution_id = parent_execution_id
        self.labels = labels
        self.status = "running"
        self._seq = 0
        self._last = genesis_hash(execution_id)
        self._t0_us = now_us()
        self.usage = Usage()
        self.gov = Governed(None, {}, usage=self.usage, started_us=self._t0_us)
        # id(exc) -> (exc, step_id, kind): where an exception was first seen leaving a step.
        self._step_errors: dict[int, tuple[BaseException, str, str]] = {}
        self.output: Any = None
        self.has_output = False
        self.cancel_request: dict[str, Any] | None = None  # {by, reason} once an operator asked
        self.cancelled: Cancelled | None = None  # raised at the first governed action after it

    def __repr__(self) -> str:
        return f"<Execution {self.id} {self.workflow!r} {self.status}>"

    # -- recording -----------------------------------------------------------------------

    def _emit(
        self,
        type_: str,
        attrs: dict[str, Any],
        *,
        step_id: str | None = None,
        parent_step_id: str | None = None,
        blobs: tuple[Blob, ...] = (),
        barrier: bool = False,
        final_status: str | None = None,
        plain: bool = False,
    ) -> Event:
        w = self._writer
        with w.lock:
            if self.status not in ("running", "awaiting_approval"):
                raise ExecutionSealed(self.id, self.status)
            # The runtime builds every attrs dict itself, in the shapes tests/test_sdk.py
            # validates event by event, so the per-event validation is skipped here.
            e = build_event(
                self.id, self._seq, type_, now_ts(), attrs, self._last,
                step_id=step_id, parent_step_id=parent_step_id, validate=False, plain=plain,
            )
            if barrier or w.strict:
                w.barrier((e,), blobs)  # raises RecordError before seq moves on
            else:
                w.defer((e,), blobs)
            self._seq = e.seq + 1
            self._last = e.hash
            if final_status is not None:
                self.status = final_status  # under the lock: no event can follow the end
            return e

    def _capture(self, value: Any) -> tuple[dict[str, Any] | None, tuple[Blob, ...]]:
        if not self._settings["capture"]:
            return None, ()
        blob = capture(value, self._settings["max_value_bytes"])
        return blob.ref(), (blob,)

    def _static_context(self) -> dict[str, Any]:
        s = self._settings
        return static_context(
            agent=self.agent, agent_version=s["agent_version"], roles=s["roles"], workflow=self.workflow,
            workflow_version=self.workflow_version, execution_id=self.id, execution_type=self.execution_type,
            parent_execution_id=self.parent_execution_id, labels=self.labels,
        )

    def admission_request(self) -> dict[str, Any]:
        """What the server needs to decide admission (server mode)."""
        s = self._settings
        return {"execution_id": self.id, "agent": {"name": self.agent, "version": s["agent_version"],
                                                   "roles": list(s["roles"])},
                "workflow": {"name": self.workflow, "version": self.workflow_version},
                "execution_type": self.execution_type, "parent_execution_id": self.parent_execution_id,
                "labels": self.labels}

    def start(self, inputs: Any, pinned: Pinned | None = None, *, admission: dict[str, Any] | None = None) -> None:
        """Write ``execution.started`` and, if governed, the admission decision.

        Both are committed before the workflow body runs. A denial at admission ends the
        execution ``halted`` with zero steps and raises `Halted`. In server mode,
        ``admission`` is the server's answer: its decision is the one recorded.
        """
        self._t0_us = now_us()  # the clock starts here, after the store was opened and governance loaded
        gov = self.gov = Governed(pinned, self._static_context(), usage=self.usage, started_us=self._t0_us)
        decision = ctx = inputs_used = None
        if admission is not None and pinned is not None:
            from ._governed import decision_from_dict

            gov.windows_used.update(admission.get("windows") or {})
            if admission.get("decision"):
                decision = decision_from_dict(pinned, admission["decision"])
                inputs_used = admission.get("inputs")
        elif gov.active:
            if not getattr(self._writer.store, "remote", False):
                gov.load_windows(self._writer.store, self.agent, self.workflow, self.id)
            ctx = gov.context()
            decision = gov.evaluate("admission", ctx)
        inputs, redactions = gov.redact(inputs, decision)
        ref, blobs = self._capture(inputs)
        s = self._settings
        pid = os.getpid()
        self._emit(
            EXECUTION_STARTED,
            {
                "agent": {"name": self.agent, "version": s["agent_version"], "roles": list(s["roles"])},
                "workflow": {"name": self.workflow, "version": self.workflow_version},
                "execution_type": self.execution_type,
                "parent_execution_id": self.parent_execution_id,
                "labels": self.labels,
                "inputs": ref,
                "governance_version": gov.version_id,
                "sdk": {"name": SDK_NAME, "version": _sdk_version()},
                "host": {"hostname": hostname(), "pid": pid, "proc_start": proc_start(pid)},
                "lease_s": s["lease_s"],
                **({"redactions": redactions} if redactions and decision is None else {}),
            },
            blobs=blobs,
            barrier=decision is None,
        )
        if decision is not None:
            seq = self._decision_event(decision, None, None, redactions, barrier=True, ctx=ctx, inputs=inputs_used)
            if decision.decision == "deny":
                halted = gov.halt(seq, decision, "admission", self.id)
                self.end(halted)
                raise halted
        with self._writer.lock:
            self._writer.live[self.id] = self
        self._writer.ensure_threads()

    def start_step(
        self,
        kind: str,
        name: str,
        input_value: Any,
        parent_step_id: str | None,
        step_id: str,
        extra: dict[str, Any] | None = None,
        *,
        barrier: bool = True,
    ) -> StepHandle:
        """Write ``step.started`` and return its handle.

        With ``barrier`` (the default) it is committed before this returns; a governed step
        commits it together with its request decision instead (see `begin_step`).
        """
        ref, blobs = self._capture(input_value)
        attrs: dict[str, Any] = {"kind": kind, "name": name, "input": ref}
        if extra:
            attrs.update(extra)
        self._emit(STEP_STARTED, attrs, step_id=step_id, parent_step_id=parent_step_id, blobs=blobs, barrier=barrier)
        return StepHandle(self, step_id, kind, name, parent_step_id)

    def end_step(
        self,
        step: StepHandle,
        *,
        result: Any = None,
        error: BaseException | None = None,
        blocked: bool = False,
        counted: bool = False,
        redactions: list[dict[str, str]] | None = None,
    ) -> None:
        """Write ``step.ended`` (queued; committed by the next barrier or the flusher).

        Args:
            step: the step.
            result: its return value, unless `StepHandle.set_output` gave one.
            error: the exception it raised.
            blocked: governance stopped it (status ``blocked``; nothing or nothing more ran).
            counted: its usage was already added to the execution's totals.
            redactions: secrets redacted from its output, when no decision event lists them.
        """
        if step.ended:
            return
        step.ended = True
        latency = step.latency_ms()
        if blocked:
            ref, blobs = None, ()
            status, err = "blocked", None
        elif error is None:
            ref, blobs = self._capture(step.output if step.has_output else result)
            status, err = "ok", None
        else:
            ref, blobs = None, ()
            status, err = "error", self._error_info(error)
            if not isinstance(error, Halted):
                self._step_errors.setdefault(id(error), (error, step.id, step.kind))
        if not counted and not blocked:
            self._count(step)
        attrs = {
            "status": status,
            "output": ref,
            "error": err,
            "usage": step.usage,
            "cost_micros": step.cost_micros,
            "price_source": step.price_source,
            "latency_ms": latency,
        }
        if redactions:
            attrs["redactions"] = redactions
        self._emit(
            STEP_ENDED,
            attrs,
            step_id=step.id,
            parent_step_id=step.parent_step_id,
            blobs=blobs,
        )

    def _count(self, step: StepHandle) -> None:
        """Add what lands with a step's end: tokens and cost (its calls were counted when it
        was allowed to start, see `begin_step`)."""
        with self._writer.lock:
            u = self.usage
            if step.usage:
                u.input_tokens += step.usage["input_tokens"]
                u.output_tokens += step.usage["output_tokens"]
            if step.cost_micros is not None:
                u.cost_micros += step.cost_micros

    def log(self, message: str, *, level: str = "info", step_id: str | None = None, data: Any = None) -> None:
        """Append a ``log`` event."""
        from ._capture import to_jsonable

        if self.status == "disabled":
            return
        if level not in ("debug", "info", "warning", "error"):
            level = "info"
        # Logs go through the secret detectors like every captured value.
        (text, plain), _ = self.gov.redact((str(message)[:_MESSAGE_CHARS], to_jsonable(data)), None)
        self._emit(LOG, {"level": level, "message": text, "data": plain}, step_id=step_id)

    def on_heartbeat(self, info: dict[str, Any]) -> None:
        """What the heartbeat brought back: a cancel request, fresh window-budget usage."""
        if info.get("windows"):
            with self._writer.lock:
                self.gov.windows_used.update(info["windows"])
        cancel = info.get("cancel")
        if cancel and self.cancel_request is None:
            with self._writer.lock:
                if self.cancel_request is not None or self.status not in ("running", "awaiting_approval"):
                    return
                self.cancel_request = {"by": cancel.get("by"), "reason": cancel.get("reason")}
                # This process is the chain's one writer: the request enters the record here.
                self._emit(CANCEL_REQUESTED, dict(self.cancel_request), barrier=False)

    def refuse_if_cancelled(self) -> None:
        """Once an operator asked, every later governed action raises `Cancelled`."""
        c = self.cancel_request
        if c is not None:
            exc = Cancelled(f"execution {self.id} was cancelled by {c['by']}" + (f": {c['reason']}" if c["reason"] else ""),
                            by=c["by"], reason=c["reason"], execution_id=self.id)
            if self.cancelled is None:
                self.cancelled = exc
            raise exc

    def set_output(self, value: Any) -> None:
        """Record ``value`` as the execution's output (``with execution()`` has no return value)."""
        self.output = value
        self.has_output = True

    def _error_info(self, error: BaseException) -> dict[str, Any]:
        """`error_info`, with secrets (and nothing else) redacted from the message."""
        info = error_info(error)
        info["message"], _ = self.gov.redact(info["message"], None)
        return info

    def totals_dict(self) -> dict[str, int]:
        """The running totals (DESIGN §3 ``execution.ended`` totals)."""
        u = self.usage
        return {
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "cost_micros": u.cost_micros,
            "llm_calls": u.llm_calls,
            "tool_calls": u.tool_calls,
            "steps": u.steps,
            "duration_ms": (now_us() - self._t0_us) // 1000,
        }

    def _error_origin(self, exc: BaseException) -> tuple[str | None, str | None]:
        """(step_id, kind) of the step an exception came out of, following its causes."""
        seen: set[int] = set()
        e: BaseException | None = exc
        while e is not None and id(e) not in seen:
            seen.add(id(e))
            hit = self._step_errors.get(id(e))
            if hit is not None and hit[0] is e:
                return hit[1], hit[2]
            e = e.__cause__ or e.__context__
        return None, None

    def end(self, error: BaseException | None = None) -> None:
        """Write ``execution.ended`` and the seal (one transaction).

        An ``Exception`` ends the execution ``failed``; a ``BaseException`` that is not an
        ``Exception`` (KeyboardInterrupt, SystemExit, task cancellation) ends it
        ``interrupted``: the process was stopped rather than the workflow failing.
        """
        gov = self.gov
        decision = None
        if gov.active and gov.halted is None and self.status == "running":
            ctx = gov.context()
            decision = gov.evaluate("end", ctx)
            if decision is not None:
                seq = self._decision_event(decision, None, None, [], barrier=False, ctx=ctx)
                if decision.decision == "deny":
                    gov.halt(seq, decision, "end", self.id)
        err = None
        step_kind = None
        halt = gov.halted.halt() if gov.halted is not None else None
        cancel = None
        if halt is None and (self.cancelled is not None or isinstance(error, Cancelled)):
            c = self.cancelled or error
            cancel = c.cancel()  # type: ignore[union-attr]
        if halt is not None:
            status = "halted"
        elif cancel is not None:
            status = "cancelled"
        elif error is None:
            status = "succeeded"
        else:
            status = "failed" if isinstance(error, Exception) else "interrupted"
        # This execution's own halt is its `halt`, not an error; a Halted raised by another
        # (a nested execution) that ends this one is an error like any other.
        own_halt = isinstance(error, Halted) and error.execution_id in (None, self.id)
        own_cancel = isinstance(error, Cancelled) and error.execution_id in (None, self.id)
        if error is not None and not own_halt and not own_cancel:
            err = self._error_info(error)
            step_id, step_kind = self._error_origin(error)
            err["step_id"] = step_id
            err["step_kind"] = step_kind
        ref, blobs = (None, ())
        if error is None and self.has_output and halt is None:
            output, _ = gov.redact(self.output, decision)
            ref, blobs = self._capture(output)
        attrs = {
            "status": status,
            "error": err,
            "halt": halt,
            "cancel": cancel,
            "totals": self.totals_dict(),
            "failure_class": failure_class_for(status, halt_reason=halt and halt["reason"], error_step_kind=step_kind),
            "output": ref,
        }
        try:
            self._emit(EXECUTION_ENDED, attrs, blobs=blobs, barrier=True, final_status=status)
        finally:
            with self._writer.lock:
                self._writer.live.pop(self.id, None)


def _sdk_version() -> str:
    from .. import __version__

    return __version__
