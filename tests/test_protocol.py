"""The protocol library: envelopes, receipts, node descriptors and request tokens are signed
and verified as docs/protocol.md says, and every bad input is refused with its exact code."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import random
import re
import tomllib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.bindings import crypto_sign_ed25519_pk_to_curve25519
from nacl.exceptions import CryptoError

from protocol import claims as c
from protocol import descriptor as desc
from protocol import envelope as env
from protocol import jws
from protocol import receipt as rcpt
from protocol import request_token as rt
from protocol.errors import HTTP_STATUS, ErrorCode, ProtocolError
from protocol.keys import (
    KeySet,
    TrustedKey,
    b64url_decode,
    b64url_encode,
    key_id,
    load_public_key_text,
    public_key_text,
    region_of_kid,
    utc,
)
from protocol.messages import MESSAGE_TYPES
from protocol.strictjson import MAX_DEPTH, loads_object
from tests.vectors.tokens import (
    DAY,
    Signer,
    b64,
    body_for,
    compact_json,
    days,
    flip_signature,
    hs256_with_public_key,
    payload_of,
    replace_payload,
    sign_json,
    sign_raw,
)

NOW = 1_782_864_000  # 2026-07-01T00:00:00Z
A = "430523"  # sender
B = "430400"  # recipient
C = "370500"  # another partner
X = "110000"  # not a partner
XT = "XT-430523-20260701-0001"
SKEW = c.CLOCK_SKEW
DOCS = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


@dataclass(frozen=True)
class World:
    current: Signer
    retired: Signer
    following: Signer
    receiver: Signer
    other: Signer
    rogue: Signer
    stranger: Signer
    keys: KeySet


@pytest.fixture(scope="module")
def w() -> World:
    far_back, far_ahead = NOW - days(90), NOW + days(365)
    current = Signer.make(A, far_back, far_ahead)
    retired = Signer.make(A, NOW - days(400), NOW - 3600)
    following = Signer.make(A, NOW + 100, NOW + days(400))
    receiver = Signer.make(B, far_back, far_ahead)
    other = Signer.make(C, far_back, far_ahead)
    keys = KeySet([s.trusted for s in (current, retired, following, receiver, other)])
    return World(
        current=current,
        retired=retired,
        following=following,
        receiver=receiver,
        other=other,
        rogue=Signer.make(A, far_back, far_ahead),
        stranger=Signer.make(X, far_back, far_ahead),
        keys=keys,
    )


def claims(typ: str = "case.progress", **over: Any) -> dict[str, Any]:
    body, blobs = body_for(typ)
    value: dict[str, Any] = {
        "iss": A,
        "aud": B,
        "jti": str(uuid.uuid4()),
        "iat": NOW - 60,
        "exp": NOW - 60 + DAY,
        "typ": typ,
        "xt": XT,
        "seq": 1,
        "body": body,
        "blobs": blobs,
    }
    value.update(over)
    return value


def without(value: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in value.items() if k not in names}


def head(signer: Signer, typ: str = env.TYP, **over: Any) -> dict[str, Any]:
    value: dict[str, Any] = {"alg": "EdDSA", "typ": typ, "kid": signer.kid}
    value.update(over)
    return value


def forge(signer: Signer, value: dict[str, Any], **header: Any) -> str:
    """Sign ``value`` by hand (our signer refuses invalid claims)."""
    return sign_json(head(signer, **header), value, signer.private_key)


def verify(
    token: str | bytes,
    w: World,
    *,
    recipient: str | None = B,
    now: float = NOW,
    check_time: bool = True,
) -> env.Envelope:
    return env.verify_envelope(token, w.keys, recipient=recipient, now=now, check_time=check_time)


def refusal(call: Callable[[], object]) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        call()
    return info.value


def envelope_code(token: str | bytes, w: World, **kw: Any) -> ErrorCode:
    return refusal(lambda: verify(token, w, **kw)).code


# -- envelopes: the good path ------------------------------------------------------------------


def test_envelope_round_trip(w: World) -> None:
    value = claims(seq=3)
    token = env.sign_envelope(value, w.current.private_key, w.current.kid)
    got = verify(token, w)
    assert (got.iss, got.aud, got.jti, got.typ, got.xt, got.seq) == (
        A,
        B,
        value["jti"],
        "case.progress",
        XT,
        3,
    )
    assert (got.iat, got.exp, got.body, got.blobs) == (
        value["iat"],
        value["exp"],
        value["body"],
        value["blobs"],
    )
    assert got.kid == w.current.kid
    assert got.compact == token.encode()
    assert got.digest == hashlib.sha256(token.encode()).hexdigest()


def test_signed_header_is_exactly_alg_typ_kid(w: World) -> None:
    token = env.sign_envelope(claims(), w.current.private_key, w.current.kid)
    header = json.loads(b64url_decode(token.split(".")[0]))
    assert header == {"alg": "EdDSA", "typ": "tongban-envelope+jwt", "kid": w.current.kid}


@pytest.mark.parametrize("typ", MESSAGE_TYPES)
def test_every_message_type_round_trips(w: World, typ: str) -> None:
    value = claims(typ)
    token = env.sign_envelope(value, w.current.private_key, w.current.kid)
    assert verify(token, w).typ == typ


@pytest.mark.parametrize("typ", MESSAGE_TYPES)
def test_a_stored_envelope_reopens_as_it_was_verified(w: World, typ: str) -> None:
    """The applier reopens stored tokens without the strict parser: same Envelope, every
    field (body, blobs, kid, bytes, digest), as verifying gave on arrival."""
    token = env.sign_envelope(claims(typ), w.current.private_key, w.current.kid)
    assert env.reopen_envelope(token) == verify(token, w)


def test_new_claims_defaults_and_reissue() -> None:
    first = env.new_claims(iss=A, aud=B, typ="case.progress", xt=XT, seq=4, body={}, now=NOW + 0.9)
    assert first["iat"] == NOW and first["exp"] == NOW + c.MAX_LIFETIME
    assert first["blobs"] == [] and str(uuid.UUID(first["jti"])) == first["jti"]
    again = env.new_claims(iss=A, aud=B, typ="case.progress", xt=XT, seq=4, body={}, now=NOW)
    assert again["jti"] != first["jti"]  # a re-issue keeps xt and seq with a new jti
    fixed = env.new_claims(
        iss=A, aud=B, typ="case.progress", xt=XT, seq=4, body={}, now=NOW, jti=first["jti"]
    )
    assert fixed["jti"] == first["jti"]


def test_accepts_any_json_spelling_and_hashes_bytes_as_received(w: World) -> None:
    value = claims()
    header = '{ "kid": "' + w.current.kid + '",\n "typ": "' + env.TYP + '", "alg": "EdDSA" }'
    pretty = json.dumps(value, indent=2, ensure_ascii=False).encode()
    token = sign_raw(header.encode(), pretty, w.current.private_key)
    got = verify(token, w)
    assert got.jti == value["jti"]
    assert got.digest == hashlib.sha256(token.encode()).hexdigest()


def test_sign_envelope_refuses_what_a_partner_would_refuse(w: World) -> None:
    for bad in (claims(seq=0), claims(exp=NOW - 60 + c.MAX_LIFETIME + 1), claims(typ="x.y")):
        with pytest.raises(ProtocolError):
            env.sign_envelope(bad, w.current.private_key, w.current.kid)


def test_archive_verification_with_a_retired_key(w: World) -> None:
    """An envelope signed inside a retired key's window still verifies later for an audit."""
    value = claims(iat=NOW - days(30), exp=NOW - days(30) + DAY)
    token = forge(w.retired, value)
    got = verify(token, w, recipient=None, check_time=False, now=NOW + days(3650))
    assert got.jti == value["jti"] and got.kid == w.retired.kid
    assert envelope_code(token, w) is ErrorCode.EXPIRED


