"""Detectors of sensitive values, and redaction of a value before it is sent or recorded.

DESIGN §3: "Redaction happens in the agent's process, before anything is written or sent."
DESIGN §5: a ``redact`` rule names detectors (``detectors: [email, phone, payment_card]``)
and optionally paths; the secret detectors run on every captured value even with no
governance file at all. Pure Python over the standard ``re`` module, no I/O.

Builtin detectors, and what each one finds:

============  ==============================================================================
name          finds
============  ==============================================================================
email         ``local@domain.tld``
phone         ``+<country> <groups>`` (8 to 15 digits, E.164) and North American
              ``(415) 555-2671``, ``415-555-2671``, ``415.555.2671``, ``415 555 2671``
payment_card  13 to 19 digits, alone or grouped by single spaces or dashes, that pass the
              Luhn check and start with 2 to 9 (0 and 1 are not consumer card prefixes, which
              keeps 13- and 16-digit millisecond and microsecond timestamps out)
iban          ISO 13616 IBANs, compact or in groups of four, upper case, 15 to 34 characters,
              whose mod-97 check (ISO 7064) gives 1
us_ssn        ``123-45-6789`` or ``123 45 6789``; area 000, 666 and 900-999, group 00 and
              serial 0000 are never issued and are not matched
ipv4          dotted quads with each octet 0-255 and no leading zeros, not part of a longer
              dotted number or a word (``v1.2.3.4`` is a version, not an address)
api_key       ``sk-…`` (OpenAI, ``sk-proj-…``, Anthropic ``sk-ant-…``), Stripe ``sk_live_…``,
              AWS ``AKIA…``/``ASIA…``, GitHub ``ghp_ gho_ ghu_ ghs_ ghr_ github_pat_``, Slack
              ``xoxb-`` and kin, Google ``AIza…``, and the value of ``api_key: …`` /
              ``apiKey=…`` / ``"x-api-key": "…"``
bearer_token  the token of ``Bearer <token>`` (a digit in it, or 24 characters or more), and
              JWT-shaped ``eyJ….eyJ….<signature>``
private_key   ``-----BEGIN … PRIVATE KEY-----`` blocks over any number of lines, through
              the matching END line, or to the end of the text when the END line is missing
              (a truncated key is still a key)
============  ==============================================================================

``api_key``, ``bearer_token`` and ``private_key`` are the secret detectors
(`SECRET_DETECTORS`), on by default.

Where a pattern has a group named ``value``, only that group is checked and replaced
(``Authorization: Bearer [REDACTED:bearer_token]``); otherwise the whole match is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True, slots=True)
class Detector:
    """One kind of sensitive value.

    Attributes:
        name: what redactions are reported as, and the marker: ``[REDACTED:<name>]``.
        pattern: where the value is. A group named ``value``, when it takes part in a
            match, narrows what is checked and replaced to that group.
        check: extra validation of the matched text (a Luhn or mod-97 check); a match it
            refuses is not redacted.
        secret: part of the default-on secret detection (`SECRET_DETECTORS`).
    """

    name: str
    pattern: re.Pattern[str]
    check: Callable[[str], bool] | None = None
    secret: bool = False


# -- checks ------------------------------------------------------------------------------------


def _digits(text: str) -> list[int]:
    return [ord(c) - 48 for c in text if "0" <= c <= "9"]


def luhn_ok(text: str) -> bool:
    """True when the digits of ``text`` make a plausible card number (ISO/IEC 7812-1 Annex B).

    >>> luhn_ok("4111 1111 1111 1111"), luhn_ok("4111 1111 1111 1112")
    (True, False)
    """
    digits = _digits(text)
    if not 13 <= len(digits) <= 19 or digits[0] < 2:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    """True when ``text`` (spaces allowed) passes the ISO 13616 mod-97 check.

    >>> iban_ok("GB82 WEST 1234 5698 7654 32"), iban_ok("GB83 WEST 1234 5698 7654 32")
    (True, False)
    """
    compact = text.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34 or not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    moved = compact[4:] + compact[:4]
    # Each letter becomes its two-digit number (A=10 … Z=35): int(c, 36) does exactly that.
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _phone_ok(text: str) -> bool:
    return 8 <= len(_digits(text)) <= 15  # E.164 allows at most 15 digits


def _token_ok(text: str) -> bool:
    # Keeps prose out ("a Bearer authentication"): real tokens are random, so nearly always
    # hold a digit, and the long ones are redacted whatever they hold.
    return len(text) >= 24 or any("0" <= c <= "9" for c in text)


# -- the builtin patterns ----------------------------------------------------------------------

_A = re.ASCII

_EMAIL = r"(?<![\w.%+-])[\w.%+-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![\w-])"
_PHONE = (
    r"(?<![\w+.-])(?:"
    # Groups are split by one separator each, so there is a single way to read a number
    # and a failing match gives up in linear time.
    r"\+[0-9]{1,3}(?:[ .-]?\([0-9]{1,4}\)[ .-]?|[ .-])[0-9]{1,8}(?:[ .-][0-9]{1,8}){0,5}"  # +44 20 7946 0958
    r"|\+[0-9]{8,15}"  # +4915112345678
    r"|(?:\([0-9]{3}\) ?|[0-9]{3}[ .-])[0-9]{3}[ .-]?[0-9]{4}"  # (415) 555-2671, 415.555.2671
    r")(?![\w]|[.-][0-9])"
)
# The whole digit run is one candidate: a match must not stop where a single separator and
# another digit follow, or a run failing Luhn would hide a shorter run inside it.
_CARD = r"(?<![0-9])(?<![0-9][ -])[0-9](?:[ -]?[0-9]){12,18}(?![ -]?[0-9])"
_IBAN = r"(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])"
_SSN = r"(?<![0-9-])(?!000|666|9)[0-9]{3}([ -])(?!00)[0-9]{2}\1(?!0000)[0-9]{4}(?![0-9]|-[0-9])"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?![0-9]|\.[0-9])"
_API_KEY = (
    r"(?<![\w-])(?:"
    r"sk-[A-Za-z0-9_-]{20,}"  # OpenAI sk-…, sk-proj-…; Anthropic sk-ant-api03-…
    r"|[sr]k_(?:live|test)_[A-Za-z0-9]{16,}"  # Stripe
    r"|A[KS]IA[0-9A-Z]{16}(?![0-9A-Za-z])"  # AWS access key ids
    r"|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}"  # GitHub
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    r"|AIza[0-9A-Za-z_-]{35}"  # Google
    r")"
    r"|(?i:api[_-]?key)[\"']?\s*[:=]\s*[\"']?(?P<value>[A-Za-z0-9_\-./+=]{8,})"
)
_BEARER = (
    r"(?i:\bbearer)[ \t]+(?P<value>[A-Za-z0-9\-._~+/]{8,}=*)"
    r"|(?<![\w-])eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*"  # JWT
)
_KEY_LABEL = r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
_PRIVATE_KEY = rf"{_KEY_LABEL}[\s\S]*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)"

BUILTIN: dict[str, Detector] = {
    "email": Detector("email", re.compile(_EMAIL, _A)),
    "phone": Detector("phone", re.compile(_PHONE, _A), _phone_ok),
    "payment_card": Detector("payment_card", re.compile(_CARD, _A), luhn_ok),
    "iban": Detector("iban", re.compile(_IBAN, _A), iban_ok),
    "us_ssn": Detector("us_ssn", re.compile(_SSN, _A)),
    "ipv4": Detector("ipv4", re.compile(_IPV4, _A)),
    "api_key": Detector("api_key", re.compile(_API_KEY, _A), secret=True),
    "bearer_token": Detector("bearer_token", re.compile(_BEARER, _A), _token_ok, secret=True),
    "private_key": Detector("private_key", re.compile(_PRIVATE_KEY, _A), secret=True),
}

SECRET_DETECTORS: tuple[str, ...] = ("api_key", "bearer_token", "private_key")

# Why hints: `redact` runs on every captured value with the secret detectors on, and almost
# no value holds a secret. Each builtin has a hint: a test that every one of its matches
# passes, so a text that fails it cannot match. `redact` joins all the strings of a value and
# runs the hints once on the join; only the detectors whose hint hits run their patterns, and
# only on the strings where the hint hits again. Hints are `in` tests, not one alternation
# regex: measured on a 150-character join, `re` spends 9-37 ns a character on alternations
# whose branches start with common letters, a multi-character `in` about 0.7 and a
# one-character `in` (memchr) far less, so a rare character is tested before its literals.
# `lo` is the text in lower case, for the detectors whose patterns ignore case.

_DIGIT = re.compile("[0-9]")
_UNDERSCORED = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "k_live_", "k_test_")


def _hint_api_key(s: str, lo: str) -> bool:
    return (("-" in s and ("sk-" in s or "xox" in s))
            or ("_" in s and any(x in s for x in _UNDERSCORED))
            or ("A" in s and ("AKIA" in s or "ASIA" in s or "AIza" in s))
            or "api" in lo)


def _has_digit(s: str, lo: str) -> bool:
    return _DIGIT.search(s) is not None


# Detectors that share a hint function have it run once per string (see `_Scanner.groups`).
_Hint = Callable[[str, str], bool]
_HINTS: dict[str, _Hint] = {
    "email": lambda s, lo: "@" in s,
    "phone": _has_digit,
    "payment_card": _has_digit,
    "iban": _has_digit,
    "us_ssn": _has_digit,
    "ipv4": lambda s, lo: "." in s and _DIGIT.search(s) is not None,
    "api_key": _hint_api_key,
    "bearer_token": lambda s, lo: ("J" in s and "eyJ" in s) or "bearer" in lo,
    "private_key": lambda s, lo: "-----BEGIN" in s,
}
_FOLDED = frozenset({"api_key", "bearer_token"})  # their hints read `lo`

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_NO_CUSTOM: Mapping[str, Detector] = MappingProxyType({})
TOO_DEEP = "too_deep"
"""The name reported for a sub-value nested deeper than `redact` walks (it is replaced whole)."""
_MAX_DEPTH = 64  # as deep as runtime/_capture.py records; a cycle ends here too


class DetectorError(ValueError):
    """A custom detector that cannot be made: ``message`` says what is wrong, ``hint`` what to do."""

    def __init__(self, message: str, hint: str):
        super().__init__(f"{message}; {hint}")
        self.message, self.hint = message, hint


def custom_detector(name: str, regex: str) -> Detector:
    """A detector from a governance file's ``detectors.custom`` entry.

    Args:
        name: a letter or ``_`` then letters, digits, ``_`` or ``-``; not a builtin's name.
        regex: a Python regular expression; a group named ``value`` narrows what is replaced.

    Returns:
        The detector (never a secret one).

    Raises:
        DetectorError: the name is malformed or shadows a builtin, or the regex is not a
            string, does not compile or matches the empty string.

    >>> custom_detector("order_id", r"ORD-[0-9]{6}").name
    'order_id'
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise DetectorError(f"detector name {name!r} is not allowed",
                            "check the name: use letters, digits, '_' and '-', starting with a letter, e.g. order_id")
    if name in BUILTIN:
        raise DetectorError(f"custom detector {name!r} shadows the builtin detector of that name",
                            f"check the name: pick another name (builtins: {', '.join(BUILTIN)})")
    if not isinstance(regex, str):
        raise DetectorError(f"detector {name}: the regular expression must be a string, not {type(regex).__name__} {regex!r}",
                            f"quote it in YAML, e.g. {name}: 'ORD-[0-9]{{6}}'")
    try:
        pattern = re.compile(regex)
    except re.error as exc:
        raise DetectorError(f"detector {name}: bad regular expression {regex!r}: {exc}",
                            "check the escaping, and quote the pattern in YAML") from None
    if pattern.search("") is not None:
        raise DetectorError(f"detector {name}: the regular expression {regex!r} matches the empty string, "
                            "so it would match everywhere", "use + rather than * or ?")
    return Detector(name, pattern)


