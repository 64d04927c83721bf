"""The pinned price table (execord.governance._prices): exact micro-USD, snapshots, no network.

Expected costs are worked out by hand from the genai-prices 0.2.3 data for each model; each
test first checks that the installed data still says what the arithmetic assumes.
USD per million tokens × tokens = micro-USD.
"""

from __future__ import annotations

import logging
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

from execord.governance import _prices
from execord.governance._prices import (
    FORMAT,
    OVERRIDE_KEYS,
    PriceTable,
    default_table,
    table_from_document,
    with_overrides,
)

ROOT = Path(__file__).resolve().parent.parent


def _gp_model(provider_id: str, model_ref: str) -> Any:
    """The genai-prices model object (bundled data) a ref resolves to."""
    from genai_prices.data import providers
    from genai_prices.data_snapshot import DataSnapshot

    return DataSnapshot(providers=providers, from_auto_update=False).find_provider_model(
        model_ref, None, provider_id, None
    )[1]


def _gp_prices(provider_id: str, model_ref: str) -> dict[str, Any]:
    m = _gp_model(provider_id, model_ref)
    assert not isinstance(m.prices, list), "expected one unconditional price set"
    return {k: v for k, v in vars(m.prices).items() if v is not None}


def _fresh(model: str = "") -> str:
    return f"{model}no-such-model-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return default_table()


# --------------------------------------------------------------------------------------------
# known models, exact integers


def test_gpt_4o_mini_exact(table: PriceTable) -> None:
    assert _gp_prices("openai", "gpt-4o-mini").items() >= {
        "input_mtok": Decimal("0.15"),
        "cache_read_mtok": Decimal("0.075"),
        "output_mtok": Decimal("0.6"),
    }.items()
    # 1200 prompt tokens (OpenAI's prompt_tokens, 1024 of them cached), 340 completion tokens:
    # 176 × 0.15 + 1024 × 0.075 + 340 × 0.6 = 26.4 + 76.8 + 204 = 307.2 → 307
    cost, source = table.price(
        provider="openai", model="gpt-4o-mini", input_tokens=1200, output_tokens=340, cached_input_tokens=1024
    )
    assert (cost, source) == (307, table.price_source)
    assert type(cost) is int
    # a dated alias resolves to the same model and price
    assert table.price(
        provider="openai", model="gpt-4o-mini-2024-07-18", input_tokens=1200, output_tokens=340,
        cached_input_tokens=1024,
    ) == (307, table.price_source)
    # without a provider, genai-prices' model_match ("gpt-" → openai) finds it
    assert table.price(provider=None, model="GPT-4o-mini", input_tokens=1200, output_tokens=340,
                       cached_input_tokens=1024)[0] == 307


def test_claude_sonnet_exact_with_cache_reads_and_writes(table: PriceTable) -> None:
    m = _gp_model("anthropic", "claude-sonnet-4-5-20250929")
    assert m.id == "claude-sonnet-4-5"
    p = vars(m.prices)
    assert (p["input_mtok"].base, p["output_mtok"].base, p["cache_read_mtok"].base,
            p["cache_write_mtok"].base, p["cache_write_1h_mtok"].base) == tuple(
        map(Decimal, ("3", "15", "0.3", "3.75", "6")))
    assert [(t.start, t.price) for t in p["input_mtok"].tiers] == [(200000, Decimal("6"))]
    assert [(t.start, t.price) for t in p["output_mtok"].tiers] == [(200000, Decimal("22.5"))]
    assert [(t.start, t.price) for t in p["cache_read_mtok"].tiers] == [(200000, Decimal("0.6"))]
    assert [(t.start, t.price) for t in p["cache_write_mtok"].tiers] == [(200000, Decimal("7.5"))]

    # Anthropic usage: input_tokens=50 (excludes cache), cache_read=10_000, cache_creation=2_000,
    # output 800. Our input_tokens counts all input: 50 + 10_000 + 2_000 = 12_050.
    # 50 × 3 + 10_000 × 0.3 + 2_000 × 3.75 + 800 × 15 = 150 + 3000 + 7500 + 12000 = 22650
    cost, _ = table.price(
        provider="anthropic", model="claude-sonnet-4-5-20250929", input_tokens=12_050, output_tokens=800,
        cached_input_tokens=10_000, cache_write_tokens=2_000,
    )
    assert cost == 22_650
    # 500 of the 2000 written with the 1-hour TTL: 1500 × 3.75 + 500 × 6 = 5625 + 3000 (was 7500)
    cost, _ = table.price(
        provider="anthropic", model="claude-sonnet-4-5-20250929", input_tokens=12_050, output_tokens=800,
        cached_input_tokens=10_000, cache_write_tokens=2_000, cache_write_1h_tokens=500,
    )
    assert cost == 150 + 3000 + 5625 + 3000 + 12000
    # Passing Anthropic's raw input_tokens (cache excluded) is caught, not mispriced.
    with pytest.raises(ValueError, match="input_tokens must count ALL input tokens"):
        table.price(provider="anthropic", model="claude-sonnet-4-5", input_tokens=50, output_tokens=800,
                    cached_input_tokens=10_000, cache_write_tokens=2_000)