# -- envelopes: signature and algorithm --------------------------------------------------------


def test_flipped_signature_bit(w: World) -> None:
    token = env.sign_envelope(claims(), w.current.private_key, w.current.kid)
    assert envelope_code(flip_signature(token), w) is ErrorCode.BAD_SIGNATURE


def test_flipped_payload_byte(w: World) -> None:
    token = env.sign_envelope(claims(), w.current.private_key, w.current.kid)
    payload = bytearray(payload_of(token))
    at = payload.index(b"XT-") + 1
    payload[at] ^= 0x01  # "XT-" -> "XU-": still valid JSON, different bytes
    assert envelope_code(replace_payload(token, bytes(payload)), w) is ErrorCode.BAD_SIGNATURE


def test_signed_by_another_key_under_a_trusted_kid(w: World) -> None:
    token = sign_json(head(w.current), claims(), w.rogue.private_key)
    assert envelope_code(token, w) is ErrorCode.BAD_SIGNATURE


def test_alg_none_with_empty_signature(w: World) -> None:
    token = sign_raw(compact_json(head(w.current, alg="none")), compact_json(claims()), None)
    assert token.endswith(".")
    assert envelope_code(token, w) is ErrorCode.ALG_NOT_ALLOWED


def test_hs256_keyed_with_the_public_key(w: World) -> None:
    token = hs256_with_public_key(head(w.current, alg="HS256"), claims(), w.current.public)
    assert envelope_code(token, w) is ErrorCode.ALG_NOT_ALLOWED


@pytest.mark.parametrize("alg", ["RS256", "ES256", "Ed25519", "eddsa", "EdDSA ", ""])
def test_other_algorithms(w: World, alg: str) -> None:
    token = sign_raw(
        compact_json(head(w.current, alg=alg)), compact_json(claims()), None, signature=bytes(256)
    )
    assert envelope_code(token, w) is ErrorCode.ALG_NOT_ALLOWED


def test_empty_and_short_signatures(w: World) -> None:
    h, p = compact_json(head(w.current)), compact_json(claims())
    assert envelope_code(sign_raw(h, p, None), w) is ErrorCode.BAD_SIGNATURE
    short = sign_raw(h, p, None, signature=bytes(63))
    assert envelope_code(short, w) is ErrorCode.BAD_SIGNATURE


#: The group order of Ed25519's base point (RFC 8032, section 5.1).
ORDER = 2**252 + 27742317777372353535851937790883648493
#: The neutral point's encoding: a public key (or commitment R) of small order.
NEUTRAL = b"\x01" + bytes(31)


def test_malleated_signature_is_refused(w: World) -> None:
    """S + L verifies the same equation; RFC 8032 requires S < L, so a second valid-looking
    signature of the same message is not one."""
    token = env.sign_envelope(claims(), w.current.private_key, w.current.kid)
    signing_input, signature = token.rsplit(".", 1)
    raw = b64url_decode(signature)
    s = int.from_bytes(raw[32:], "little") + ORDER
    malleated = f"{signing_input}.{b64url_encode(raw[:32] + s.to_bytes(32, 'little'))}"
    assert envelope_code(malleated, w) is ErrorCode.BAD_SIGNATURE


def test_a_key_of_small_order_verifies_nothing(w: World) -> None:
    """A listed key that is the neutral point would make R = neutral, S = 0 a signature of
    every message (OpenSSL's check accepts it); the check in libsodium refuses such keys."""
    neutral = Ed25519PublicKey.from_public_bytes(NEUTRAL)
    weak = TrustedKey(
        kid=key_id(A, neutral),
        region=A,
        public_key=neutral,
        not_before=utc(NOW - days(1)),
        not_after=utc(NOW + days(1)),
    )
    keys = KeySet([weak])
    token = sign_raw(
        compact_json({"alg": "EdDSA", "typ": env.TYP, "kid": weak.kid}),
        compact_json(claims()),
        None,
        signature=NEUTRAL + bytes(32),
    )
    code = refusal(lambda: env.verify_envelope(token, keys, recipient=B, now=NOW)).code
    assert code is ErrorCode.BAD_SIGNATURE


# -- envelopes: header -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"drop": "kid"}, ErrorCode.INVALID_HEADER),
        ({"drop": "typ"}, ErrorCode.INVALID_HEADER),
        ({"drop": "alg"}, ErrorCode.ALG_NOT_ALLOWED),
        ({"add": {"jku": "https://evil.example/keys"}}, ErrorCode.INVALID_HEADER),
        ({"add": {"crit": ["exp"]}}, ErrorCode.INVALID_HEADER),
        ({"add": {"cty": "JWT"}}, ErrorCode.INVALID_HEADER),
        ({"add": {"kid": 7}}, ErrorCode.INVALID_HEADER),
        ({"add": {"typ": "JWT"}}, ErrorCode.WRONG_TYPE),
        ({"add": {"typ": rcpt.TYP}}, ErrorCode.WRONG_TYPE),
        ({"add": {"typ": rt.TYP}}, ErrorCode.WRONG_TYPE),
        ({"add": {"typ": desc.TYP}}, ErrorCode.WRONG_TYPE),
        ({"add": {"typ": None}}, ErrorCode.WRONG_TYPE),
    ],
)
def test_header_fields(w: World, change: dict[str, Any], code: ErrorCode) -> None:
    header = head(w.current)
    if "drop" in change:
        del header[change["drop"]]
    header.update(change.get("add", {}))
    token = sign_json(header, claims(), w.current.private_key)
    assert envelope_code(token, w) is code


