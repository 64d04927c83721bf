"""Time the OpenAI instrumentation adds per call, against the bare client on the same local server.

One official `openai.OpenAI` client (max_retries=0) talks HTTP/1.1 keep-alive to a fake
OpenAI server in this process (127.0.0.1, `ThreadingHTTPServer`, precomputed answers with
usage; SSE for `stream=True`). The same client object is timed in three modes, per
`chat.completions.create` call (and, with `--stream`, per streamed call read to its end):

- ``bare``: uninstrumented (`execord.integrations.uninstrument`), called outside anything;
- ``execord``: instrumented, the calls of each batch inside one `execution(...)`, embedded
  SQLite in a temp folder, default settings (batched durability: `step.started` is committed
  before the request leaves);
- ``governed``: the same under a small governance file (three `llm.request` rules, an email
  redaction on the prompt, an `llm.response` rule and two execution budgets).

The modes alternate: each run is ``--rounds`` rounds, each round one batch of
``calls / rounds`` calls per mode, in an order rotated every round, after one warm-up batch
per mode. Reported per mode: median, p90 and p99 µs per call, and the overhead, median(mode)
− median(bare). "in line" is the median time per call spent outside the client's own
`create` and its stream's chunk iterator (a timing shim under the instrumentation, in every
mode alike): execord's own work on the calling thread, without the HTTP exchange and its
noise (what its flusher thread does, and the GIL it holds meanwhile, is not in it). The
machine's other load is printed next to each run.

The server shares the process (and the GIL) with the client, in every mode alike. A
non-streamed call reuses the client's one keep-alive connection; a streamed one does not:
the client's `Stream` stops at ``[DONE]`` and closes the response before httpx has seen the
body's end, so the connection is dropped and the next stream opens a new one. The server's
thread for the dropped connection then ends while the next call starts, and takes the GIL
from it: ``--server-process`` runs the server in a child process instead, to see execord's
cost without that.

Target: ≤ 100 µs per call.

    python benchmarks/integration_overhead.py [--calls 2000] [--rounds 20] [--runs 3] [--profile] [--stream]
                                              [--server-process] [--server-mode]

``--server-mode`` adds two modes that record through a local ``execord serve`` child process
(server mode: the SDK's spool, ``EXECORD_SPOOL_FSYNC=interval`` and ``=always``).

``--profile`` then runs, for each instrumented mode, one batch with the writer's commits
timed (no profiler) and one under cProfile (the calling thread only), and prints where
execord's time goes.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _load import Others  # noqa: E402

TARGET_US = 100.0
MODEL = "gpt-4o-mini"
REQUEST: dict[str, Any] = {
    "model": MODEL,
    "messages": [
        {"role": "system", "content": "You are the support assistant of an online shop. Answer briefly and "
                                      "politely; never promise refunds; look orders up before answering."},
        {"role": "user", "content": "Hi, where is my order A-1001? It was due on Monday. Please reply to "
                                    "jane.doe@example.com, thanks!"},
    ],
    "temperature": 0.2,
    "max_tokens": 300,
}
REPLY = ("Hello Jane, thanks for reaching out. Your order A-1001 left our warehouse on Monday and is now with "
         "the carrier; the tracking shows delivery expected tomorrow before noon. I will keep an eye on it and "
         "write again if anything changes.")
USAGE = {
    "prompt_tokens": 1200, "completion_tokens": 62, "total_tokens": 1262,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0,
                                  "rejected_prediction_tokens": 0},
}
GOVERNANCE = """\
version: 1
policies:
  - id: approved-models
    on: [llm.request]
    when: '!(llm.model in ["gpt-4o-mini", "gpt-4o", "gpt-4.1"])'
    effect: deny
    message: Use an approved model.
  - id: hot-sampling
    on: [llm.request]
    when: '"temperature" in llm.params && llm.params.temperature > 1.0'
    effect: deny
  - id: long-answers
    on: [llm.request]
    when: llm.max_tokens > 4000
    effect: warn
  - id: mask-emails-in-prompts
    on: [llm.request]
    effect: redact
    detectors: [email]
  - id: heavy-run
    on: [llm.response]
    when: usage.output_tokens > 1000000
    effect: warn
    message: An unusually long run.