def test_tiered_price_is_a_cliff_on_total_input(table: PriceTable) -> None:
    # 200_000 input tokens is not above the tier start: base prices.
    assert table.price(provider="anthropic", model="claude-sonnet-4-5", input_tokens=200_000,
                       output_tokens=1_000)[0] == 200_000 * 3 + 1_000 * 15
    # 200_001 crosses it: every token of every tiered key pays the tier price, output too.
    # 190_001 × 6 + 10_000 × 0.6 + 1_000 × 22.5 = 1_140_006 + 6_000 + 22_500
    assert table.price(provider="anthropic", model="claude-sonnet-4-5", input_tokens=200_001,
                       output_tokens=1_000, cached_input_tokens=10_000)[0] == 1_140_006 + 6_000 + 22_500


def test_reasoning_is_part_of_output_and_never_double_counted(table: PriceTable) -> None:
    assert _gp_prices("openai", "o4-mini").items() >= {
        "input_mtok": Decimal("1.1"), "output_mtok": Decimal("4.4"), "cache_read_mtok": Decimal("0.275")}.items()
    assert "output_reasoning_mtok" not in _gp_prices("openai", "o4-mini")
    # OpenAI: completion_tokens=1000 includes reasoning_tokens=600 → 1000 output tokens billed.
    # 2000 × 1.1 + 1000 × 4.4 = 2200 + 4400
    with_reasoning = table.price(provider="openai", model="o4-mini", input_tokens=2000, output_tokens=1000,
                                 reasoning_tokens=600)
    without = table.price(provider="openai", model="o4-mini", input_tokens=2000, output_tokens=1000)
    assert with_reasoning == without == (6600, table.price_source)
    with pytest.raises(ValueError, match="output_tokens must count ALL output tokens"):
        table.price(provider="openai", model="o4-mini", input_tokens=2000, output_tokens=400, reasoning_tokens=600)

    # A model with its own reasoning price: the reasoning part is billed at it, the rest at output.
    assert _gp_prices("perplexity", "sonar-deep-research").items() >= {
        "input_mtok": Decimal("2"), "output_mtok": Decimal("8"), "output_reasoning_mtok": Decimal("3")}.items()
    # 1000 × 2 + 600 × 8 + 400 × 3 = 2000 + 4800 + 1200
    assert table.price(provider="perplexity", model="sonar-deep-research", input_tokens=1000,
                       output_tokens=1000, reasoning_tokens=400)[0] == 8000


def test_cached_tokens_are_cheaper(table: PriceTable) -> None:
    costs = [
        table.price(provider="openai", model="gpt-4o", input_tokens=100_000, output_tokens=100,
                    cached_input_tokens=cached)[0]
        for cached in (0, 10_000, 50_000, 100_000)
    ]
    assert costs == sorted(costs, reverse=True) and len(set(costs)) == 4
    # gpt-4o: $2.5 input, $1.25 cached, $10 output
    assert costs[0] == 250_000 + 1_000 and costs[-1] == 125_000 + 1_000


