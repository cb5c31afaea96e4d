"""The receiving node checks an evidence package before it shows it: every file's digest and
size against the sealed manifest, and the manifest's signature with the sender's trusted key.
A package that fails is refused with a stable code (``case.error``) and changes nothing."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.clock import china_iso as now_iso
from protocol.evidence import MEDIA_TYPE, NAME, sign_manifest
from tests.support.api import ApiClient
from tests.support.inspections import InspectionCase, accepted_case, schedule, until
from tests.support.nodes import RunningNode


async def package(
    node: RunningNode,
    case: InspectionCase,
    *,
    key: Ed25519PrivateKey | None = None,
    lie_about: str | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A package as the handling node builds it; ``key`` signs instead of the node's key,
    ``lie_about`` ("size" or "digest") makes the manifest disagree with the files."""
    recording = f"fake recording {time.time()}".encode()
    record = "勘验笔录\n现场与申请材料一致。\n".encode()
    rec_sha = await node.fed.blobs.put_bytes(recording)
    txt_sha = await node.fed.blobs.put_bytes(record)
    files = [
        {"kind": "recording", "sha256": rec_sha, "size": len(recording), "duration_s": 3.0},
        {"kind": "record", "sha256": txt_sha, "size": len(record)},
    ]
    if lie_about == "size":
        files[0]["size"] += 1
    if lie_about == "digest":
        files[1]["sha256"] = "0" * 64
    manifest = {
        "case": {"case_no": case.case_no},
        "session": {"id": case.session_id, "kind": "inspection"},
        "files": files,
        "checklist": [],
        "record": {"text": record.decode(), "result": "pass"},
    }
    identity = node.fed.identity
    sealed = sign_manifest(
        manifest,
        key or identity.private_key,
        kid=identity.kid,
        region=node.config.region,
        now=time.time(),
    )
    man_sha = await node.fed.blobs.put_bytes(sealed)
    body = {
        "session_id": case.session_id,
        "completed_at": now_iso(),
        "result": "pass",
        "files": [
            {"blob": rec_sha, "kind": "recording", "duration_s": 3},
            {"blob": txt_sha, "kind": "record"},
            {"blob": man_sha, "kind": "manifest"},
        ],
    }
    blobs = [
        {"sha256": rec_sha, "size": len(recording), "media_type": "video/webm", "name": "r.webm"},
        {"sha256": txt_sha, "size": len(record), "media_type": "text/plain", "name": "笔录.txt"},
        {"sha256": man_sha, "size": len(sealed), "media_type": MEDIA_TYPE, "name": NAME},
    ]
    return body, blobs


async def test_tampered_evidence_is_refused_and_a_sound_package_is_shown(
    regions: list[RunningNode],
) -> None:
    hengyang, shaoyang = regions
    async with aiohttp.ClientSession() as http:
        clerk = await ApiClient(hengyang.url, http).login("clerk")
        approver = await ApiClient(shaoyang.url, http).login("approver")
        case_no, handling_id, receiving_id = await accepted_case(clerk, approver)
        case = await schedule(approver, clerk, case_no, handling_id, receiving_id)
        handled = await approver.ok("GET", f"/api/v1/cases/{handling_id}")
        xt = handled["xt_id"]
        before = await until(clerk, case_no, lambda c: c["status"] == "inspection")

        attempts = [
            ("evidence_signature_invalid", {"key": Ed25519PrivateKey.generate()}),
            ("evidence_digest_mismatch", {"lie_about": "size"}),
            ("evidence_digest_mismatch", {"lie_about": "digest"}),
        ]
        for number, (code, how) in enumerate(attempts, start=1):
            body, blobs = await package(shaoyang, case, **how)
            await shaoyang.send("430400", "case.inspection_completed", xt, body, blobs=blobs)
            answered = await until(
                approver, case_no, lambda c, n=number: len(c["details"].get("errors", [])) >= n
            )
            error = answered["details"]["errors"][number - 1]
            assert error["code"] == code, error
            # Nothing changed at the window: no evidence, no new event.
            now = await clerk.ok("GET", f"/api/v1/cases/{receiving_id}")
            assert "evidence" not in now["details"]["inspection"]
            assert len(now["events"]) == len(before["events"])

        status, body = await clerk.call("GET", f"/inspection/v1/cases/{receiving_id}/evidence")
        assert (status, body["error"]) == (404, "evidence_not_found")

        # A sound package is verified and shown.
        body, blobs = await package(shaoyang, case)
        await shaoyang.send("430400", "case.inspection_completed", xt, body, blobs=blobs)
        shown = await until(
            clerk, case_no, lambda c: (c["details"].get("inspection") or {}).get("evidence")
        )
        evidence = shown["details"]["inspection"]["evidence"]
        assert evidence["verified"]["manifest"] == body["files"][-1]["blob"]
        got = await clerk.ok("GET", f"/inspection/v1/cases/{receiving_id}/evidence")
        assert got["verified"]["manifest_body"]["session"]["id"] == case.session_id
