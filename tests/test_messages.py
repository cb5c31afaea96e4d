"""Message bodies: every type has a strict schema, its example passes, every kind of fault is
refused with ``schema_invalid`` and the path of the fault; identity numbers and phones are
checked as GB 11643 / GB 32100 and the numbering plan say; docs/messages.md matches the schemas."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from protocol import identifiers as ids
from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import (
    BODY_SCHEMAS,
    ERROR,
    FAMILIES,
    MESSAGE_TYPES,
    PROGRESS,
    example_body,
    registry,
    validate_blobs,
    validate_body,
)
from protocol.schema import Checked, List, Nullable, Obj, Schema

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "messages.md"

Key = str | int


# -- helpers ---------------------------------------------------------------------------------


def refusal(typ: str, body: Any, blobs: list[dict[str, Any]] | None = None) -> ProtocolError:
    """The error validating ``body`` raises; fails the test if it validates."""
    if blobs is None:
        blobs = example_body(typ)[1]
    with pytest.raises(ProtocolError) as info:
        validate_body(typ, body, blobs)
    return info.value


def assert_refused(
    typ: str, body: Any, path: str, blobs: list[dict[str, Any]] | None = None
) -> ProtocolError:
    err = refusal(typ, body, blobs)
    assert err.code is ErrorCode.SCHEMA_INVALID
    assert err.http_status == 422
    assert err.extra.get("path") == path, err.detail
    assert err.detail.startswith(path + ": ")
    return err


def accepted(typ: str, body: Any, blobs: list[dict[str, Any]] | None = None) -> None:
    validate_body(typ, body, example_body(typ)[1] if blobs is None else blobs)


def example(typ: str, **changes: Any) -> dict[str, Any]:
    """The example body of ``typ`` with top-level ``changes`` (a value of ``...`` removes)."""
    body = example_body(typ)[0]
    for name, value in changes.items():
        if value is ...:
            body.pop(name, None)
        else:
            body[name] = value
    return body


def unwrap(schema: Schema) -> Schema:
    while isinstance(schema, Checked | Nullable):
        schema = schema.inner
    return schema


def fmt(keys: list[Key]) -> str:
    out = "body"
    for key in keys:
        out += f"[{key}]" if isinstance(key, int) else f".{key}"
    return out


def fields(schema: Schema, value: Any, keys: list[Key]) -> Iterator[tuple[list[Key], bool]]:
    """Every field present in ``value``, as key path and whether the schema requires it."""
    schema = unwrap(schema)
    if isinstance(schema, Obj) and isinstance(value, dict):
        for name, child in {**schema.required, **schema.optional}.items():
            if name in value:
                yield [*keys, name], name in schema.required
                yield from fields(child, value[name], [*keys, name])
    elif isinstance(schema, List) and isinstance(value, list):
        for index, item in enumerate(value):
            yield from fields(schema.item, item, [*keys, index])


def objects(schema: Schema, value: Any, keys: list[Key]) -> Iterator[list[Key]]:
    """Every strict object (not the free ``form``) in ``value``, as key path."""
    schema = unwrap(schema)
    if isinstance(schema, Obj) and isinstance(value, dict):
        yield keys
        for name, child in {**schema.required, **schema.optional}.items():
            if name in value:
                yield from objects(child, value[name], [*keys, name])
    elif isinstance(schema, List) and isinstance(value, list):
        for index, item in enumerate(value):
            yield from objects(schema.item, item, [*keys, index])


def at(body: Any, keys: list[Key]) -> Any:
    for key in keys:
        body = body[key]
    return body


def wrong_type(value: Any) -> Any:
    if isinstance(value, bool):
        return 1
    if isinstance(value, int):
        return "1"
    if isinstance(value, str):
        return 1
    if isinstance(value, list):
        return {}
    if isinstance(value, dict):
        return []
    return 1  # null where a string is allowed


def cases(kind: str) -> list[Any]:
    """(type, key path) of every required field, every field or every object of the examples."""
    found: list[tuple[str, list[Key]]] = []
    for typ in MESSAGE_TYPES:
        body = example_body(typ)[0]
        if kind == "object":
            found += [(typ, keys) for keys in objects(BODY_SCHEMAS[typ], body, [])]
        else:
            for keys, required in fields(BODY_SCHEMAS[typ], body, []):
                if kind == "field" or required:
                    found.append((typ, keys))
    return [pytest.param(typ, keys, id=fmt(keys).replace("body", typ, 1)) for typ, keys in found]


# -- every type ------------------------------------------------------------------------------


def test_every_type_has_a_schema() -> None:
    assert set(BODY_SCHEMAS) == set(MESSAGE_TYPES)
    assert len(MESSAGE_TYPES) == 16


def test_each_type_has_its_schema_in_one_family_module() -> None:
    owners = {typ: family.__name__ for family in FAMILIES for typ in family.SCHEMAS}
    assert list(owners) == list(MESSAGE_TYPES)
    assert sum(len(family.SCHEMAS) for family in FAMILIES) == len(MESSAGE_TYPES)
    for family in FAMILIES:
        for typ, schema in family.SCHEMAS.items():
            assert BODY_SCHEMAS[typ] is schema, (family.__name__, typ)


def test_registering_a_type_twice_fails() -> None:
    assert registry([{"case.progress": PROGRESS}, {"case.error": ERROR}]) == {
        "case.progress": PROGRESS,
        "case.error": ERROR,
    }
    with pytest.raises(ValueError, match=re.escape("'case.error' is registered twice")):
        registry([{"case.error": ERROR}, {"case.progress": PROGRESS, "case.error": PROGRESS}])


def test_a_type_registered_twice_fails_the_import() -> None:
    script = (
        "import importlib\n"
        "import protocol.messages as messages\n"
        "from protocol.messages import progress\n"
        "progress.SCHEMAS['case.error'] = messages.ERROR\n"
        "importlib.reload(messages)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "ValueError: message type 'case.error' is registered twice" in done.stderr


@pytest.mark.parametrize("typ", MESSAGE_TYPES)
def test_example_validates(typ: str) -> None:
    body, blobs = example_body(typ)
    validate_blobs(blobs)
    validate_body(typ, body, blobs)


def test_example_is_a_fresh_copy() -> None:
    body, blobs = example_body("case.submit")
    body["applicant"]["name"] = "changed"
    blobs.clear()
    again, again_blobs = example_body("case.submit")
    assert again["applicant"]["name"] != "changed"
    assert again_blobs


def test_unknown_type() -> None:
    for typ in ("case.unknown", "Case.submit", ""):
        with pytest.raises(ProtocolError) as info:
            validate_body(typ, {}, [])
        assert info.value.code is ErrorCode.UNKNOWN_MESSAGE_TYPE
    assert example_body("case.unknown") == ({}, [])


@pytest.mark.parametrize("typ", MESSAGE_TYPES)
def test_body_must_be_an_object(typ: str) -> None:
    for value in ([], None, "{}", 1):
        assert_refused(typ, value, "body")


@pytest.mark.parametrize(("typ", "keys"), cases("required"))
def test_missing_required_field(typ: str, keys: list[Key]) -> None:
    body = example_body(typ)[0]
    del at(body, keys[:-1])[keys[-1]]
    err = assert_refused(typ, body, fmt(keys))
    assert err.detail.endswith("is required")


@pytest.mark.parametrize(("typ", "keys"), cases("field"))
def test_wrong_type(typ: str, keys: list[Key]) -> None:
    body = example_body(typ)[0]
    parent = at(body, keys[:-1])
    parent[keys[-1]] = wrong_type(parent[keys[-1]])
    assert_refused(typ, body, fmt(keys))


@pytest.mark.parametrize(("typ", "keys"), cases("object"))
def test_unknown_field(typ: str, keys: list[Key]) -> None:
    body = example_body(typ)[0]
    at(body, keys)["zz_unknown"] = "x"
    err = assert_refused(typ, body, fmt([*keys, "zz_unknown"]))
    assert err.detail.endswith("unknown field")


@pytest.mark.parametrize("typ", [t for t in MESSAGE_TYPES if example_body(t)[1]])
def test_blob_not_listed(typ: str) -> None:
    body, blobs = example_body(typ)
    # Every blob the example lists is referred to; leaving any out is refused.
    for index in range(len(blobs)):
        fewer = blobs[:index] + blobs[index + 1 :]
        err = refusal(typ, body, fewer)
        assert err.code is ErrorCode.SCHEMA_INVALID
        assert err.detail.endswith("refers to a blob not listed in blobs")
        assert at(body, _keys(err.extra["path"])) == blobs[index]["sha256"]


def _keys(path: str) -> list[Key]:
    return [
        int(part[1:-1]) if part.startswith("[") else part.lstrip(".")
        for part in re.findall(r"\.[a-z_]+|\[\d+\]", path.removeprefix("body"))
    ]


def test_bool_is_not_an_integer_and_integer_is_not_a_float() -> None:
    assert_refused("case.rated", example("case.rated", level=True), "body.level")
    assert_refused("case.rated", example("case.rated", level=2.0), "body.level")
    assert_refused("case.accepted", example("case.accepted", provisional=0), "body.provisional")


# -- case.submit -----------------------------------------------------------------------------


def submit(**changes: Any) -> dict[str, Any]:
    return example("case.submit", **changes)


def test_submit_without_optional_fields() -> None:
    body = submit(agent=..., received_by=...)
    body["materials"] = [
        {"code": "M01", "name": "营业执照", "status": "provided", "blob": "a" * 64},
        {"code": "M02", "name": "承诺书", "status": "pledged", "blob": None},
    ]
    body["delivery"] = {"method": "window", "address": None}
    blobs = [{"sha256": "a" * 64, "size": 3, "media_type": "application/pdf", "name": "x.pdf"}]
    accepted("case.submit", body, blobs)


def test_submit_refuses_the_query_code() -> None:
    # The 查询码 is the citizen's secret: it never leaves the receiving region.
    assert_refused("case.submit", submit(query_code="123456"), "body.query_code")


@pytest.mark.parametrize(
    "case_no", ["430400-20261122-00017", "430400-20261122-00017-2", "ABC123", "X" * 40]
)
def test_case_no_accepted(case_no: str) -> None:
    accepted("case.submit", submit(case_no=case_no))


@pytest.mark.parametrize(
    "case_no",
    ["abc123", "ABC12", "X" * 41, "-ABC123", "ABC123-", "ABC 123", "ABC_123", "４３0400-1"],
)
def test_case_no_refused(case_no: str) -> None:
    assert_refused("case.submit", submit(case_no=case_no), "body.case_no")


@pytest.mark.parametrize("code", ["", "11 43", "-M01", "x" * 65, "事项"])
def test_item_code_refused(code: str) -> None:
    assert_refused("case.submit", submit(item_code=code), "body.item_code")


@pytest.mark.parametrize("mode", ["Proxy", "remote", ""])
def test_mode_refused(mode: str) -> None:
    assert_refused("case.submit", submit(mode=mode), "body.mode")


def test_joint_needs_its_bundle_and_only_joint_has_one() -> None:
    assert_refused("case.submit", submit(mode="joint"), "body.bundle")
    bundle = {"bundle_no": "430400-20261122-00017", "part": 2, "parts": 3, "name": "开办餐馆"}
    accepted("case.submit", submit(mode="joint", bundle=bundle))
    assert_refused("case.submit", submit(bundle=bundle), "body.bundle")
    too_far = {**bundle, "part": 4}
    assert_refused("case.submit", submit(mode="joint", bundle=too_far), "body.bundle.part")
    alone = {**bundle, "parts": 1, "part": 1}
    assert_refused("case.submit", submit(mode="joint", bundle=alone), "body.bundle.parts")


def applicant(**changes: Any) -> dict[str, Any]:
    body = submit()
    body["applicant"].update(changes)
    return body


def test_applicant_person_with_resident_id() -> None:
    accepted(
        "case.submit",
        applicant(
            kind="person", name="王芳", id_type="resident_id", id_number="43040519900307000X"
        ),
    )


@pytest.mark.parametrize(
    ("id_type", "id_number"),
    [
        ("resident_id", "43040519900307000x"),  # the wire wants the upper-case X
        ("resident_id", "430405199003070001"),  # wrong check digit
        ("resident_id", "430405199002300026"),  # 30 February
        ("resident_id", "990405199003070026"),
        ("passport", "E-1234567"),
        ("hk_macao_permit", "C12345678"),
        ("taiwan_permit", "1234567"),
        ("foreign_permanent_residence", "933116198507040015"),
    ],
)
def test_applicant_id_number_refused(id_type: str, id_number: str) -> None:
    body = applicant(kind="person", id_type=id_type, id_number=id_number)
    err = assert_refused("case.submit", body, "body.applicant.id_number")
    assert id_number not in err.detail  # no personal data in a refusal


def test_org_must_use_its_credit_code_and_person_must_not() -> None:
    body = applicant(id_type="resident_id", id_number="430405199003070026")
    assert_refused("case.submit", body, "body.applicant.id_type")
    body = applicant(kind="person")
    assert_refused("case.submit", body, "body.applicant.id_type")
    body = applicant(id_number="91430400MA4L2B7C03")
    assert_refused("case.submit", body, "body.applicant.id_number")


def test_applicant_id_type_unknown() -> None:
    assert_refused("case.submit", applicant(id_type="driving_licence"), "body.applicant.id_type")


def test_agent_is_a_person() -> None:
    body = submit()
    body["agent"].update(id_type="unified_social_credit_code", id_number="91430400MA4L2B7C02")
    assert_refused("case.submit", body, "body.agent.id_type")
    body = submit()
    body["agent"]["id_number"] = "430405199003070027"
    assert_refused("case.submit", body, "body.agent.id_number")


@pytest.mark.parametrize("phone", ["12807340001", "1380734000", "０734-8888888", "+8613807340001"])
def test_applicant_phone_refused(phone: str) -> None:
    assert_refused("case.submit", applicant(phone=phone), "body.applicant.phone")


@pytest.mark.parametrize("name", ["", "   ", " 王芳", "王芳 ", "王\n芳", "王\x00芳", "x" * 201])
def test_applicant_name_refused(name: str) -> None:
    assert_refused("case.submit", applicant(name=name), "body.applicant.name")


def material(index: int, **changes: Any) -> dict[str, Any]:
    body = submit()
    for name, value in changes.items():
        if value is ...:
            body["materials"][index].pop(name)
        else:
            body["materials"][index][name] = value
    return body


def test_material_status_and_blob_agree() -> None:
    # M01 provided, M03 deferred (容缺) in the example.
    assert_refused("case.submit", material(0, blob=None), "body.materials[0].blob")
    assert_refused("case.submit", material(2, blob="a" * 64), "body.materials[2].blob")
    assert_refused(
        "case.submit", material(2, status="pledged", blob="a" * 64), "body.materials[2].blob"
    )
    accepted("case.submit", material(2, status="pledged", deferred_until=...))
    assert_refused("case.submit", material(0, status="missing"), "body.materials[0].status")


def test_deferral_fields_only_where_they_mean_something() -> None:
    body = material(0, deferred_until="2026-12-04")
    assert_refused("case.submit", body, "body.materials[0].deferred_until")
    body = material(2, status="pledged")
    assert_refused("case.submit", body, "body.materials[2].deferred_until")
    body = material(0, commitment={"blob": example_body("case.submit")[1][2]["sha256"]})
    assert_refused("case.submit", body, "body.materials[0].commitment")


def test_material_codes_are_unique() -> None:
    assert_refused("case.submit", material(1, code="M01"), "body.materials[1].code")


def test_material_blob_is_a_sha256() -> None:
    for bad in ("A" * 64, "a" * 63, "g" * 64):
        assert_refused("case.submit", material(0, blob=bad), "body.materials[0].blob")


def test_delivery_address_follows_the_method() -> None:
    body = submit()
    body["delivery"]["address"] = None
    assert_refused("case.submit", body, "body.delivery.address")
    body = submit()
    body["delivery"]["method"] = "window"
    assert_refused("case.submit", body, "body.delivery.address")
    body["delivery"] = {"method": "window", "address": None}
    accepted("case.submit", body)
    body["delivery"] = {"method": "mail", "address": "地址", "postcode": "42100"}
    assert_refused("case.submit", body, "body.delivery.postcode")


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-22",
        "2026-11-22T09:30:00",
        "2026-11-22 09:30:00+08:00",
        "2026-11-22T09:30+08:00",
        "20261122T093000+0800",
        "2026-11-31T09:30:00+08:00",
        "2026-W47-7T09:30:00+08:00",
        "2026-11-22T09:30:00.1234567+08:00",
        "2026-11-22t09:30:00+08:00",
    ],
)
def test_received_at_refused(value: str) -> None:
    assert_refused("case.submit", submit(received_at=value), "body.received_at")


@pytest.mark.parametrize("value", ["2026-11-22T01:30:00Z", "2026-11-22T09:30:00.250+08:00"])
def test_received_at_accepted(value: str) -> None:
    accepted("case.submit", submit(received_at=value))


def test_form_is_free_but_its_blobs_are_listed() -> None:
    accepted("case.submit", submit(form={"any": {"nested": [1, "x", None]}}))
    body = submit(form={"floor_plan": {"blob": "b" * 64}})
    assert_refused("case.submit", body, "body.form.floor_plan.blob")


# -- handling region -------------------------------------------------------------------------


def test_promised_date_not_before_acceptance() -> None:
    body = example("case.accepted", promised_date="2026-11-22")
    assert_refused("case.accepted", body, "body.promised_date")
    accepted("case.accepted", example("case.accepted", promised_date="2026-11-23"))
    assert_refused(
        "case.accepted", example("case.accepted", time_limit_days=0), "body.time_limit_days"
    )
    assert_refused(
        "case.accepted", example("case.accepted", accepted_on="2026-02-29"), "body.accepted_on"
    )


def test_not_accepted_needs_a_reason() -> None:
    assert_refused("case.not_accepted", {"legal_basis": "x"}, "body.reason")
    assert_refused("case.not_accepted", {"reason": " \n "}, "body.reason")
    accepted("case.not_accepted", {"reason": "第一行\n第二行"})


def test_supplement_notice_lists_something_and_its_deadline_is_later() -> None:
    assert_refused(
        "case.supplement_requested", example("case.supplement_requested", items=[]), "body.items"
    )
    body = example("case.supplement_requested", deadline="2026-11-22")
    assert_refused("case.supplement_requested", body, "body.deadline")
    body = example("case.supplement_requested")
    body["items"][1]["requirement"] = ""
    assert_refused("case.supplement_requested", body, "body.items[1].requirement")


def test_supplemented_materials_carry_files() -> None:
    assert_refused(
        "case.supplemented", example("case.supplemented", materials=[]), "body.materials"
    )
    body = example("case.supplemented")
    body["materials"][0]["blob"] = None
    assert_refused("case.supplemented", body, "body.materials[0].blob")


def test_inspection_needs_an_inspector_and_a_web_link() -> None:
    body = example("case.inspection_scheduled")
    body["participants"] = [{"role": "applicant", "name": "王芳"}]
    assert_refused("case.inspection_scheduled", body, "body.participants")
    body = example("case.inspection_scheduled", join_url="ftp://example.org/x")
    assert_refused("case.inspection_scheduled", body, "body.join_url")
    body = example("case.inspection_scheduled", session_id="0B8E4F6A-3C2D-4E1F-8A9B-7C6D5E4F3A2B")
    assert_refused("case.inspection_scheduled", body, "body.session_id")


def completed(files: list[dict[str, Any]], **changes: Any) -> dict[str, Any]:
    return example("case.inspection_completed", files=files, **changes)


def test_evidence_has_one_manifest_and_the_signed_record() -> None:
    recording, snapshot, record, manifest = example_body("case.inspection_completed")[0]["files"]
    assert_refused("case.inspection_completed", completed([recording, record]), "body.files")
    doubled = completed([record, manifest, {**manifest}])
    assert_refused("case.inspection_completed", doubled, "body.files")
    assert_refused("case.inspection_completed", completed([recording, manifest]), "body.files")
    accepted("case.inspection_completed", completed([recording, manifest], result="aborted"))
    wrong = completed([{**snapshot, "duration_s": 3}, record, manifest])
    assert_refused("case.inspection_completed", wrong, "body.files[0].duration_s")
    assert_refused(
        "case.inspection_completed", completed([record, manifest], result="ok"), "body.result"
    )


def test_decision_rules() -> None:
    body = example("case.decided", outcome="denied", certificate_no=..., valid_until=...)
    assert_refused("case.decided", body, "body.reason")
    body["reason"] = "经营场所不符合要求"
    accepted("case.decided", body)
    body["documents"] = []
    accepted("case.decided", body)  # a denial may come without documents
    body["certificate_no"] = "JY1"
    assert_refused("case.decided", body, "body.certificate_no")
    assert_refused("case.decided", example("case.decided", documents=[]), "body.documents")
    assert_refused("case.decided", example("case.decided", outcome="approve"), "body.outcome")


def test_dispatch_by_mail_has_courier_and_tracking() -> None:
    assert_refused(
        "case.dispatched", example("case.dispatched", tracking_no=...), "body.tracking_no"
    )
    assert_refused("case.dispatched", example("case.dispatched", courier=...), "body.courier")
    window = {"method": "window", "dispatched_at": "2026-12-03T10:00:00+08:00"}
    accepted("case.dispatched", window)
    assert_refused("case.dispatched", {**window, "courier": "EMS"}, "body.courier")
    bad = example("case.dispatched", tracking_no="12 34")
    assert_refused("case.dispatched", bad, "body.tracking_no")


def test_delivered_and_withdrawal() -> None:
    assert_refused("case.delivered", example("case.delivered", method="drone"), "body.method")
    accepted("case.withdrawn", {"withdrawn_at": "2026-11-24T11:00:00+08:00"})
    assert_refused(
        "case.withdraw_requested", example("case.withdraw_requested", reason=""), "body.reason"
    )


# -- rating, rectification, progress, error --------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"), [("level", 0), ("level", 6), ("channel", 0), ("channel", 8)]
)
def test_rating_ranges(name: str, value: int) -> None:
    assert_refused("case.rated", example("case.rated", **{name: value}), f"body.{name}")


def test_rating_stage_and_levels() -> None:
    assert_refused("case.rated", example("case.rated", stage="受理"), "body.stage")
    # A 差评 (1 or 2) says why; a 3 may come without a comment.
    assert_refused("case.rated", example("case.rated", comment=...), "body.comment")
    assert_refused("case.rated", example("case.rated", level=1, comment=...), "body.comment")
    accepted("case.rated", example("case.rated", level=3, comment=...))
    for channel in range(1, 8):
        accepted("case.rated", example("case.rated", channel=channel))


def test_rectification_follow_up() -> None:
    body = example("case.rectified")
    del body["follow_up"]["satisfied"]
    assert_refused("case.rectified", body, "body.follow_up.satisfied")
    accepted("case.rectified", example("case.rectified", follow_up=...))


def test_progress_rules() -> None:
    extension = {"kind": "extension", "reason": "情况复杂", "on": "2026-12-01"}
    assert_refused("case.progress", extension, "body.extension_days")
    accepted("case.progress", {**extension, "extension_days": 10, "approved_by": "刘局长"})
    assert_refused("case.progress", {**extension, "extension_days": 0}, "body.extension_days")
    resume = {"kind": "resume", "reason": "专家评审结束", "on": "2026-12-08"}
    accepted("case.progress", resume)
    assert_refused("case.progress", {**resume, "procedure": "hearing"}, "body.procedure")
    assert_refused("case.progress", {**resume, "extension_days": 3}, "body.extension_days")
    assert_refused("case.progress", example("case.progress", procedure="audit"), "body.procedure")
    assert_refused(
        "case.progress", example("case.progress", on="2026-12-01T00:00:00+08:00"), "body.on"
    )


def test_error_body() -> None:
    accepted("case.error", example("case.error", detail=""))
    assert_refused("case.error", example("case.error", code="Unknown_Case"), "body.code")
    assert_refused("case.error", example("case.error", ref="not-a-uuid"), "body.ref")
    ref = "3D6F0A2B-1C4E-4F8A-9B7D-5E2C1A0F9D83"
    assert_refused("case.error", example("case.error", ref=ref), "body.ref")


# -- identity numbers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    [
        "11010519491231002X",  # the example of GB 11643-1999, check character X
        "440524188001010014",  # the standard's other example
        "430405199003070026",
        "43040519900307000X",
        "810000199408230021",  # 港澳台居民居住证 follow the same rule
    ],
)
def test_resident_id_valid(number: str) -> None:
    assert ids.resident_id_fault(number) is None
    assert ids.is_valid_id("resident_id", number)
    assert ids.check_id("resident_id", number) is None


@pytest.mark.parametrize(
    ("number", "fault"),
    [
        ("110105194912310021", "check_digit"),
        ("110105194912310020", "check_digit"),
        ("430405199003070006", "check_digit"),
        ("11010519491231002x", "format"),  # strict: normalized upper case only
        ("11010519491231002", "format"),
        ("11010519491231002XX", "format"),
        ("1101051949123100２X", "format"),  # full-width digit
        ("110105194913310029", "birth_date"),  # month 13
        ("110105170001010012", "birth_date"),
        ("991050194912310027", "region"),
        ("001050194912310027", "region"),
    ],
)
def test_resident_id_invalid(number: str, fault: str) -> None:
    assert ids.resident_id_fault(number) == fault
    assert ids.id_fault("resident_id", number) == fault
    message = ids.check_id("resident_id", number)
    if fault == "format" and number.endswith("x"):
        assert message is None  # check_id normalizes what a clerk typed
    else:
        assert message is not None and number not in message


def test_resident_id_check_digit() -> None:
    assert ids.resident_id_check_digit("11010519491231002") == "X"
    assert ids.resident_id_check_digit("44052418800101001") == "4"
    assert ids.resident_id_check_digit("43040519900307000") == "X"
    with pytest.raises(ValueError):
        ids.resident_id_check_digit("1101051949123100")


def test_check_id_normalizes_spaces_and_case() -> None:
    assert ids.normalize_id(" 110105 19491231 002x ") == "11010519491231002X"
    assert ids.check_id("resident_id", "110105 19491231 002x") is None
    assert (
        ids.check_id("resident_id", "110105194912310021")
        == "居民身份证号码校验位不符，请核对是否录入有误"
    )
    assert ids.check_id("driving_licence", "123456") == "不支持的证件类型"


@pytest.mark.parametrize(
    "code",
    [
        "91350100M000100Y43",
        "914403001922038216",
        "91330100716105852F",
        "91440300708461136T",
        "91110000802100433B",
        "91430400MA4L2B7C02",
        "91430400MA4L2B0200",  # check value 31 is written 0
        "91430400MA4L2B010Y",
    ],
)
def test_credit_code_valid(code: str) -> None:
    assert ids.credit_code_fault(code) is None
    assert ids.is_credit_code(code)
    assert ids.check_id("unified_social_credit_code", code) is None


@pytest.mark.parametrize(
    ("code", "fault"),
    [
        ("91350100M000100Y44", "check_digit"),
        ("91350100M000100Y4", "format"),
        ("91350100M000100Y43A", "format"),
        ("91350100M0001O0Y43", "format"),  # O is not in the charset
        ("91350100I000100Y43", "format"),
        ("9135010AM000100Y43", "format"),  # positions 3-8 are digits
        ("91350100m000100y43", "format"),
        ("914403001922038217", "check_digit"),
    ],
)
def test_credit_code_invalid(code: str, fault: str) -> None:
    assert ids.credit_code_fault(code) == fault
    assert not ids.is_credit_code(code)


def test_credit_code_check_char() -> None:
    assert ids.credit_code_check_char("91350100M000100Y4") == "3"
    assert ids.credit_code_check_char("91430400MA4L2B020") == "0"
    assert tuple(pow(3, i, 31) for i in range(17)) == ids.CREDIT_CODE_WEIGHTS
    with pytest.raises(ValueError):
        ids.credit_code_check_char("91350100M000100Z4")


@pytest.mark.parametrize(
    ("id_type", "good", "bad"),
    [
        (
            "passport",
            ["E12345678", "EA1234567", "G12345678", "K1234"],
            ["E123", "E-1234567", "e12345678"],
        ),
        ("hk_macao_permit", ["H12345678", "M1234567801"], ["H1234567", "C12345678", "H123456789"]),
        ("taiwan_permit", ["12345678", "1234567890"], ["1234567", "123456789", "T1234567"]),
        (
            "foreign_permanent_residence",
            ["USA110062050012", "933116198507040014"],
            ["US110062050012", "933116198507040015", "933116198513040014", "USA11006205001X"],
        ),
    ],
)
def test_other_documents(id_type: str, good: list[str], bad: list[str]) -> None:
    for number in good:
        assert ids.id_fault(id_type, number) is None, number
    for number in bad:
        assert ids.id_fault(id_type, number) is not None, number
        # The clerk's message agrees, except where normalizing (upper case) mends the number.
        mended = ids.id_fault(id_type, ids.normalize_id(number)) is None
        assert (ids.check_id(id_type, number) is None) is mended, number
    assert ids.check_id("passport", "e12345678") is None


def test_unknown_document_type() -> None:
    assert ids.id_fault("driving_licence", "123456") == "unknown_type"
    assert set(ids.ID_TYPES) == {
        "resident_id",
        "unified_social_credit_code",
        "passport",
        "hk_macao_permit",
        "taiwan_permit",
        "foreign_permanent_residence",
    }
    assert set(ids.ID_TYPES) - {"unified_social_credit_code"} == ids.PERSON_ID_TYPES


# -- phones ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "phone",
    ["13807340001", "19912345678", "16612345678"],
)
def test_mobile_valid(phone: str) -> None:
    assert ids.is_mobile(phone) and ids.is_phone(phone)
    assert not ids.is_landline(phone)


@pytest.mark.parametrize(
    "phone",
    ["0734-8888888", "07348888888", "010-88888888", "021-62345678", "0734-8888888-123"],
)
def test_landline_valid(phone: str) -> None:
    assert ids.is_landline(phone) and ids.is_phone(phone)
    assert not ids.is_mobile(phone)


@pytest.mark.parametrize(
    "phone",
    [
        "12807340001",  # no 12x mobile prefix
        "1380734000",
        "138073400012",
        "138-0734-0001",
        " 13807340001",
        "１３８07340001",  # full-width digits
        "734-8888888",  # area code without 0
        "0734-0888888",  # local numbers do not start with 0 or 1
        "0734-888888",
        "+8613807340001",  # mainland numbers go without +86
        "+85",
        "",
    ],
)
def test_phone_invalid(phone: str) -> None:
    assert not ids.is_phone(phone)


def test_international_phone() -> None:
    assert ids.is_phone("+85291234567")
    assert ids.is_phone("+886912345678")
    assert not ids.is_mobile("+85291234567")


# -- docs/messages.md ------------------------------------------------------------------------


def doc_sections() -> dict[str, str]:
    text = DOCS.read_text(encoding="utf-8")
    parts = re.split(r"^### `(case\.[a-z_]+)`", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def field_names(schema: Schema, prefix: str = "") -> Iterator[str]:
    schema = unwrap(schema)
    if isinstance(schema, Obj):
        for name, child in {**schema.required, **schema.optional}.items():
            path = f"{prefix}.{name}" if prefix else name
            yield path
            yield from field_names(child, path)
    elif isinstance(schema, List):
        yield from field_names(schema.item, prefix + "[]")


def test_docs_describe_every_type() -> None:
    assert list(doc_sections()) == list(MESSAGE_TYPES)


@pytest.mark.parametrize("typ", MESSAGE_TYPES)
def test_docs_list_every_field(typ: str) -> None:
    section = doc_sections()[typ]
    rows = set(re.findall(r"^\| `([^`]+)` \|", section, flags=re.M))
    expected = set(field_names(BODY_SCHEMAS[typ]))
    assert rows == expected


@pytest.mark.parametrize("typ", MESSAGE_TYPES)
def test_docs_example_validates(typ: str) -> None:
    blocks = re.findall(r"```json\n(.*?)```", doc_sections()[typ], flags=re.S)
    assert blocks, typ
    value = json.loads(blocks[0])
    assert set(value) == {"body", "blobs"}
    validate_blobs(value["blobs"])
    validate_body(typ, value["body"], value["blobs"])
    assert value == dict(zip(("body", "blobs"), copy.deepcopy(example_body(typ)), strict=True))