def test_model_without_cache_pricing_bills_cache_reads_as_input(table: PriceTable) -> None:
    p = _gp_prices("perplexity", "sonar")
    assert p == {"input_mtok": Decimal("1"), "output_mtok": Decimal("1"), "requests_kcount": Decimal("12")}
    # 1000 × 1 (500 of them cached: no cache price → input price) + 10 × 1 + one request at
    # $12 per 1000 requests = 12_000 micro-USD
    assert table.price(provider="perplexity", model="sonar", input_tokens=1000, output_tokens=10,
                       cached_input_tokens=500)[0] == 1000 + 10 + 12_000


def test_time_dependent_prices(table: PriceTable) -> None:
    m = _gp_model("openai", "o3")
    assert [(c.constraint and c.constraint.start_date.isoformat(), c.prices.input_mtok, c.prices.output_mtok)
            for c in m.prices] == [(None, Decimal("10"), Decimal("40")), ("2025-06-10", Decimal("2"), Decimal("8"))]
    kw: dict[str, Any] = dict(provider="openai", model="o3", input_tokens=1000, output_tokens=1000)
    assert table.price(**kw, at=datetime(2025, 6, 9, 23, 59, tzinfo=UTC))[0] == 50_000
    assert table.price(**kw, at=datetime(2025, 6, 10, 0, 0, tzinfo=UTC))[0] == 10_000
    assert table.price(**kw, at=datetime(2025, 6, 10))[0] == 10_000  # naive = UTC
    assert table.price(**kw)[0] == 10_000  # now

    # DeepSeek's daily window (UTC 00:30-16:30 standard, off-peak otherwise)
    m = _gp_model("deepseek", "deepseek-chat")
    assert [(c.constraint and (c.constraint.start_time.isoformat(), c.constraint.end_time.isoformat()),
             c.prices.input_mtok) for c in m.prices] == [
        (None, Decimal("0.135")), (("00:30:00+00:00", "16:30:00+00:00"), Decimal("0.27"))]
    kw = dict(provider="deepseek", model="deepseek-chat", input_tokens=1_000_000, output_tokens=0)
    assert table.price(**kw, at=datetime(2026, 1, 1, 12, 0, tzinfo=UTC))[0] == 270_000
    assert table.price(**kw, at=datetime(2026, 1, 1, 17, 0, tzinfo=UTC))[0] == 135_000
    assert table.price(**kw, at=datetime(2026, 1, 1, 0, 29, 59, tzinfo=UTC))[0] == 135_000


def test_rounding_is_half_up_once(table: PriceTable) -> None:
    # gpt-4o-mini input $0.15/Mtok: n tokens cost 0.15·n micro-USD
    def cost(n: int, out: int = 0) -> int | None:
        return table.price(provider="openai", model="gpt-4o-mini", input_tokens=n, output_tokens=out)[0]

    assert [cost(n) for n in (0, 1, 3, 4, 10, 30, 70)] == [0, 0, 0, 1, 2, 5, 11]  # 0.45→0, 0.6→1, 1.5→2, 10.5→11
    # rounded once on the sum, not per part: 3 input (0.45) + 1 output (0.6) = 1.05 → 1
    assert cost(3, 1) == 1
    # 10 input (1.5) + 1 output (0.6) = 2.1 → 2, where rounding each part would give 2 + 1 = 3
    assert cost(10, 1) == 2


def test_free_models_cost_zero(table: PriceTable) -> None:
    m = _gp_model("openrouter", "qwen/qwq-32b:free")
    assert not any(v is not None for v in vars(m.prices).values())
    assert table.price(provider="openrouter", model="qwen/qwq-32b:free", input_tokens=5000,
                       output_tokens=5000) == (0, table.price_source)


# --------------------------------------------------------------------------------------------
# unknown