budgets:
  execution:
    cost_usd: 100
    llm_calls: 100000
"""


# -- the fake server ------------------------------------------------------------------------------


def _answer(body: bytes, content_type: str) -> bytes:
    head = (f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "x-request-id: req_bench\r\nopenai-processing-ms: 1\r\n\r\n")
    return head.encode() + body


def _responses() -> tuple[bytes, bytes, bytes]:
    base = {"id": "chatcmpl-bench", "created": 1764633600, "model": "gpt-4o-mini-2024-07-18",
            "system_fingerprint": "fp_bench", "service_tier": "default"}
    whole = {**base, "object": "chat.completion", "usage": USAGE, "choices": [{
        "index": 0, "finish_reason": "stop", "logprobs": None,
        "message": {"role": "assistant", "content": REPLY, "refusal": None, "annotations": []}}]}

    def chunk(delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
        return {**base, "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}]}

    words = REPLY.split(" ")
    chunks = ([chunk({"role": "assistant", "content": "", "refusal": None})]
              + [chunk({"content": w + ("" if i == len(words) - 1 else " ")}) for i, w in enumerate(words)]
              + [chunk({}, "stop")])
    usage_chunk = {**base, "object": "chat.completion.chunk", "choices": [], "usage": USAGE}

    def sse(items: list[dict[str, Any]]) -> bytes:
        return "".join(f"data: {json.dumps(c)}\n\n" for c in items).encode() + b"data: [DONE]\n\n"

    return (_answer(json.dumps(whole).encode(), "application/json"),
            _answer(sse(chunks), "text/event-stream; charset=utf-8"),
            _answer(sse(chunks + [usage_chunk]), "text/event-stream; charset=utf-8"))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client's connection is reused
    disable_nagle_algorithm = True
    answers: tuple[bytes, bytes, bytes] = (b"", b"", b"")

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path != "/v1/chat/completions":
            self.send_error(404)
            return
        whole, stream, stream_usage = self.answers
        if not body.get("stream"):
            self.wfile.write(whole)  # status line, headers and body in one write
        elif (body.get("stream_options") or {}).get("include_usage"):
            self.wfile.write(stream_usage)
        else:
            self.wfile.write(stream)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def start_server() -> tuple[ThreadingHTTPServer, str]:
    _Handler.answers = _responses()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="fake-openai", daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


def serve_in_child() -> None:
    """``--serve``: the same server in a child process; its URL on stdout, until stdin closes."""
    _server, url = start_server()
    print(url, flush=True)
    sys.stdin.read()


@contextlib.contextmanager
def server_url(in_child: bool) -> Iterator[str]:
    if not in_child:
        server, url = start_server()
        try:
            yield url
        finally:
            server.shutdown()
        return
    child = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        yield child.stdout.readline().strip()
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


# -- timing ---------------------------------------------------------------------------------------


_inner = [0]  # ns spent in the client's own create() (and its stream's iterator) by the last call
_commit = [0]  # ns spent in Writer.barrier by the last call, when `commit_split` times it


def install_shim() -> None:
    """Time the client's own `Completions.create`, and a stream's own chunk reading (installed
    before execord patches `create`, so every mode goes through the shim alike, and
    `uninstrument` puts the shim back, not the original)."""
    from openai.resources.chat.completions.completions import Completions

    original = Completions.__dict__["create"]
    clock = time.perf_counter_ns

    def timed(chunks: Iterator[Any]) -> Iterator[Any]:
        while True:
            t0 = clock()
            try:
                chunk = next(chunks)
            except StopIteration:
                _inner[0] += clock() - t0
                return
            _inner[0] += clock() - t0
            yield chunk

    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = clock()
        try:
            result = original(self, *args, **kwargs)
            if hasattr(result, "_iterator"):  # a stream: the client's reading and parsing of its chunks, too
                result._iterator = timed(result._iterator)
            return result
        finally:
            _inner[0] += clock() - t0

    Completions.create = create  # type: ignore[method-assign]


class Mode:
    def __init__(self, name: str, engine: Any, stream: bool):
        self.name, self.engine, self.stream = name, engine, stream
        self.label = name + (" stream" if stream else "")
        self.total: list[int] = []  # ns per call
        self.inline: list[int] = []  # ns per call outside the client's create()
        self.scopes: list[int] = []  # ns per batch: the execution's start and end
        self.commits: list[int] = []  # ns per call in Writer.barrier (`commit_split` only)

    def reset(self) -> None:
        self.total, self.inline, self.scopes, self.commits = [], [], [], []


def batch(mode: Mode, completions: Any, n: int, record: bool = True) -> None:
    """``n`` calls of ``completions.create`` (looked up at each call, as callers do: a bound
    method taken before `instrument` would keep calling the original)."""
    from execord import integrations

    if mode.engine is None:
        integrations.uninstrument(["openai"])
    else:
        integrations.instrument(["openai"])
    clock = time.perf_counter_ns
    total, inline, commits = mode.total, mode.inline, mode.commits
    kwargs = dict(REQUEST, stream=True) if mode.stream else REQUEST
    t_scope = clock()
    scope = contextlib.nullcontext() if mode.engine is None else mode.engine.execution("bench-openai")
    scope.__enter__()
    scope_ns = clock() - t_scope
    try:
        for _ in range(n):
            _inner[0] = _commit[0] = 0
            t0 = clock()
            response = completions.create(**kwargs)
            if mode.stream:
                for _chunk in response:
                    pass
            dt = clock() - t0
            if record:
                total.append(dt)
                inline.append(dt - _inner[0])
                commits.append(_commit[0])
    finally:
        t_end = clock()
        scope.__exit__(None, None, None)
        if record:
            mode.scopes.append(scope_ns + clock() - t_end)


def pct(values: list[int], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] / 1000


def med(values: list[int]) -> float:
    return statistics.median(values) / 1000


# -- the profile ----------------------------------------------------------------------------------


def commit_split(mode: Mode, completions: Any, n: int) -> tuple[float, float, float, float]:
    """One batch without the profiler, the writer's commits timed. Medians per call, µs: in
    line, inside `Writer.barrier` (the SQLite commit of the request event, with the previous
    call's deferred completion events), the rest in line; and the barriers per call."""
    from execord.runtime._writer import Writer

    original = Writer.__dict__["barrier"]
    clock = time.perf_counter_ns
    count = [0]

    def barrier(self: Any, events: Any, blobs: Any) -> bool:
        t0 = clock()
        try:
            return original(self, events, blobs)  # type: ignore[no-any-return]
        finally:
            _commit[0] += clock() - t0
            count[0] += 1

    mode.reset()
    Writer.barrier = barrier  # type: ignore[method-assign]
    try:
        batch(mode, completions, n)
    finally:
        Writer.barrier = original  # type: ignore[method-assign]
    rest = [i - c for i, c in zip(mode.inline, mode.commits, strict=True)]
    return med(mode.inline), med(mode.commits), med(rest), count[0] / n


def profile(mode: Mode, completions: Any, n: int, top: int = 22) -> None:
    inline, commit, rest, barriers = commit_split(mode, completions, n)
    prof = cProfile.Profile()
    prof.enable()
    batch(mode, completions, n, record=False)
    prof.disable()
    st = pstats.Stats(prof)
    entries: dict[Any, Any] = st.stats  # type: ignore[attr-defined]
    import execord

    pkg = str(Path(execord.__file__).resolve().parent) + os.sep

    def ours(key: Any) -> bool:
        return key[0].startswith(pkg)

    def name(key: Any) -> str:
        file, line, fn = key
        if file == "~":
            return fn
        parts = Path(file).parts
        short = "/".join(parts[parts.index("execord"):]) if "execord" in parts else Path(file).name
        return f"{fn} ({short}:{line})"

    def cum(file_test: Callable[[str], bool], names: tuple[str, ...]) -> float:
        return sum(v[3] for k, v in entries.items() if file_test(k[0]) and k[2] in names)

    print(f"\nprofile: {mode.label}, {n} calls under cProfile (calling thread only; cProfile inflates "
          "Python-heavy code more than C calls)")
    w = cum(lambda f: ours((f,)) and f.endswith("openai.py"), ("create", "chunks"))
    i = cum(lambda f: f == __file__, ("create", "timed"))
    print(f"  without the profiler, {n} calls, medians per call: in line {inline:.1f} µs; in Writer.barrier "
          f"{commit:.1f} µs ({barriers:.2f} per call: the SQLite commit before the request); the rest in line "
          f"{rest:.1f} µs")
    print(f"  under the profiler: in the instrumented create{' and its stream' if mode.stream else ''} "
          f"{w / n * 1e6:.1f} µs/call, of which the client's own {i / n * 1e6:.1f}: execord's share "
          f"{(w - i) / n * 1e6:.1f} µs/call")
    print("  top execord functions by cumulative time (µs per benchmark call; calls per benchmark call):")
    for key in sorted((k for k in entries if ours(k)), key=lambda k: -entries[k][3])[:top]:
        cc, nc, tt, ct, _callers = entries[key]
        print(f"    {ct / n * 1e6:8.1f} cum {tt / n * 1e6:7.1f} own {nc / n:6.1f}x  {name(key)}")
    print("  top execord functions by own time:")
    for key in sorted((k for k in entries if ours(k)), key=lambda k: -entries[k][2])[:12]:
        cc, nc, tt, ct, _callers = entries[key]
        print(f"    {tt / n * 1e6:8.1f} own {ct / n * 1e6:7.1f} cum {nc / n:6.1f}x  {name(key)}")
    print("  other code called directly from execord, by own time (the part of its calls made by execord):")
    called = []
    for key, (_cc, _nc, _tt, _ct, callers) in entries.items():
        if ours(key):
            continue
        parts = [v for c, v in callers.items() if ours(c)]
        if parts:
            called.append((sum(p[2] for p in parts), sum(p[3] for p in parts), sum(p[1] for p in parts), key))
    for tt, ct, nc, key in sorted(called, key=lambda c: -c[0])[:12]:
        print(f"    {tt / n * 1e6:8.1f} own {ct / n * 1e6:7.1f} cum {nc / n:6.1f}x  {name(key)}")


# -- server mode ----------------------------------------------------------------------------------

BENCH_KEY = "ek_be0c4be0c4be_integration-overhead-bench-key"


@contextlib.contextmanager
def execord_server(folder: Path) -> Iterator[str]:
    """``execord serve`` over a SQLite file in ``folder``, as a child process: its URL."""
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "EXECORD_ADMIN_KEY": BENCH_KEY}
    child = subprocess.Popen([sys.executable, "-m", "execord", "serve", "--db", str(folder / "server.db"),
                              "--port", str(port), "--log-level", "warning"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or child.poll() is not None:
                    raise SystemExit("execord serve did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        child.terminate()
        child.wait(timeout=30)


# -- main -----------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000, help="timed calls per mode and run")
    ap.add_argument("--rounds", type=int, default=20, help="alternating rounds per run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="then profile the instrumented modes")
    ap.add_argument("--stream", action="store_true", help="also time stream=True calls")
    ap.add_argument("--server-process", action="store_true",
                    help="run the fake server in a child process instead of a thread of this one")
    ap.add_argument("--server-mode", action="store_true",
                    help="also time server mode: the SDK spooling to a local `execord serve` child process, "
                         "with EXECORD_SPOOL_FSYNC=interval and =always")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve_in_child()
        return
    with server_url(args.server_process) as base_url:
        measure(args, base_url)


def measure(args: argparse.Namespace, base_url: str) -> None:
    per_batch = max(1, args.calls // args.rounds)

    import openai

    from execord import Execord, integrations

    folder = Path(tempfile.mkdtemp(prefix="execord-bench-openai-"))
    start = os.getcwd()
    os.chdir(folder)  # no ./execord.yaml of the caller's is picked up
    (folder / "governance.yaml").write_text(GOVERNANCE)
    install_shim()
    client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0)
    completions = client.chat.completions
    plain = Execord(agent="bench", db=str(folder / "plain.db"))
    governed = Execord(agent="bench", db=str(folder / "governed.db"), governance=str(folder / "governance.yaml"))
    modes = [Mode("bare", None, False), Mode("execord", plain, False), Mode("governed", governed, False)]
    engines = [plain, governed]
    stack = contextlib.ExitStack()
    if args.server_mode:
        url = stack.enter_context(execord_server(folder))
        for fsync in ("interval", "always"):
            engine = Execord(agent="bench", url=url, api_key=BENCH_KEY, spool_dir=str(folder / f"spool-{fsync}"),
                             spool_fsync=fsync)
            engines.append(engine)
            modes.append(Mode(f"server {fsync}", engine, False))
    if args.stream:
        modes += [Mode(m.name, m.engine, True) for m in modes[:3]]

    print(f"openai {openai.__version__}, Python {sys.version.split()[0]}; {args.calls:,} calls per mode per run "
          f"in {args.rounds} alternating rounds of {per_batch}, {args.runs} run(s); fake server in "
          f"{'a child process' if args.server_process else 'a thread of this process'}; µs per call")
    for m in modes:  # warm up: connection, imports, stores, the governance version
        batch(m, completions, min(per_batch, 50), record=False)

    overheads: dict[str, list[float]] = {m.label: [] for m in modes if m.engine is not None}
    for run in range(1, args.runs + 1):
        for m in modes:
            m.reset()
        t_run = time.perf_counter()
        with Others() as others:
            for r in range(args.rounds):
                k = r % len(modes)
                for m in modes[k:] + modes[:k]:
                    batch(m, completions, per_batch)
        print(f"\nrun {run} of {args.runs} (other processes used {others.cores:.2f} of "
              f"{os.cpu_count()} cores meanwhile; {time.perf_counter() - t_run:.1f} s)")
        print(f"  {'mode':<16} {'median':>8} {'p90':>8} {'p99':>8} {'overhead':>9} {'in line':>8}")
        bare = {s: next(m for m in modes if m.engine is None and m.stream == s) for s in (False, True)
                if any(m.stream == s for m in modes)}
        for m in modes:
            base = bare[m.stream]
            over = med(m.total) - med(base.total)
            inline = f"{med(m.inline):8.1f}"
            print(f"  {m.label:<16} {med(m.total):8.1f} {pct(m.total, 0.90):8.1f} {pct(m.total, 0.99):8.1f} "
                  f"{'' if m.engine is None else f'{over:+9.1f}':>9} {inline}")
            if m.engine is not None:
                overheads[m.label].append(over)
        scopes = [s for m in modes if m.engine is not None for s in m.scopes]
        print(f"  (not in the per-call figures: each batch's execution start + end, median "
              f"{med(scopes):.0f} µs per {per_batch} calls)")

    print(f"\noverhead per call, median(mode) - median(bare), over {args.runs} run(s); target ≤ {TARGET_US:.0f} µs per call")
    for label, values in overheads.items():
        mid = statistics.median(values)
        print(f"  {label:<16} {mid:+8.1f} µs  (runs: {', '.join(f'{v:+.1f}' for v in values)})  "
              f"target ≤ {TARGET_US:.0f} µs per call: {'met' if mid <= TARGET_US else 'NOT met'}")

    if args.profile:
        for m in modes:
            if m.engine is not None:
                profile(m, completions, min(args.calls, 500))

    integrations.uninstrument(["openai"])
    client.close()
    for engine in engines:
        engine.close()
    stack.close()
    os.chdir(start)
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