# -- envelopes: issuer and keys ----------------------------------------------------------------


def test_unknown_kid(w: World) -> None:
    assert envelope_code(forge(w.rogue, claims()), w) is ErrorCode.UNKNOWN_KID


@pytest.mark.parametrize(
    "kid", ["430523:ABCDEF0123456789", "430523:abc", "430523", "", "430523:" + "0" * 16 + ":x"]
)
def test_malformed_kid_is_unknown(w: World, kid: str) -> None:
    token = sign_json(head(w.current, kid=kid), claims(), w.current.private_key)
    assert envelope_code(token, w) is ErrorCode.UNKNOWN_KID


def test_kid_of_another_region_than_iss(w: World) -> None:
    # C's own valid key and signature, but iss names A: a partner may not speak for another.
    assert envelope_code(forge(w.other, claims(iss=A)), w) is ErrorCode.UNKNOWN_KID


def test_unknown_issuer(w: World) -> None:
    assert envelope_code(forge(w.stranger, claims(iss=X)), w) is ErrorCode.UNKNOWN_ISSUER


def test_known_region_without_keys_is_an_unknown_kid(w: World) -> None:
    keys = KeySet([w.current.trusted], regions={X})
    token = forge(w.stranger, claims(iss=X))
    assert (
        refusal(lambda: env.verify_envelope(token, keys, recipient=B, now=NOW)).code
        is ErrorCode.UNKNOWN_KID
    )


def test_key_validity_window_is_checked_at_iat(w: World) -> None:
    starts = int(w.following.trusted.not_before.timestamp())
    ends = int(w.retired.trusted.not_after.timestamp())
    assert verify(forge(w.following, claims(iat=starts, exp=starts + DAY)), w).iat == starts
    assert verify(forge(w.retired, claims(iat=ends, exp=ends + DAY)), w).iat == ends
    before = forge(w.following, claims(iat=starts - 1, exp=starts + DAY))
    after = forge(w.retired, claims(iat=ends + 1, exp=ends + DAY))
    assert envelope_code(before, w) is ErrorCode.KEY_NOT_VALID
    assert envelope_code(after, w) is ErrorCode.KEY_NOT_VALID


def test_huge_iat_is_refused_not_crashed(w: World) -> None:
    """A forged iat far beyond any date is a claim error, not an exception from datetime."""
    largest = forge(w.current, claims(iat=2**53 - 2, exp=2**53 - 1))
    assert envelope_code(largest, w) is ErrorCode.KEY_NOT_VALID
    beyond = forge(w.current, claims(iat=10**30, exp=10**30 + 1))
    assert envelope_code(beyond, w) is ErrorCode.INVALID_JSON
    assert not w.current.trusted.valid_at(10**30)


# -- envelopes: time and audience --------------------------------------------------------------


def test_wrong_audience_and_archive_without_audience(w: World) -> None:
    token = forge(w.current, claims(aud=C))
    assert envelope_code(token, w) is ErrorCode.WRONG_AUDIENCE
    assert verify(token, w, recipient=None).aud == C


@pytest.mark.parametrize(
    ("iat", "exp", "expected"),
    [
        (NOW - DAY, NOW - SKEW - 1, ErrorCode.EXPIRED),
        (NOW - DAY, NOW - SKEW, None),
        (NOW - DAY, NOW - 1, None),
        (NOW + SKEW + 1, NOW + DAY, ErrorCode.NOT_YET_VALID),
        (NOW + SKEW, NOW + DAY, None),
        (NOW + 1, NOW + DAY, None),
        (NOW - 60, NOW - 60 + c.MAX_LIFETIME, None),
        (NOW - 60, NOW - 60 + c.MAX_LIFETIME + 1, ErrorCode.LIFETIME_TOO_LONG),
        (NOW - 60, NOW - 60, ErrorCode.INVALID_CLAIMS),
        (NOW - 60, NOW - 61, ErrorCode.INVALID_CLAIMS),
    ],
)
def test_time_claims(w: World, iat: int, exp: int, expected: ErrorCode | None) -> None:
    token = forge(w.current, claims(iat=iat, exp=exp))
    if expected is None:
        assert verify(token, w).exp == exp
    else:
        assert envelope_code(token, w) is expected


def test_check_time_false_skips_only_time(w: World) -> None:
    expired = forge(w.current, claims(iat=NOW - DAY, exp=NOW - SKEW - 1))
    assert verify(expired, w, check_time=False).exp == NOW - SKEW - 1
    too_long = forge(w.current, claims(exp=NOW - 60 + c.MAX_LIFETIME + 1))
    assert envelope_code(too_long, w, check_time=False) is ErrorCode.LIFETIME_TOO_LONG


# -- envelopes: framing and base64url ----------------------------------------------------------


@pytest.fixture(scope="module")
def good(w: World) -> str:
    return env.sign_envelope(claims(), w.current.private_key, w.current.kid)


def test_framing(w: World, good: str) -> None:
    h, p, s = good.split(".")
    for token in (
        f"{h}.{p}",
        f"{good}.{s}",
        f".{p}.{s}",
        f"{h}..{s}",
        "",
        "..",
        "...",
        f"{h}.{p}é.{s}",
        f"{good}\n",
        f" {good}",
        f"{h}.{p} .{s}",
    ):
        assert envelope_code(token, w) is ErrorCode.MALFORMED_JWS, repr(token[-8:])


def test_bytes_and_str_tokens_are_the_same(w: World, good: str) -> None:
    assert verify(good.encode(), w).digest == verify(good, w).digest
    assert envelope_code(f"{good}é".encode(), w) is ErrorCode.MALFORMED_JWS
    assert envelope_code(b"\xff" + good.encode(), w) is ErrorCode.MALFORMED_JWS


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda s: "+/" + s[2:], id="standard-alphabet"),
        pytest.param(lambda s: s + "==", id="padding"),
        pytest.param(lambda s: s + "AAA", id="length-mod-4-is-1"),
        pytest.param(lambda s: s[:40] + "!" + s[41:], id="bad-char"),
    ],
)
def test_bad_base64_in_signature(w: World, good: str, mangle: Callable[[str], str]) -> None:
    h, p, s = good.split(".")
    assert envelope_code(f"{h}.{p}.{mangle(s)}", w) is ErrorCode.MALFORMED_JWS


def test_non_canonical_base64_is_refused(w: World, good: str) -> None:
    """An 86-character signature has 4 unused bits; set one and a lax decoder yields the same
    64 bytes (a second spelling of a signed envelope, with another digest)."""
    h, p, s = good.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    spelled = s[:-1] + alphabet[alphabet.index(s[-1]) | 1]
    assert spelled != s
    assert envelope_code(f"{h}.{p}.{spelled}", w) is ErrorCode.MALFORMED_JWS


