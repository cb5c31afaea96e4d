"""Writes the test vectors of the wire contract: ``python -m tests.vectors.generate``.

Every run makes fresh Ed25519 keys, signs every vector at a fixed ``NOW`` and writes
``envelopes.json``, ``receipts.json``, ``descriptors.json``, ``request_tokens.json``,
``evidence.json`` and ``directories.json`` next to this file (``--only FILE`` for one). The files hold public keys and signed tokens only; the private keys live in this
process and are gone when it ends. Before writing, every vector is run through our own
verifiers and the run fails if one does not give its expected result.

docs/protocol.md ("Test vectors") says how a partner implementation uses the files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol import descriptor as desc
from protocol import directory as dir_
from protocol import envelope as env
from protocol import evidence as ev
from protocol import receipt as rcpt
from protocol import request_token as rt
from protocol.claims import CLOCK_SKEW, MAX_LIFETIME
from protocol.errors import ErrorCode
from protocol.keys import TrustedKey, generate_private_key, key_id, public_key_text
from protocol.messages import MESSAGE_TYPES
from tests.vectors import runner
from tests.vectors.tokens import (
    DAY,
    Signer,
    b64,
    body_for,
    compact_json,
    days,
    flip_signature,
    hs256_with_public_key,
    iso,
    payload_of,
    replace_payload,
    sign_json,
    sign_raw,
    to_runs,
)

FORMAT = "tongban-test-vectors/1"
#: The fixed moment every vector is checked at: 2026-07-01T00:00:00Z.
NOW = 1_782_864_000
SENDER = "430523"  # 邵阳县
RECEIVER = "430400"  # 衡阳市
OTHER = "370500"  # 东营市
STRANGER = "110000"  # 北京市, not a partner
XT = "XT-430523-20260701-0001"
#: Longest token kept verbatim in a file; longer ones are stored as ``token_runs``.
VERBATIM_LIMIT = 64 * 1024

COMMON = {
    "format": FORMAT,
    "now": NOW,
    "now_iso": iso(NOW),
    "how_to_use": (
        "Build the trusted key set from `keys` (each region named there is a known partner). "
        "For each vector, verify its token (the string `token`, or the concatenation of each "
        "`token_runs` segment repeated count times) as UTF-8 bytes with the inputs the vector "
        "names, at time `now`, and compare: `expected` is `valid` or the error code. Valid "
        "vectors list in `expect` what the verifier must report. `cause` (receipts, "
        "descriptors, request tokens) is the check that failed inside the one outward code; "
        "it is informative. See docs/protocol.md."
    ),
}


@dataclass
class Keys:
    """Every key a run uses. ``trusted`` is what the files publish; the others sign the
    vectors a verifier must refuse."""

    current: Signer
    retired: Signer
    following: Signer
    receiver: Signer
    other: Signer
    rogue: Signer = field(repr=False)
    rotated: Signer = field(repr=False)
    stranger: Signer = field(repr=False)
    receiver_rogue: Signer = field(repr=False)

    @classmethod
    def fresh(cls) -> Keys:
        long_ago, far = NOW - days(90), NOW + days(365)
        return cls(
            current=Signer.make(SENDER, long_ago, far),
            # Retired an hour ago (a rotated-out key's window ends).
            retired=Signer.make(SENDER, NOW - days(400), NOW - 3600),
            # Published ahead of use: valid from 100 s after NOW.
            following=Signer.make(SENDER, NOW + 100, NOW + days(400)),
            receiver=Signer.make(RECEIVER, long_ago, far),
            other=Signer.make(OTHER, long_ago, far),
            rogue=Signer.make(SENDER, long_ago, far),
            rotated=Signer.make(SENDER, NOW - days(1), far),
            stranger=Signer.make(STRANGER, long_ago, far),
            receiver_rogue=Signer.make(RECEIVER, long_ago, far),
        )

    @property
    def trusted(self) -> list[Signer]:
        return [self.current, self.retired, self.following, self.receiver, self.other]

    def published(self) -> list[dict[str, str]]:
        return [
            {
                "region": s.region,
                "kid": s.kid,
                "public_key": s.trusted.to_claim()["public_key"],
                "not_before": iso(s.trusted.not_before),
                "not_after": iso(s.trusted.not_after),
            }
            for s in self.trusted
        ]


def _jti() -> str:
    return str(uuid.uuid4())


def envelope_claims(typ: str = "case.progress", **over: Any) -> dict[str, Any]:
    body, blobs = body_for(typ)
    claims: dict[str, Any] = {
        "iss": SENDER,
        "aud": RECEIVER,
        "jti": _jti(),
        "iat": NOW - 60,
        "exp": NOW - 60 + DAY,
        "typ": typ,
        "xt": XT,
        "seq": 1,
        "body": body,
        "blobs": blobs,
    }
    claims.update(over)
    return claims


def env_header(signer: Signer, **over: Any) -> dict[str, Any]:
    head: dict[str, Any] = {"alg": "EdDSA", "typ": env.TYP, "kid": signer.kid}
    head.update(over)
    return head


def without(claims: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in claims.items() if k not in names}


def with_raw_body_field(claims: dict[str, Any], name: str, raw: str) -> bytes:
    """The claims as JSON with ``body.<name>`` set to the raw JSON text ``raw`` (for nestings
    too deep for any encoder)."""
    head = compact_json(without(claims, "body")).decode("utf-8")[:-1]
    body = compact_json(claims["body"]).decode("utf-8")[:-1]
    joiner = "," if claims["body"] else ""
    return f'{head},"body":{body}{joiner}"{name}":{raw}}}}}'.encode()


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


class Collector:
    def __init__(self) -> None:
        self.vectors: list[dict[str, Any]] = []

    def add(self, name: str, description: str, token: str, expected: str, **extra: Any) -> None:
        if expected != "valid" and not expected.startswith("evidence_"):
            ErrorCode(expected)  # a typo in a code is a bug of this script
        vector: dict[str, Any] = {"name": name, "description": description}
        if len(token) > VERBATIM_LIMIT:
            vector["token_runs"] = to_runs(token)
        else:
            vector["token"] = token
        vector.update(extra)
        vector["expected"] = expected
        self.vectors.append(vector)


# -- envelopes ---------------------------------------------------------------------------------


def envelope_vectors(k: Keys) -> list[dict[str, Any]]:
    out = Collector()
    cur = k.current

    def add(
        name: str,
        description: str,
        token: str,
        expected: str,
        *,
        now: int = NOW,
        recipient: str | None = RECEIVER,
        check_time: bool = True,
        expect: dict[str, Any] | None = None,
    ) -> None:
        extra: dict[str, Any] = {"now": now, "recipient": recipient, "check_time": check_time}
        if expect is not None:
            extra["expect"] = expect
        out.add(name, description, token, expected, **extra)

    def valid(name: str, description: str, token: str, claims: dict[str, Any], **kw: Any) -> None:
        expect = {n: claims[n] for n in ("iss", "aud", "jti", "typ", "xt", "seq")}
        expect["digest"] = hashlib.sha256(token.encode("ascii")).hexdigest()
        add(name, description, token, "valid", expect=expect, **kw)

    def signed(claims: dict[str, Any], signer: Signer = cur, **head: Any) -> str:
        return sign_json(env_header(signer, **head), claims, signer.private_key)

    # One valid envelope per message type, signed by our own signer.
    for seq, typ in enumerate(MESSAGE_TYPES, start=1):
        claims = envelope_claims(typ, seq=seq)
        token = env.sign_envelope(claims, cur.private_key, cur.kid)
        valid(f"valid/{typ}", f"a well-formed {typ} envelope", token, claims)

    # Valid encodings other than the compact form our signer makes.
    claims = envelope_claims()
    head = ('{ "kid" : "' + cur.kid + '", "typ": "' + env.TYP + '",\n  "alg": "EdDSA" }').encode()
    token = sign_raw(head, compact_json(claims), cur.private_key)
    valid(
        "valid/header-whitespace-and-key-order",
        "header with whitespace and keys in another order: JSON, not a byte template",
        token,
        claims,
    )
    claims = envelope_claims("case.submit")
    pretty = json.dumps(claims, ensure_ascii=False, indent=2).encode("utf-8")
    valid(
        "valid/payload-pretty-printed-raw-utf8",
        "claims pretty-printed, non-ASCII text as raw UTF-8 rather than \\u escapes",
        sign_raw(compact_json(env_header(cur)), pretty, cur.private_key),
        claims,
    )
    claims = envelope_claims("case.submit")
    valid(
        "valid/payload-ascii-escapes",
        "non-ASCII text written as \\u escapes",
        sign_raw(
            compact_json(env_header(cur)), compact_json(claims, ascii_only=True), cur.private_key
        ),
        claims,
    )

    # Boundaries that are still valid.
    claims = envelope_claims(iat=NOW - DAY, exp=NOW - CLOCK_SKEW)
    valid("valid/exp-at-skew", f"exp exactly {CLOCK_SKEW} s before now", signed(claims), claims)
    claims = envelope_claims(iat=NOW + CLOCK_SKEW, exp=NOW + CLOCK_SKEW + DAY)
    valid("valid/iat-at-skew", f"iat exactly {CLOCK_SKEW} s after now", signed(claims), claims)
    claims = envelope_claims(iat=NOW - 60, exp=NOW - 60 + MAX_LIFETIME)
    valid("valid/lifetime-7-days", "exp - iat exactly 7 days", signed(claims), claims)
    claims = envelope_claims(seq=2**53 - 1)
    valid("valid/seq-max", "seq 2^53 - 1, the largest integer allowed", signed(claims), claims)
    claims = envelope_claims(xt="A" * 64)
    valid("valid/xt-64-chars", "xt of 64 characters, the longest allowed", signed(claims), claims)
    retired_at = int(k.retired.trusted.not_after.timestamp())
    claims = envelope_claims(iat=retired_at, exp=retired_at + DAY)
    valid(
        "valid/key-window-last-second",
        "signed by a retired key at the last second of its window (iat == not_after)",
        signed(claims, k.retired),
        claims,
    )
    starts_at = int(k.following.trusted.not_before.timestamp())
    claims = envelope_claims(iat=starts_at, exp=starts_at + DAY)
    valid(
        "valid/key-window-first-second",
        "signed by a pre-published key at the first second of its window (iat == not_before)",
        signed(claims, k.following),
        claims,
    )
    archived = envelope_claims(iat=NOW - days(30), exp=NOW - days(30) + MAX_LIFETIME)
    archived_token = signed(archived, k.retired)
    valid(
        "valid/archive-retired-key",
        "archive check (no audience, no time): signed inside the retired key's window, long "
        "expired",
        archived_token,
        archived,
        recipient=None,
        check_time=False,
    )
    add(
        "expired/archive-checked-as-live",
        "the archived envelope above, checked as a live delivery",
        archived_token,
        "expired",
    )

    # Framing.
    good = signed(envelope_claims())
    h, p, s = good.split(".")
    big = envelope_claims(body={"note": ""})
    base = len(signed(big))
    big["body"]["note"] = "x" * ((env.MAX_ENVELOPE_BYTES - base) * 3 // 4 + 3)
    big_token = signed(big)
    assert len(big_token) > env.MAX_ENVELOPE_BYTES
    add("too_large/over-1-MiB", "a signed envelope just over 1 MiB", big_token, "too_large")
    add("malformed_jws/two-parts", "header.payload, no signature part", f"{h}.{p}", "malformed_jws")
    add("malformed_jws/four-parts", "an extra part", f"{good}.{s}", "malformed_jws")
    add("malformed_jws/empty-header", "empty header part", f".{p}.{s}", "malformed_jws")
    add("malformed_jws/empty-payload", "empty payload part", f"{h}..{s}", "malformed_jws")
    add("malformed_jws/empty", "the empty string", "", "malformed_jws")
    add("malformed_jws/only-dots", "three empty parts", "..", "malformed_jws")
    add(
        "malformed_jws/non-ascii",
        "a non-ASCII character in the token",
        f"{h}.{p}é.{s}",
        "malformed_jws",
    )
    add(
        "malformed_jws/trailing-newline",
        "a newline after the signature",
        f"{good}\n",
        "malformed_jws",
    )
    add("malformed_jws/leading-space", "a space before the header", f" {good}", "malformed_jws")
    add(
        "malformed_jws/standard-alphabet",
        "'+' and '/' (standard base64) instead of '-' and '_'",
        f"{h}.{p}.+/{s[2:]}",
        "malformed_jws",
    )
    add("malformed_jws/padding", "the signature padded with '=='", f"{good}==", "malformed_jws")
    add(
        "malformed_jws/length-mod-4-is-1",
        "a part whose length is 1 mod 4 (no byte string encodes to it)",
        f"{good}AAA",
        "malformed_jws",
    )
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(s[-1])
    assert last & 0x0F == 0
    add(
        "malformed_jws/non-canonical-trailing-bits",
        "the signature's last character with an unused low bit set: decodes to the same 64 "
        "bytes in a lax decoder",
        f"{h}.{p}.{s[:-1]}{alphabet[last | 1]}",
        "malformed_jws",
    )
    add(
        "malformed_jws/header-bad-char",
        "a '*' in the header part",
        f"*{h[1:]}.{p}.{s}",
        "malformed_jws",
    )

    # Strict JSON and UTF-8.
    hb = compact_json(env_header(cur))
    body_claims = envelope_claims()
    cb = compact_json(body_claims)

    def raw(name: str, description: str, head: bytes, payload: bytes, expected: str) -> None:
        add(name, description, sign_raw(head, payload, cur.private_key), expected)

    raw(
        "invalid_encoding/header-invalid-utf8",
        "byte 0xFF inside a header string",
        hb[:-1] + b',"x":"\xff"}',
        cb,
        "invalid_encoding",
    )
    xt_bytes = XT.encode()
    raw(
        "invalid_encoding/payload-invalid-utf8",
        "byte 0xFF inside the xt string",
        hb,
        cb.replace(xt_bytes, b"XT-\xff"),
        "invalid_encoding",
    )
    raw(
        "invalid_encoding/payload-overlong-utf8",
        "overlong encoding C0 AF of '/'",
        hb,
        cb.replace(xt_bytes, b"XT-\xc0\xaf"),
        "invalid_encoding",
    )
    raw(
        "invalid_encoding/payload-utf8-surrogate",
        "a UTF-16 surrogate encoded as UTF-8 bytes (ED A0 80)",
        hb,
        cb.replace(xt_bytes, b"XT-\xed\xa0\x80"),
        "invalid_encoding",
    )
    raw("invalid_json/header-not-json", "header is not JSON", b"EdDSA", cb, "invalid_json")
    raw("invalid_json/header-array", "header is a JSON array", b'["EdDSA"]', cb, "invalid_json")
    raw(
        "invalid_json/header-duplicate-alg",
        "the header names alg twice",
        hb[:-1] + b',"alg":"none"}',
        cb,
        "invalid_json",
    )
    for label, payload in (
        ("array", b"[" + cb + b"]"),
        ("string", b'"claims"'),
        ("number", b"42"),
        ("null", b"null"),
        ("true", b"true"),
    ):
        raw(
            f"invalid_json/payload-{label}", f"payload is JSON {label}", hb, payload, "invalid_json"
        )
    raw(
        "invalid_json/duplicate-aud",
        "aud twice with different values (parsers disagree which wins)",
        hb,
        cb[:-1] + b',"aud":"370500"}',
        "invalid_json",
    )
    iat_text = f'"iat":{body_claims["iat"]}'.encode()
    for label, literal in (("integral-fraction", ".0"), ("exponent", "e0")):
        raw(
            f"invalid_claims/iat-{label}",
            f"iat written as {body_claims['iat']}{literal}: an integer claim is a JSON number "
            "without fraction or exponent",
            hb,
            cb.replace(iat_text, iat_text + literal.encode()),
            "invalid_claims",
        )
    raw(
        "invalid_json/duplicate-after-unescaping",
        'keys "aud" and "\\u0061ud" are the same name',
        hb,
        cb[:-1] + b',"\\u0061ud":"370500"}',
        "invalid_json",
    )
    for label, literal in (
        ("nan", b"NaN"),
        ("infinity", b"Infinity"),
        ("minus-infinity", b"-Infinity"),
        ("1e400", b"1e400"),
    ):
        raw(
            f"invalid_json/iat-{label}",
            f"iat is {literal.decode()} (not a JSON number, or beyond a double)",
            hb,
            cb.replace(iat_text, b'"iat":' + literal),
            "invalid_json",
        )
    raw(
        "invalid_json/integer-beyond-2^53",
        "seq is 2^53, beyond the exactly representable integers",
        hb,
        cb.replace(b'"seq":1', b'"seq":9007199254740992'),
        "invalid_json",
    )
    raw(
        "invalid_json/lone-surrogate",
        "a \\ud800 escape with no low surrogate: not Unicode text",
        hb,
        cb.replace(xt_bytes, b"XT-\\ud800"),
        "invalid_json",
    )
    raw("invalid_json/trailing-garbage", "text after the object", hb, cb + b"x", "invalid_json")
    raw("invalid_json/trailing-comma", "a comma before }", hb, cb[:-1] + b",}", "invalid_json")
    raw(
        "invalid_json/bom",
        "a UTF-8 byte order mark before the object",
        hb,
        b"\xef\xbb\xbf" + cb,
        "invalid_json",
    )
    raw(
        "invalid_json/single-quotes",
        "a single-quoted string",
        hb,
        cb.replace(b'"seq":1', b"'seq':1"),
        "invalid_json",
    )
    for levels, expected in (
        (30, "schema_invalid"),
        (31, "json_too_deep"),
        (100, "json_too_deep"),
        (100_000, "json_too_deep"),
    ):
        depth = levels + 2
        what = (
            "within the limit, so the body schema refuses the unknown field"
            if expected == "schema_invalid"
            else "deeper than 32"
        )
        name = f"{expected}/depth-{depth}" if levels < 1000 else f"{expected}/body-100000-levels"
        raw(
            name,
            f"body.deep holds {levels} nested arrays: total depth {depth}, {what}",
            hb,
            with_raw_body_field(body_claims, "deep", nested(levels)),
            expected,
        )

    # Header.
    payload = compact_json(envelope_claims())
    add(
        "alg_not_allowed/none",
        "alg none with an empty signature",
        sign_raw(compact_json(env_header(cur, alg="none")), payload, None),
        "alg_not_allowed",
    )
    add(
        "alg_not_allowed/hs256-keyed-with-public-key",
        "HS256 whose HMAC key is the sender's raw public key (key confusion)",
        hs256_with_public_key(env_header(cur, alg="HS256"), envelope_claims(), cur.public),
        "alg_not_allowed",
    )
    add(
        "alg_not_allowed/rs256",
        "alg RS256 with a 256-byte signature",
        sign_raw(compact_json(env_header(cur, alg="RS256")), payload, None, signature=bytes(256)),
        "alg_not_allowed",
    )
    for label, alg in (("ed25519", "Ed25519"), ("lowercase", "eddsa")):
        add(
            f"alg_not_allowed/{label}",
            f"alg {alg!r}: only the exact string EdDSA is accepted",
            sign_raw(compact_json(env_header(cur, alg=alg)), payload, cur.private_key),
            "alg_not_allowed",
        )
    add(
        "alg_not_allowed/missing-alg",
        "no alg in the header",
        sign_raw(compact_json(without(env_header(cur), "alg")), payload, cur.private_key),
        "alg_not_allowed",
    )
    for label, head in (
        ("missing-kid", without(env_header(cur), "kid")),
        ("missing-typ", without(env_header(cur), "typ")),
        ("extra-jku", env_header(cur, jku="https://example.org/keys")),
        ("extra-crit", env_header(cur, crit=["exp"])),
        ("kid-not-string", env_header(cur, kid=430523)),
    ):
        add(
            f"invalid_header/{label}",
            "the header has exactly alg, typ and kid, kid a string",
            sign_raw(compact_json(head), payload, cur.private_key),
            "invalid_header",
        )
    for label, typ in (
        ("jwt", "JWT"),
        ("receipt", rcpt.TYP),
        ("request", rt.TYP),
        ("case-differs", "Tongban-Envelope+JWT"),
    ):
        add(
            f"wrong_type/{label}",
            f"header typ {typ!r}",
            sign_raw(compact_json(env_header(cur, typ=typ)), payload, cur.private_key),
            "wrong_type",
        )

    # Signature.
    claims = envelope_claims()
    token = signed(claims)
    add(
        "bad_signature/flipped-bit",
        "one bit of the signature flipped",
        flip_signature(token),
        "bad_signature",
    )
    tampered = json.loads(payload_of(token))
    tampered["seq"] = 2
    add(
        "bad_signature/tampered-payload",
        "seq changed after signing, signature kept",
        replace_payload(token, compact_json(tampered)),
        "bad_signature",
    )
    add(
        "bad_signature/other-key-same-kid",
        "signed by another key under the trusted kid",
        sign_json(env_header(cur), claims, k.rogue.private_key),
        "bad_signature",
    )
    add(
        "bad_signature/empty-signature",
        "EdDSA header with an empty signature part",
        sign_raw(compact_json(env_header(cur)), compact_json(claims), None),
        "bad_signature",
    )
    add(
        "bad_signature/63-byte-signature",
        "a signature one byte short",
        sign_raw(
            compact_json(env_header(cur)),
            compact_json(claims),
            None,
            signature=cur.private_key.sign(b"x")[:63],
        ),
        "bad_signature",
    )

    # Issuer and key.
    add(
        "unknown_issuer/not-a-partner",
        "iss 110000 is no partner (signed by its own key)",
        signed(envelope_claims(iss=STRANGER), k.stranger),
        "unknown_issuer",
    )
    add(
        "unknown_kid/not-trusted",
        "a well-formed kid of the issuer that is not in the key set",
        signed(envelope_claims(), k.rogue),
        "unknown_kid",
    )
    add(
        "unknown_kid/other-region",
        "iss 430523 but the kid (and key) of partner 370500",
        signed(envelope_claims(), k.other),
        "unknown_kid",
    )
    add(
        "unknown_kid/malformed",
        "kid with uppercase hex",
        signed(envelope_claims(), cur, kid=cur.kid.upper()),
        "unknown_kid",
    )
    claims = envelope_claims(iat=starts_at - 1, exp=starts_at - 1 + DAY)
    add(
        "key_not_valid/before-not-before",
        "iat one second before the key's not_before",
        signed(claims, k.following),
        "key_not_valid",
    )
    claims = envelope_claims(iat=retired_at + 1, exp=retired_at + 1 + DAY)
    add(
        "key_not_valid/after-not-after",
        "iat one second after the key's not_after",
        signed(claims, k.retired),
        "key_not_valid",
    )

    # Claims.
    for name in sorted(env.CLAIMS):
        add(
            f"invalid_claims/missing-{name}",
            f"no {name} claim",
            signed(without(envelope_claims(), name)),
            "invalid_claims",
        )
    for label, change in (
        ("unknown-nbf", {"nbf": NOW - 60}),
        ("iat-string", {"iat": str(NOW - 60)}),
        ("iat-bool", {"iat": True}),
        ("iat-float", {"iat": NOW - 60.5}),
        ("iat-negative", {"iat": -1}),
        ("exp-string", {"exp": str(NOW + DAY)}),
        ("exp-before-iat", {"exp": NOW - 61}),
        ("exp-equals-iat", {"exp": NOW - 60}),
        ("seq-0", {"seq": 0}),
        ("seq-negative", {"seq": -1}),
        ("seq-string", {"seq": "1"}),
        ("seq-float", {"seq": 1.5}),
        ("jti-not-uuid", {"jti": "envelope-1"}),
        ("jti-uppercase", {"jti": _jti().upper()}),
        ("jti-braces", {"jti": "{" + _jti() + "}"}),
        ("jti-no-hyphens", {"jti": uuid.uuid4().hex}),
        ("iss-5-digits", {"iss": "43052"}),
        ("iss-number", {"iss": 430523}),
        ("iss-leading-zero", {"iss": "030523"}),
        ("aud-5-digits", {"aud": "43040"}),
        ("xt-empty", {"xt": ""}),
        ("xt-space", {"xt": "XT 1"}),
        ("xt-65-chars", {"xt": "A" * 65}),
        ("xt-number", {"xt": 1}),
        ("typ-number", {"typ": 1}),
        ("body-array", {"body": []}),
        ("body-null", {"body": None}),
    ):
        add(
            f"invalid_claims/{label}",
            f"claim {next(iter(change))} = {json.dumps(next(iter(change.values())))}",
            signed(envelope_claims(**change)),
            "invalid_claims",
        )
    add(
        "wrong_audience/other-region",
        "aud is 370500, not the recipient 430400",
        signed(envelope_claims(aud=OTHER)),
        "wrong_audience",
    )
    add(
        "expired/beyond-skew",
        f"exp {CLOCK_SKEW + 1} s before now",
        signed(envelope_claims(iat=NOW - DAY, exp=NOW - CLOCK_SKEW - 1)),
        "expired",
    )
    add(
        "not_yet_valid/beyond-skew",
        f"iat {CLOCK_SKEW + 1} s after now",
        signed(envelope_claims(iat=NOW + CLOCK_SKEW + 1, exp=NOW + DAY)),
        "not_yet_valid",
    )
    add(
        "lifetime_too_long/7-days-plus-1",
        "exp - iat one second over 7 days",
        signed(envelope_claims(iat=NOW - 60, exp=NOW - 60 + MAX_LIFETIME + 1)),
        "lifetime_too_long",
    )
    for label, typ in (("unknown", "case.unknown"), ("case-differs", "case.Submit"), ("empty", "")):
        add(
            f"unknown_message_type/{label}",
            f"message type {typ!r}",
            signed(envelope_claims(typ=typ)),
            "unknown_message_type",
        )
    claims = envelope_claims()
    claims["body"] = {**claims["body"], "zz_unknown": 1}
    add(
        "schema_invalid/unknown-body-field",
        "a body field its schema does not list",
        signed(claims),
        "schema_invalid",
    )

    # The order of checks, pinned by inputs with two faults.
    add(
        "order/alg-before-header-fields",
        "alg HS256 and an extra header field: alg is checked first",
        sign_raw(
            compact_json(env_header(cur, alg="HS256", x=1)), payload, None, signature=bytes(32)
        ),
        "alg_not_allowed",
    )
    add(
        "order/header-before-payload",
        "wrong header typ and a payload that is not JSON: the header is checked first",
        sign_raw(compact_json(env_header(cur, typ="JWT")), b"not json", cur.private_key),
        "wrong_type",
    )
    add(
        "order/payload-before-signature-part",
        "payload not JSON and a signature part with a bad character",
        f"{h}.{sign_raw(hb, b'[]', None).split('.')[1]}.*",
        "invalid_json",
    )
    add(
        "order/issuer-before-signature",
        "unknown issuer and a bad signature: the key is looked up first",
        flip_signature(signed(envelope_claims(iss=STRANGER), k.stranger)),
        "unknown_issuer",
    )
    add(
        "order/key-window-before-signature",
        "iat outside the key's window and a bad signature",
        flip_signature(
            signed(envelope_claims(iat=retired_at + 1, exp=retired_at + DAY), k.retired)
        ),
        "key_not_valid",
    )
    add(
        "order/signature-before-claims",
        "seq 0 and a bad signature: claims are checked only once the signature holds",
        flip_signature(signed(envelope_claims(seq=0))),
        "bad_signature",
    )
    add(
        "order/claims-before-audience",
        "seq 0 and another audience",
        signed(envelope_claims(seq=0, aud=OTHER)),
        "invalid_claims",
    )
    add(
        "order/lifetime-before-expiry",
        "lifetime over 7 days and long expired",
        signed(envelope_claims(iat=NOW - days(30), exp=NOW - days(30) + MAX_LIFETIME + 1)),
        "lifetime_too_long",
    )
    claims = envelope_claims(aud=OTHER)
    claims["body"] = {**claims["body"], "zz_unknown": 1}
    add(
        "order/schema-before-audience",
        "a body field its schema does not list and another audience",
        signed(claims),
        "schema_invalid",
    )
    add(
        "order/audience-before-time",
        "another audience and expired",
        signed(envelope_claims(aud=OTHER, iat=NOW - DAY, exp=NOW - CLOCK_SKEW - 1)),
        "wrong_audience",
    )
    return out.vectors


# -- receipts ----------------------------------------------------------------------------------


def receipt_vectors(k: Keys) -> list[dict[str, Any]]:
    out = Collector()
    rcv = k.receiver
    acked = env.sign_envelope(envelope_claims("case.submit"), k.current.private_key, k.current.kid)
    ref = json.loads(payload_of(acked))["jti"]
    digest = hashlib.sha256(acked.encode("ascii")).hexdigest()
    inputs = {"sender": SENDER, "receiver": RECEIVER, "ref": ref, "digest": digest}

    def claims(**over: Any) -> dict[str, Any]:
        base = {
            "iss": RECEIVER,
            "aud": SENDER,
            "jti": _jti(),
            "iat": NOW,
            "ref": ref,
            "digest": digest,
        }
        base.update(over)
        return base

    def head(signer: Signer, **over: Any) -> dict[str, Any]:
        return {"alg": "EdDSA", "typ": rcpt.TYP, "kid": signer.kid, **over}

    def add(name: str, description: str, token: str, cause: str | None = None, **over: Any) -> None:
        expected = "valid" if cause is None else "receipt_invalid"
        extra: dict[str, Any] = {**inputs, **over}
        if cause is not None and cause != "receipt_invalid":
            extra["cause"] = cause
        out.add(name, description, token, expected, **extra)

    token = rcpt.sign_receipt(
        iss=RECEIVER, aud=SENDER, ref=ref, digest=digest, now=NOW, key=rcv.private_key, kid=rcv.kid
    )
    out.add(
        "valid/receipt",
        f"the receipt for envelope {ref}; digest is sha256 of the envelope's compact bytes",
        token,
        "valid",
        **inputs,
        envelope=acked,
        expect={"iss": RECEIVER, "aud": SENDER, "ref": ref, "digest": digest},
    )
    add(
        "receipt_invalid/wrong-ref",
        "ref names another envelope",
        sign_json(head(rcv), claims(ref=_jti()), rcv.private_key),
        "receipt_invalid",
    )
    add(
        "receipt_invalid/wrong-digest",
        "digest of other bytes (same jti, different content)",
        sign_json(head(rcv), claims(digest=hashlib.sha256(b"other").hexdigest()), rcv.private_key),
        "receipt_invalid",
    )
    add(
        "receipt_invalid/wrong-receiver",
        "a valid receipt of partner 370500, where 430400 was sent to",
        sign_json(head(k.other), claims(iss=OTHER), k.other.private_key),
        "receipt_invalid",
    )
    add(
        "receipt_invalid/wrong-sender",
        "aud names another sender",
        sign_json(head(rcv), claims(aud=OTHER), rcv.private_key),
        "receipt_invalid",
    )
    add(
        "receipt_invalid/bad-signature",
        "one signature bit flipped",
        flip_signature(token),
        "bad_signature",
    )
    add(
        "receipt_invalid/unknown-kid",
        "signed by a key of 430400 that is not trusted",
        sign_json(head(k.receiver_rogue), claims(), k.receiver_rogue.private_key),
        "unknown_kid",
    )
    add(
        "receipt_invalid/envelope-not-receipt",
        "the envelope itself offered as its receipt",
        acked,
        "wrong_type",
    )
    add(
        "receipt_invalid/alg-none",
        "alg none, empty signature",
        sign_raw(compact_json(head(rcv, alg="none")), compact_json(claims()), None),
        "alg_not_allowed",
    )
    add(
        "receipt_invalid/extra-claim",
        "an exp claim receipts do not have",
        sign_json(head(rcv), claims(exp=NOW + DAY), rcv.private_key),
        "invalid_claims",
    )
    add(
        "receipt_invalid/missing-digest",
        "no digest claim",
        sign_json(head(rcv), without(claims(), "digest"), rcv.private_key),
        "invalid_claims",
    )
    add(
        "receipt_invalid/jti-uppercase",
        "jti is an uppercase UUID",
        sign_json(head(rcv), claims(jti=_jti().upper()), rcv.private_key),
        "receipt_invalid",
    )
    return out.vectors


# -- descriptors -------------------------------------------------------------------------------


def descriptor_vectors(k: Keys) -> list[dict[str, Any]]:
    out = Collector()
    cur = k.current
    types = list(MESSAGE_TYPES)

    def claims(keys: list[dict[str, str]], **over: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "region": SENDER,
            "name": "邵阳县",
            "url": "https://tongban.shaoyang.example",
            "keys": keys,
            "types": types,
            "iat": NOW,
        }
        base.update(over)
        return base

    def head(signer: Signer) -> dict[str, Any]:
        return {"alg": "EdDSA", "typ": desc.TYP, "kid": signer.kid}

    def add(
        name: str, description: str, token: str, cause: str | None = None, **extra: Any
    ) -> None:
        expected = "valid" if cause is None else "descriptor_invalid"
        if cause is not None and cause != "descriptor_invalid":
            extra["cause"] = cause
        out.add(name, description, token, expected, region=SENDER, now=NOW, **extra)

    listed = [cur.trusted, k.following.trusted]
    token = desc.sign_descriptor(
        region=SENDER,
        name="邵阳县",
        url="https://tongban.shaoyang.example",
        keys=listed,
        types=types,
        now=NOW,
        signing_key=cur.private_key,
        kid=cur.kid,
    )
    add(
        "valid/descriptor",
        "430523's descriptor listing its current and pre-published keys, signed by the current",
        token,
        expect={"keys": [key.kid for key in listed], "signed_by": cur.kid, "types": types},
    )
    rotation = [cur.trusted, k.rotated.trusted]
    token = sign_json(head(cur), claims([key.to_claim() for key in rotation]), cur.private_key)
    add(
        "valid/rotation",
        "lists a new key (not in `keys`), signed by the trusted current key: the new key is "
        "learned",
        token,
        expect={"keys": [key.kid for key in rotation], "signed_by": cur.kid},
    )
    add(
        "descriptor_invalid/signed-by-untrusted-key",
        "the same list signed by the new key itself",
        sign_json(
            head(k.rotated), claims([key.to_claim() for key in rotation]), k.rotated.private_key
        ),
        "unknown_kid",
    )
    mismatched = TrustedKey(
        kid=key_id(SENDER, k.rogue.trusted.public_key),
        region=SENDER,
        public_key=k.rotated.trusted.public_key,
        not_before=k.rotated.trusted.not_before,
        not_after=k.rotated.trusted.not_after,
    )
    add(
        "descriptor_invalid/kid-does-not-name-key",
        "a listed key whose kid is the hash of another public key",
        sign_json(
            head(cur), claims([cur.trusted.to_claim(), mismatched.to_claim()]), cur.private_key
        ),
        "descriptor_invalid",
    )
    add(
        "descriptor_invalid/other-region",
        "370500's valid descriptor fetched as 430523's",
        sign_json(
            head(k.other), claims([k.other.trusted.to_claim()], region=OTHER), k.other.private_key
        ),
        "invalid_claims",
    )
    add(
        "descriptor_invalid/signed-by-retired-key",
        "signed by a key whose window has ended",
        sign_json(head(k.retired), claims([cur.trusted.to_claim()]), k.retired.private_key),
        "key_not_valid",
    )
    add(
        "descriptor_invalid/bad-signature",
        "one signature bit flipped",
        flip_signature(sign_json(head(cur), claims([cur.trusted.to_claim()]), cur.private_key)),
        "bad_signature",
    )
    add(
        "descriptor_invalid/missing-types",
        "no types claim",
        sign_json(head(cur), without(claims([cur.trusted.to_claim()]), "types"), cur.private_key),
        "invalid_claims",
    )
    add(
        "descriptor_invalid/unknown-claim",
        "an exp claim descriptors do not have",
        sign_json(head(cur), claims([cur.trusted.to_claim()], exp=NOW + DAY), cur.private_key),
        "invalid_claims",
    )
    add(
        "descriptor_invalid/no-keys",
        "an empty key list",
        sign_json(head(cur), claims([]), cur.private_key),
        "descriptor_invalid",
    )
    entry = cur.trusted.to_claim()
    add(
        "descriptor_invalid/padded-public-key",
        "a public key written with '=' padding",
        sign_json(
            head(cur), claims([{**entry, "public_key": entry["public_key"] + "="}]), cur.private_key
        ),
        "descriptor_invalid",
    )
    add(
        "descriptor_invalid/time-without-offset",
        "not_after without a UTC offset",
        sign_json(
            head(cur), claims([{**entry, "not_after": "2027-07-01T00:00:00"}]), cur.private_key
        ),
        "descriptor_invalid",
    )
    add(
        "descriptor_invalid/key-extra-field",
        "a key entry with a field beyond kid, public_key, not_before, not_after",
        sign_json(head(cur), claims([{**entry, "use": "sig"}]), cur.private_key),
        "descriptor_invalid",
    )
    add(
        "descriptor_invalid/name-not-string",
        "name is a list",
        sign_json(head(cur), claims([entry], name=["邵阳县"]), cur.private_key),
        "descriptor_invalid",
    )
    add(
        "descriptor_invalid/types-not-list",
        "types is a string",
        sign_json(head(cur), claims([entry], types="case.submit"), cur.private_key),
        "descriptor_invalid",
    )
    return out.vectors


# -- request tokens ----------------------------------------------------------------------------


def request_token_vectors(k: Keys) -> list[dict[str, Any]]:
    out = Collector()
    cur = k.current
    blob = hashlib.sha256("申请表.pdf 的内容".encode()).hexdigest()
    other_blob = hashlib.sha256(b"other").hexdigest()

    def token(
        now: float = NOW, signer: Signer = cur, aud: str = RECEIVER, sha256: str = blob
    ) -> str:
        return rt.sign_request_token(
            iss=SENDER, aud=aud, sha256=sha256, now=now, key=signer.private_key, kid=signer.kid
        )

    def claims(**over: Any) -> dict[str, Any]:
        base = {
            "iss": SENDER,
            "aud": RECEIVER,
            "iat": NOW,
            "exp": NOW + 600,
            "jti": _jti(),
            "sha256": blob,
        }
        base.update(over)
        return base

    def head(**over: Any) -> dict[str, Any]:
        return {"alg": "EdDSA", "typ": rt.TYP, "kid": cur.kid, **over}

    def add(name: str, description: str, tok: str, cause: str | None = None, **over: Any) -> None:
        expected = "valid" if cause is None else "token_invalid"
        extra: dict[str, Any] = {"recipient": RECEIVER, "sha256": blob, "now": NOW, **over}
        if cause is not None:
            extra["cause"] = cause
        out.add(name, description, tok, expected, **extra)

    add(
        "valid/request-token",
        "a fresh token for this blob and recipient",
        token(),
        expect={"iss": SENDER, "aud": RECEIVER, "sha256": blob},
    )
    lifetime = rt.DEFAULT_LIFETIME
    add(
        "valid/exp-at-skew",
        f"issued {lifetime + CLOCK_SKEW} s ago: exp exactly {CLOCK_SKEW} s before now",
        token(now=NOW - lifetime - CLOCK_SKEW),
    )
    add(
        "token_invalid/other-blob",
        "a token for another blob",
        token(sha256=other_blob),
        "invalid_claims",
    )
    add(
        "token_invalid/expired",
        f"exp {CLOCK_SKEW + 1} s before now",
        token(now=NOW - lifetime - CLOCK_SKEW - 1),
        "expired",
    )
    add("token_invalid/wrong-aud", "aud is another region", token(aud=OTHER), "wrong_audience")
    add(
        "token_invalid/bad-signature",
        "one signature bit flipped",
        flip_signature(token()),
        "bad_signature",
    )
    add(
        "token_invalid/unknown-kid",
        "signed by an untrusted key of the issuer",
        token(signer=k.rogue),
        "unknown_kid",
    )
    add(
        "token_invalid/envelope-not-token",
        "an envelope offered as a request token",
        env.sign_envelope(envelope_claims(), cur.private_key, cur.kid),
        "wrong_type",
    )
    add(
        "token_invalid/alg-none",
        "alg none, empty signature",
        sign_raw(compact_json(head(alg="none")), compact_json(claims()), None),
        "alg_not_allowed",
    )
    add(
        "token_invalid/extra-claim",
        "a claim request tokens do not have",
        sign_json(head(), claims(xt=XT), cur.private_key),
        "invalid_claims",
    )
    add(
        "token_invalid/lifetime-too-long",
        "exp - iat one second over 7 days",
        sign_json(head(), claims(exp=NOW + MAX_LIFETIME + 1), cur.private_key),
        "lifetime_too_long",
    )
    add(
        "token_invalid/sha256-uppercase",
        "the digest in uppercase hex",
        sign_json(head(), claims(sha256=blob.upper()), cur.private_key),
        "invalid_claims",
    )
    return out.vectors


def evidence_vectors(k: Keys) -> list[dict[str, Any]]:
    """Evidence manifests of video inspections (``case.inspection_completed``)."""
    out = Collector()
    cur = k.current
    session = "5f0c1d2e-3a4b-4c5d-8e6f-7a8b9c0d1e2f"
    manifest = {
        "case": {"case_no": "430523-20260701-00003", "xt_id": XT},
        "session": {"id": session, "kind": "inspection", "ended_at": iso(NOW)},
        "files": [
            {
                "kind": "recording",
                "sha256": hashlib.sha256(b"recording").hexdigest(),
                "size": 9,
                "media_type": "video/webm",
            }
        ],
        "record": {"text": "勘验笔录", "result": "pass"},
    }

    def sealed(signer: Signer = cur, region: str = SENDER, body: Any = manifest) -> str:
        return ev.sign_manifest(
            body, signer.private_key, kid=signer.kid, region=region, now=NOW
        ).decode("ascii")

    def add(name: str, description: str, token: str, expected: str, **over: Any) -> None:
        out.add(name, description, token, expected, issuer=SENDER, **over)

    add(
        "valid/manifest",
        "a manifest sealed by the sender's current key",
        sealed(),
        "valid",
        expect={"session_id": session, "files": 1},
    )
    add(
        "evidence_signature_invalid/bad-signature",
        "one signature bit flipped",
        flip_signature(sealed()),
        "evidence_signature_invalid",
    )
    add(
        "evidence_signature_invalid/unknown-kid",
        "sealed by an untrusted key of the sender",
        sealed(signer=k.rogue),
        "evidence_signature_invalid",
    )
    add(
        "evidence_signature_invalid/other-region",
        "sealed by a trusted key of another region",
        sealed(signer=k.other, region=OTHER),
        "evidence_signature_invalid",
    )
    add(
        "evidence_signature_invalid/iss-not-sender",
        "the sender's key, but the claims name another region",
        sealed(region=OTHER),
        "evidence_signature_invalid",
    )
    add(
        "evidence_manifest_invalid/envelope-not-manifest",
        "an envelope offered as a manifest",
        env.sign_envelope(envelope_claims(), cur.private_key, cur.kid),
        "evidence_manifest_invalid",
    )
    add(
        "evidence_manifest_invalid/no-file-list",
        "a sealed manifest without its file list",
        sealed(body={k: v for k, v in manifest.items() if k != "files"}),
        "evidence_manifest_invalid",
    )
    return out.vectors


# -- partner directories -----------------------------------------------------------------------

AUTHORITY = "430000"  # 湖南省: the directory authority of the vectors


def directory_vectors(k: Keys) -> list[dict[str, Any]]:
    """Directories signed by a test-only authority key made for this run (its public half is
    in each vector's ``authority_keys``; the private half is gone when the run ends)."""
    out = Collector()
    authority = generate_private_key()
    # A second key of the same authority that nodes were never given, and another authority.
    unlisted = generate_private_key()
    elsewhere = generate_private_key()
    configured = [public_key_text(authority.public_key())]

    def head(key: Any = authority, who: str = AUTHORITY, **over: Any) -> dict[str, Any]:
        h: dict[str, Any] = {"alg": "EdDSA", "typ": dir_.TYP, "kid": key_id(who, key.public_key())}
        h.update(over)
        return h

    def entry(signer: Signer, name: str, url: str, **over: Any) -> dict[str, Any]:
        e: dict[str, Any] = {
            "region": signer.region,
            "name": name,
            "url": url,
            "keys": [signer.trusted.to_claim()],
        }
        e.update(over)
        return e

    regions = [
        entry(k.current, "邵阳县", "https://tongban.shaoyang.example"),
        entry(k.receiver, "衡阳市", "https://tongban.hengyang.example"),
        entry(k.other, "东营市", "https://tongban.dongying.example:8443"),
    ]
    regions[0]["keys"].append(k.following.trusted.to_claim())

    def claims(**over: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "iss": AUTHORITY,
            "serial": 7,
            "iat": NOW - 3600,
            "exp": NOW + 7 * DAY,
            "regions": regions,
        }
        base.update(over)
        return base

    def signed(key: Any = authority, who: str = AUTHORITY, **over: Any) -> str:
        return sign_json(head(key, who), claims(**over), key)

    def with_region(index: int, **over: Any) -> list[dict[str, Any]]:
        changed = [dict(r) for r in regions]
        changed[index].update(over)
        return changed

    def add(
        name: str,
        description: str,
        token: str,
        expected: str,
        *,
        in_force: list[Any] | None = None,
        now: int = NOW,
        **extra: Any,
    ) -> None:
        out.add(
            name,
            description,
            token,
            expected,
            authority=AUTHORITY,
            authority_keys=configured,
            in_force=in_force,
            now=now,
            **extra,
        )

    good = dir_.sign_directory(claims(), authority, authority=AUTHORITY)
    good_digest = hashlib.sha256(good.encode("ascii")).hexdigest()
    add(
        "valid/directory",
        "three regions (430523 with two keys), serial 7, no directory in force yet",
        good,
        "valid",
        expect={"serial": 7, "regions": [SENDER, RECEIVER, OTHER], "digest": good_digest},
    )
    add(
        "valid/newer-serial",
        "serial 7 while serial 6 is in force: applied",
        good,
        "valid",
        in_force=[6, "0" * 64],
        expect={"serial": 7},
    )
    add(
        "valid/same-as-in-force",
        "the very directory in force (same serial, same bytes): valid, nothing new to apply",
        good,
        "valid",
        in_force=[7, good_digest],
        expect={"serial": 7, "digest": good_digest},
    )
    add(
        "valid/expiry-boundary",
        "exp = now - 300 (the tolerated skew): still valid",
        signed(iat=NOW - DAY, exp=NOW - 300),
        "valid",
    )
    add(
        "valid/empty",
        "a directory listing no region",
        signed(regions=[]),
        "valid",
        expect={"regions": []},
    )
    # Framing
    add(
        "wrong_type/node-descriptor-typ",
        "signed by the authority, but typ tongban-node+jwt",
        sign_json(head(typ="tongban-node+jwt"), claims(), authority),
        "wrong_type",
    )
    add(
        "alg_not_allowed/none",
        "alg none, no signature",
        sign_raw(compact_json(head(alg="none")), compact_json(claims()), None),
        "alg_not_allowed",
    )
    add(
        "malformed_jws/two-parts",
        "header and payload only",
        ".".join(good.split(".")[:2]),
        "malformed_jws",
    )
    # The authority's key and signature
    add(
        "directory_unknown_key/unlisted-key",
        "a key of the right authority that nodes were never given",
        signed(unlisted),
        "directory_unknown_key",
    )
    add(
        "directory_unknown_key/other-authority",
        "another authority's key (kid 370000:...), iss 370000",
        signed(elsewhere, "370000", iss="370000"),
        "directory_unknown_key",
    )
    add(
        "directory_unknown_key/kid-of-region-key",
        "signed by a region's (trusted) node key instead of the authority's",
        sign_json(
            {"alg": "EdDSA", "typ": dir_.TYP, "kid": k.current.kid}, claims(), k.current.private_key
        ),
        "directory_unknown_key",
    )
    add(
        "bad_signature/flipped",
        "one bit of the signature flipped",
        flip_signature(good),
        "bad_signature",
    )
    tampered = json.loads(payload_of(good))
    tampered["regions"][1]["url"] = "https://attacker.example"
    add(
        "bad_signature/tampered-url",
        "衡阳市's URL changed after signing",
        replace_payload(good, compact_json(tampered)),
        "bad_signature",
    )
    add(
        "bad_signature/order-before-time",
        "a bad signature on an expired directory: bad_signature (the signature comes first)",
        flip_signature(signed(iat=NOW - 9 * DAY, exp=NOW - 2 * DAY)),
        "bad_signature",
    )
    # Claims
    for label, changed in (
        ("missing-serial", without(claims(), "serial")),
        ("extra-claim", {**claims(), "aud": RECEIVER}),
        ("serial-zero", claims(serial=0)),
        ("serial-not-integer", claims(serial=7.0)),
        ("serial-boolean", claims(serial=True)),
        ("exp-not-after-iat", claims(iat=NOW, exp=NOW)),
        ("lifetime-over-31-days", claims(iat=NOW - DAY, exp=NOW - DAY + 31 * DAY + 1)),
        ("regions-not-list", claims(regions={"430523": {}})),
    ):
        add(
            f"directory_invalid_claims/{label}",
            f"claims fault: {label.replace('-', ' ')}",
            sign_json(head(), changed, authority),
            "directory_invalid_claims",
        )
    add(
        "directory_invalid_claims/iss-not-authority",
        "the authority's key, but iss names another authority",
        signed(iss="370000"),
        "directory_invalid_claims",
    )
    # Time
    add(
        "directory_not_yet_valid/iat-future",
        "iat = now + 301",
        signed(iat=NOW + 301, exp=NOW + 7 * DAY),
        "directory_not_yet_valid",
    )
    add(
        "directory_stale/expired",
        "exp = now - 301: the directory's time is over",
        signed(iat=NOW - 7 * DAY, exp=NOW - 301),
        "directory_stale",
    )
    add(
        "directory_stale/order-before-serial",
        "expired and older than the serial in force: directory_stale (time before serial)",
        signed(serial=5, iat=NOW - 7 * DAY, exp=NOW - 301),
        "directory_stale",
        in_force=[7, good_digest],
    )
    # Serial
    add(
        "directory_replayed/older-serial",
        "serial 7 while serial 8 is in force: an old directory offered again",
        good,
        "directory_replayed",
        in_force=[8, "0" * 64],
    )
    add(
        "directory_replayed/same-serial-other-content",
        "serial 7 is in force with other content (another directory under the same serial)",
        signed(regions=regions[:2]),
        "directory_replayed",
        in_force=[7, good_digest],
    )
    # Entries
    add(
        "directory_duplicate_region/twice",
        "430400 listed twice",
        signed(regions=[*regions, regions[1]]),
        "directory_duplicate_region",
    )
    padded = dict(regions[1]["keys"][0])
    padded["public_key"] += "="
    short = dict(regions[1]["keys"][0])
    short["public_key"] = b64(b"\x01" * 31)
    no_offset = dict(regions[1]["keys"][0])
    no_offset["not_before"] = "2026-04-02T00:00:00"
    other_kid = dict(regions[1]["keys"][0])
    other_kid["kid"] = k.other.kid
    for label, key in (
        ("padded-public-key", padded),
        ("31-byte-key", short),
        ("time-without-offset", no_offset),
        ("kid-does-not-name-key", other_kid),
    ):
        add(
            f"directory_bad_key/{label}",
            f"衡阳市's key: {label.replace('-', ' ')}",
            signed(regions=with_region(1, keys=[key])),
            "directory_bad_key",
        )
    add(
        "directory_bad_key/no-keys",
        "衡阳市 with an empty key list",
        signed(regions=with_region(1, keys=[])),
        "directory_bad_key",
    )
    add(
        "directory_bad_key/key-of-another-region",
        "东营市's key listed under 衡阳市 (its kid names 370500)",
        signed(regions=with_region(1, keys=[k.other.trusted.to_claim()])),
        "directory_bad_key",
    )
    for label, url in (
        ("ftp-scheme", "ftp://tongban.hengyang.example"),
        ("query", "https://tongban.hengyang.example?x=1"),
        ("user-info", "https://admin@tongban.hengyang.example"),
        ("trailing-slash", "https://tongban.hengyang.example/"),
        ("space", "https://tongban hengyang.example"),
        ("bad-port", "https://tongban.hengyang.example:99999"),
        ("not-a-string", 8400),
    ):
        add(
            f"directory_bad_url/{label}",
            f"衡阳市's url: {label.replace('-', ' ')}",
            signed(regions=with_region(1, url=url)),
            "directory_bad_url",
        )
    missing_name = {k_: v for k_, v in regions[1].items() if k_ != "name"}
    for label, changed in (
        ("missing-name", missing_name),
        ("extra-field", {**regions[1], "types": []}),
        ("region-not-code", {**regions[1], "region": "43040"}),
        ("empty-name", {**regions[1], "name": " "}),
        ("not-an-object", ["430400"]),
    ):
        add(
            f"directory_invalid_entry/{label}",
            f"衡阳市's entry: {label.replace('-', ' ')}",
            signed(regions=[regions[0], changed, regions[2]]),
            "directory_invalid_entry",
        )
    return out.vectors


# -- writing -----------------------------------------------------------------------------------

BUILDERS: dict[str, tuple[str, Callable[[Keys], list[dict[str, Any]]]]] = {
    "envelopes.json": ("Envelopes (POST /federation/v1/envelopes)", envelope_vectors),
    "receipts.json": ("Receipts, checked by the sender of the envelope", receipt_vectors),
    "descriptors.json": ("Node descriptors (GET /.well-known/tongban/node)", descriptor_vectors),
    "request_tokens.json": (
        "Blob upload request tokens (PUT /federation/v1/blobs/{sha256})",
        request_token_vectors,
    ),
    "evidence.json": (
        "Evidence manifests of video inspections (case.inspection_completed)",
        evidence_vectors,
    ),
    "directories.json": (
        "Partner directories (tongban-directory+jwt, signed by a test-only authority key)",
        directory_vectors,
    ),
}


def build(only: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Every vector file's content (or those named in ``only``), checked against our own
    implementation."""
    keys = Keys.fresh()
    published = keys.published()
    trusted = runner.key_set(published)
    files: dict[str, dict[str, Any]] = {}
    for filename, (title, make) in BUILDERS.items():
        if only is not None and filename not in only:
            continue
        vectors = make(keys)
        kind = runner.FILES[filename]
        names = [v["name"] for v in vectors]
        if len(names) != len(set(names)):
            raise SystemExit(f"{filename}: duplicate vector names")
        for vector in vectors:
            problems = runner.mismatches(kind, vector, trusted)
            if problems:
                raise SystemExit(f"{filename}: {vector['name']}: {'; '.join(problems)}")
        files[filename] = {"title": title, **COMMON, "keys": published, "vectors": vectors}
    return files


def write_all(directory: Path, only: list[str] | None = None) -> list[Path]:
    written = []
    for filename, content in build(only).items():
        path = directory / filename
        text = json.dumps(content, ensure_ascii=False, indent=1) + "\n"
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=runner.HERE, help="directory to write to")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(BUILDERS),
        help="write only this file (repeatable); the others keep their keys",
    )
    args = parser.parse_args(argv)
    for path in write_all(args.out, args.only):
        print(path)


if __name__ == "__main__":
    main()