def test_unknown_model_gets_no_cost_and_one_warning(table: PriceTable, caplog: pytest.LogCaptureFixture) -> None:
    model = _fresh()
    with caplog.at_level(logging.WARNING, logger="execord"):
        for _ in range(5):
            assert table.price(provider="openai", model=model, input_tokens=10, output_tokens=10) == (None, "unknown")
        for _ in range(3):  # another (provider, model) pair warns once more
            assert table.price(provider=None, model=model, input_tokens=10, output_tokens=10) == (None, "unknown")
        # a fresh table (same process) does not warn again for the same pair
        assert table_from_document(table.document()).price(
            provider="openai", model=model, input_tokens=1, output_tokens=1) == (None, "unknown")
    records = [r for r in caplog.records if model in r.getMessage()]
    assert len(records) == 2
    assert all(r.name == "execord" and r.levelno == logging.WARNING for r in records)
    assert "unknown" in records[0].getMessage()


def test_unknown_provider_and_wrong_provider(table: PriceTable, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="execord"):
        assert table.price(provider=_fresh("prov-"), model="gpt-4o-mini", input_tokens=1,
                           output_tokens=1) == (None, "unknown")
        # genai-prices does not look in another provider's list (only declared fallbacks)
        assert table.price(provider="openai", model="claude-sonnet-4-5", input_tokens=1,
                           output_tokens=1) == (None, "unknown")
    # declared fallbacks work: Azure serves OpenAI models, Google Vertex serves Anthropic ones
    assert table.price(provider="azure", model="gpt-4o-mini", input_tokens=1000, output_tokens=0)[0] == 150
    assert table.price(provider="gcp.vertex_ai", model="claude-sonnet-4-5", input_tokens=1000,
                       output_tokens=0)[0] == 3000


def test_tokens_a_model_has_no_token_price_for_are_unknown(
    table: PriceTable, caplog: pytest.LogCaptureFixture
) -> None:
    # whisper-1 is priced per audio hour, not per token
    assert "input_mtok" not in _gp_prices("openai", "whisper-1")
    with caplog.at_level(logging.WARNING, logger="execord"):
        assert table.price(provider="openai", model="whisper-1", input_tokens=100,
                           output_tokens=0) == (None, "unknown")
        # even with no tokens at all: its cost is in audio hours, not zero
        assert table.price(provider="openai", model="whisper-1", input_tokens=0,
                           output_tokens=0) == (None, "unknown")
        # an embedding model has no output price: output tokens cannot be priced
        assert table.price(provider="openai", model="text-embedding-3-small", input_tokens=1000,
                           output_tokens=5) == (None, "unknown")
    assert table.price(provider="openai", model="text-embedding-3-small", input_tokens=1_000_000,
                       output_tokens=0) == (20_000, table.price_source)
    assert sum("whisper-1" in r.getMessage() for r in caplog.records) <= 1


def test_provider_names_resolve_like_genai_prices(table: PriceTable) -> None:
    # OpenTelemetry gen_ai.system / gen_ai.provider.name values
    for provider in ("openai", "OpenAI ", "az.ai.openai", "azure"):
        assert table.price(provider=provider, model="gpt-4o-mini", input_tokens=1000, output_tokens=0)[0] == 150
    assert table.price(provider="aws.bedrock", model="anthropic.claude-3-5-sonnet-20240620-v1:0",
                       input_tokens=1000, output_tokens=0)[0] == 3000
    assert table.knows(provider="xai", model="grok-4")
    assert table.knows(provider="mistral_ai", model="mistral-large-latest")
    assert table.knows(provider="litellm", model="anthropic/claude-sonnet-4-5")
    # compact dates are retried in their dashed form
    assert table.knows(provider="openai", model="gpt-4o-mini-20240718")


