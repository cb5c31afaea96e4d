"""Runs one test vector through the public protocol functions.

This is what a partner's harness does in its own language: build the trusted key set from the
file's ``keys``, call the verifier with the vector's inputs, and compare ``"valid"`` or the
error code with ``expected``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from protocol.descriptor import verify_descriptor
from protocol.directory import AuthorityKey, verify_directory
from protocol.envelope import verify_envelope
from protocol.errors import ProtocolError
from protocol.evidence import EvidenceError, verify_manifest
from protocol.keys import KeySet, TrustedKey
from protocol.receipt import verify_receipt
from protocol.request_token import verify_request_token
from tests.vectors.tokens import from_runs

HERE = Path(__file__).resolve().parent
#: Vector file name -> kind.
FILES = {
    "envelopes.json": "envelope",
    "receipts.json": "receipt",
    "descriptors.json": "descriptor",
    "request_tokens.json": "request_token",
    "evidence.json": "evidence",
    "directories.json": "directory",
}
KEY_FIELDS = frozenset({"region", "kid", "public_key", "not_before", "not_after"})


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def key_set(entries: list[dict[str, Any]]) -> KeySet:
    keys = KeySet()
    for entry in entries:
        if set(entry) != KEY_FIELDS:
            raise ValueError(f"a key entry has exactly {sorted(KEY_FIELDS)}")
        claim = {name: entry[name] for name in KEY_FIELDS - {"region"}}
        keys.add(TrustedKey.from_claim(entry["region"], claim))
    return keys


def token_of(vector: dict[str, Any]) -> str:
    """The token: ``token``, or the concatenation of ``token_runs``."""
    if "token" in vector:
        return str(vector["token"])
    return from_runs(vector["token_runs"])


def outcome(kind: str, vector: dict[str, Any], keys: KeySet) -> tuple[str, Any]:
    """``("valid", result)`` or ``(error_code, ProtocolError)``."""
    token = token_of(vector)
    try:
        result: Any
        if kind == "envelope":
            result = verify_envelope(
                token.encode("utf-8"),
                keys,
                recipient=vector["recipient"],
                now=vector["now"],
                check_time=vector.get("check_time", True),
            )
        elif kind == "receipt":
            result = verify_receipt(
                token.encode("utf-8"),
                keys,
                sender=vector["sender"],
                receiver=vector["receiver"],
                ref=vector["ref"],
                digest=vector["digest"],
            )
        elif kind == "descriptor":
            result = verify_descriptor(
                token.encode("utf-8"), keys, region=vector["region"], now=vector["now"]
            )
        elif kind == "request_token":
            result = verify_request_token(
                token,
                keys,
                recipient=vector["recipient"],
                sha256=vector["sha256"],
                now=vector["now"],
            )
        elif kind == "evidence":

            def lookup(kid: str) -> Any:
                key = keys.get(kid)
                return key.public_key if key is not None else None

            manifest = verify_manifest(token.encode("ascii"), issuer=vector["issuer"], keys=lookup)
            result = {"session_id": manifest["session"]["id"], "files": len(manifest["files"])}
        elif kind == "directory":
            authority_keys = [
                AuthorityKey.from_text(vector["authority"], text)
                for text in vector["authority_keys"]
            ]
            in_force = vector["in_force"]
            result = verify_directory(
                token.encode("utf-8"),
                authority_keys,
                now=vector["now"],
                in_force=None if in_force is None else (in_force[0], in_force[1]),
            )
        else:
            raise ValueError(f"unknown vector kind {kind}")
    except ProtocolError as exc:
        return str(exc.code), exc
    except EvidenceError as exc:
        return exc.code, exc
    return "valid", result


def mismatches(kind: str, vector: dict[str, Any], keys: KeySet) -> list[str]:
    """What differs between the vector's expectation and what our implementation does."""
    got, result = outcome(kind, vector, keys)
    problems: list[str] = []
    if got != vector["expected"]:
        detail = f" ({result.detail})" if isinstance(result, ProtocolError) else ""
        problems.append(f"expected {vector['expected']}, got {got}{detail}")
        return problems
    if isinstance(result, ProtocolError):
        cause = vector.get("cause")
        if cause is not None and not result.detail.startswith(f"{cause}:"):
            problems.append(f"expected cause {cause}, got {result.detail!r}")
        return problems
    for name, value in vector.get("expect", {}).items():
        if kind == "descriptor" and name == "keys":
            actual: Any = [k.kid for k in result.keys]
        elif kind == "directory" and name == "regions":
            actual = list(result.entries)
        elif isinstance(result, dict):
            actual = result[name]
        else:
            actual = getattr(result, name)
        if actual != value:
            problems.append(f"{name}: expected {value!r}, got {actual!r}")
    return problems
