"""The pinned price table: integer micro-USD cost of an LLM call (DESIGN §3, §5).

Where the prices come from
    `default_table()` snapshots the price data bundled in the installed ``genai-prices``
    package. That data ships as a generated Python module (``genai_prices/data.py``, a list of
    ``Provider`` objects); we read that module directly and never call
    ``genai_prices.calc_price``, whose process-wide snapshot can be replaced by
    ``genai_prices.UpdatePrices`` (an opt-in background thread that downloads fresh prices from
    GitHub every hour). Nothing here starts that updater or touches the network: the table is
    exactly the data of the installed version, and `PriceTable.document()` is a plain JSON
    snapshot of it that the governance version stores. `table_from_document()` rebuilds a
    table from such a snapshot, so an old governance version prices exactly as it did.

What the snapshot holds
    Only what pricing needs: for every provider its id, how a provider name and a model id
    select it (genai-prices' match clauses, verbatim), its fallback providers, and for every
    model its match clause and its price schedule, restricted to the price keys below. Prices
    are decimal strings (never floats), so the digest (``sha256:`` of the RFC 8785 canonical
    JSON) is exact and stable. The governance file's overrides are part of the snapshot.

Usage semantics (one convention, the one the record's ``usage`` uses)
    - ``input_tokens`` is ALL input tokens of the call, cache reads and cache writes included.
      That is OpenAI's ``prompt_tokens`` / ``input_tokens`` (which include
      ``cached_tokens``) and genai-prices' own convention, so the record's ``usage`` of a
      step can be passed to `PriceTable.price` as it is.
      Anthropic reports ``input_tokens`` WITHOUT cache reads and writes: pass
      ``input_tokens + cache_read_input_tokens + cache_creation_input_tokens`` (as
      genai-prices' own Anthropic extractor does).
    - ``cached_input_tokens`` (cache reads) and ``cache_write_tokens`` (cache creation) are
      parts of ``input_tokens``; ``cache_write_1h_tokens`` is the part of
      ``cache_write_tokens`` written with Anthropic's 1-hour TTL.
    - ``output_tokens`` is ALL output tokens, reasoning included (OpenAI's
      ``completion_tokens`` includes ``reasoning_tokens``; Anthropic's ``output_tokens``
      includes thinking). ``reasoning_tokens`` is the part of ``output_tokens`` spent reasoning;
      it is never billed on top. (Gemini reports ``thoughts_token_count`` apart from
      ``candidates_token_count``: add them to get ``output_tokens``.)
    - A part larger than its whole (cache reads + writes > input, reasoning > output) is a
      caller bug and raises ``ValueError``: it would otherwise price wrongly.

How a call is priced
    Each token is billed once, at the most specific price the model has, as genai-prices does:
    cache reads at the cache-read price, cache writes at the cache-write price (1-hour writes
    at the 1-hour price), reasoning at the reasoning price, and the rest of the input and
    output at the input and output prices. A part whose model has no specific price is billed
    at its whole's price (cache reads of a model without cache pricing cost full input price;
    reasoning costs the output price, which is the usual case). A per-request fee
    (``requests_kcount``) is added once per call.

    USD per million tokens times tokens is micro-USD, so the exact cost is
    ``sum(tokens * usd_per_mtok) + request_fee_micros``, computed in exact integer arithmetic
    (every price is an exact decimal), then rounded ONCE, half up, to an integer micro-USD.

    Tiered prices (e.g. Claude Sonnet 4.5 or Gemini 2.5 Pro above 200k prompt tokens) follow
    genai-prices' cliff rule: when the call's total ``input_tokens`` exceeds a tier's start,
    that tier's price applies to all tokens of that price key.

    Time-dependent prices are kept whole in the snapshot (the digest does not depend on the
    day it was built): a model's prices are a list of periods, each unconstrained, from a UTC
    start date, or within a daily UTC time window (DeepSeek's peak/off-peak prices). As in
    genai-prices, the last period in force at the call's time wins, else the first. The call's
    time is ``at`` (default: now). To re-price a recorded call exactly, pass its recorded time.

    A model for which genai-prices lists no price at all (``:free`` variants, models included
    in a subscription) is free: the snapshot gives it explicit zero input and output prices.

    Not priced: tool fees that have no token count here (web searches, file search, code
    execution), audio/image token prices (all tokens are priced as text), and request-context
    variants (batch, flex or priority tiers): the standard price applies.

What is unknown
    A model (or provider) the table cannot find, a model priced in no tokens at all (e.g. per
    audio hour or per character), or a call with tokens of a kind the model has no price for
    (e.g. output tokens of an embedding model), gets no cost:
    ``(None, "unknown")``, and ONE warning per (provider, model) per process on the
    ``execord`` logger. Never a wrong number.

Model matching follows genai-prices: model ids are compared lower-cased; a provider name is
matched against provider ids and their ``provider_match`` clauses (so ``aws.bedrock``,
``gcp.vertex_ai``, ``xai``, ``mistral_ai`` resolve); without a provider, the first provider
whose ``model_match`` accepts the model is used; a provider's first matching model wins,
then its fallback providers' models (Azure → OpenAI, …); a compact date suffix
(``-20251211``) is retried as ``-2025-12-11``; provider ``litellm`` with ``provider/model``
splits the two.

Overrides (the governance file's ``pricing:`` section)
    ``model -> {key: amount}``, amounts in USD as int, float or decimal string, finite and
    non-negative. The model id is matched exactly (case-insensitively) and wins over
    genai-prices for any provider. Keys (`OVERRIDE_KEYS`):

    - ``input_per_mtok_usd`` (required): input tokens;
    - ``output_per_mtok_usd`` (required): output tokens;
    - ``cached_input_per_mtok_usd``: cache reads (default: the input price);
    - ``cache_write_per_mtok_usd``: cache writes (default: the input price);
    - ``cache_write_1h_per_mtok_usd``: 1-hour cache writes (default: the cache-write price);
    - ``reasoning_per_mtok_usd``: reasoning tokens (default: the output price);
    - ``per_request_usd``: a fee per call (default: none).
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from ..record import canonical_json

__all__ = [
    "FORMAT",
    "OVERRIDE_KEYS",
    "PriceTable",
    "default_table",
    "table_from_document",
    "with_overrides",
]

FORMAT = "execord.prices/1"
"""The snapshot format this module writes and reads."""

log = logging.getLogger("execord")

# genai-prices price keys the snapshot keeps (the rest price usage this API has no count for).
_GP_KEYS = (
    "input_mtok",
    "output_mtok",
    "cache_read_mtok",
    "cache_write_mtok",
    "cache_write_1h_mtok",
    "output_reasoning_mtok",
    "requests_kcount",
)

OVERRIDE_KEYS: dict[str, str] = {
    "input_per_mtok_usd": "USD per million input tokens (required)",
    "output_per_mtok_usd": "USD per million output tokens (required)",
    "cached_input_per_mtok_usd": "USD per million cache-read input tokens (default: input price)",
    "cache_write_per_mtok_usd": "USD per million cache-write input tokens (default: input price)",
    "cache_write_1h_per_mtok_usd": "USD per million 1-hour cache-write tokens (default: cache-write price)",
    "reasoning_per_mtok_usd": "USD per million reasoning tokens (default: output price)",
    "per_request_usd": "USD per call (default: none)",
}
_REQUIRED_OVERRIDE_KEYS = ("input_per_mtok_usd", "output_per_mtok_usd")

_DEC_RE = re.compile(r"^[0-9]+(?:\.[0-9]+)?$")
_DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_TIME_RE = re.compile(r"^[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?$")
_COMPACT_DATE_RE = re.compile(r"(-)(20\d{2})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(?=-|:|$)")
_CACHE_LIMIT = 10_000  # distinct (provider, model) lookups kept per table


# ---------------------------------------------------------------------------------------------
# exact amounts


def _dec_str(d: Decimal) -> str:
    """A non-negative finite Decimal as a plain decimal string without redundant zeros."""
    return format(d.normalize(), "f")


def _parse_doc_decimal(value: Any, where: str) -> Decimal:
    if not isinstance(value, str) or not _DEC_RE.match(value):
        raise ValueError(f"price snapshot: {where}: expected a decimal string like '0.15', got {value!r}")
    return Decimal(value)


_MAX_PRICE = Decimal(1_000_000)  # USD per million tokens or per request; it keeps costs within exact integers
_PRICE_PLACES = 20


def _parse_amount(value: Any, where: str) -> Decimal:
    """An override amount (int, float, decimal string) as an exact non-negative Decimal."""
    if isinstance(value, bool):
        raise ValueError(f"{where}: expected an amount in USD (a number), got {value!r}")
    try:
        if isinstance(value, int):
            d = Decimal(value)
        elif isinstance(value, float):
            d = Decimal(repr(value))  # the shortest decimal that round-trips: 0.15 -> 0.15
        elif isinstance(value, Decimal):
            d = value
        elif isinstance(value, str):
            d = Decimal(value.strip().lstrip("$").replace("_", ""))
        else:
            raise ValueError
    except (InvalidOperation, ValueError):
        raise ValueError(f"{where}: expected an amount in USD (a number), got {value!r}") from None
    if not d.is_finite():
        raise ValueError(f"{where}: the amount must be finite, got {value!r}")
    if d < 0:
        raise ValueError(f"{where}: the amount must not be negative, got {value!r}")
    if d > _MAX_PRICE:
        raise ValueError(f"{where}: the amount is too large, got {value!r}: at most {_MAX_PRICE:,} USD")
    if d != d.quantize(Decimal(1).scaleb(-_PRICE_PLACES)):
        raise ValueError(f"{where}: the amount has more than {_PRICE_PLACES} decimal places, got {value!r}")
    return d


# ---------------------------------------------------------------------------------------------
# match clauses (genai-prices' MatchLogic, as plain JSON)

_Matcher = Callable[[str], bool]


def _clause_doc(clause: Any) -> dict[str, Any] | None:
    """A genai-prices clause object as its JSON form."""
    if clause is None:
        return None
    name = type(clause).__name__
    simple = {
        "ClauseStartsWith": "starts_with",
        "ClauseEndsWith": "ends_with",
        "ClauseContains": "contains",
        "ClauseRegex": "regex",
        "ClauseEquals": "equals",
    }
    if name in simple:
        key = simple[name]
        return {key: getattr(clause, key)}
    if name == "ClauseOr":
        return {"or": [_clause_doc(c) for c in clause.or_]}
    if name == "ClauseAnd":
        return {"and": [_clause_doc(c) for c in clause.and_]}
    raise ValueError(f"genai-prices: unsupported match clause {clause!r}")


def _compile_clause(doc: Any, where: str) -> _Matcher:
    """A clause as a predicate over a lower-cased string (genai-prices' semantics)."""
    if not isinstance(doc, dict) or len(doc) != 1:
        raise ValueError(f"price snapshot: {where}: a match clause is a mapping with one key, got {doc!r}")
    ((kind, arg),) = doc.items()
    if kind in ("or", "and"):
        if not isinstance(arg, list) or not arg:
            raise ValueError(f"price snapshot: {where}: {kind!r} takes a non-empty list")
        parts = tuple(_compile_clause(c, where) for c in arg)
        if kind == "or":
            return lambda t: any(p(t) for p in parts)
        return lambda t: all(p(t) for p in parts)
    if not isinstance(arg, str):
        raise ValueError(f"price snapshot: {where}: {kind!r} takes a string, got {arg!r}")
    low = arg.lower()
    if kind == "starts_with":
        return lambda t: t.startswith(low)
    if kind == "ends_with":
        return lambda t: t.endswith(low)
    if kind == "contains":
        return lambda t: low in t
    if kind == "equals":
        return lambda t: t == low
    if kind == "regex":
        try:
            rx = re.compile(arg)  # genai-prices searches the lower-cased text with the pattern as is
        except re.error as e:
            raise ValueError(f"price snapshot: {where}: bad regex {arg!r}: {e}") from None
        return lambda t: rx.search(t) is not None
    raise ValueError(f"price snapshot: {where}: unknown match clause {kind!r}")


# ---------------------------------------------------------------------------------------------
# the index


@dataclass(frozen=True, slots=True)
class _Price:
    """One price, in integer units of 10**-scale micro-USD per token (or per request)."""

    base: int
    tiers: tuple[tuple[int, int], ...] = ()  # (start, price), ascending start

    def at(self, total_input: int) -> int:
        for start, price in reversed(self.tiers):
            if total_input > start:
                return price
        return self.base


@dataclass(frozen=True, slots=True)
class _Prices:
    input: _Price | None
    output: _Price | None
    cache_read: _Price | None
    cache_write: _Price | None
    cache_write_1h: _Price | None
    reasoning: _Price | None
    request: _Price | None  # per call


@dataclass(frozen=True, slots=True)
class _Period:
    start_date: date | None
    window: tuple[time, time] | None  # UTC [start, end), may cross midnight
    prices: _Prices

    def active(self, at: datetime) -> bool:
        if self.start_date is not None:
            return at.date() >= self.start_date
        if self.window is not None:
            t = at.timetz()
            start, end = self.window
            if end < start:
                return t >= start or t < end
            return start <= t < end
        return True


@dataclass(frozen=True, slots=True)
class _Model:
    id: str
    periods: tuple[_Period, ...]

    def prices(self, at: datetime | None) -> _Prices:
        if len(self.periods) == 1:
            return self.periods[0].prices
        now = datetime.now(UTC) if at is None else _utc(at)
        for period in reversed(self.periods):
            if period.active(now):
                return period.prices
        return self.periods[0].prices


@dataclass(frozen=True, slots=True)
class _Provider:
    id: str
    provider_match: _Matcher | None
    model_match: _Matcher | None
    fallback: tuple[str, ...]
    models: tuple[tuple[_Matcher, _Model], ...]


@dataclass(frozen=True, slots=True)
class _Index:
    unit: int  # prices are integers in units of 1/unit micro-USD (unit = 10**scale)
    providers: tuple[_Provider, ...]
    by_id: Mapping[str, _Provider]
    overrides: Mapping[str, _Model]


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _find_provider_by_id(index: _Index, provider_id: str) -> _Provider | None:
    norm = provider_id.lower().strip()
    if (p := index.by_id.get(norm)) is not None:
        return p
    for p in index.providers:
        if p.provider_match is not None and p.provider_match(norm):
            return p
    return None


def _match_model(index: _Index, provider: _Provider, ref: str, *, fallback: bool) -> _Model | None:
    for match, model in provider.models:
        if match(ref):
            return model
    if fallback:
        for pid in provider.fallback:
            other = index.by_id.get(pid)
            if other is not None and (m := _match_model(index, other, ref, fallback=False)):
                return m
    return None


def _normalize_compact_date(ref: str) -> str:
    def replace(m: re.Match[str]) -> str:
        y, mo, d = int(m.group(2)), int(m.group(3)), int(m.group(4))
        try:
            date(y, mo, d)
        except ValueError:
            return m.group(0)
        return f"-{y:04d}-{mo:02d}-{d:02d}"

    return _COMPACT_DATE_RE.sub(replace, ref)


def _lookup(index: _Index, provider_id: str | None, model_ref: str) -> _Model | None:
    """genai-prices' DataSnapshot.find_provider_model, over the snapshot (None: not found)."""
    override = index.overrides.get(model_ref.lower())
    if override is not None:
        return override
    ref = model_ref.lower()
    if provider_id and provider_id.lower() == "litellm" and "/" in ref:
        actual, rest = ref.split("/", 1)
        if actual and _find_provider_by_id(index, actual) is not None:
            provider_id, ref = actual, rest
    provider: _Provider | None = None
    if provider_id:
        provider = _find_provider_by_id(index, provider_id)
        if provider is None and provider_id.lower() != "litellm":
            return None
    if provider is None:
        provider = next((p for p in index.providers if p.model_match is not None and p.model_match(ref)), None)
        if provider is None:
            return None
    model = _match_model(index, provider, ref, fallback=True)
    if model is None:
        normalized = _normalize_compact_date(ref)
        if normalized != ref:
            model = _match_model(index, provider, normalized, fallback=True)
    return model


# ---------------------------------------------------------------------------------------------
# snapshot -> index


def _scale_of(doc: Mapping[str, Any]) -> int:
    """The number of decimal places the exact integer arithmetic needs for this snapshot."""
    scale = 0

    def see(s: str) -> None:
        nonlocal scale
        if "." in s:
            scale = max(scale, len(s) - s.index(".") - 1)

    for p in doc["providers"]:
        for m in p["models"]:
            for period in m["prices"]:
                for v in period["prices"].values():
                    if isinstance(v, Mapping):
                        see(v["base"])
                        for t in v["tiers"]:
                            see(t["price"])
                    elif isinstance(v, str):
                        see(v)
    for entry in doc["overrides"].values():
        for v in entry.values():
            see(v)
    return scale


def _check_doc(doc: Any) -> None:
    """Structural validation of a snapshot (ValueError on anything table_from_document can't use)."""
    if not isinstance(doc, Mapping):
        raise ValueError(f"price snapshot: expected a mapping, got {type(doc).__name__}")
    if doc.get("format") != FORMAT:
        raise ValueError(f"price snapshot: unsupported format {doc.get('format')!r} (this Execord reads {FORMAT!r})")
    extra = set(doc) - {"format", "source", "providers", "overrides"}
    if extra:
        raise ValueError(f"price snapshot: unknown keys {sorted(extra)}")
    if not isinstance(doc.get("source"), str) or not doc["source"]:
        raise ValueError("price snapshot: 'source' must be a non-empty string")
    if not isinstance(doc.get("providers"), list):
        raise ValueError("price snapshot: 'providers' must be a list")
    if not isinstance(doc.get("overrides"), Mapping):
        raise ValueError("price snapshot: 'overrides' must be a mapping")
    for i, p in enumerate(doc["providers"]):
        where = f"providers[{i}]"
        if not isinstance(p, Mapping) or set(p) != {"id", "provider_match", "model_match", "fallback", "models"}:
            raise ValueError(f"price snapshot: {where}: expected keys id, provider_match, model_match, fallback, models")
        if (
            not isinstance(p["id"], str)
            or not isinstance(p["fallback"], list)
            or not all(isinstance(f, str) for f in p["fallback"])
            or not isinstance(p["models"], list)
        ):
            raise ValueError(f"price snapshot: {where}: bad id, fallback or models")
        for j, m in enumerate(p["models"]):
            mwhere = f"{where}.models[{j}]"
            if not isinstance(m, Mapping) or set(m) != {"id", "match", "prices"}:
                raise ValueError(f"price snapshot: {mwhere}: expected keys id, match, prices")
            if not isinstance(m["prices"], list) or not m["prices"]:
                raise ValueError(f"price snapshot: {mwhere}: 'prices' must be a non-empty list of periods")
            for k, period in enumerate(m["prices"]):
                pwhere = f"{mwhere}.prices[{k}]"
                if not isinstance(period, Mapping) or set(period) != {"when", "prices"}:
                    raise ValueError(f"price snapshot: {pwhere}: expected keys when, prices")
                if not isinstance(period["prices"], Mapping):
                    raise ValueError(f"price snapshot: {pwhere}: 'prices' must be a mapping")
                for key, v in period["prices"].items():
                    if key not in _GP_KEYS:
                        raise ValueError(f"price snapshot: {pwhere}: unknown price key {key!r}")
                    if isinstance(v, Mapping):
                        if set(v) != {"base", "tiers"} or not isinstance(v["tiers"], list):
                            raise ValueError(f"price snapshot: {pwhere}.{key}: a tiered price is {{base, tiers}}")
                        _parse_doc_decimal(v["base"], f"{pwhere}.{key}.base")
                        for t in v["tiers"]:
                            if not isinstance(t, Mapping) or set(t) != {"start", "price"}:
                                raise ValueError(f"price snapshot: {pwhere}.{key}: a tier is {{start, price}}")
                            if type(t["start"]) is not int or t["start"] < 0:
                                raise ValueError(f"price snapshot: {pwhere}.{key}: bad tier start {t['start']!r}")
                            _parse_doc_decimal(t["price"], f"{pwhere}.{key}.tiers")
                    else:
                        _parse_doc_decimal(v, f"{pwhere}.{key}")
    for model, entry in doc["overrides"].items():
        if not isinstance(model, str) or not model or model != model.strip().lower():
            raise ValueError(f"price snapshot: override model {model!r} must be a lower-case, trimmed id")
        if not isinstance(entry, Mapping):
            raise ValueError(f"price snapshot: overrides[{model!r}] must be a mapping")
        missing = [k for k in _REQUIRED_OVERRIDE_KEYS if k not in entry]
        if missing:
            raise ValueError(f"price snapshot: overrides[{model!r}]: missing {', '.join(missing)}")
        for key, v in entry.items():
            if key not in OVERRIDE_KEYS:
                raise ValueError(f"price snapshot: overrides[{model!r}]: unknown key {key!r}")
            _parse_doc_decimal(v, f"overrides[{model!r}].{key}")


def _int_price(s: str, scale: int, factor: int = 1) -> int:
    """A decimal string (checked by `_check_doc`) times ``factor`` × 10**scale, exactly."""
    whole, _, frac = s.partition(".")
    return int(whole + frac.ljust(scale, "0")) * factor


def _build_price(v: Any, scale: int, factor: int = 1) -> _Price | None:
    if v is None:
        return None
    if isinstance(v, Mapping):
        tiers = sorted((t["start"], _int_price(t["price"], scale, factor)) for t in v["tiers"])
        return _Price(_int_price(v["base"], scale, factor), tuple(tiers))
    return _Price(_int_price(v, scale, factor))


def _build_when(when: Any, where: str) -> tuple[date | None, tuple[time, time] | None]:
    if when is None:
        return None, None
    if isinstance(when, Mapping) and set(when) == {"start_date"}:
        s = when["start_date"]
        if isinstance(s, str) and _DATE_RE.match(s):
            try:
                return date.fromisoformat(s), None
            except ValueError:
                pass
    if isinstance(when, Mapping) and set(when) == {"start_time", "end_time"}:
        a, b = when["start_time"], when["end_time"]
        if isinstance(a, str) and isinstance(b, str) and _TIME_RE.match(a) and _TIME_RE.match(b):
            return None, (time.fromisoformat(a).replace(tzinfo=UTC), time.fromisoformat(b).replace(tzinfo=UTC))
    raise ValueError(
        f"price snapshot: {where}.when: expected null, {{start_date: 'YYYY-MM-DD'}} or "
        f"{{start_time: 'HH:MM:SS', end_time: 'HH:MM:SS'}} (UTC), got {when!r}"
    )


def _build_index(doc: Mapping[str, Any]) -> _Index:
    scale = _scale_of(doc)
    providers: list[_Provider] = []
    for i, p in enumerate(doc["providers"]):
        where = f"providers[{i}]"
        models: list[tuple[_Matcher, _Model]] = []
        for j, m in enumerate(p["models"]):
            mwhere = f"{where}.models[{j}]"
            periods = []
            for k, period in enumerate(m["prices"]):
                pr = period["prices"]
                start_date, window = _build_when(period["when"], f"{mwhere}.prices[{k}]")
                prices = _Prices(
                    input=_build_price(pr.get("input_mtok"), scale),
                    output=_build_price(pr.get("output_mtok"), scale),
                    cache_read=_build_price(pr.get("cache_read_mtok"), scale),
                    cache_write=_build_price(pr.get("cache_write_mtok"), scale),
                    cache_write_1h=_build_price(pr.get("cache_write_1h_mtok"), scale),
                    reasoning=_build_price(pr.get("output_reasoning_mtok"), scale),
                    # USD per 1000 requests -> micro-USD per request
                    request=_build_price(pr.get("requests_kcount"), scale, 1000),
                )
                periods.append(_Period(start_date, window, prices))
            models.append((_compile_clause(m["match"], f"{mwhere}.match"), _Model(m["id"], tuple(periods))))
        providers.append(
            _Provider(
                id=p["id"],
                provider_match=None
                if p["provider_match"] is None
                else _compile_clause(p["provider_match"], f"{where}.provider_match"),
                model_match=None
                if p["model_match"] is None
                else _compile_clause(p["model_match"], f"{where}.model_match"),
                fallback=tuple(p["fallback"]),
                models=tuple(models),
            )
        )
    by_id: dict[str, _Provider] = {}
    for prov in providers:
        by_id.setdefault(prov.id, prov)
    overrides: dict[str, _Model] = {}
    for model_id, e in doc["overrides"].items():
        inp = _build_price(e["input_per_mtok_usd"], scale)
        cw = _build_price(e.get("cache_write_per_mtok_usd"), scale)
        prices = _Prices(
            input=inp,
            output=_build_price(e["output_per_mtok_usd"], scale),
            cache_read=_build_price(e.get("cached_input_per_mtok_usd"), scale),
            cache_write=cw,
            cache_write_1h=_build_price(e.get("cache_write_1h_per_mtok_usd"), scale),
            reasoning=_build_price(e.get("reasoning_per_mtok_usd"), scale),
            # USD per request -> micro-USD per request
            request=_build_price(e.get("per_request_usd"), scale, 1_000_000),
        )
        overrides[model_id] = _Model(model_id, (_Period(None, None, prices),))
    return _Index(10**scale, tuple(providers), by_id, overrides)


# ---------------------------------------------------------------------------------------------
# the table

_warned: set[tuple[str | None, str]] = set()
_warned_lock = threading.Lock()
_WARN_LIMIT = 10_000  # distinct unknown (provider, model) pairs warned about, then silence


def _warn_once(key: tuple[str | None, str], message: str, *args: Any) -> None:
    """Log ``message`` once per key per process."""
    with _warned_lock:
        if key in _warned or len(_warned) > _WARN_LIMIT:
            return
        _warned.add(key)
        if len(_warned) > _WARN_LIMIT:
            message, args = "more than %d models without a price: no further price warnings", (_WARN_LIMIT,)
    log.warning(message, *args)


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")
    return value


_UNKNOWN = (None, "unknown")


@dataclass(frozen=True)
class PriceTable:
    """A pinned, content-addressed price table.

    Attributes:
        source: what the prices come from, e.g. ``"genai-prices 0.2.3"``, with
            ``"+overrides"`` when the governance file adds or replaces prices.
        digest: ``sha256:<hex>`` of `document()`'s RFC 8785 canonical JSON.
        price_source: the short id each priced ``step.ended`` carries,
            e.g. ``"genai-prices@0.2.3#1a2b3c4d5e6f"`` (first 12 hex of the digest).
    """

    source: str
    digest: str
    price_source: str = field(compare=False)
    _canonical: bytes = field(repr=False, compare=False)
    _index: _Index = field(repr=False, compare=False)
    _cache: dict[tuple[str | None, str], _Model | None] = field(
        default_factory=dict, repr=False, compare=False
    )

    def document(self) -> dict[str, Any]:
        """The JSON snapshot the digest covers (a fresh copy; pass it to `table_from_document`)."""
        return orjson.loads(self._canonical)

    def canonical(self) -> bytes:
        """The canonical bytes of `document()`, the ones `digest` hashes."""
        return self._canonical

    def knows(self, *, provider: str | None, model: str) -> bool:
        """Whether the table has prices for this model (it may still be unpriceable for a usage)."""
        return self._resolve(provider, model) is not None

    def _resolve(self, provider: str | None, model: str) -> _Model | None:
        key = (provider, model)
        try:
            return self._cache[key]
        except KeyError:
            pass
        found = _lookup(self._index, provider or None, model) if model else None
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = found
        return found

    def price(
        self,
        *,
        provider: str | None,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cached_input_tokens: int = 0,
        cache_write_tokens: int = 0,
        reasoning_tokens: int = 0,
        cache_write_1h_tokens: int = 0,
        at: datetime | None = None,
    ) -> tuple[int | None, str]:
        """The cost of one call: ``(cost_micros, price_source)``, or ``(None, "unknown")``.

        Args:
            provider: the provider's name (``openai``, ``anthropic``, ``aws.bedrock``, …), or
                None to infer it from the model id.
            model: the model id as the API reported it.
            input_tokens: ALL input tokens, cache reads and writes included (OpenAI's
                ``prompt_tokens``; for Anthropic add the cache reads and writes).
            output_tokens: ALL output tokens, reasoning included.
            cached_input_tokens: the part of ``input_tokens`` read from the cache.
            cache_write_tokens: the part of ``input_tokens`` written to the cache.
            reasoning_tokens: the part of ``output_tokens`` spent reasoning.
            cache_write_1h_tokens: the part of ``cache_write_tokens`` with a 1-hour TTL.
            at: when the call was made, for prices that change with time (default: now).

        Returns:
            Integer micro-USD (exact, rounded half up once) and this table's ``price_source``;
            ``(None, "unknown")`` when the table has no price for this call.

        Raises:
            TypeError: a count is not an int.
            ValueError: a count is negative, or a part exceeds its whole.
        """
        inp = _count("input_tokens", input_tokens)
        out = _count("output_tokens", output_tokens)
        cr = _count("cached_input_tokens", cached_input_tokens)
        cw = _count("cache_write_tokens", cache_write_tokens)
        rs = _count("reasoning_tokens", reasoning_tokens)
        cw1h = _count("cache_write_1h_tokens", cache_write_1h_tokens)
        if cr + cw > inp:
            raise ValueError(
                f"cached_input_tokens ({cr}) + cache_write_tokens ({cw}) exceed input_tokens ({inp}): "
                "input_tokens must count ALL input tokens, cache reads and writes included "
                "(for Anthropic, add cache_read_input_tokens and cache_creation_input_tokens)"
            )
        if cw1h > cw:
            raise ValueError(f"cache_write_1h_tokens ({cw1h}) exceed cache_write_tokens ({cw})")
        if rs > out:
            raise ValueError(
                f"reasoning_tokens ({rs}) exceed output_tokens ({out}): output_tokens must count ALL "
                "output tokens, reasoning included"
            )

        found = self._resolve(provider, model)
        if found is None:
            _warn_once(
                (provider, model),
                "no price for model %r (provider %r) in %s: its cost is recorded as unknown",
                model,
                provider,
                self.price_source,
            )
            return _UNKNOWN
        p = found.prices(at)
        if p.input is None and p.output is None:  # priced per audio hour, character, …
            return self._unpriceable(provider, model, "token")

        # Leaves: each token is billed once, at the most specific price the model has.
        total = 0
        rest_in = inp
        if cw1h and p.cache_write_1h is not None:
            total += cw1h * p.cache_write_1h.at(inp)
            rest_in -= cw1h
            cw -= cw1h
        if cw and p.cache_write is not None:
            total += cw * p.cache_write.at(inp)
            rest_in -= cw
        if cr and p.cache_read is not None:
            total += cr * p.cache_read.at(inp)
            rest_in -= cr
        rest_out = out
        if rs and p.reasoning is not None:
            total += rs * p.reasoning.at(inp)
            rest_out -= rs
        if rest_in:
            if p.input is None:
                return self._unpriceable(provider, model, "input")
            total += rest_in * p.input.at(inp)
        if rest_out:
            if p.output is None:
                return self._unpriceable(provider, model, "output")
            total += rest_out * p.output.at(inp)
        if p.request is not None:
            total += p.request.at(inp)

        # Round half up, once: total is in units of 10**-scale micro-USD and never negative.
        unit = self._index.unit
        return (2 * total + unit) // (2 * unit), self.price_source

    def _unpriceable(self, provider: str | None, model: str, kind: str) -> tuple[None, str]:
        _warn_once(
            (provider, model),
            "model %r (provider %r) has no %s-token price in %s: its cost is recorded as unknown",
            model,
            provider,
            kind,
            self.price_source,
        )
        return _UNKNOWN


def _make_table(doc: Mapping[str, Any]) -> PriceTable:
    _check_doc(doc)
    canonical = canonical_json(doc)
    hexdigest = hashlib.sha256(canonical).hexdigest()
    source = doc["source"] + ("+overrides" if doc["overrides"] else "")
    return PriceTable(
        source=source,
        digest=f"sha256:{hexdigest}",
        price_source=f"{source.replace(' ', '@', 1)}#{hexdigest[:12]}",
        _canonical=canonical,
        _index=_build_index(doc),
    )


def table_from_document(doc: Mapping[str, Any]) -> PriceTable:
    """Rebuild a table from a stored snapshot; it prices, and digests, exactly as the original.

    Raises:
        ValueError: the snapshot is malformed or of an unknown format.
    """
    return _make_table(doc)


# ---------------------------------------------------------------------------------------------
# genai-prices -> snapshot


def _gp_price_doc(value: Any) -> Any:
    if isinstance(value, Decimal):
        return _dec_str(value)
    tiers = sorted(value.tiers, key=lambda t: t.start)
    return {"base": _dec_str(value.base), "tiers": [{"start": int(t.start), "price": _dec_str(t.price)} for t in tiers]}


def _gp_when(constraint: Any) -> dict[str, str] | None:
    if constraint is None:
        return None
    name = type(constraint).__name__
    if name == "StartDateConstraint":
        return {"start_date": constraint.start_date.isoformat()}
    if name == "TimeOfDateConstraint":

        def utc(t: time) -> str:
            if t.tzinfo is None:
                t = t.replace(tzinfo=UTC)
            return datetime.combine(date(1970, 1, 1), t).astimezone(UTC).time().isoformat()

        return {"start_time": utc(constraint.start_time), "end_time": utc(constraint.end_time)}
    raise ValueError(f"genai-prices: unsupported price constraint {constraint!r}")


def _genai_prices_document() -> dict[str, Any]:
    """Snapshot the data bundled with the installed genai-prices (no network, no updater)."""
    from importlib.metadata import version

    from genai_prices.data import providers  # the bundled data module, not the live snapshot

    out_providers = []
    for p in providers:
        models = []
        for m in p.models:
            raw = m.prices if isinstance(m.prices, list) else None
            periods = [(c.constraint, c.prices) for c in raw] if raw is not None else [(None, m.prices)]
            prices = []
            for constraint, mp in periods:
                if all(v is None for k, v in vars(mp).items() if not k.startswith("_")):
                    # genai-prices lists no price at all: the model is free (":free" variants,
                    # subscription-included models), and it prices it at $0. Say so explicitly,
                    # so that a missing token price below always means "not priced in tokens".
                    kept = {"input_mtok": "0", "output_mtok": "0"}
                else:
                    kept = {k: _gp_price_doc(v) for k in _GP_KEYS if (v := getattr(mp, k, None)) is not None}
                prices.append({"when": _gp_when(constraint), "prices": kept})
            models.append({"id": m.id, "match": _clause_doc(m.match), "prices": prices})
        out_providers.append(
            {
                "id": p.id,
                "provider_match": _clause_doc(p.provider_match),
                "model_match": _clause_doc(p.model_match),
                "fallback": list(p.fallback_model_providers or ()),
                "models": models,
            }
        )
    return {
        "format": FORMAT,
        "source": f"genai-prices {version('genai-prices')}",
        "providers": out_providers,
        "overrides": {},
    }


_default: PriceTable | None = None
_default_lock = threading.Lock()


def default_table() -> PriceTable:
    """The snapshot of the installed genai-prices data (built once per process)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = _make_table(_genai_prices_document())
    return _default


# ---------------------------------------------------------------------------------------------
# overrides


def _override_entry(model: Any, entry: Any) -> tuple[str, dict[str, str]]:
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"pricing: a model name must be a non-empty string, got {model!r}")
    where = f"pricing.{model}"
    if not isinstance(entry, Mapping):
        raise ValueError(
            f"{where}: expected a mapping of prices (e.g. input_per_mtok_usd: 0.15, output_per_mtok_usd: 0.6), "
            f"got {entry!r}"
        )
    out: dict[str, str] = {}
    for key, value in entry.items():
        if key not in OVERRIDE_KEYS:
            near = difflib.get_close_matches(str(key), OVERRIDE_KEYS, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; known keys: {', '.join(OVERRIDE_KEYS)}"
            raise ValueError(f"{where}: unknown key {key!r}{hint}")
        out[key] = _dec_str(_parse_amount(value, f"{where}.{key}"))
    missing = [k for k in _REQUIRED_OVERRIDE_KEYS if k not in out]
    if missing:
        raise ValueError(f"{where}: missing {' and '.join(missing)} (USD per million tokens)")
    return model.strip().lower(), dict(sorted(out.items()))


def with_overrides(base: PriceTable, overrides: Mapping[str, Mapping[str, Any]]) -> PriceTable:
    """``base`` plus the governance file's ``pricing:`` section (see the module docstring).

    Later overrides of the same model replace earlier ones (also across successive calls).
    An empty section returns ``base`` itself.

    Raises:
        ValueError: a bad model name, unknown key, missing required price, or bad amount; the
            message names the model and key.
    """
    if not isinstance(overrides, Mapping):
        raise ValueError(f"pricing: expected a mapping of model names to prices, got {type(overrides).__name__}")
    if not overrides:
        return base
    doc = base.document()
    merged: dict[str, dict[str, str]] = dict(doc["overrides"])
    seen: dict[str, str] = {}
    for model, entry in overrides.items():
        key, prices = _override_entry(model, entry)
        if key in seen:
            raise ValueError(f"pricing: {model!r} and {seen[key]!r} name the same model (names ignore case)")
        seen[key] = model
        merged[key] = prices
    doc["overrides"] = dict(sorted(merged.items()))
    return _make_table(doc)