def detectors_named(names: Sequence[str], custom: Mapping[str, Detector] = _NO_CUSTOM) -> list[Detector]:
    """The detectors a rule names, in the rule's order, each once.

    Args:
        names: builtin names and keys of ``custom``.
        custom: the governance file's custom detectors, by name.

    Raises:
        ValueError: some names are unknown; the message lists them and every known name.
    """
    out: list[Detector] = []
    unknown: list[str] = []
    for name in names:
        found = custom.get(name) or BUILTIN.get(name)
        if found is None:
            unknown.append(name)
        elif found not in out:
            out.append(found)
    if unknown:
        known = ", ".join([*BUILTIN, *(k for k in custom if k not in BUILTIN)])
        raise ValueError(f"unknown detector{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(map(repr, unknown))}; known: {known}")
    return out


# -- scanning one string -----------------------------------------------------------------------


class _Scanner:
    """A detector set, ready to scan strings (built once per set, then cached)."""

    __slots__ = ("detectors", "hints", "fold", "every", "all_groups", "markers")

    def __init__(self, detectors: tuple[Detector, ...]):
        self.detectors = detectors
        self.markers = [f"[REDACTED:{d.name}]" for d in detectors]
        # Only the builtin objects themselves have hints: a custom Detector named "email"
        # has its own pattern, so it is always run.
        builtin = [BUILTIN.get(d.name) is d for d in detectors]
        self.hints = [_HINTS[d.name] if b else None for d, b in zip(detectors, builtin, strict=True)]
        self.fold = any(b and d.name in _FOLDED for d, b in zip(detectors, builtin, strict=True))
        self.every = tuple(range(len(detectors)))
        self.all_groups = self.groups(self.every)

    def active(self, text: str) -> tuple[int, ...]:
        """The detectors that may match somewhere in ``text`` (by index)."""
        lo = text.lower() if self.fold else text
        return tuple([i for i, h in enumerate(self.hints) if h is None or h(text, lo)])

    def groups(self, active: tuple[int, ...]) -> list[tuple[_Hint | None, list[int]]]:
        """The ``active`` detectors grouped by hint, so a shared hint runs once a string."""
        by: dict[_Hint | None, list[int]] = {}
        for i in active:
            by.setdefault(self.hints[i], []).append(i)
        return list(by.items())

    def spans(self, s: str, groups: list[tuple[_Hint | None, list[int]]]) -> list[tuple[int, int, int]]:
        """The spans to replace in ``s``: (start, end, detector index), sorted, disjoint."""
        found: list[tuple[int, int, int]] = []
        lo = s.lower() if self.fold else s
        for hint, members in groups:
            if hint is None or hint(s, lo):
                for i in members:
                    self._find(s, i, found)
        if len(found) > 1:
            found = _resolve(found)
        return found

    def _find(self, s: str, i: int, found: list[tuple[int, int, int]]) -> None:
        d = self.detectors[i]
        narrow = "value" in d.pattern.groupindex
        for m in d.pattern.finditer(s):
            start, end = m.span("value") if narrow and m.start("value") >= 0 else m.span()
            if start == end:
                continue  # an empty match has nothing to hide
            if d.check is None or d.check(s[start:end]):
                found.append((start, end, i))