def test_b64url_helpers() -> None:
    for data in (b"", b"a", b"ab", b"abc", bytes(range(256))):
        assert b64url_decode(b64url_encode(data)) == data
    for text in ("QQ=", "Q", "QR", "Q+", "Q/", "QQ\n", " QQ", "QQ ", "QQ\u00e9", "Q\x00=="):
        with pytest.raises(ProtocolError) as info:
            b64url_decode(text)
        assert info.value.code is ErrorCode.MALFORMED_JWS, text


_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _b64url_reference(text: str) -> bytes | None:
    """The rule b64url_decode keeps, as its first version spelled it: the alphabet, a length
    that is not 1 mod 4, and the one text the bytes encode to."""
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text) or len(text) % 4 == 1:
        return None
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    return data if b64url_encode(data) == text else None


def _b64url_new(text: str) -> bytes | None:
    try:
        return b64url_decode(text)
    except ProtocolError as exc:
        assert exc.code is ErrorCode.MALFORMED_JWS
        return None


def test_b64url_decode_keeps_the_reference_rule_on_every_short_text() -> None:
    """Every text of up to three characters over the alphabet and characters a hostile
    sender would try (the standard alphabet's '+' and '/', padding, whitespace, NUL, '.',
    non-ASCII), and longer random ones: accepted and decoded exactly when the reference
    accepts, to the same bytes."""
    chars = _B64URL + "+/=.\n $\x00é"
    for size in range(4):
        for letters in itertools.product(chars, repeat=size):
            text = "".join(letters)
            assert _b64url_new(text) == _b64url_reference(text), text
    rng = random.Random(7)
    for _ in range(20000):
        size = rng.randint(4, 40)
        text = "".join(rng.choice(chars if rng.random() < 0.2 else _B64URL) for _ in range(size))
        assert _b64url_new(text) == _b64url_reference(text), text
    for size in range(0, 300):
        data = rng.randbytes(size)
        assert b64url_decode(b64url_encode(data)) == data


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "430523", "aud": "430400", "iat": 1764892800, "n": 1.5, "ok": True},
        {"body": {"note": "申请人补正材料：营业执照副本", "list": [1, None, "办结"]}, "x": "😀"},
        {"nested": {"a": {"b": {"c": []}}}, "digest": "ab" * 32, "empty": {}},
    ],
)
def test_signing_makes_exactly_what_pyjwt_makes(claims: dict[str, Any]) -> None:
    """Receipts and envelopes are signed without PyJWT's per-call work, into the same bytes
    (so nothing changes for partners or for the vectors)."""
    key = Ed25519PrivateKey.generate()
    for kid, typ in (("430400:0123456789abcdef", rcpt.TYP), ("370500:fedcba9876543210", env.TYP)):
        made = jws.sign(claims, key, kid=kid, typ=typ)
        assert made == pyjwt.encode(
            claims, key, algorithm="EdDSA", headers={"typ": typ, "kid": kid}
        )


