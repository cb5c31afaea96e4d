"""A valid example body of every message type, with the ``blobs`` it names.

The same examples appear in docs/messages.md (tests/test_messages.py checks both against
the schemas); tests, the bench and the test vectors build their envelopes from them.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any


def _file(name: str, media_type: str, content: bytes) -> dict[str, Any]:
    return {
        "sha256": hashlib.sha256(content).hexdigest(),
        "size": len(content),
        "media_type": media_type,
        "name": name,
    }


_LICENCE_SCAN = _file("营业执照.pdf", "application/pdf", b"example: business licence scan")
_LEASE = _file("租赁合同.pdf", "application/pdf", b"example: lease contract")
_COMMITMENT = _file("容缺承诺书.pdf", "application/pdf", b"example: signed commitment")
_FLOOR_PLAN = _file("经营场所平面图.pdf", "application/pdf", b"example: corrected floor plan")
_PERMIT = _file("食品经营许可证.pdf", "application/pdf", b"example: food business permit")
_DECISION = _file("准予行政许可决定书.pdf", "application/pdf", b"example: approval decision")
_RECORDING = _file("勘验录像.webm", "video/webm", b"example: inspection recording")
_SNAPSHOT = _file("后厨.jpg", "image/jpeg", b"example: inspection snapshot")
_RECORD = _file("勘验笔录.pdf", "application/pdf", b"example: signed inspection record")
_MANIFEST = _file("evidence-manifest.json", "application/json", b'{"example": "manifest"}')
_SIGNED_RECEIPT = _file("签收单.jpg", "image/jpeg", b"example: signed delivery slip")

_RATING_ID = "5f0c6b2e-8d4a-4c1e-9a57-2b7d1f3e6a90"
_SESSION_ID = "0b8e4f6a-3c2d-4e1f-8a9b-7c6d5e4f3a2b"

_EXAMPLES: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {
    "case.submit": (
        {
            "case_no": "430400-20261122-00017",
            "item_code": "11370500MB2850123X4000117001",
            "mode": "proxy",
            "applicant": {
                "kind": "org",
                "name": "衡阳市雁城餐饮管理有限公司",
                "id_type": "unified_social_credit_code",
                "id_number": "91430400MA4L2B7C02",
                "phone": "13807340001",
            },
            "form": {"business_scope": "热食类食品制售", "area_m2": 120},
            "materials": [
                {
                    "code": "M01",
                    "name": "营业执照",
                    "status": "provided",
                    "blob": _LICENCE_SCAN["sha256"],
                    "original_verified": True,
                },
                {
                    "code": "M02",
                    "name": "经营场所使用证明",
                    "status": "provided",
                    "blob": _LEASE["sha256"],
                },
                {
                    "code": "M03",
                    "name": "食品安全管理制度",
                    "status": "deferred",
                    "blob": None,
                    "deferred_until": "2026-12-04",
                    "commitment": {"blob": _COMMITMENT["sha256"]},
                },
            ],
            "identity_verified": True,
            "delivery": {
                "method": "mail",
                "address": "湖南省衡阳市蒸湘区解放大道 1 号",
                "recipient": "王芳",
                "phone": "13807340001",
                "postcode": "421001",
            },
            "received_at": "2026-11-22T09:30:00+08:00",
            "agent": {
                "name": "王芳",
                "id_type": "resident_id",
                "id_number": "430405199003070026",
                "phone": "13807340001",
                "relation": "公司员工",
            },
            "received_by": {"window": "衡阳市政务服务中心 跨域通办 3 号窗口", "clerk": "李明"},
        },
        [_LICENCE_SCAN, _LEASE, _COMMITMENT],
    ),
    "case.accepted": (
        {
            "accepted_on": "2026-11-23",
            "time_limit_days": 20,
            "promised_date": "2026-12-21",
            "approver": "张伟",
            "accepted_at": "2026-11-23T10:05:00+08:00",
            "provisional": False,
            "warning_days": 3,
            "notice_no": "东市监食许受〔2026〕1187号",
        },
        [],
    ),
    "case.not_accepted": (
        {
            "reason": "申请事项依法不属于本机关职权范围",
            "legal_basis": "《中华人民共和国行政许可法》第三十二条第一款第（二）项",
            "not_accepted_at": "2026-11-23T10:05:00+08:00",
            "approver": "张伟",
        },
        [],
    ),
    "case.supplement_requested": (
        {
            "items": [
                {
                    "material_code": "M02",
                    "name": "经营场所平面图",
                    "requirement": "标明加工区、储存区、清洗区的位置和面积",
                },
                {"name": "从业人员健康证明", "requirement": "全部从业人员的有效健康证明复印件"},
            ],
            "deadline": "2026-11-30",
            "requested_on": "2026-11-23",
            "notice_no": "东市监食补〔2026〕0412号",
            "approver": "张伟",
        },
        [],
    ),
    "case.supplemented": (
        {
            "materials": [
                {"code": "M02", "name": "经营场所平面图", "blob": _FLOOR_PLAN["sha256"]},
            ],
            "supplemented_at": "2026-11-25T15:20:00+08:00",
            "note": "健康证明已在平面图后附",
        },
        [_FLOOR_PLAN],
    ),
    "case.inspection_scheduled": (
        {
            "session_id": _SESSION_ID,
            "scheduled_at": "2026-11-27T14:00:00+08:00",
            "join_url": f"https://tongban.dongying.example/inspection/{_SESSION_ID}",
            "checklist": ["后厨布局与平面图一致", "洗手消毒设施", "冷藏设备温度"],
            "participants": [
                {"role": "inspector", "name": "赵强"},
                {"role": "applicant", "name": "王芳"},
            ],
            "join_token": "K7Q2-M9XD",
            "duration_minutes": 45,
            "site_address": "湖南省衡阳市蒸湘区解放大道 1 号",
        },
        [],
    ),
    "case.inspection_completed": (
        {
            "session_id": _SESSION_ID,
            "completed_at": "2026-11-27T14:41:00+08:00",
            "result": "pass",
            "files": [
                {"blob": _RECORDING["sha256"], "kind": "recording", "duration_s": 2280},
                {
                    "blob": _SNAPSHOT["sha256"],
                    "kind": "snapshot",
                    "taken_at": "2026-11-27T14:12:30+08:00",
                },
                {"blob": _RECORD["sha256"], "kind": "record"},
                {"blob": _MANIFEST["sha256"], "kind": "manifest"},
            ],
            "started_at": "2026-11-27T14:03:00+08:00",
            "inspector": "赵强",
            "findings": "现场布局与平面图一致，设施设备符合要求",
        },
        [_RECORDING, _SNAPSHOT, _RECORD, _MANIFEST],
    ),
    "case.decided": (
        {
            "outcome": "approved",
            "decided_at": "2026-12-02T16:00:00+08:00",
            "documents": [
                {"blob": _PERMIT["sha256"], "name": "食品经营许可证", "kind": "license"},
                {"blob": _DECISION["sha256"], "name": "准予行政许可决定书", "kind": "decision"},
            ],
            "decision_no": "东市监食许〔2026〕1187号",
            "certificate_no": "JY13705020012345",
            "valid_until": "2031-12-01",
            "approver": "张伟",
        },
        [_PERMIT, _DECISION],
    ),
    "case.dispatched": (
        {
            "method": "mail",
            "dispatched_at": "2026-12-03T10:00:00+08:00",
            "courier": "中国邮政 EMS",
            "tracking_no": "1234567890123",
        },
        [],
    ),
    "case.delivered": (
        {
            "delivered_at": "2026-12-04T11:30:00+08:00",
            "method": "mail",
            "recipient": "王芳",
            "proof": {"blob": _SIGNED_RECEIPT["sha256"]},
        },
        [_SIGNED_RECEIPT],
    ),
    "case.withdraw_requested": (
        {"reason": "申请人决定暂缓开业", "requested_at": "2026-11-24T09:10:00+08:00"},
        [],
    ),
    "case.withdrawn": (
        {"withdrawn_at": "2026-11-24T11:00:00+08:00", "reason": "申请人决定暂缓开业"},
        [],
    ),
    "case.rated": (
        {
            "rating_id": _RATING_ID,
            "level": 2,
            "stage": "decide",
            "channel": 4,
            "real_name": True,
            "rated_at": "2026-12-04T11:35:00+08:00",
            "comment": "补正通知没有一次说清楚，多跑了一趟",
        },
        [],
    ),
    "case.rectified": (
        {
            "rating_id": _RATING_ID,
            "rectification": "修订补正告知模板，要求一次列明全部材料；对经办人员开展培训",
            "rectified_at": "2026-12-10T17:00:00+08:00",
            "follow_up": {
                "at": "2026-12-11T10:00:00+08:00",
                "by": "陈静",
                "result": "申请人认可整改措施",
                "satisfied": True,
                "channel": "phone",
            },
        },
        [],
    ),
    "case.progress": (
        {
            "kind": "pause",
            "reason": "需对经营场所进行专家评审",
            "on": "2026-11-28",
            "procedure": "expert_review",
            "expected_days": 10,
        },
        [],
    ),
    "case.error": (
        {
            "code": "transition_not_allowed",
            "detail": "case.decided not allowed in state withdrawn",
            "ref": "3d6f0a2b-1c4e-4f8a-9b7d-5e2c1a0f9d83",
        },
        [],
    ),
}


def example_body(typ: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A valid body of message type ``typ`` and the ``blobs`` it names (fresh copies).

    For tests, the bench, test vectors and docs/messages.md. An unknown type gets an empty body
    and no blobs (``validate_body`` refuses the type itself), so tests can build envelopes of
    unknown types the same way.
    """
    body, blobs = _EXAMPLES.get(typ, ({}, []))
    return copy.deepcopy(body), copy.deepcopy(blobs)