def test_lookup_parity_with_genai_prices(table: PriceTable) -> None:
    """Every model id and alias in the data resolves to the model genai-prices picks."""
    from genai_prices.data import providers
    from genai_prices.data_snapshot import DataSnapshot

    snap = DataSnapshot(providers=providers, from_auto_update=False)
    refs: list[tuple[str | None, str]] = []

    def equals(clause: Any) -> list[str]:
        if hasattr(clause, "equals"):
            return [clause.equals]
        if hasattr(clause, "starts_with"):
            return [clause.starts_with + "-x"]
        return [s for c in getattr(clause, "or_", ()) for s in equals(c)]

    for p in providers:
        for m in p.models:
            for ref in [m.id, *equals(m.match)]:
                refs += [(p.id, ref), (None, ref)]
    refs += [("litellm", "openai/gpt-4o"), ("bedrock", "amazon.nova-pro-v1:0"), ("nope", "gpt-4o")]
    assert len(refs) > 5000
    for provider, ref in refs:
        try:
            expected = snap.find_provider_model(ref, None, provider, None)[1].id
        except LookupError:
            expected = None
        found = table._resolve(provider, ref)
        assert (found.id if found else None) == expected, (provider, ref)


def test_price_parity_with_genai_prices(table: PriceTable) -> None:
    """Over every model in the data, our integer equals genai-prices' Decimal, rounded half up."""
    from genai_prices.data import providers
    from genai_prices.types import Usage

    rng = random.Random(7)
    stamps = [datetime(2024, 1, 1, 12, tzinfo=UTC), datetime(2025, 7, 1, 2, tzinfo=UTC),
              datetime(2026, 11, 22, 3, tzinfo=UTC), datetime(2026, 11, 22, 12, tzinfo=UTC)]
    priced = 0
    for p in providers:
        for m in p.models:
            if table._resolve(p.id, m.id) is None or _gp_model(p.id, m.id) is not m:
                continue
            for _ in range(2):
                inp = rng.choice([0, 10, 1000, 150_000, 250_000, 1_234_567])
                cr = rng.randint(0, inp // 3)
                cw = rng.randint(0, (inp - cr) // 2)
                cw1h = rng.randint(0, cw)
                out = rng.choice([0, 7, 999, 12345])
                rs = rng.randint(0, out)
                at = rng.choice(stamps)
                ours, _ = table.price(
                    provider=p.id, model=m.id, input_tokens=inp, output_tokens=out, cached_input_tokens=cr,
                    cache_write_tokens=cw, cache_write_1h_tokens=cw1h, reasoning_tokens=rs, at=at,
                )
                if ours is None:  # tokens of a kind this model has no price for
                    continue
                usage = Usage(input_tokens=inp, cache_read_tokens=cr, cache_write_tokens=cw,
                              cache_write_1h_tokens=cw1h, output_tokens=out, output_reasoning_tokens=rs)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    theirs = m.calc_price(usage, p, genai_request_timestamp=at).total_price
                assert ours == int((theirs * 1_000_000).quantize(Decimal(1), ROUND_HALF_UP)), (p.id, m.id, usage)
                priced += 1
    assert priced > 3000


# --------------------------------------------------------------------------------------------
# argument checks


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"input_tokens": -1}, ValueError, "input_tokens must not be negative"),
        ({"output_tokens": 1.0}, TypeError, "output_tokens must be an int"),
        ({"cached_input_tokens": True}, TypeError, "cached_input_tokens must be an int"),
        ({"cached_input_tokens": 6, "cache_write_tokens": 5}, ValueError, "exceed input_tokens"),
        ({"cache_write_tokens": 2, "cache_write_1h_tokens": 3}, ValueError, "exceed cache_write_tokens"),
        ({"reasoning_tokens": 11}, ValueError, "exceed output_tokens"),
    ],
)
def test_bad_counts_raise(table: PriceTable, kwargs: dict[str, Any], exc: type[Exception], match: str) -> None:
    args: dict[str, Any] = {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 10, "output_tokens": 10}
    with pytest.raises(exc, match=match):
        table.price(**{**args, **kwargs})


# --------------------------------------------------------------------------------------------
# snapshot, digest, round trip


def test_source_digest_and_price_source(table: PriceTable) -> None:
    from importlib.metadata import version

    v = version("genai-prices")
    assert table.source == f"genai-prices {v}"
    assert table.digest.startswith("sha256:") and len(table.digest) == 71
    assert table.price_source == f"genai-prices@{v}#{table.digest[7:19]}"
    assert default_table() is table  # cached per process