def test_envelope_over_one_mebibyte(w: World) -> None:
    value = claims(body={"note": "x" * (env.MAX_ENVELOPE_BYTES * 3 // 4 + 10)})
    token = forge(w.current, value)
    assert len(token) > env.MAX_ENVELOPE_BYTES
    assert envelope_code(token, w) is ErrorCode.TOO_LARGE
    # The limit counts bytes: exactly 1 MiB is not too large (it fails later, as junk).
    junk = "A" * env.MAX_ENVELOPE_BYTES
    assert envelope_code(junk, w) is ErrorCode.MALFORMED_JWS
    assert envelope_code(junk + "A", w) is ErrorCode.TOO_LARGE


# -- envelopes: strict JSON --------------------------------------------------------------------


def raw_code(w: World, header: bytes, payload: bytes) -> ErrorCode:
    return envelope_code(sign_raw(header, payload, w.current.private_key), w)


def test_invalid_utf8(w: World) -> None:
    h, p = compact_json(head(w.current)), compact_json(claims())
    assert raw_code(w, h[:-1] + b',"x":"\xff"}', p) is ErrorCode.INVALID_ENCODING
    for bad in (b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe6\x96"):
        assert raw_code(w, h, p.replace(XT.encode(), b"XT-" + bad)) is ErrorCode.INVALID_ENCODING


@pytest.mark.parametrize(
    "payload",
    [b"[]", b'["iss"]', b'"claims"', b"42", b"null", b"true", b"", b" ", b"{", b"{}x"],
)
def test_payload_that_is_not_an_object(w: World, payload: bytes) -> None:
    h = compact_json(head(w.current))
    token = f"{b64(h)}.{b64(payload)}.{b64(bytes(64))}"
    expected = ErrorCode.MALFORMED_JWS if payload == b"" else ErrorCode.INVALID_JSON
    assert envelope_code(token, w) is expected


@pytest.mark.parametrize("header", [b"[]", b'"EdDSA"', b"1", b"not json"])
def test_header_that_is_not_an_object(w: World, header: bytes) -> None:
    assert raw_code(w, header, compact_json(claims())) is ErrorCode.INVALID_JSON


def test_duplicate_keys(w: World) -> None:
    h, p = compact_json(head(w.current)), compact_json(claims())
    assert raw_code(w, h, p[:-1] + b',"aud":"370500"}') is ErrorCode.INVALID_JSON
    assert raw_code(w, h[:-1] + b',"alg":"none"}', p) is ErrorCode.INVALID_JSON
    nested = claims(body={"note": "a"})
    dup = compact_json(nested).replace(b'"note":"a"', b'"note":"a","note":"b"')
    assert raw_code(w, h, dup) is ErrorCode.INVALID_JSON


@pytest.mark.parametrize(
    "literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"9007199254740992"]
)
def test_numbers_outside_json_or_double(w: World, literal: bytes) -> None:
    value = claims()
    payload = compact_json(value).replace(f'"iat":{value["iat"]}'.encode(), b'"iat":' + literal)
    assert raw_code(w, compact_json(head(w.current)), payload) is ErrorCode.INVALID_JSON


def test_lone_surrogate_escape(w: World) -> None:
    payload = compact_json(claims()).replace(XT.encode(), b"XT-\\udc00")
    assert raw_code(w, compact_json(head(w.current)), payload) is ErrorCode.INVALID_JSON


def deep_payload(levels: int) -> bytes:
    """Claims whose body holds ``levels`` nested arrays under an extra field ``deep``."""
    text = compact_json(claims(body={})).decode()
    return text.replace('"body":{}', '"body":{"deep":' + "[" * levels + "]" * levels + "}").encode()


@pytest.mark.parametrize("levels", [MAX_DEPTH - 1, 100, 100_000])
def test_too_deep(w: World, levels: int) -> None:
    # Depth counts the claims object (1) and the body (2): levels + 2 > MAX_DEPTH.
    assert raw_code(w, compact_json(head(w.current)), deep_payload(levels)) is (
        ErrorCode.JSON_TOO_DEEP
    )


def test_depth_limit_is_inclusive(w: World) -> None:
    # Exactly MAX_DEPTH: the JSON is fine, the body schema refuses the unknown field.
    code = raw_code(w, compact_json(head(w.current)), deep_payload(MAX_DEPTH - 2))
    assert code is ErrorCode.SCHEMA_INVALID


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (b'{"a":1}', None),
        (b'{"a":"\\ud83d\\ude00"}', None),
        ('{"名":"补正"}'.encode(), None),
        (b'{"a":9007199254740991,"b":-9007199254740991,"c":1.5}', None),
        (b'{"a":1,"a":1}', ErrorCode.INVALID_JSON),
        (b'{"a":1,"\\u0061":2}', ErrorCode.INVALID_JSON),
        (b'{"a":NaN}', ErrorCode.INVALID_JSON),
        (b'{"a":1e309}', ErrorCode.INVALID_JSON),
        (b'{"a":-9007199254740992}', ErrorCode.INVALID_JSON),
        (b'{"a":' + b"9" * 5000 + b"}", ErrorCode.INVALID_JSON),
        (b'{"\\udfff":1}', ErrorCode.INVALID_JSON),
        (b"\xef\xbb\xbf{}", ErrorCode.INVALID_JSON),
        (b"{'a':1}", ErrorCode.INVALID_JSON),
        (b"[1]", ErrorCode.INVALID_JSON),
        (b"\xfe{}", ErrorCode.INVALID_ENCODING),
        (b'{"a":' + b"[" * 31 + b"]" * 31 + b"}", None),
        (b'{"a":' + b"[" * 32 + b"]" * 32 + b"}", ErrorCode.JSON_TOO_DEEP),
        (b'{"a":' + b'{"a":' * 31 + b"1" + b"}" * 31 + b"}", None),
        (b'{"a":' + b'{"a":' * 32 + b"1" + b"}" * 32 + b"}", ErrorCode.JSON_TOO_DEEP),
        # Lone surrogates however spelled, and what only looks like one.
        (b'{"a":"\\\\uD800"}', None),  # a backslash, then the text uD800
        (b'{"a":"\\\\\\ud800"}', ErrorCode.INVALID_JSON),  # a backslash, then a lone surrogate
        (b'{"a":"\\uDBFF\\uDFFF"}', None),
        (b'{"a":"\\uDBFF"}', ErrorCode.INVALID_JSON),
        (b'{"a":["x",{"b":"\\udc00y"}]}', ErrorCode.INVALID_JSON),
        # Brackets inside strings count for nothing but the quick bound.
        (b'{"a":"' + b"[{" * 40 + b'"}', None),
        (b'{"a":"' + b"[{" * 40 + b'","b":"\\ud800"}', ErrorCode.INVALID_JSON),
    ],
)
def test_strict_json(text: bytes, code: ErrorCode | None) -> None:
    if code is None:
        assert isinstance(loads_object(text), dict)
    else:
        assert refusal(lambda: loads_object(text)).code is code


# -- envelopes: claims -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(env.CLAIMS))
def test_missing_claim(w: World, name: str) -> None:
    assert envelope_code(forge(w.current, without(claims(), name)), w) is ErrorCode.INVALID_CLAIMS


@pytest.mark.parametrize(
    "change",
    [
        {"nbf": NOW},
        {"sub": A},
        {"iat": str(NOW - 60)},
        {"iat": True},
        {"iat": False},
        {"iat": NOW - 60.0},
        {"iat": NOW - 59.5},
        {"iat": None},
        {"iat": -1},
        {"exp": str(NOW + DAY)},
        {"exp": float(NOW + DAY)},
        {"seq": 0},
        {"seq": -1},
        {"seq": "1"},
        {"seq": 1.0},
        {"seq": True},
        {"jti": "envelope-1"},
        {"jti": str(uuid.uuid4()).upper()},
        {"jti": "{" + str(uuid.uuid4()) + "}"},
        {"jti": uuid.uuid4().hex},
        {"jti": "urn:uuid:" + str(uuid.uuid4())},
        {"jti": 1},
        {"iss": "43052"},
        {"iss": "4305230"},
        {"iss": "030523"},
        {"iss": 430523},
        {"aud": "43040"},
        {"aud": None},
        {"xt": ""},
        {"xt": "XT 1"},
        {"xt": "-XT"},
        {"xt": "A" * 65},
        {"xt": "协同-1"},
        {"xt": 1},
        {"typ": 1},
        {"body": []},
        {"body": None},
        {"body": "{}"},
    ],
    ids=lambda change: f"{next(iter(change))}={next(iter(change.values()))!r}"[:40],
)
def test_wrong_claim(w: World, change: dict[str, Any]) -> None:
    assert envelope_code(forge(w.current, claims(**change)), w) is ErrorCode.INVALID_CLAIMS


def test_claim_boundaries_that_are_valid(w: World) -> None:
    for change in ({"seq": 2**53 - 1}, {"xt": "A" * 64}, {"xt": "a.b:c_d-9"}):
        assert verify(forge(w.current, claims(**change)), w).xt == claims(**change)["xt"]


@pytest.mark.parametrize("typ", ["case.unknown", "case.Submit", "", "case.submit "])
def test_unknown_message_type(w: World, typ: str) -> None:
    assert envelope_code(forge(w.current, claims(typ=typ)), w) is ErrorCode.UNKNOWN_MESSAGE_TYPE


def test_body_schema_is_checked(w: World) -> None:
    value = claims()
    value["body"] = {**value["body"], "zz_unknown": 1}
    err = refusal(lambda: verify(forge(w.current, value), w))
    assert err.code is ErrorCode.SCHEMA_INVALID
    assert err.extra.get("path") == "body.zz_unknown"


# -- envelopes: the order of checks ------------------------------------------------------------


def test_order_of_checks(w: World) -> None:
    payload = compact_json(claims())
    ends = int(w.retired.trusted.not_after.timestamp())
    cases: list[tuple[str, ErrorCode]] = [
        # alg before the other header fields
        (
            sign_raw(compact_json(head(w.current, alg="HS256", x=1)), payload, None),
            ErrorCode.ALG_NOT_ALLOWED,
        ),
        # header before payload
        (
            sign_raw(compact_json(head(w.current, typ="JWT")), b"[", w.current.private_key),
            ErrorCode.WRONG_TYPE,
        ),
        # payload before the signature part
        (
            f"{b64(compact_json(head(w.current)))}.{b64(b'[]')}.*",
            ErrorCode.INVALID_JSON,
        ),
        # key lookup before signature
        (flip_signature(forge(w.stranger, claims(iss=X))), ErrorCode.UNKNOWN_ISSUER),
        (
            flip_signature(forge(w.retired, claims(iat=ends + 1, exp=ends + DAY))),
            ErrorCode.KEY_NOT_VALID,
        ),
        # signature before the other claims
        (flip_signature(forge(w.current, claims(seq=0))), ErrorCode.BAD_SIGNATURE),
        # claims before audience, lifetime before expiry, audience before time
        (forge(w.current, claims(seq=0, aud=C)), ErrorCode.INVALID_CLAIMS),
        (
            forge(w.current, claims(iat=NOW - days(30), exp=NOW - days(22))),
            ErrorCode.LIFETIME_TOO_LONG,
        ),
        (
            forge(w.current, claims(aud=C, iat=NOW - DAY, exp=NOW - SKEW - 1)),
            ErrorCode.WRONG_AUDIENCE,
        ),
        (
            forge(w.current, claims(aud=C, typ="case.unknown")),
            ErrorCode.UNKNOWN_MESSAGE_TYPE,
        ),
    ]
    for token, code in cases:
        assert envelope_code(token, w) is code


def test_iss_and_iat_are_read_before_the_key(w: World) -> None:
    assert envelope_code(forge(w.stranger, claims(iss="1")), w) is ErrorCode.INVALID_CLAIMS
    assert envelope_code(forge(w.current, claims(iat="now")), w) is ErrorCode.INVALID_CLAIMS


# -- receipts ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def delivered(w: World) -> tuple[str, str, str]:
    """An envelope, its jti and its digest."""
    token = env.sign_envelope(claims("case.submit"), w.current.private_key, w.current.kid)
    parsed = env.parse_envelope(token)
    return token, parsed.claims["jti"], parsed.digest


def sign_receipt(w: World, ref: str, digest: str) -> str:
    r = w.receiver
    return rcpt.sign_receipt(
        iss=B, aud=A, ref=ref, digest=digest, now=NOW, key=r.private_key, kid=r.kid
    )


def check_receipt(w: World, token: str, ref: str, digest: str, **over: str) -> rcpt.Receipt:
    parties = {"sender": A, "receiver": B, **over}
    return rcpt.verify_receipt(token, w.keys, ref=ref, digest=digest, **parties)


def test_receipt_round_trip(w: World, delivered: tuple[str, str, str]) -> None:
    token, ref, digest = delivered
    assert digest == hashlib.sha256(token.encode("ascii")).hexdigest()
    receipt = check_receipt(w, sign_receipt(w, ref, digest), ref, digest)
    assert (receipt.iss, receipt.aud, receipt.ref, receipt.digest, receipt.iat) == (
        B,
        A,
        ref,
        digest,
        NOW,
    )
    assert str(uuid.UUID(receipt.jti)) == receipt.jti and receipt.jti != ref


def receipt_code(call: Callable[[], object]) -> tuple[ErrorCode, str]:
    err = refusal(call)
    return err.code, err.detail


def test_receipt_for_another_envelope(w: World, delivered: tuple[str, str, str]) -> None:
    _token, ref, digest = delivered
    receipt = sign_receipt(w, ref, digest)
    other = str(uuid.uuid4())
    wrong_digest = hashlib.sha256(b"other bytes").hexdigest()
    for call in (
        lambda: check_receipt(w, receipt, other, digest),
        lambda: check_receipt(w, receipt, ref, wrong_digest),
        lambda: check_receipt(w, receipt, ref, digest, receiver=C),
        lambda: check_receipt(w, receipt, ref, digest, sender=C),
    ):
        assert receipt_code(call)[0] is ErrorCode.RECEIPT_INVALID


def test_receipt_from_the_wrong_party(w: World, delivered: tuple[str, str, str]) -> None:
    _token, ref, digest = delivered
    from_c = sign_json(
        head(w.other, typ=rcpt.TYP),
        {"iss": C, "aud": A, "jti": str(uuid.uuid4()), "iat": NOW, "ref": ref, "digest": digest},
        w.other.private_key,
    )
    code, _detail = receipt_code(lambda: check_receipt(w, from_c, ref, digest))
    assert code is ErrorCode.RECEIPT_INVALID
    assert check_receipt(w, from_c, ref, digest, receiver=C).iss == C


def receipt_claims(ref: str, digest: str, **over: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "iss": B,
        "aud": A,
        "jti": str(uuid.uuid4()),
        "iat": NOW,
        "ref": ref,
        "digest": digest,
    }
    value.update(over)
    return value


def test_receipt_faults_name_their_cause(w: World, delivered: tuple[str, str, str]) -> None:
    envelope, ref, digest = delivered
    r = w.receiver
    rogue = Signer.make(B, NOW - DAY, NOW + DAY)
    cases: list[tuple[str, str]] = [
        (flip_signature(sign_receipt(w, ref, digest)), "bad_signature"),
        (envelope, "wrong_type"),
        (
            sign_json(head(rogue, typ=rcpt.TYP), receipt_claims(ref, digest), rogue.private_key),
            "unknown_kid",
        ),
        (
            sign_raw(
                compact_json(head(r, typ=rcpt.TYP, alg="none")),
                compact_json(receipt_claims(ref, digest)),
                None,
            ),
            "alg_not_allowed",
        ),
        (
            sign_json(head(r, typ=rcpt.TYP), receipt_claims(ref, digest, exp=NOW), r.private_key),
            "invalid_claims",
        ),
        (
            sign_json(
                head(r, typ=rcpt.TYP), without(receipt_claims(ref, digest), "ref"), r.private_key
            ),
            "invalid_claims",
        ),
    ]
    for token, cause in cases:
        code, detail = receipt_code(lambda t=token: check_receipt(w, t, ref, digest))
        assert code is ErrorCode.RECEIPT_INVALID
        assert detail.startswith(f"{cause}:"), (cause, detail)


def test_receipt_jti_must_be_a_canonical_uuid(w: World, delivered: tuple[str, str, str]) -> None:
    _token, ref, digest = delivered
    r = w.receiver
    for jti in (str(uuid.uuid4()).upper(), uuid.uuid4().hex, 7):
        token = sign_json(
            head(r, typ=rcpt.TYP), receipt_claims(ref, digest, jti=jti), r.private_key
        )
        assert receipt_code(lambda t=token: check_receipt(w, t, ref, digest))[0] is (
            ErrorCode.RECEIPT_INVALID
        )


# -- node descriptors --------------------------------------------------------------------------


def descriptor(listed: list[TrustedKey], signer: Signer, **over: Any) -> str:
    value: dict[str, Any] = {
        "region": A,
        "name": "邵阳县",
        "url": "https://tongban.shaoyang.example",
        "keys": [k.to_claim() for k in listed],
        "types": list(MESSAGE_TYPES),
        "iat": NOW,
    }
    value.update(over)
    return sign_json(head(signer, typ=desc.TYP), value, signer.private_key)


def descriptor_refusal(token: str, trusted: KeySet, region: str = A) -> ProtocolError:
    err = refusal(lambda: desc.verify_descriptor(token, trusted, region=region, now=NOW))
    assert err.code is ErrorCode.DESCRIPTOR_INVALID
    return err


def test_descriptor_round_trip(w: World) -> None:
    listed = [w.current.trusted, w.following.trusted]
    token = desc.sign_descriptor(
        region=A,
        name="邵阳县",
        url="https://tongban.shaoyang.example",
        keys=listed,
        types=list(MESSAGE_TYPES),
        now=NOW,
        signing_key=w.current.private_key,
        kid=w.current.kid,
    )
    got = desc.verify_descriptor(token, w.keys, region=A, now=NOW)
    assert [k.kid for k in got.keys] == [k.kid for k in listed]
    assert got.keys[1].not_before == w.following.trusted.not_before
    assert got.types == list(MESSAGE_TYPES) and got.name == "邵阳县"
    assert got.signed_by == w.current.kid


def test_rotation_signed_by_the_old_key_teaches_the_new_key(w: World) -> None:
    new = Signer.make(A, NOW - 60, NOW + days(400))
    trusted = KeySet([w.current.trusted, w.receiver.trusted])
    token = descriptor([w.current.trusted, new.trusted], w.current)
    got = desc.verify_descriptor(token, trusted, region=A, now=NOW)
    learned = {k.kid: k for k in got.keys}
    assert new.kid in learned
    assert public_key_text(learned[new.kid].public_key) == public_key_text(new.trusted.public_key)
    # With the learned key, envelopes signed by the new key verify.
    trusted.add(learned[new.kid])
    value = claims()
    assert env.verify_envelope(forge(new, value), trusted, recipient=B, now=NOW).jti == value["jti"]


def test_rotation_signed_by_an_untrusted_key_is_refused(w: World) -> None:
    new = Signer.make(A, NOW - 60, NOW + days(400))
    token = descriptor([w.current.trusted, new.trusted], new)
    err = descriptor_refusal(token, w.keys)
    assert err.detail.startswith("unknown_kid:")


def test_descriptor_key_whose_kid_does_not_name_it(w: World) -> None:
    impostor = TrustedKey(
        kid=w.rogue.kid,
        region=A,
        public_key=w.following.trusted.public_key,
        not_before=w.following.trusted.not_before,
        not_after=w.following.trusted.not_after,
    )
    descriptor_refusal(descriptor([w.current.trusted, impostor], w.current), w.keys)


def test_descriptor_faults(w: World) -> None:
    entry = w.current.trusted.to_claim()
    cases = [
        descriptor([w.current.trusted], w.retired),  # signer outside its window now
        flip_signature(descriptor([w.current.trusted], w.current)),
        descriptor([], w.current),
        descriptor([w.current.trusted], w.current, exp=NOW + DAY),
        descriptor([w.current.trusted], w.current, types="case.submit"),
        descriptor([w.current.trusted], w.current, keys=[{**entry, "use": "sig"}]),
        descriptor([w.current.trusted], w.current, keys=[{**entry, "public_key": "AAAA="}]),
        descriptor([w.current.trusted], w.current, keys=[{**entry, "public_key": "AAAA"}]),
        descriptor(
            [w.current.trusted], w.current, keys=[{**entry, "not_after": "2027-07-01T00:00:00"}]
        ),
        descriptor([w.current.trusted], w.current, keys=[entry] * 21),
        descriptor([w.current.trusted], w.current, name=["邵阳县"]),
        descriptor([w.current.trusted], w.current, url=None),
        descriptor([w.current.trusted], w.current, iat="now"),
        sign_json(
            head(w.current, typ=desc.TYP),
            {"region": A, "name": "x", "url": "https://x", "types": []},
            w.current.private_key,
        ),
    ]
    for token in cases:
        descriptor_refusal(token, w.keys)


def test_descriptor_of_another_region(w: World) -> None:
    token = descriptor([w.other.trusted], w.other, region=C)
    assert desc.verify_descriptor(token, w.keys, region=C, now=NOW).region == C
    assert descriptor_refusal(token, w.keys, region=A).detail.startswith("invalid_claims:")


# -- request tokens ----------------------------------------------------------------------------

BLOB = hashlib.sha256("申请表.pdf".encode()).hexdigest()


def request_token(w: World, **over: Any) -> str:
    args: dict[str, Any] = {
        "iss": A,
        "aud": B,
        "sha256": BLOB,
        "now": NOW,
        "key": w.current.private_key,
        "kid": w.current.kid,
    }
    args.update(over)
    return rt.sign_request_token(**args)


def token_refusal(w: World, token: str, *, sha256: str = BLOB, now: float = NOW) -> str:
    err = refusal(
        lambda: rt.verify_request_token(token, w.keys, recipient=B, sha256=sha256, now=now)
    )
    assert err.code is ErrorCode.TOKEN_INVALID
    return err.detail.split(":")[0]


def test_request_token_round_trip(w: World) -> None:
    got = rt.verify_request_token(request_token(w), w.keys, recipient=B, sha256=BLOB, now=NOW)
    assert (got.iss, got.aud, got.sha256) == (A, B, BLOB)
    claims_ = json.loads(payload_of(request_token(w)))
    assert claims_["exp"] - claims_["iat"] == rt.DEFAULT_LIFETIME
    assert set(claims_) == rt.CLAIMS


def test_request_token_faults(w: World) -> None:
    life = rt.DEFAULT_LIFETIME
    assert token_refusal(w, request_token(w), sha256=hashlib.sha256(b"x").hexdigest()) == (
        "invalid_claims"
    )
    assert token_refusal(w, request_token(w, now=NOW - life - SKEW - 1)) == "expired"
    assert token_refusal(w, request_token(w, now=NOW + SKEW + 1)) == "not_yet_valid"
    assert token_refusal(w, request_token(w, aud=C)) == "wrong_audience"
    assert token_refusal(w, flip_signature(request_token(w))) == "bad_signature"
    assert token_refusal(w, request_token(w, key=w.rogue.private_key, kid=w.rogue.kid)) == (
        "unknown_kid"
    )
    envelope = env.sign_envelope(claims(), w.current.private_key, w.current.kid)
    assert token_refusal(w, envelope) == "wrong_type"
    # Within the skew, an expired-by-a-little token still works.
    edge = request_token(w, now=NOW - life - SKEW)
    assert rt.verify_request_token(edge, w.keys, recipient=B, sha256=BLOB, now=NOW).iss == A


def test_request_token_hand_built_faults(w: World) -> None:
    base = {
        "iss": A,
        "aud": B,
        "iat": NOW,
        "exp": NOW + 600,
        "jti": str(uuid.uuid4()),
        "sha256": BLOB,
    }
    header = head(w.current, typ=rt.TYP)
    for value, cause in (
        ({**base, "xt": XT}, "invalid_claims"),
        ({**base, "exp": NOW + c.MAX_LIFETIME + 1}, "lifetime_too_long"),
        ({**base, "sha256": BLOB.upper()}, "invalid_claims"),
        ({**base, "jti": "x"}, "invalid_claims"),
        (without(base, "jti"), "invalid_claims"),
    ):
        assert token_refusal(w, sign_json(header, value, w.current.private_key)) == cause
    none = sign_raw(compact_json({**header, "alg": "none"}), compact_json(base), None)
    assert token_refusal(w, none) == "alg_not_allowed"


# -- keys and kids -----------------------------------------------------------------------------


def test_kid_is_region_and_sha256_prefix(w: World) -> None:
    raw = w.current.public
    assert len(raw) == 32
    assert w.current.kid == f"{A}:{hashlib.sha256(raw).hexdigest()[:16]}"
    assert key_id(A, w.current.trusted.public_key) == w.current.kid
    assert region_of_kid(w.current.kid) == A
    for kid in ("43052:0123456789abcdef", "430523:0123456789ABCDEF", "430523:0123", "x"):
        assert region_of_kid(kid) is None


def test_public_key_text(w: World) -> None:
    text = public_key_text(w.current.trusted.public_key)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", text)
    assert public_key_text(load_public_key_text(text)) == text
    for bad in (text + "=", text[:-1], "+" + text[1:], "", "AAAA"):
        with pytest.raises(ValueError):
            load_public_key_text(bad)


def test_keys_of_small_order_are_not_loaded() -> None:
    """The eight points of small order, each with both signs of x, and a y encoded past p:
    refused, as libsodium's own key check refuses them; generated keys load."""
    small = [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    ]
    weak = [bytes.fromhex(h) for h in small]
    weak += [raw[:31] + bytes([raw[31] | 0x80]) for raw in weak]  # the other sign of x
    weak.append(b"\xee" + b"\xff" * 30 + b"\x7f")  # y = p + 1, a second spelling of 1
    for raw in weak:
        with pytest.raises(ValueError):
            load_public_key_text(b64url_encode(raw))
        with pytest.raises(CryptoError):
            crypto_sign_ed25519_pk_to_curve25519(raw)
    for _ in range(50):
        load_public_key_text(public_key_text(Ed25519PrivateKey.generate().public_key()))


def test_trusted_key_claim_round_trip(w: World) -> None:
    claim = w.current.trusted.to_claim()
    assert set(claim) == {"kid", "public_key", "not_before", "not_after"}
    again = TrustedKey.from_claim(A, claim)
    assert again == w.current.trusted
    with pytest.raises(ValueError):
        TrustedKey.from_claim(C, claim)  # the kid names region A


def test_key_set_resolve_order(w: World) -> None:
    keys = w.keys
    assert keys.resolve(w.current.kid, A, NOW) is keys.get(w.current.kid)
    for kid, issuer, at, code in (
        (w.current.kid, X, NOW, ErrorCode.UNKNOWN_ISSUER),
        (w.other.kid, A, NOW, ErrorCode.UNKNOWN_KID),
        (w.rogue.kid, A, NOW, ErrorCode.UNKNOWN_KID),
        (w.retired.kid, A, NOW, ErrorCode.KEY_NOT_VALID),
    ):
        assert refusal(lambda k=kid, i=issuer, t=at: keys.resolve(k, i, t)).code is code


def test_valid_at_is_inclusive() -> None:
    key = Signer.make(A, NOW, NOW + DAY).trusted
    assert key.valid_at(NOW) and key.valid_at(NOW + DAY)
    assert not key.valid_at(NOW - 1) and not key.valid_at(NOW + DAY + 1)
    assert key.not_before == utc(NOW)


# -- error codes -------------------------------------------------------------------------------


def test_every_error_code_has_a_status() -> None:
    assert set(HTTP_STATUS) == set(ErrorCode)
    assert HTTP_STATUS[ErrorCode.BLOBS_MISSING] == 409
    assert HTTP_STATUS[ErrorCode.TOO_LARGE] == 413


def test_error_json_carries_extra_fields() -> None:
    err = ProtocolError(ErrorCode.BLOBS_MISSING, "1 blob(s) not uploaded yet", missing=[BLOB])
    assert err.to_json() == {
        "error": "blobs_missing",
        "detail": "1 blob(s) not uploaded yet",
        "missing": [BLOB],
    }
    assert err.http_status == 409


def test_docs_list_every_error_code_with_its_status() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for code in ErrorCode:
        row = re.search(rf"^\| `{code.value}` \| (\d{{3}}) \|", text, re.MULTILINE)
        assert row is not None, f"docs/protocol.md lacks a table row for {code.value}"
        assert int(row.group(1)) == HTTP_STATUS[code], code.value


def test_docs_partners_toml_example_is_valid() -> None:
    """The partners.toml example in docs/protocol.md parses and each kid names its key."""
    text = DOCS.read_text(encoding="utf-8")
    block = re.search(r"```toml\n(.*?)```", text, re.DOTALL)
    assert block is not None
    data = tomllib.loads(block.group(1))
    assert data["partners"]
    for partner in data["partners"]:
        for entry in partner["keys"]:
            key = TrustedKey.from_claim(partner["region"], entry)
            assert key.not_before.tzinfo is not None


def test_jws_parse_reports_parts(w: World, good: str) -> None:
    parsed = jws.parse(good, typ=env.TYP, max_size=env.MAX_ENVELOPE_BYTES)
    h, p, _s = good.split(".")
    assert parsed.signing_input == f"{h}.{p}".encode()
    assert len(parsed.signature) == 64
    assert parsed.kid == w.current.kid
