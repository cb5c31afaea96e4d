"""The committed test vectors (tests/vectors/*.json) give their expected result through the
public protocol functions, and the generator still produces a complete, self-consistent set.

A partner's implementation in another language runs the same files; docs/protocol.md says how.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from protocol.errors import ErrorCode
from protocol.messages import MESSAGE_TYPES
from tests.vectors import generate, runner

#: The codes an evidence manifest is refused with (a case.error code, docs/inspection.md).
EVIDENCE_CODES = {"evidence_signature_invalid", "evidence_manifest_invalid"}


def _cases() -> list[Any]:
    cases = []
    for filename, kind in runner.FILES.items():
        path = runner.HERE / filename
        if not path.exists():
            continue
        data = runner.load(path)
        for vector in data["vectors"]:
            cases.append(pytest.param(kind, filename, vector, id=f"{filename}:{vector['name']}"))
    return cases


_KEYS: dict[str, Any] = {}


def _keys(filename: str) -> Any:
    if filename not in _KEYS:
        _KEYS[filename] = runner.key_set(runner.load(runner.HERE / filename)["keys"])
    return _KEYS[filename]


def test_every_vector_file_is_committed() -> None:
    for filename in runner.FILES:
        assert (runner.HERE / filename).is_file(), (
            f"run python -m tests.vectors.generate ({filename})"
        )


@pytest.mark.parametrize(("kind", "filename", "vector"), _cases())
def test_vector(kind: str, filename: str, vector: dict[str, Any]) -> None:
    assert runner.mismatches(kind, vector, _keys(filename)) == []


def _check_file(data: dict[str, Any], kind: str) -> None:
    assert data["format"] == generate.FORMAT
    names = [v["name"] for v in data["vectors"]]
    assert len(names) == len(set(names))
    for vector in data["vectors"]:
        assert {"name", "description", "expected"} <= vector.keys()
        assert ("token" in vector) != ("token_runs" in vector)
        codes = EVIDENCE_CODES if kind == "evidence" else set(ErrorCode)
        assert vector["expected"] == "valid" or vector["expected"] in codes
    for entry in data["keys"]:
        assert set(entry) == runner.KEY_FIELDS


@pytest.mark.parametrize(("filename", "kind"), runner.FILES.items())
def test_files_are_well_formed(filename: str, kind: str) -> None:
    _check_file(runner.load(runner.HERE / filename), kind)


def test_files_hold_no_private_key() -> None:
    for filename in runner.FILES:
        text = (runner.HERE / filename).read_text(encoding="utf-8")
        assert "PRIVATE" not in text
        assert '"d"' not in text  # a JWK private part


def test_evidence_vectors_cover_every_refusal() -> None:
    vectors = runner.load(runner.HERE / "evidence.json")["vectors"]
    assert {v["expected"] for v in vectors} == {"valid"} | EVIDENCE_CODES


def test_envelope_vectors_cover_the_contract() -> None:
    vectors = runner.load(runner.HERE / "envelopes.json")["vectors"]
    valid_types = {
        v["expect"]["typ"] for v in vectors if v["expected"] == "valid" and "expect" in v
    }
    assert valid_types >= set(MESSAGE_TYPES)
    codes = {v["expected"] for v in vectors}
    assert codes >= {
        "valid",
        "too_large",
        "malformed_jws",
        "invalid_encoding",
        "invalid_json",
        "json_too_deep",
        "invalid_header",
        "alg_not_allowed",
        "wrong_type",
        "unknown_issuer",
        "unknown_kid",
        "key_not_valid",
        "bad_signature",
        "invalid_claims",
        "wrong_audience",
        "expired",
        "not_yet_valid",
        "lifetime_too_long",
        "unknown_message_type",
        "schema_invalid",
    }
    # The archive case: no recipient, no time check, still valid.
    assert any(
        v["expected"] == "valid" and v["recipient"] is None and v["check_time"] is False
        for v in vectors
    )


def test_other_vector_files_cover_refusals() -> None:
    for filename, refusal in (
        ("receipts.json", "receipt_invalid"),
        ("descriptors.json", "descriptor_invalid"),
        ("request_tokens.json", "token_invalid"),
    ):
        expected = {v["expected"] for v in runner.load(runner.HERE / filename)["vectors"]}
        assert expected == {"valid", refusal}, filename


def test_generator_makes_fresh_keys_and_a_consistent_set(tmp_path: Path) -> None:
    """The generator checks every vector against this implementation before writing; a fresh
    run succeeds and uses new keys (no key is ever fixed in the repository)."""
    written = generate.write_all(tmp_path)
    assert sorted(p.name for p in written) == sorted(runner.FILES)
    fresh = json.loads((tmp_path / "envelopes.json").read_text(encoding="utf-8"))
    committed = runner.load(runner.HERE / "envelopes.json")
    assert {k["kid"] for k in fresh["keys"]}.isdisjoint({k["kid"] for k in committed["keys"]})
    assert [v["name"] for v in fresh["vectors"]] == [v["name"] for v in committed["vectors"]], (
        "the committed vectors are stale: run python -m tests.vectors.generate"
    )
    for filename, kind in runner.FILES.items():
        _check_file(json.loads((tmp_path / filename).read_text(encoding="utf-8")), kind)


def test_directory_vectors_cover_every_refusal() -> None:
    """Every code a directory is refused with has a vector (docs/protocol.md §12.1)."""
    vectors = runner.load(runner.HERE / "directories.json")["vectors"]
    codes = {v["expected"] for v in vectors}
    directory_codes = {code.value for code in ErrorCode if code.value.startswith("directory_")}
    assert codes >= {"valid", "wrong_type", "bad_signature"} | directory_codes
    # The keys that sign them are made per run; only public halves are in the file.
    for vector in vectors:
        assert vector["authority"] == "430000"
        assert all(len(text) == 43 for text in vector["authority_keys"])