def test_same_data_same_digest(table: PriceTable) -> None:
    rebuilt = _prices._make_table(_prices._genai_prices_document())
    assert rebuilt.digest == table.digest and rebuilt == table
    import hashlib

    from execord.record import canonical_json

    assert table.digest == "sha256:" + hashlib.sha256(canonical_json(table.document())).hexdigest()
    assert table.canonical() == canonical_json(table.document())


def test_document_is_plain_json_with_exact_decimals(table: PriceTable) -> None:
    doc = table.document()
    assert doc["format"] == FORMAT and doc["overrides"] == {}
    openai = next(p for p in doc["providers"] if p["id"] == "openai")
    mini = next(m for m in openai["models"] if m["id"] == "gpt-4o-mini")
    assert mini["prices"] == [{"when": None, "prices": {"input_mtok": "0.15", "output_mtok": "0.6",
                                                         "cache_read_mtok": "0.075"}}]

    def no_floats(x: Any) -> None:
        assert not isinstance(x, float)
        for v in x.values() if isinstance(x, dict) else x if isinstance(x, list) else ():
            no_floats(v)

    no_floats(doc)
    # a copy: mutating it changes nothing
    mini["prices"][0]["prices"]["input_mtok"] = "999"
    assert table.price(provider="openai", model="gpt-4o-mini", input_tokens=1000, output_tokens=0)[0] == 150
    assert table.document() != doc


