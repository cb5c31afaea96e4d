"""Hand-built JWS for tests that must send what our own signer refuses to make."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jws_raw(header: bytes, claims: bytes, key: Ed25519PrivateKey | None) -> str:
    """Sign arbitrary header and claims bytes with Ed25519 (or leave the signature empty)."""
    signing_input = f"{b64(header)}.{b64(claims)}"
    signature = key.sign(signing_input.encode()) if key is not None else b""
    return f"{signing_input}.{b64(signature)}"


def jws(header: dict[str, Any], claims: dict[str, Any], key: Ed25519PrivateKey | None) -> str:
    return jws_raw(json.dumps(header).encode(), json.dumps(claims).encode(), key)


def hs256_with_public_key(header: dict[str, Any], claims: dict[str, Any], public_raw: bytes) -> str:
    """The key-confusion forgery: HMAC keyed with the verifier's public key."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    mac = hmac.new(public_raw, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"
