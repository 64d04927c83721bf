"""Detectors and `redact` (DESIGN §3, §5): tables of true positives and near misses per
builtin, then custom detectors, names, paths, copying, order and overlaps.

The fast path (hints on the joined strings, then patterns only where they hit) is checked
against a naive reference that runs every pattern on every string.

Token-shaped test values are assembled at run time, so no secret scanner mistakes this
file for a leak.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from execord.governance._detectors import (
    BUILTIN,
    SECRET_DETECTORS,
    TOO_DEEP,
    Detector,
    custom_detector,
    detectors_named,
    iban_ok,
    luhn_ok,
    parse_path,
    redact,
)

R = "[REDACTED:{}]".format

OPENAI = "sk-proj-" + "Ab3dE6gH9jK2mN5pQ8sT1vW4yZ7" * 2
ANTHROPIC = "sk-ant-api03-" + "x9Y8w7V6u5T4s3R2q1P0" * 3
AWS = "AKIA" + "IOSFODNN7EXAMPLE"
GITHUB = "ghp_" + "a1B2c3D4e5F6" * 3
GITHUB_PAT = "github_pat_" + "11ABCDEFG0" + "_xYz12345" * 4
SLACK = "xoxb-" + "123456789012-abcdefghijkl"
GOOGLE = "AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"
STRIPE = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" + ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ"
       + ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
KEY_BODY = "MIIEowIBAAKCAQEAv7Jz\nq3Lx9Jk2mYVb0QX8Rw1t\nZ3y4Wc5Ud6Te7Sf8Rg9Q=="


def key_block(label: str = "RSA PRIVATE KEY") -> str:
    return f"-----BEGIN {label}-----\n{KEY_BODY}\n-----END {label}-----"


# (detector, text, the text as redacted)
POSITIVES: list[tuple[str, str, str]] = [
    ("email", "contact bob.smith+tag@example.co.uk today", f"contact {R('email')} today"),
    ("email", "<alice@mail.example.com>", f"<{R('email')}>"),
    ("email", "Email: first_last@sub-domain.io.", f"Email: {R('email')}."),
    ("phone", "call +1 (415) 555-2671 now", f"call {R('phone')} now"),
    ("phone", "office +44 20 7946 0958", f"office {R('phone')}"),
    ("phone", "Paris +33 1 23 45 67 89.", f"Paris {R('phone')}."),
    ("phone", "mobile +4915112345678", f"mobile {R('phone')}"),
    ("phone", "(415) 555-2671", R("phone")),
    ("phone", "tel: 415.555.2671, ext 4", f"tel: {R('phone')}, ext 4"),
    ("phone", "ring 415-555-2671.", f"ring {R('phone')}."),
    ("payment_card", "card 4111 1111 1111 1111 exp 12/29", f"card {R('payment_card')} exp 12/29"),
    ("payment_card", "mc 5500-0000-0000-0004", f"mc {R('payment_card')}"),
    ("payment_card", "amex 378282246310005!", f"amex {R('payment_card')}!"),
    ("payment_card", "6011111111111117", R("payment_card")),
    ("iban", "IBAN DE89 3704 0044 0532 0130 00, BIC COBADEFFXXX", f"IBAN {R('iban')}, BIC COBADEFFXXX"),
    ("iban", "pay GB82WEST12345698765432 now", f"pay {R('iban')} now"),
    ("iban", "FR14 2004 1010 0505 0001 3M02 606", R("iban")),
    ("us_ssn", "SSN 123-45-6789.", f"SSN {R('us_ssn')}."),
    ("us_ssn", "078-05-1120", R("us_ssn")),
    ("us_ssn", "ssn: 123 45 6789", f"ssn: {R('us_ssn')}"),
    ("ipv4", "from 192.168.1.1 to", f"from {R('ipv4')} to"),
    ("ipv4", "dns 8.8.8.8.", f"dns {R('ipv4')}."),
    ("ipv4", "255.255.255.255", R("ipv4")),
    ("ipv4", "(10.0.0.0)", f"({R('ipv4')})"),
    ("api_key", f"key={OPENAI} end", f"key={R('api_key')} end"),
    ("api_key", f"use {ANTHROPIC}", f"use {R('api_key')}"),
    ("api_key", f"aws {AWS}.", f"aws {R('api_key')}."),
    ("api_key", f"gh {GITHUB}", f"gh {R('api_key')}"),
    ("api_key", f"pat {GITHUB_PAT}", f"pat {R('api_key')}"),
    ("api_key", f"slack {SLACK}", f"slack {R('api_key')}"),
    ("api_key", f"maps {GOOGLE}", f"maps {R('api_key')}"),
    ("api_key", f"stripe {STRIPE}", f"stripe {R('api_key')}"),
    ("api_key", 'api_key: "a1b2c3d4e5f6g7h8"', f'api_key: "{R("api_key")}"'),
    ("api_key", '{"apiKey": "zyxwvutsrqponmlk"}', f'{{"apiKey": "{R("api_key")}"}}'),
    ("api_key", "X-API-Key: abcd1234efgh5678", f"X-API-Key: {R('api_key')}"),
    ("bearer_token", "Authorization: Bearer abc123def456ghi789", f"Authorization: Bearer {R('bearer_token')}"),
    ("bearer_token", "authorization: bearer " + "q" * 30, f"authorization: bearer {R('bearer_token')}"),
    ("bearer_token", f"token {JWT} sent", f"token {R('bearer_token')} sent"),
    ("bearer_token", f"Bearer {JWT}", f"Bearer {R('bearer_token')}"),
    ("private_key", f"before\n{key_block()}\nafter", f"before\n{R('private_key')}\nafter"),
    ("private_key", key_block("OPENSSH PRIVATE KEY"), R("private_key")),
    ("private_key", f"pem: {key_block('PRIVATE KEY')} ok", f"pem: {R('private_key')} ok"),
    ("private_key", f"x {key_block('ENCRYPTED PRIVATE KEY')}", f"x {R('private_key')}"),
    # A key cut short (by a size limit, say) is still a key: redacted to the end.
    ("private_key", "cut: -----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI", f"cut: {R('private_key')}"),
]

# (detector, text that must come back untouched)
NEGATIVES: list[tuple[str, str]] = [
    ("email", "user@localhost"),
    ("email", "follow @handle"),
    ("email", "a@b.c"),
    ("email", "no at sign here.com"),
    ("phone", "2024-01-15"),
    ("phone", "version 10.15.7"),
    ("phone", "1.2.3"),
    ("phone", "+1 2 3"),
    ("phone", "+1234567"),
    ("phone", "192.168.1.1"),
    ("phone", "ISBN 978-3-16-148410-0"),
    ("phone", "order 12345678"),
    ("phone", "2024-01-15 12:30:00"),
    ("payment_card", "4111 1111 1111 1112"),  # Luhn fails
    ("payment_card", "4111-1111-1111-1121"),
    ("payment_card", "ts 1700000000000001"),  # passes Luhn, but 1 is no card prefix (µs timestamp)
    ("payment_card", "ts 1700000000004"),  # the same for milliseconds
    ("payment_card", "0000 0000 0000 0000"),
    ("payment_card", "4111 1111 1111"),  # 12 digits
    ("payment_card", "41111111111111111111"),  # 20 digits
    ("iban", "GB83 WEST 1234 5698 7654 32"),  # check digits wrong
    ("iban", "DE00 3704 0044 0532 0130 00"),
    ("iban", "DE89 3704 0044 0532 0130 01"),  # one digit changed
    ("iban", "AB12 CDEF"),
    ("iban", "ISO 9001 certified"),
    ("us_ssn", "000-12-3456"),
    ("us_ssn", "666-12-3456"),
    ("us_ssn", "900-12-3456"),
    ("us_ssn", "123-00-6789"),
    ("us_ssn", "123-45-0000"),
    ("us_ssn", "123-45 6789"),
    ("us_ssn", "123456789"),
    ("us_ssn", "1123-45-6789"),
    ("us_ssn", "2024-01-15"),
    ("ipv4", "256.1.1.1"),
    ("ipv4", "1.2.3"),
    ("ipv4", "v1.2.3.4"),
    ("ipv4", "1.2.3.4.5"),
    ("ipv4", "01.02.03.04"),
    ("ipv4", "192.168.1.300"),
    ("api_key", "risk-assessment-framework-document-v2"),
    ("api_key", "sk-short"),
    ("api_key", AWS[:-1]),
    ("api_key", "ghp_short"),
    ("api_key", "the api key is missing"),
    ("api_key", "api_key: null"),
    ("api_key", "desk-lamp-with-extra-long-name-here"),
    ("bearer_token", "a Bearer authentication scheme"),
    ("bearer_token", "Bearer token"),
    ("bearer_token", "eyJhbGciOiJIUzI1NiJ9"),
    ("bearer_token", "eyJ.eyJ.sig"),
    ("private_key", "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----"),
    ("private_key", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"),
    ("private_key", "the PRIVATE KEY is kept offline"),
]

# Ordinary values that no builtin may touch.
BENIGN = [
    "The quick brown fox jumps over the lazy dog.",
    "Released 2024-01-15T10:30:00Z as v2.3.1 (build 1700000000)",
    "uuid 550e8400-e29b-41d4-a716-446655440000",
    "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "https://example.org/docs/api/v1/users?page=2&limit=50",
    "/usr/local/lib/python3.11/site-packages",
    "Total: $1,234.56 (12.5% off), 3 items",
    "Meeting at 10:30-11:45 in room 4B",
    "task-management, desk-lamp, risk-assessment",
    "Use a bearer token for auth; the API key goes in a header.",
    "commit 3f2a9c1 fixed #1234",
]


def _one(name: str) -> list[Detector]:
    return [BUILTIN[name]]


@pytest.mark.parametrize(("name", "text", "want"), POSITIVES, ids=[f"{p[0]}-{i}" for i, p in enumerate(POSITIVES)])
def test_true_positive(name: str, text: str, want: str) -> None:
    got, found = redact(text, _one(name))
    assert got == want
    assert found == [{"path": "$", "detector": name}] * want.count("[REDACTED:")
    all_got, _ = redact(text, list(BUILTIN.values()))
    assert R(name) in all_got  # still found among every other detector


@pytest.mark.parametrize(("name", "text"), NEGATIVES, ids=[f"{n[0]}-{i}" for i, n in enumerate(NEGATIVES)])
def test_near_miss(name: str, text: str) -> None:
    got, found = redact(text, _one(name))
    assert got is text
    assert found == []


@pytest.mark.parametrize("text", BENIGN)
def test_benign_text_untouched_by_every_builtin(text: str) -> None:
    got, found = redact(text, list(BUILTIN.values()))
    assert (got, found) == (text, [])


def test_the_secret_detectors() -> None:
    assert SECRET_DETECTORS == ("api_key", "bearer_token", "private_key")
    assert {n for n, d in BUILTIN.items() if d.secret} == set(SECRET_DETECTORS)
    assert all(d.name == n for n, d in BUILTIN.items())


@pytest.mark.parametrize(("text", "ok"), [
    ("4111111111111111", True), ("4111111111111112", False), ("378282246310005", True),
    ("1700000000000001", False), ("4111 1111 1111", False), ("0000000000000000", False),
])
def test_luhn(text: str, ok: bool) -> None:
    assert luhn_ok(text) is ok


@pytest.mark.parametrize(("text", "ok"), [
    ("GB82 WEST 1234 5698 7654 32", True), ("GB82WEST12345698765432", True),
    ("DE89370400440532013000", True), ("NL91ABNA0417164300", True),
    ("GB82 WEST 1234 5698 7654 33", False), ("NL91ABNA041716430", False), ("9982WEST12345698765432", False),
])
def test_iban_mod97(text: str, ok: bool) -> None:
    assert iban_ok(text) is ok


# -- multi-line blocks, JWT ----------------------------------------------------------------------


def test_private_key_block_spanning_lines_in_a_structure() -> None:
    value = {"files": [{"name": "id_rsa", "content": f"# key\n{key_block()}\n# end"}]}
    got, found = redact(value, [BUILTIN[n] for n in SECRET_DETECTORS])
    assert got == {"files": [{"name": "id_rsa", "content": f"# key\n{R('private_key')}\n# end"}]}
    assert found == [{"path": "files.0.content", "detector": "private_key"}]
    assert "MIIE" not in repr(got)


def test_two_key_blocks_are_two_redactions() -> None:
    text = f"{key_block()}\nbetween\n{key_block('EC PRIVATE KEY')}"
    got, found = redact(text, _one("private_key"))
    assert got == f"{R('private_key')}\nbetween\n{R('private_key')}"
    assert len(found) == 2


def test_jwt_alone_and_in_a_header() -> None:
    got, _ = redact({"h": f"Authorization: Bearer {JWT}", "t": JWT}, _one("bearer_token"))
    assert got == {"h": f"Authorization: Bearer {R('bearer_token')}", "t": R("bearer_token")}


# -- custom detectors and names ------------------------------------------------------------------


def test_custom_detector() -> None:
    order = custom_detector("order_id", r"ORD-[0-9]{6}")
    assert order == Detector("order_id", re.compile(r"ORD-[0-9]{6}"))
    assert not order.secret
    got, found = redact({"note": "refund ORD-123456 and ORD-654321; not ORD-12"}, [order])
    assert got == {"note": f"refund {R('order_id')} and {R('order_id')}; not ORD-12"}
    assert found == [{"path": "note", "detector": "order_id"}] * 2


def test_custom_detector_value_group_narrows_the_replacement() -> None:
    pin = custom_detector("pin", r"PIN:\s*(?P<value>[0-9]{4})")
    assert redact("PIN: 1234", [pin])[0] == f"PIN: {R('pin')}"


def test_custom_detector_named_like_a_builtin_is_still_its_own_pattern() -> None:
    # A Detector built by hand with a builtin's name must not inherit that builtin's hint.
    fake_email = Detector("email", re.compile("secret-[a-z]+"))
    assert redact("a secret-word", [fake_email])[0] == f"a {R('email')}"


@pytest.mark.parametrize(("name", "regex", "message"), [
    ("order_id", "ORD-[0-9", r"detector order_id: bad regular expression 'ORD-\[0-9': .*check the escaping"),
    ("order_id", "(unclosed", r"bad regular expression '\(unclosed': missing \), unterminated subpattern"),
    ("order_id", "[0-9]*", r"matches the empty string"),
    ("email", "x+", r"custom detector 'email' shadows the builtin .*pick another name"),
    ("bad name", "x+", r"detector name 'bad name' is not allowed"),
    ("", "x+", r"detector name '' is not allowed"),
])
def test_custom_detector_errors(name: str, regex: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        custom_detector(name, regex)


def test_detectors_named() -> None:
    order = custom_detector("order_id", r"ORD-[0-9]{6}")
    got = detectors_named(["email", "order_id", "email", "phone"], {"order_id": order})
    assert got == [BUILTIN["email"], order, BUILTIN["phone"]]
    assert detectors_named([]) == []


def test_detectors_named_lists_unknown_and_known_names() -> None:
    order = custom_detector("order_id", r"ORD-[0-9]{6}")
    with pytest.raises(ValueError) as info:
        detectors_named(["email", "emial", "credit_card"], {"order_id": order})
    message = str(info.value)
    assert message.startswith("unknown detectors 'emial', 'credit_card'; known: email, phone,")
    assert message.endswith("private_key, order_id")
    with pytest.raises(ValueError, match=r"^unknown detector 'x'; known: "):
        detectors_named(["x"])


# -- paths ---------------------------------------------------------------------------------------

EMAIL = [BUILTIN["email"]]
DOC: dict[str, Any] = {
    "args": {"customer": {"email": "a@example.com", "name": "Ann"}, "cc": "b@example.com"},
    "messages": [{"role": "user", "content": "mail c@example.com"}, {"role": "tool", "content": "d@example.com"}],
    "email": "e@example.com",
}


@pytest.mark.parametrize(("paths", "where"), [
    (None, ["args.customer.email", "args.cc", "messages.0.content", "messages.1.content", "email"]),
    (["args.customer.email"], ["args.customer.email"]),
    (["args"], ["args.customer.email", "args.cc"]),  # everything beneath
    (["args.customer"], ["args.customer.email"]),
    (["messages.*.content"], ["messages.0.content", "messages.1.content"]),
    (["messages.1"], ["messages.1.content"]),
    (["messages.1.content", "email"], ["messages.1.content", "email"]),
    (["*.email"], []),  # a key "email" exactly one level down: DOC has none
    (["*.*.email"], ["args.customer.email"]),
    (["*.cc", "email"], ["args.cc", "email"]),
    (["$"], ["args.customer.email", "args.cc", "messages.0.content", "messages.1.content", "email"]),
    (["$.email"], ["email"]),
    ("email", ["email"]),  # one path given bare
])
def test_path_selection(paths: list[str] | None, where: list[str]) -> None:
    _, found = redact(DOC, EMAIL, paths)
    assert [f["path"] for f in found] == where


def test_wildcard_matches_one_level_of_keys_or_indices() -> None:
    value = {"a": {"email": "x@example.com"}, "b": [{"email": "y@example.com"}], "email": "z@example.com"}
    _, found = redact(value, EMAIL, ["*.email"])
    assert [f["path"] for f in found] == ["a.email"]
    _, found = redact(value, EMAIL, ["*.*.email"])
    assert [f["path"] for f in found] == ["b.0.email"]


@pytest.mark.parametrize("paths", [[], ["nowhere"], ["args.customer.name"], ["messages.2.content"],
                                   ["email.deeper"], ["args.customer.email.x"]])
def test_paths_that_select_nothing_return_the_same_object(paths: list[str]) -> None:
    got, found = redact(DOC, EMAIL, paths)
    assert got is DOC
    assert found == []


@pytest.mark.parametrize("paths", [["args..email"], [""], ["args."], [3]])
def test_bad_paths(paths: list[Any]) -> None:
    with pytest.raises(ValueError, match="redaction path"):
        redact(DOC, EMAIL, paths)


@pytest.mark.parametrize(("path", "parts"), [
    ("args.customer.email", ("args", "customer", "email")), ("messages.*.content", ("messages", "*", "content")),
    ("$", ()), ("$.email", ("email",)), ("0", ("0",)),
])
def test_parse_path(path: str, parts: tuple[str, ...]) -> None:
    assert parse_path(path) == parts


def test_root_string_path_is_dollar() -> None:
    assert redact("x@example.com", EMAIL) == (R("email"), [{"path": "$", "detector": "email"}])
    assert redact("x@example.com", EMAIL, ["a"]) == ("x@example.com", [])


# -- copying and identity ------------------------------------------------------------------------


def test_input_never_mutated_and_untouched_parts_shared() -> None:
    value = copy.deepcopy(DOC) | {"t": ("f@example.com", 7), "keep": {"n": [1, 2]}}
    before = copy.deepcopy(value)
    got, _ = redact(value, EMAIL)
    assert value == before
    assert got is not value and got["args"] is not value["args"]
    assert got["keep"] is value["keep"]  # nothing inside: shared, not copied
    assert got["t"] == [R("email"), 7]  # a tuple holding a redaction comes back as a list
    assert got["messages"][0] == {"role": "user", "content": f"mail {R('email')}"}


@pytest.mark.parametrize("value", [None, 0, 4111111111111111, 1.5, True, "", {}, [], (), b"a@example.com",
                                   "plain text", {"a": 1, "b": [2.0, None]}, ("x", ["y"]), {"k": {"j": ()}}])
def test_nothing_found_returns_the_same_object(value: Any) -> None:
    got, found = redact(value, list(BUILTIN.values()))
    assert got is value
    assert found == []


def test_no_detectors_returns_the_same_object() -> None:
    assert redact(DOC, [])[0] is DOC


def test_int_card_number_and_dict_keys_are_not_redacted() -> None:
    value = {"a@example.com": 4111111111111111}
    got, found = redact(value, list(BUILTIN.values()))
    assert got is value and found == []


def test_subclasses_are_walked_and_rebuilt_as_plain_containers() -> None:
    class Tags(list[str]):
        pass

    class Args(dict[str, Any]):
        pass

    got, found = redact(Args(to=Tags(["x@example.com"])), EMAIL)
    assert type(got) is dict and type(got["to"]) is list
    assert got == {"to": [R("email")]}
    assert found == [{"path": "to.0", "detector": "email"}]


def test_too_deep_or_cyclic_values_are_replaced_not_crashed_on() -> None:
    cyc: list[Any] = ["x@example.com"]
    cyc.append(cyc)
    got, found = redact(cyc, EMAIL)
    assert cyc[0] == "x@example.com" and cyc[1] is cyc  # the input is intact
    assert got[0] == R("email")
    assert found[0] == {"path": "0", "detector": "email"}
    assert found[-1]["detector"] == TOO_DEEP
    deep: Any = "plain"
    for _ in range(100):
        deep = [deep]
    got, found = redact(deep, EMAIL)
    assert len(found) == 1 and found[0]["detector"] == TOO_DEEP
    assert found[0]["path"] == ".".join(["0"] * 64)


def test_secrets_under_paths_only_in_selected_parts() -> None:
    value = {"a": f"k {AWS}", "b": f"k {AWS}"}
    got, found = redact(value, [BUILTIN["api_key"]], ["b"])
    assert got == {"a": f"k {AWS}", "b": f"k {R('api_key')}"}
    assert found == [{"path": "b", "detector": "api_key"}]


# -- order and overlaps --------------------------------------------------------------------------


def test_deterministic_order_depth_first_then_position() -> None:
    value = {
        "z": "first z@example.com then 10.0.0.1",
        "a": ["n@example.com", {"deep": "192.168.0.1 and m@example.com"}],
        "m": ("o@example.com",),
    }
    detectors = [BUILTIN["ipv4"], BUILTIN["email"]]
    _, found = redact(value, detectors)
    assert found == [
        {"path": "z", "detector": "email"}, {"path": "z", "detector": "ipv4"},
        {"path": "a.0", "detector": "email"},
        {"path": "a.1.deep", "detector": "ipv4"}, {"path": "a.1.deep", "detector": "email"},
        {"path": "m.0", "detector": "email"},
    ]
    assert redact(value, detectors) == redact(copy.deepcopy(value), detectors)


def test_overlap_earliest_start_wins() -> None:
    domain = custom_detector("domain", r"example\.com\S*")
    got, found = redact("mail bob@example.com/x", [domain, BUILTIN["email"]])
    assert got == f"mail {R('email')}/x"
    assert found == [{"path": "$", "detector": "email"}]


def test_overlap_same_start_longest_wins() -> None:
    short = custom_detector("short", r"ORD-[0-9]{3}")
    long = custom_detector("long", r"ORD-[0-9]{6}")
    assert redact("ORD-123456", [short, long])[0] == R("long")
    assert redact("ORD-123456", [long, short])[0] == R("long")


def test_overlap_same_span_first_detector_wins() -> None:
    one = custom_detector("one", r"ORD-[0-9]+")
    two = custom_detector("two", r"ORD-[0-9]+")
    assert redact("ORD-1", [one, two]) == (R("one"), [{"path": "$", "detector": "one"}])
    assert redact("ORD-1", [two, one]) == (R("two"), [{"path": "$", "detector": "two"}])


def test_overlap_each_replaced_span_reported_once() -> None:
    # A JWT after "Bearer", inside an api_key assignment: three detectors, one span.
    text = f"api_key={JWT}"
    got, found = redact(text, [BUILTIN["bearer_token"], BUILTIN["api_key"]])
    assert got == f"api_key={R('bearer_token')}"
    assert found == [{"path": "$", "detector": "bearer_token"}]


def test_redacting_twice_finds_nothing_new() -> None:
    value = {f"k{i}": text for i, (_, text, _) in enumerate(POSITIVES)}
    once, found = redact(value, list(BUILTIN.values()))
    assert found
    twice, again = redact(once, list(BUILTIN.values()))
    assert twice is once and again == []


# -- the fast path against a naive reference -----------------------------------------------------


def _reference_string(text: str, detectors: list[Detector]) -> tuple[str, list[str]]:
    spans = []
    for i, d in enumerate(detectors):
        for m in d.pattern.finditer(text):
            group = "value" if "value" in d.pattern.groupindex and m.group("value") is not None else 0
            start, end = m.span(group)
            if start < end and (d.check is None or d.check(text[start:end])):
                spans.append((start, -(end - start), i, end))
    out, names, last = [], [], 0
    for start, _, i, end in sorted(spans):
        if start >= last:
            out += [text[last:start], R(detectors[i].name)]
            names.append(detectors[i].name)
            last = end
    return "".join(out) + text[last:], names


def _reference(value: Any, detectors: list[Detector], at: str = "") -> tuple[Any, list[dict[str, str]]]:
    if isinstance(value, str):
        text, names = _reference_string(value, detectors)
        return text, [{"path": at or "$", "detector": n} for n in names]
    if not isinstance(value, dict | list | tuple):
        return value, []
    found: list[dict[str, str]] = []
    pairs = []
    for k, v in value.items() if isinstance(value, dict) else enumerate(value):
        new, more = _reference(v, detectors, f"{at}.{k}" if at else str(k))
        pairs.append((k, new))
        found += more
    return (dict(pairs) if isinstance(value, dict) else [new for _, new in pairs]), found


FRAGMENTS = [t for _, t, _ in POSITIVES] + [t for _, t in NEGATIVES] + BENIGN + [
    "", " ", "-", "_", "A", "J", "api", "Bearer ", "eyJ", "@", ".", "0", "+", "-----BEGIN ", "\n",
]
texts = st.lists(st.sampled_from(FRAGMENTS), max_size=4).map(" ".join) | st.text(max_size=40)
values = st.recursive(
    texts | st.integers() | st.none(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from("abcde"), inner, max_size=4),
    max_leaves=12,
)
detector_sets = st.lists(st.sampled_from(list(BUILTIN.values())), min_size=1, max_size=9, unique=True)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=values, detectors=detector_sets)
def test_matches_the_naive_reference(value: Any, detectors: list[Detector]) -> None:
    before = copy.deepcopy(value)
    got, found = redact(value, detectors)
    assert value == before
    want, want_found = _reference(value, detectors)
    assert got == want
    assert found == want_found
    if not found:
        assert got is value