def test_round_trip_prices_identically(table: PriceTable) -> None:
    import json

    stored = json.loads(json.dumps(table.document()))  # as a store would keep it
    again = table_from_document(stored)
    assert again.digest == table.digest and again.source == table.source
    assert again.price_source == table.price_source
    rng = random.Random(3)
    doc = table.document()
    samples = [(p["id"], m["id"]) for p in doc["providers"] for m in p["models"]]
    for provider, model in rng.sample(samples, 400):
        inp = rng.randint(0, 300_000)
        kw: dict[str, Any] = dict(provider=provider, model=model, input_tokens=inp, output_tokens=rng.randint(0, 5000),
                                  cached_input_tokens=rng.randint(0, inp // 2), at=datetime(2026, 3, 1, 2, tzinfo=UTC))
        assert again.price(**kw) == table.price(**kw)


def test_bad_documents_raise() -> None:
    good = default_table().document()
    with pytest.raises(ValueError, match="unsupported format"):
        table_from_document({**good, "format": "execord.prices/99"})
    bad = default_table().document()
    bad["providers"][0]["models"][0]["prices"][0]["prices"]["input_mtok"] = 3.0
    with pytest.raises(ValueError, match="expected a decimal string"):
        table_from_document(bad)
    bad = default_table().document()
    bad["providers"][0]["models"][0]["prices"][0]["prices"]["audio_hours"] = "1"
    with pytest.raises(ValueError, match="unknown price key"):
        table_from_document(bad)
    bad = default_table().document()
    bad["providers"][0]["models"][0]["match"] = {"regex": "("}
    with pytest.raises(ValueError, match="bad regex"):
        table_from_document(bad)
    bad = default_table().document()
    bad["overrides"] = {"My-Model": {"input_per_mtok_usd": "1", "output_per_mtok_usd": "1"}}
    with pytest.raises(ValueError, match="lower-case"):
        table_from_document(bad)
    bad["overrides"] = {"m": {"input_per_mtok_usd": "1"}}
    with pytest.raises(ValueError, match="missing output_per_mtok_usd"):
        table_from_document(bad)
    bad = default_table().document()
    bad["providers"][0]["models"][0]["prices"][0]["when"] = {"start_date": "yesterday"}
    with pytest.raises(ValueError, match="when"):
        table_from_document(bad)
    with pytest.raises(ValueError):
        table_from_document([])  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# overrides


def test_overrides_add_and_replace_prices(table: PriceTable) -> None:
    t = with_overrides(table, {
        "my-finetune": {"input_per_mtok_usd": 1, "output_per_mtok_usd": "2.5", "cached_input_per_mtok_usd": 0.1,
                        "per_request_usd": 0.001},
        "GPT-4o-mini": {"input_per_mtok_usd": 0.3, "output_per_mtok_usd": 1.2},
    })
    assert t.source == table.source + "+overrides"
    assert t.price_source.startswith(f"{table.source.replace(' ', '@')}+overrides#")
    assert t.digest != table.digest
    # 1000 × 1 − 400 cached: 600 × 1 + 400 × 0.1 + 100 × 2.5 + 1000 per request
    assert t.price(provider="whatever", model="my-finetune", input_tokens=1000, output_tokens=100,
                   cached_input_tokens=400) == (600 + 40 + 250 + 1000, t.price_source)
    # the override wins over genai-prices, for any provider, case-insensitively
    assert t.price(provider="openai", model="gpt-4o-mini", input_tokens=1000, output_tokens=1000)[0] == 1500
    # defaults: no cached price → input price; no reasoning price → output price
    assert t.price(provider=None, model="GPT-4O-MINI", input_tokens=1000, output_tokens=1000,
                   cached_input_tokens=1000, reasoning_tokens=500)[0] == 1500
    # the rest still comes from genai-prices
    assert t.price(provider="openai", model="gpt-4o", input_tokens=1000, output_tokens=0)[0] == 2500
    # the base table is untouched
    assert table.price(provider="openai", model="gpt-4o-mini", input_tokens=1000, output_tokens=1000)[0] == 750
    # the overrides are in the snapshot and survive the round trip
    again = table_from_document(t.document())
    assert again.digest == t.digest and again.source == t.source
    assert again.price(provider="x", model="my-finetune", input_tokens=10, output_tokens=10) == \
        t.price(provider="x", model="my-finetune", input_tokens=10, output_tokens=10)
    assert t.document()["overrides"]["gpt-4o-mini"] == {"input_per_mtok_usd": "0.3", "output_per_mtok_usd": "1.2"}


def test_override_digest_depends_only_on_the_prices(table: PriceTable) -> None:
    a = with_overrides(table, {"m": {"input_per_mtok_usd": 0.15, "output_per_mtok_usd": 1}})
    b = with_overrides(table, {"m": {"output_per_mtok_usd": "1.000", "input_per_mtok_usd": "0.15"}})
    c = with_overrides(table, {"m": {"input_per_mtok_usd": 0.16, "output_per_mtok_usd": 1}})
    d = with_overrides(table, {"n": {"input_per_mtok_usd": 0.15, "output_per_mtok_usd": 1}})
    assert a.digest == b.digest
    assert len({table.digest, a.digest, c.digest, d.digest}) == 4
    assert with_overrides(table, {}) is table
    # successive overrides merge; the later one wins
    merged = with_overrides(a, {"m": {"input_per_mtok_usd": 0.16, "output_per_mtok_usd": 1}})
    assert merged.digest == c.digest and merged.source.count("+overrides") == 1


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"m": {"input_per_mtok_usd": 1}}, r"pricing\.m: missing output_per_mtok_usd"),
        ({"m": {"input_per_mtok": 1, "output_per_mtok_usd": 1}}, r"unknown key 'input_per_mtok'; did you mean 'input_per_mtok_usd'"),
        ({"m": {"input_per_mtok_usd": -1, "output_per_mtok_usd": 1}}, r"pricing\.m\.input_per_mtok_usd: the amount must not be negative"),
        ({"m": {"input_per_mtok_usd": float("nan"), "output_per_mtok_usd": 1}}, "must be finite"),
        ({"m": {"input_per_mtok_usd": float("inf"), "output_per_mtok_usd": 1}}, "must be finite"),
        ({"m": {"input_per_mtok_usd": "cheap", "output_per_mtok_usd": 1}}, r"expected an amount in USD \(a number\), got 'cheap'"),
        ({"m": {"input_per_mtok_usd": True, "output_per_mtok_usd": 1}}, "expected an amount in USD"),
        ({"m": {"input_per_mtok_usd": None, "output_per_mtok_usd": 1}}, "expected an amount in USD"),
        ({"m": 0.5}, r"pricing\.m: expected a mapping of prices"),
        ({"": {"input_per_mtok_usd": 1, "output_per_mtok_usd": 1}}, "a model name must be a non-empty string"),
        ({"M": {"input_per_mtok_usd": 1, "output_per_mtok_usd": 1},
          "m": {"input_per_mtok_usd": 1, "output_per_mtok_usd": 1}}, "name the same model"),
    ],
)
def test_bad_overrides_raise(table: PriceTable, overrides: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        with_overrides(table, overrides)


def test_override_keys_are_documented() -> None:
    assert set(OVERRIDE_KEYS) == {
        "input_per_mtok_usd", "output_per_mtok_usd", "cached_input_per_mtok_usd", "cache_write_per_mtok_usd",
        "cache_write_1h_per_mtok_usd", "reasoning_per_mtok_usd", "per_request_usd",
    }
    for key in OVERRIDE_KEYS:
        assert key in (_prices.__doc__ or "")


# --------------------------------------------------------------------------------------------
# no network, no updater


def _block_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every new socket, connection and DNS lookup raises (and is counted)."""
    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise OSError("network is blocked in this test")

    class BlockedSocket(socket.socket):  # a class, so that ssl.SSLSocket can still subclass it
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            refuse(*args)

    monkeypatch.setattr(socket, "socket", BlockedSocket)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_no_network_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts = _block_network(monkeypatch)
    monkeypatch.setattr(_prices, "_default", None)  # build it again, under the block
    t = default_table()
    assert t.price(provider="openai", model="gpt-4o-mini", input_tokens=1000, output_tokens=0)[0] == 150
    assert t.price(provider=None, model=_fresh(), input_tokens=1, output_tokens=1) == (None, "unknown")
    table_from_document(t.document())
    with_overrides(t, {"m": {"input_per_mtok_usd": 1, "output_per_mtok_usd": 1}})
    assert attempts == []
    # genai-prices' background updater (UpdatePrices) was never started
    from genai_prices import update_prices

    assert update_prices._shared_updater.ref_count == 0 and update_prices._shared_updater.thread is None
    assert not any(th.name == "genai_prices:update" for th in threading.enumerate())


def test_a_live_genai_prices_snapshot_does_not_change_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    """UpdatePrices swaps genai-prices' process-wide snapshot; we read the bundled data."""
    from genai_prices import data_snapshot

    before = default_table().digest
    monkeypatch.setattr(data_snapshot, "_custom_snapshot", data_snapshot.DataSnapshot([], from_auto_update=True))
    monkeypatch.setattr(_prices, "_default", None)
    assert default_table().digest == before


def test_no_network_fresh_process() -> None:
    """Import, snapshot and price in a new interpreter whose sockets all refuse."""
    code = """
import socket, sys
def refuse(*a, **k):
    print("NETWORK", a, file=sys.stderr)
    raise OSError("blocked")
class BlockedSocket(socket.socket):
    def __init__(self, *a, **k):
        refuse(*a)
socket.socket = BlockedSocket
socket.create_connection = refuse
socket.getaddrinfo = refuse
from execord.governance._prices import default_table
t = default_table()
print(t.price(provider="openai", model="gpt-4o-mini", input_tokens=1000, output_tokens=1000)[0])
print(t.price(provider=None, model="nope-model", input_tokens=1, output_tokens=1))
import threading
print(sorted(th.name for th in threading.enumerate()))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "NETWORK" not in r.stderr
    assert r.stdout.splitlines() == ["750", "(None, 'unknown')", "['MainThread']"]


# --------------------------------------------------------------------------------------------
# speed (loose bounds; the figures are reported in docs/benchmarks.md)


def test_price_is_fast(table: PriceTable) -> None:
    kw: dict[str, Any] = dict(provider="anthropic", model="claude-sonnet-4-5", input_tokens=12_050,
                              output_tokens=800, cached_input_tokens=10_000, cache_write_tokens=2_000)
    table.price(**kw)
    n = 20_000
    t0 = time.perf_counter()
    for _ in range(n):
        table.price(**kw)
    per_call_us = (time.perf_counter() - t0) / n * 1e6
    assert per_call_us < 100, per_call_us
