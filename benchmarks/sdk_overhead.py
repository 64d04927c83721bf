"""Per-step overhead of `@execord.tool` around a no-op function, against its peers.

10,000 steps in one execution, embedded SQLite, default durability; the median over 5 runs
of µs per step, minus the same loop calling the undecorated function. In the same run and
the same loop: a bare OpenTelemetry span (TracerProvider + BatchSpanProcessor + a no-op
exporter) and Langfuse's `@observe` (its host pointed at a closed local port).

Targets: at most 2x the bare OpenTelemetry span, and at least 4x faster than Langfuse.

    python benchmarks/sdk_overhead.py [--steps 10000] [--runs 5] [--governance FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any


def noop() -> None:
    return None


def per_call_us(fn: Callable[[], Any], steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t0) / steps * 1e6


def bench_execord(steps: int, runs: int, governance: str | None) -> list[float]:
    import execord

    folder = tempfile.mkdtemp(prefix="execord-bench-")
    kwargs: dict[str, Any] = {"agent": "bench", "db": os.path.join(folder, "bench.db")}
    if governance:
        kwargs["governance"] = governance
    execord.init(**kwargs)
    tool = execord.tool(noop)
    out = []
    for _ in range(runs + 1):  # the first run warms up (opens the store, creates the file)
        with execord.execution("bench"):
            out.append(per_call_us(tool, steps))
    execord.shutdown()
    return out[1:]


def bench_otel(steps: int, runs: int) -> list[float]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class NoopExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(NoopExporter()))
    tracer = provider.get_tracer("bench")

    def traced() -> None:
        with tracer.start_as_current_span("noop"):
            noop()

    out = [per_call_us(traced, steps) for _ in range(runs + 1)][1:]
    provider.shutdown()
    return out


def bench_langfuse(steps: int, runs: int) -> list[float]:
    # A closed local port: nothing is sent anywhere; export attempts fail in the background.
    os.environ.update({
        "LANGFUSE_PUBLIC_KEY": "pk-lf-bench", "LANGFUSE_SECRET_KEY": "sk-lf-bench",
        "LANGFUSE_HOST": "http://127.0.0.1:9", "LANGFUSE_BASE_URL": "http://127.0.0.1:9",
    })
    import logging

    logging.getLogger("langfuse").setLevel(logging.CRITICAL)
    logging.getLogger("opentelemetry").setLevel(logging.CRITICAL)
    from langfuse import get_client, observe

    observed = observe(noop)
    out = [per_call_us(observed, steps) for _ in range(runs + 1)][1:]
    try:
        get_client().shutdown()
    except Exception:
        pass
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--governance", default=None, help="a governance file to evaluate at every step")
    args = ap.parse_args()

    bare = statistics.median(per_call_us(noop, args.steps) for _ in range(args.runs))
    ex = statistics.median(bench_execord(args.steps, args.runs, args.governance)) - bare
    ot = statistics.median(bench_otel(args.steps, args.runs)) - bare
    lf = statistics.median(bench_langfuse(args.steps, args.runs)) - bare
    print(f"steps per run: {args.steps:,}, runs: {args.runs}, median µs per step (bare call {bare:.2f} µs subtracted)")
    print(f"  execord @tool (embedded SQLite, default durability{', governance ' + args.governance if args.governance else ''}): {ex:8.1f} µs")
    print(f"  OpenTelemetry span (BatchSpanProcessor, no-op exporter): {ot:8.1f} µs")
    print(f"  Langfuse @observe (closed local port):                   {lf:8.1f} µs")
    print(f"  execord / OpenTelemetry = {ex / ot:.2f}x   (target ≤ 2x)")
    print(f"  Langfuse / execord      = {lf / ex:.2f}x   (target ≥ 4x)")


if __name__ == "__main__":
    main()
