"""The SDK surface: workflows, tools, steps, context propagation and the recorded facts."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime as dt
import math
import threading
from typing import Any

import pytest

import execord
from execord.runtime import Execord
from execord.store import blob_value, steps_from_events


def _only(store: Any, workflow: str | None = None) -> dict[str, Any]:
    rows = store.list_executions()
    if workflow is not None:
        rows = [r for r in rows if r["workflow"] == workflow]
    assert len(rows) == 1, rows
    return rows[0]


def _steps(store: Any, execution_id: str) -> list[dict[str, Any]]:
    return steps_from_events(store.events(execution_id))


# -- workflows ----------------------------------------------------------------------------


def test_workflow_return_is_succeeded_with_inputs_and_output(engine: Execord, store: Any) -> None:
    @execord.workflow
    def greet(name: str, punctuation: str = "!") -> str:
        return f"hello {name}{punctuation}"

    assert greet("ana") == "hello ana!"
    s = _only(store)
    assert s["workflow"] == "greet" and s["status"] == "succeeded" and s["failure_class"] is None
    assert s["agent"] == "test-agent" and s["sealed"] is True
    events = store.events(s["id"])
    assert [e.type for e in events] == ["execution.started", "execution.ended"]
    assert blob_value(store, events[0].attrs["inputs"]) == {"name": "ana"}
    assert blob_value(store, events[-1].attrs["output"]) == "hello ana!"


def test_workflow_exception_is_failed_and_reraised_unchanged(engine: Execord, store: Any) -> None:
    boom = KeyError("missing-template")

    @execord.workflow(name="digest")
    def digest() -> None:
        raise boom

    with pytest.raises(KeyError) as info:
        digest()
    assert info.value is boom
    s = _only(store)
    assert s["status"] == "failed" and s["failure_class"] == "logic_error"
    assert s["error"]["type"] == "KeyError" and "missing-template" in s["error"]["message"]
    assert s["error"]["step_id"] is None


@pytest.mark.parametrize(
    ("kind", "failure_class"),
    [("llm", "provider_failure"), ("tool", "connector_failure"), ("retrieval", "connector_failure"),
     ("custom", "logic_error"), ("agent", "logic_error")],
)
def test_failure_class_follows_the_step_the_error_came_from(engine: Execord, store: Any, kind: str, failure_class: str) -> None:
    @execord.step(kind=kind)
    def call() -> None:
        raise TimeoutError("upstream did not answer")

    @execord.workflow
    def wf() -> None:
        call()

    with pytest.raises(TimeoutError):
        wf()
    s = _only(store)
    assert s["failure_class"] == failure_class
    step = _steps(store, s["id"])[0]
    assert s["error"]["step_id"] == step["step_id"] and s["error"]["step_kind"] == kind
    assert step["status"] == "error" and step["error"] == {"type": "TimeoutError", "message": "upstream did not answer"}


def test_error_wrapped_by_workflow_code_still_traces_to_its_step(engine: Execord, store: Any) -> None:
    @execord.tool
    def charge() -> None:
        raise ConnectionError("payments down")

    @execord.workflow
    def wf() -> None:
        try:
            charge()
        except ConnectionError as exc:
            raise RuntimeError("refund failed") from exc

    with pytest.raises(RuntimeError):
        wf()
    assert _only(store)["failure_class"] == "connector_failure"


def test_keyboard_interrupt_ends_interrupted(engine: Execord, store: Any) -> None:
    @execord.workflow
    def wf() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        wf()
    s = _only(store)
    assert s["status"] == "interrupted" and s["failure_class"] == "interrupted"


async def test_async_workflow_and_tools(engine: Execord, store: Any) -> None:
    @execord.tool
    async def fetch(url: str) -> int:
        await asyncio.sleep(0.001)
        return len(url)

    @execord.workflow
    async def crawl(urls: list[str]) -> int:
        sizes = await asyncio.gather(*(fetch(u) for u in urls))
        return sum(sizes)

    assert await crawl(["a", "bb", "ccc"]) == 6
    s = _only(store)
    assert s["status"] == "succeeded" and s["totals"]["tool_calls"] == 3
    steps = _steps(store, s["id"])
    assert sorted(blob_value(store, st["input"])["url"] for st in steps) == ["a", "bb", "ccc"]
    assert all(st["parent_step_id"] is None for st in steps)


# -- steps, nesting and context -----------------------------------------------------------


def test_nested_steps_record_their_parent(engine: Execord, store: Any) -> None:
    @execord.tool
    def leaf(n: int) -> int:
        return n * 2

    @execord.step(kind="agent")
    def planner() -> int:
        with execord.step("inner", kind="retrieval", input={"q": "x"}) as s:
            s.set_output(["doc"])
            return leaf(2) + leaf(3)

    @execord.workflow
    def wf() -> int:
        return planner()

    assert wf() == 10
    steps = {st["name"]: st for st in _steps(store, _only(store)["id"])}
    assert steps["planner"]["parent_step_id"] is None
    assert steps["inner"]["parent_step_id"] == steps["planner"]["step_id"]
    leaf_parents = {st["parent_step_id"] for st in _steps(store, _only(store)["id"]) if st["name"] == "leaf"}
    assert leaf_parents == {steps["inner"]["step_id"]}
    assert blob_value(store, steps["inner"]["output"]) == ["doc"]
    assert blob_value(store, steps["inner"]["input"]) == {"q": "x"}


async def test_gathered_steps_nest_under_the_step_that_gathered_them(engine: Execord, store: Any) -> None:
    @execord.tool
    async def one(i: int) -> int:
        await asyncio.sleep(0.002 * (3 - i))
        return i

    @execord.step(kind="agent")
    async def fan_out() -> list[int]:
        return list(await asyncio.gather(*(one(i) for i in range(3))))

    async with execord.execution("fan") as ex:
        assert await fan_out() == [0, 1, 2]
    steps = _steps(store, ex.id)
    parent = next(st for st in steps if st["name"] == "fan_out")
    children = [st for st in steps if st["name"] == "one"]
    assert len(children) == 3 and {c["parent_step_id"] for c in children} == {parent["step_id"]}
    assert all(c["status"] == "ok" for c in children)


def test_wrap_carries_the_context_into_threads(engine: Execord, store: Any) -> None:
    @execord.tool
    def work(i: int) -> str:
        return threading.current_thread().name

    with execord.execution("threads") as ex:
        with execord.step("dispatch", kind="agent") as parent:
            with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
                names = list(pool.map(execord.wrap(work), range(8)))
    assert any(n != threading.current_thread().name for n in names)
    steps = _steps(store, ex.id)
    workers = [st for st in steps if st["name"] == "work"]
    assert len(workers) == 8
    assert {w["parent_step_id"] for w in workers} == {parent.id}
    events = store.events(ex.id)
    assert [e.seq for e in events] == list(range(len(events)))


def test_unwrapped_thread_does_not_inherit_the_execution(engine: Execord, store: Any) -> None:
    seen: list[Any] = []
    with execord.execution("outer"):
        t = threading.Thread(target=lambda: seen.append(execord.current()))
        t.start()
        t.join()
    assert seen == [None]


def test_nested_execution_records_its_parent(engine: Execord, store: Any) -> None:
    @execord.workflow
    def child() -> str:
        return "done"

    with execord.execution("parent") as outer:
        assert execord.current() is outer
        child()
        assert execord.current() is outer
    rows = {r["workflow"]: r for r in store.list_executions()}
    assert rows["child"]["parent_execution_id"] == outer.id
    assert rows["parent"]["parent_execution_id"] is None
    assert execord.current() is None and not execord.in_execution()


def test_tool_outside_an_execution_is_an_execution_of_its_own(engine: Execord, store: Any) -> None:
    @execord.tool
    def ping() -> str:
        return "pong"

    assert ping() == "pong"
    s = _only(store)
    assert s["workflow"] == "ping" and s["execution_type"] == "tool" and s["totals"]["tool_calls"] == 1


def test_execution_scope_labels_inputs_log_and_output(engine: Execord, store: Any) -> None:
    with execord.execution("report", inputs={"day": "mon"}, labels={"env": "prod", "team": "ops"}) as ex:
        execord.log("fetched", level="warning", rows=3)
        ex.set_output({"rows": 3})
    s = _only(store)
    assert s["labels"] == {"env": "prod", "team": "ops"}
    events = store.events(ex.id)
    log = next(e for e in events if e.type == "log")
    assert log.attrs == {"level": "warning", "message": "fetched", "data": {"rows": 3}}
    assert blob_value(store, events[0].attrs["inputs"]) == {"day": "mon"}
    assert blob_value(store, events[-1].attrs["output"]) == {"rows": 3}


def test_step_usage_and_cost_roll_up_into_totals(engine: Execord, store: Any) -> None:
    with execord.execution("chat") as ex:
        for _ in range(2):
            with execord.step("ask", kind="llm", provider="openai", model="gpt-4o-mini", params={"max_tokens": 64}) as s:
                s.record_usage(input_tokens=100, output_tokens=20, cached_input_tokens=40, cost_micros=27, price_source="test")
    s = _only(store)
    assert s["totals"] == {"steps": 2, "llm_calls": 2, "tool_calls": 0, "input_tokens": 200,
                           "output_tokens": 40, "cost_micros": 54}
    started = next(e for e in store.events(ex.id) if e.type == "step.started")
    assert started.attrs["model"] == "gpt-4o-mini" and started.attrs["params"] == {"max_tokens": 64}
    step = _steps(store, ex.id)[0]
    assert step["usage"]["cached_input_tokens"] == 40 and step["price_source"] == "test"


# -- captured values ----------------------------------------------------------------------


@dataclasses.dataclass
class Order:
    id: int
    placed: dt.date


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque thing>"


def test_non_json_values_are_stored_with_type_tags_never_crashing(engine: Execord, store: Any) -> None:
    @execord.tool
    def odd(a: Any, b: Any, c: Any, d: Any, e: Any, f: Any) -> Any:
        return {1: "int key", "set": {3, 1, 2}}

    odd(Order(7, dt.date(2026, 1, 2)), b"\x00\xff", math.nan, 2**70, Opaque(), (1, 2))
    step = _steps(store, _only(store)["id"])[0]
    value = blob_value(store, step["input"])
    assert value["a"] == {"$type": "test_sdk.Order", "value": {"id": 7, "placed": {"$type": "datetime", "value": "2026-01-02"}}}
    assert value["b"] == {"$type": "bytes", "base64": "AP8=", "size": 2}
    assert value["c"] == {"$type": "float", "value": "nan"}
    assert value["d"] == {"$type": "int", "value": str(2**70)}
    assert value["e"] == {"$type": "test_sdk.Opaque", "repr": "<Opaque thing>"}
    assert value["f"] == [1, 2]
    assert blob_value(store, step["output"]) == {"1": "int key", "set": [1, 2, 3]}


def _nested(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


_CAPTURED = [
    {"a": [1, 2.5, None, True, "é"], "b": {"c": -0.0, "d": 1e21}},
    {"big": 2**53 - 1}, {"big": 2**53}, {"neg": -(2**53)}, [math.inf], [math.nan], ("t", ["u"]),
    {"\U0001f600": 1}, {1: "int key"}, [dt.date(2026, 1, 2)], {"s": type("S", (str,), {})("sub")},
    *(_nested(n, leaf) for n in (63, 64, 65, 66) for leaf in ([], {}, "x", 1.5, {"k": 1})),
]


@pytest.mark.parametrize("value", _CAPTURED, ids=range(len(_CAPTURED)))
def test_a_plain_value_is_captured_as_its_to_jsonable_copy_would_be(value: Any) -> None:
    # capture() and the governance context skip to_jsonable for plain JSON: the bytes and the
    # values the rules see must be exactly what the copy gives, at every nesting boundary.
    from execord.record import canonical_json
    from execord.runtime._capture import capture, jsonable, to_jsonable

    copy = to_jsonable(value)
    assert capture(value, 1 << 20).data == canonical_json(copy)
    shared = jsonable(value)
    assert shared == copy and type(shared) is type(copy)
    if shared is value:  # shared only where the copy would be the very same JSON
        assert copy == value and _same_types(copy, value)
    deepest_kept, too_deep = _nested(64, []), _nested(65, [])
    assert jsonable(_CAPTURED[0]) is _CAPTURED[0] and jsonable(deepest_kept) is deepest_kept
    assert jsonable(too_deep) is not too_deep


def _same_types(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return a.keys() == b.keys() and all(_same_types(a[k], b[k]) for k in a)
    if type(a) is list:
        return len(a) == len(b) and all(_same_types(x, y) for x, y in zip(a, b, strict=True))
    return True


def test_a_value_whose_repr_raises_is_still_recorded(engine: Execord, store: Any) -> None:
    class Hostile:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    @execord.tool
    def take(x: Any) -> None:
        return None

    take(Hostile())
    value = blob_value(store, _steps(store, _only(store)["id"])[0]["input"])
    assert value["x"]["repr"] == "<repr failed: RuntimeError>"


def test_large_values_are_truncated_with_a_marker(db_path: str) -> None:
    ex = execord.init(db=db_path, max_value_bytes=1000)

    @execord.tool
    def big() -> str:
        return "x" * 10_000

    big()
    ex.flush()
    out = blob_value(ex.store, _steps(ex.store, ex.store.list_executions()[0]["id"])[0]["output"])
    assert out["$type"] == "truncated" and out["size"] == 10_002 and len(out["head"]) == 500


def test_capture_off_records_no_values(db_path: str) -> None:
    ex = execord.init(db=db_path, capture=False)

    @execord.tool
    def secret(token: str) -> str:
        return token

    secret("s3cr3t")
    ex.flush()
    step = _steps(ex.store, ex.store.list_executions()[0]["id"])[0]
    assert step["input"] is None and step["output"] is None


# -- settings -----------------------------------------------------------------------------


def test_environment_configures_the_default_recorder(monkeypatch: pytest.MonkeyPatch, db_path: str) -> None:
    monkeypatch.setenv("EXECORD_DB", db_path)
    monkeypatch.setenv("EXECORD_AGENT", "from-env")
    monkeypatch.setenv("EXECORD_AGENT_ROLES", "support, billing")
    ex = execord.init()
    assert ex.db_path == db_path and ex.settings["roles"] == ("support", "billing")

    @execord.workflow
    def wf() -> None:
        return None

    wf()
    first = ex.store.events(ex.store.list_executions()[0]["id"])[0]
    assert first.attrs["agent"] == {"name": "from-env", "version": None, "roles": ["support", "billing"]}


def test_arguments_beat_the_environment(monkeypatch: pytest.MonkeyPatch, db_path: str) -> None:
    monkeypatch.setenv("EXECORD_AGENT", "from-env")
    assert execord.init(agent="from-arg", db=db_path).settings["agent"] == "from-arg"


def test_disabled_records_nothing(monkeypatch: pytest.MonkeyPatch, db_path: str, tmp_path: Any) -> None:
    monkeypatch.setenv("EXECORD_DISABLED", "1")
    execord.init(db=db_path)

    @execord.workflow
    def wf(x: int) -> int:
        return x + 1

    assert wf(1) == 2
    execord.flush()
    import os

    assert not os.path.exists(db_path)


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [("EXECORD_DISABLED", "maybe", "not a boolean"), ("EXECORD_LEASE_S", "ten", "not a whole number"),
     ("EXECORD_ON_RECORD_ERROR", "ignore", "on_record_error must be"),
     ("EXECORD_DURABILITY", "fast", "durability must be")],
)
def test_bad_settings_say_what_is_wrong(monkeypatch: pytest.MonkeyPatch, env: str, value: str, message: str) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(execord.ConfigError, match=message):
        execord.init()


def test_bad_decorator_use_is_caught_at_decoration(engine: Execord) -> None:
    with pytest.raises(execord.ConfigError, match="kind must be one of"):
        execord.step(kind="database")
    with pytest.raises(TypeError, match="decorates a function"):
        execord.tool(int)
    with pytest.raises(execord.ConfigError, match="needs a name"):
        with execord.execution("x"), execord.step(kind="tool"):
            pass


def test_two_recorders_in_one_process_write_to_their_own_stores(tmp_path: Any) -> None:
    a = Execord(agent="a", db=str(tmp_path / "a.db"))
    b = Execord(agent="b", db=str(tmp_path / "b.db"))

    @a.workflow
    def on_a() -> None:
        return None

    @b.workflow
    def on_b() -> None:
        return None

    on_a()
    on_b()
    on_b()
    assert [r["agent"] for r in a.store.list_executions()] == ["a"]
    assert [r["agent"] for r in b.store.list_executions()] == ["b", "b"]
    a.close()
    b.close()


def test_sequences_have_no_gaps_and_the_chain_verifies(engine: Execord, store: Any) -> None:
    from execord.store import verify_store

    @execord.tool
    def t(i: int) -> int:
        return i

    @execord.workflow
    def wf() -> None:
        for i in range(50):
            t(i)
            execord.log("tick", i=i)

    wf()
    s = _only(store)
    events = store.events(s["id"])
    assert [e.seq for e in events] == list(range(151 + 1))
    assert store.get_seal(s["id"])["event_count"] == len(events)
    report = verify_store(store)
    assert report.ok and report.events == len(events)


def test_every_event_the_sdk_writes_fits_its_type(engine: Execord, store: Any) -> None:
    """The runtime skips per-event validation on its hot path; this is what makes that safe."""
    from execord.record import validate_attrs

    @execord.tool
    def ok_tool(x: Any) -> Any:
        return x

    @execord.step(kind="llm")
    def bad_llm() -> None:
        raise RuntimeError("provider said no")

    @execord.workflow
    def everything() -> None:
        ok_tool({"nested": [1.5, None, "é"]})
        execord.log("a log", level="debug", n=1)
        with execord.step("ask", kind="llm", provider="p", model="m", params={"t": 0.2}) as s:
            s.record_usage(input_tokens=1, output_tokens=2, cost_micros=3, price_source="x")
        with execord.step("r", kind="retrieval", input=None):
            pass
        bad_llm()

    with pytest.raises(RuntimeError):
        everything()
    with execord.execution("second", inputs=b"bytes"):
        execord.log("x", level="not-a-level")
    ok_tool(1)
    types = set()
    for row in store.list_executions():
        for e in store.events(row["id"]):
            validate_attrs(e.type, e.attrs)
            types.add(e.type)
    assert {"execution.started", "step.started", "step.ended", "log", "execution.ended"} <= types
