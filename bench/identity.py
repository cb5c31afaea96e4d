"""ID token verification cost (node/identity/verification.py): how many ID tokens one core
verifies per second, per algorithm, with a locally made JWKS — what each online application
and each citizen login costs the node beyond the provider's round trips.

    python -m bench.identity                 # 2000 verifications per algorithm
    python -m bench.identity --n 5000 --out /tmp/identity.json

Prints a table and writes JSON (figures, parameters, machine) to bench/results/identity.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from bench import procstat
from node.identity.config import IdentitySettings
from node.identity.verification import KeySet, verify_id_token

REPO = Path(__file__).resolve().parent.parent
ISSUER = "https://ids.example"
CLIENT = "tongban-bench"


def _keys() -> dict[str, tuple[Any, dict[str, Any]]]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    return {
        "RS256": (rsa_key, RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True)),
        "ES256": (ec_key, ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True)),
        "EdDSA": (ed_key, OKPAlgorithm.to_jwk(ed_key.public_key(), as_dict=True)),
    }


def run(n: int) -> dict[str, Any]:
    keys = _keys()
    jwks = {"keys": [{**jwk, "kid": alg, "use": "sig"} for alg, (_k, jwk) in keys.items()]}
    keyset = KeySet.from_jwks(jwks)
    settings = IdentitySettings(issuer=ISSUER, client_id=CLIENT)
    figures: dict[str, Any] = {}
    for alg, (private, _jwk) in keys.items():
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": CLIENT,
            "sub": "s",
            "iat": now,
            "exp": now + 600,
            "nonce": "n",
            "name": "刘洋",
            "id_number": "11010519491231002X",
        }
        token = jwt.encode(claims, private, algorithm=alg, headers={"kid": alg})
        for _ in range(50):  # warm up
            verify_id_token(token, keys=keyset, settings=settings, now=time.time(), nonce="n")
        samples = []
        started = time.perf_counter()
        for _ in range(n):
            t0 = time.perf_counter()
            verify_id_token(token, keys=keyset, settings=settings, now=time.time(), nonce="n")
            samples.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
        samples.sort()
        figures[alg] = {
            "per_second": round(n / elapsed, 1),
            "median_us": round(statistics.median(samples) * 1e6, 1),
            "p95_us": round(samples[int(0.95 * (n - 1))] * 1e6, 1),
            "token_bytes": len(token),
        }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="verifications per algorithm")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "identity.json")
    args = parser.parse_args()
    figures = run(args.n)
    print(f"{'alg':<6} {'per s':>9} {'median µs':>10} {'p95 µs':>9} {'token B':>8}")
    for alg, f in figures.items():
        print(
            f"{alg:<6} {f['per_second']:>9,.0f} {f['median_us']:>10} {f['p95_us']:>9} "
            f"{f['token_bytes']:>8}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "bench": "identity",
        "parameters": {"n": args.n},
        "machine": procstat.machine_info(REPO),
        "figures": figures,
    }
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