def _resolve(found: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Overlaps: the earliest start wins, then the longest, then the first detector."""
    found.sort(key=lambda f: (f[0], f[0] - f[1], f[2]))
    kept: list[tuple[int, int, int]] = []
    end = -1
    for f in found:
        if f[0] >= end:
            kept.append(f)
            end = f[1]
    return kept


_SCANNERS: dict[tuple[int, ...], _Scanner] = {}


def _scanner(detectors: Sequence[Detector]) -> _Scanner:
    # Keyed by identity: cheaper than hashing the dataclasses, and safe because the cached
    # scanner holds the detectors, so their ids cannot be reused while the entry lives.
    key = tuple(map(id, detectors))
    scanner = _SCANNERS.get(key)
    if scanner is None:
        if len(_SCANNERS) >= 256:
            _SCANNERS.clear()
        scanner = _SCANNERS[key] = _Scanner(tuple(detectors))
    return scanner


# -- paths -------------------------------------------------------------------------------------

_Paths = tuple[tuple[str, ...], ...]
_PATHS: dict[tuple[str, ...], _Paths] = {}


def _parse_paths(paths: Sequence[str]) -> _Paths:
    key = (paths,) if isinstance(paths, str) else tuple(paths)  # one path given bare
    try:
        parsed = _PATHS.get(key)
    except TypeError:  # something unhashable: parse_path says what is wrong with it
        parsed = None
    if parsed is None:
        if len(_PATHS) >= 256:
            _PATHS.clear()
        parsed = _PATHS[key] = tuple(parse_path(p) for p in key)
    return parsed


def parse_path(path: str) -> tuple[str, ...]:
    """The parts of one redaction path; ``()`` for ``$``, the root.

    For the governance file's loader, so a bad ``paths:`` entry is reported where it is
    written rather than when a value is first redacted.

    Raises:
        ValueError: the path is not a string or has an empty part.

    >>> parse_path("messages.*.content"), parse_path("$.args.email"), parse_path("$")
    (('messages', '*', 'content'), ('args', 'email'), ())
    """
    if not isinstance(path, str):
        raise ValueError(f"redaction path {path!r} must be a string, e.g. 'args.customer.email'")
    if path == "$":
        return ()
    parts = tuple((path[2:] if path.startswith("$.") else path).split("."))
    if "" in parts:
        raise ValueError(f"redaction path {path!r} has an empty part: write dotted keys, "
                         "e.g. 'args.customer.email' or 'messages.*.content'")
    return parts


def _advance(paths: _Paths, key: str) -> _Paths | None:
    """The paths left one level down under ``key``; None when one of them ends there."""
    left = []
    for p in paths:
        if p[0] == "*" or p[0] == key:
            if len(p) == 1:
                return None
            left.append(p[1:])
    return tuple(left)


# -- the walk ----------------------------------------------------------------------------------


class _Walk:
    """One `redact` call: the scanner, where we are, and what was found."""

    __slots__ = ("scanner", "hits", "at", "found")

    def __init__(self, scanner: _Scanner, hits: dict[str, list[tuple[int, int, int]]] | None):
        self.scanner = scanner
        self.hits = hits  # the spans of every string known to hold some; None: scan as we go
        self.at: list[str | int] = []
        self.found: list[dict[str, str]] = []

    def path(self) -> str:
        return ".".join(map(str, self.at)) if self.at else "$"

    def string(self, s: str) -> str:
        hits = self.hits
        spans = hits.get(s) if hits is not None else self.scanner.spans(s, self.scanner.all_groups)
        if not spans:
            return s
        markers = self.scanner.markers
        names = self.scanner.detectors
        pieces: list[str] = []
        last = 0
        path = self.path()
        for start, end, i in spans:
            pieces += (s[last:start], markers[i])
            last = end
            self.found.append({"path": path, "detector": names[i].name})
        pieces.append(s[last:])
        return "".join(pieces)

    def value(self, v: Any, paths: _Paths | None, depth: int) -> Any:
        """``v`` redacted where ``paths`` select (None: everywhere beneath)."""
        if isinstance(v, str):
            return self.string(v) if paths is None and v else v
        if isinstance(v, dict):
            items: Any = v.items()
        elif isinstance(v, list | tuple):
            items = enumerate(v)
        else:
            return v
        if not v:
            return v
        if depth >= _MAX_DEPTH:
            if paths is not None:
                return v
            self.found.append({"path": self.path(), "detector": TOO_DEEP})
            return f"[REDACTED:{TOO_DEEP}]"
        return self.container(v, items, paths, depth + 1)

    def container(self, v: Any, items: Any, paths: _Paths | None, depth: int) -> Any:
        out: Any = None
        at = self.at
        for k, child in items:
            sub = paths
            if paths is not None:
                sub = _advance(paths, k if type(k) is str else str(k))
                if sub == ():
                    continue  # no path goes this way
            at.append(k)
            new = self.value(child, sub, depth)
            at.pop()
            if new is not child:
                if out is None:
                    out = dict(v) if isinstance(v, dict) else list(v)
                out[k] = new
        return v if out is None else out


_WALKED = (str, dict, list, tuple)
_CONTAINERS = (dict, list, tuple)
_LEAVES = frozenset({int, float, bool, type(None)})


def _strings(v: Any, out: list[str], depth: int) -> bool:
    """Append every string inside the container ``v``; False when it nests too deep."""
    if depth >= _MAX_DEPTH:
        return False
    for x in v.values() if isinstance(v, dict) else v:
        t = type(x)
        if t is str:
            out.append(x)
        elif t in _LEAVES:
            continue
        elif isinstance(x, _CONTAINERS):
            if x and not _strings(x, out, depth + 1):
                return False
        elif isinstance(x, str):
            out.append(x)
    return True


def _hits(texts: list[str], scanner: _Scanner) -> dict[str, list[tuple[int, int, int]]]:
    """The spans of each of ``texts`` that holds some.

    The hints run once on the join of all the strings, so a value with nothing to find costs
    one pass to gather its strings and a few `in` tests; only the detectors whose hint hits
    scan the strings, and only the strings with spans are visited again, by the walk that
    rebuilds their containers.
    """
    active = scanner.active(texts[0] if len(texts) == 1 else "\x00".join(texts))
    hits: dict[str, list[tuple[int, int, int]]] = {}
    if active:
        groups = scanner.groups(active)
        for text in texts:
            spans = scanner.spans(text, groups)
            if spans:
                hits[text] = spans  # equal strings have equal spans
    return hits


def redact(value: Any, detectors: Sequence[Detector],
           paths: Sequence[str] | None = None) -> tuple[Any, list[dict[str, str]]]:
    """Replace every detected value inside ``value`` with ``[REDACTED:<detector>]``.

    Walks dicts, lists and tuples (subclasses included) and scans every ``str`` in them.
    Dict keys are never scanned or changed, and leaves that are not strings (numbers, bools,
    None, bytes, other objects) are left alone: a card number held in an ``int`` is not
    detected. Where detectors' matches overlap in one string, the earliest start wins, then
    the longest match, then the detector listed first; each replaced span is reported once.

    The input is never changed. When nothing is found the very same object comes back, so
    ``redacted is value`` is a cheap test. Otherwise each container on the way to a redaction
    is rebuilt (a dict as a plain dict, a list or tuple as a list) and everything else is
    shared with the input, not copied. A non-empty container 64 levels below the root (inside
    a cycle, say) is replaced whole by ``[REDACTED:too_deep]`` and reported as detector
    ``too_deep``: it is neither scanned nor let through unscanned.

    Args:
        value: what a tool, model or step is given or returns.
        detectors: the detectors to run, in priority order for ties.
        paths: where to look. None looks everywhere; otherwise each path is dotted keys and
            list indices with ``*`` for any one key or index (``args.customer.email``,
            ``messages.*.content``, ``*.email``), and selects the value there and everything
            beneath it. ``$`` is the root value (``$.`` may lead any path). A key holding a
            dot cannot be named. A bare string is one path; an empty sequence selects nothing.

    Returns:
        The redacted value, and one ``{"path", "detector"}`` per replaced span: depth-first
        in dict insertion order and list order, then by position in the string. The path
        joins keys and list indices with dots (``messages.0.content``); the root value
        itself is ``$``.

    Raises:
        ValueError: a path is malformed.

    >>> redact({"to": "bob@example.com", "n": 4}, [BUILTIN["email"]])
    ({'to': '[REDACTED:email]', 'n': 4}, [{'path': 'to', 'detector': 'email'}])
    """
    if not detectors or not isinstance(value, _WALKED) or not value:
        return value, []
    if paths is None:
        texts: list[str] | None
        if isinstance(value, str):
            texts = [value]
        else:
            texts = []
            if not _strings(value, texts, 0):
                texts = None  # too deep to gather: the walk scans as it goes
            elif not texts:
                return value, []
        scanner = _scanner(detectors)
        hits = None if texts is None else _hits(texts, scanner)
        if hits is not None and not hits:
            return value, []
        walk = _Walk(scanner, hits)
        return walk.value(value, None, 0), walk.found
    parsed = _parse_paths(paths)
    if not parsed:
        return value, []
    walk = _Walk(_scanner(detectors), None)
    # A path "$" selects the root and everything beneath it.
    return walk.value(value, None if () in parsed else parsed, 0), walk.found
