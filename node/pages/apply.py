"""全程网办 on a phone: ``/apply/{item_code}`` (docs/pages.md, docs/identity.md).

The citizen signs in through the province's identity service (``/citizen/login``), then fills
the item's form (一表申请), photographs or picks the materials (``<input type=file
accept="image/*,application/pdf" capture>``), signs 告知承诺 where the item allows it, chooses
how to receive the result, and sends it all in one plain form POST (multipart, the session's
CSRF token first): no JavaScript needed. Each file goes through the upload path of the API
(node/api/files.py: typed by its first bytes, PDF/JPEG/PNG only, 20 MB) and then the item's
material rules (type and size, as the window checks them); the application goes to the case
front as the verified citizen (or, on a node without a provider that sets
``[identity] allow_unverified_online``, as typed, kept unverified until a 人证核验 at the
window: the form then has name and ID number fields and an unverified session only carries
its CSRF token). The answer is the receipt: case number and query code (shown
once), and the way to /query. A refused application shows the form again with every fault,
the files already taken kept (by digest) so they need not be sent again.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import BodyPartReader, web

from node.api.files import store_chunks
from node.appkeys import CASES, CITIZEN_LIMITER, CONFIG, DATABASE, IDENTITY
from node.cases import validation
from node.cases.errors import CaseError
from node.cases.personal import mask_id_number
from node.catalog.items import get_item
from node.identity.caller import as_citizen, citizen_session
from node.identity.session import CitizenSession, set_session, unverified_session
from node.identity.views import NO_STORE, UNAVAILABLE, login_url, redirect
from node.pages.rendering import render
from node.pages.session import PageAnswer
from protocol.catalog import Item

log = logging.getLogger(__name__)

#: Text fields of the form are short; anything longer is cut off, not read.
TEXT_LIMIT = 2000
#: Parts of one form POST at most (fields, pledges, files).
MAX_PARTS = 200
DELIVERY_LABELS = {"window": "窗口领取", "mail": "邮寄送达"}


async def own_online_item(request: web.Request) -> Item:
    """The item of the path if it is this node's own, in use, and offered 全程网办; else 404."""
    code = request.match_info["item_code"]
    item = await get_item(request.app[DATABASE], code) if len(code) <= 64 else None
    region = request.app[CONFIG].region
    if item is None or item.retired or item.handling_region != region or "online" not in item.modes:
        raise PageAnswer("not_found.html", 404)
    return item


def _answer(response: web.Response) -> web.Response:
    response.headers.update(NO_STORE)
    return response


def _form_page(
    request: web.Request,
    item: Item,
    citizen: CitizenSession,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    kept: dict[str, dict[str, Any]] | None = None,
    pledged: set[str] | None = None,
    status: int = 200,
) -> web.Response:
    values = values or {}
    return _answer(
        render(
            request,
            "citizen/apply.html",
            status=status,
            item=item,
            citizen=citizen,
            masked_id=mask_id_number(citizen.id_number) if citizen.verified else "",
            values=values,
            errors=errors or {},
            kept=kept or {},
            pledged=pledged or set(),
            delivery_labels={k: v for k, v in DELIVERY_LABELS.items() if k in item.delivery},
            csrf_value=citizen.csrf,
        )
    )


async def _text(part: BodyPartReader) -> str:
    data = b""
    while len(data) <= TEXT_LIMIT * 4:
        chunk = await part.read_chunk(4096)
        if not chunk:
            break
        data += chunk
    await _drain(part)  # the rest is not read into memory
    return data.decode("utf-8", "replace")[:TEXT_LIMIT]


async def _drain(part: BodyPartReader) -> None:
    while await part.read_chunk(65536):
        pass


async def _chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while True:
        chunk = await part.read_chunk(256 * 1024)
        if not chunk:
            return
        yield chunk


class _Posted:
    """What the phone's form sent: text fields, pledges, and the files stored already."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.pledged: set[str] = set()
        #: By material code: the stored upload, or ``{"sha256", "kept": True}`` for a file
        #: taken by an earlier, refused, submission of the form.
        self.files: dict[str, dict[str, Any]] = {}
        self.errors: dict[str, str] = {}
        #: Materials a file part came for (one each: a form cannot store without bound).
        self.file_parts: set[str] = set()


async def _read_form(
    request: web.Request, item: Item, citizen: CitizenSession
) -> _Posted | web.Response:
    """Read the multipart form: the CSRF token must be its first part (nothing is stored for
    a forged form); files are stored as they arrive, each checked by its first bytes."""
    if not request.content_type.startswith("multipart/form-data"):
        return _form_page(request, item, citizen, errors={"": "请通过本页表单提交。"}, status=400)
    reader = await request.multipart()
    first = await reader.next()
    if (
        not isinstance(first, BodyPartReader)
        or first.name != "csrf"
        or not citizen.csrf_ok(await _text(first))
    ):
        raise PageAnswer("forbidden.html", 403)
    codes = {m.code for m in item.materials}
    posted = _Posted()
    for _ in range(MAX_PARTS):
        part = await reader.next()
        if part is None:
            return posted
        if not isinstance(part, BodyPartReader):
            continue
        name = part.name or ""
        if name.startswith("file.") and name[5:] in codes:
            await _take_file(request, part, name[5:], posted)
        else:
            _take_field(name, await _text(part), codes, posted)
    raise PageAnswer("forbidden.html", 403)


async def _take_file(
    request: web.Request, part: BodyPartReader, code: str, posted: _Posted
) -> None:
    """The file part of material ``code``: stored through the upload path of the API, or its
    fault noted in ``posted.errors`` (the rest of the part is read and dropped)."""
    if not part.filename:
        await _drain(part)
        return
    if code in posted.file_parts:
        raise PageAnswer("forbidden.html", 403)
    posted.file_parts.add(code)
    # Each file costs an upload of the public API's bucket, as a separate upload would.
    if not request.app[CITIZEN_LIMITER].hit(f"upload:{request.remote}"):
        posted.errors[f"materials.{code}"] = "上传过于频繁，请稍后再试"
        await _drain(part)
        return
    now = request.app[CASES].clock()
    try:
        stored = await store_chunks(request.app, _chunks(part), part.filename, "citizen", now=now)
    except CaseError as exc:
        posted.errors[f"materials.{code}"] = exc.message
        await _drain(part)
        return
    if stored["size"] > 0:
        posted.files[code] = stored


def _take_field(name: str, value: str, codes: set[str], posted: _Posted) -> None:
    """A text part: a pledge (告知承诺) of a material, a file kept from an earlier submission
    (by its digest), or a field of the form."""
    if name.startswith("pledge.") and name[7:] in codes and value:
        posted.pledged.add(name[7:])
    elif name.startswith("kept.") and name[5:] in codes:
        if validation.SHA256_RE.match(value) and name[5:] not in posted.files:
            posted.files[name[5:]] = {"sha256": value, "name": "", "kept": True}
    else:
        posted.values[name] = value


def _payload(item: Item, posted: _Posted, citizen: CitizenSession) -> dict[str, Any]:
    materials = []
    for spec in item.materials:
        stored = posted.files.get(spec.code)
        if stored is not None:
            materials.append({"code": spec.code, "status": "provided", "blob": stored["sha256"]})
        elif spec.code in posted.pledged and spec.pledgeable:
            materials.append({"code": spec.code, "status": "pledged", "blob": None})
    values = posted.values
    method = values.get("delivery_method", "")
    return {
        "item_code": item.code,
        "applicant": _applicant(values, citizen),
        "form": {f.name: values.get(f"form.{f.name}", "") for f in item.form_fields},
        "materials": materials,
        "delivery": {
            "method": method,
            "address": values.get("delivery_address", "").strip() or None,
        },
    }


def _applicant(values: dict[str, str], citizen: CitizenSession) -> dict[str, Any]:
    """The phone only, for a verified citizen (the front takes the rest from the identity);
    name and ID number as typed, for an unverified one (kept as unverified)."""
    phone = values.get("phone", "").strip()
    if citizen.verified:
        return {"phone": phone}
    return {
        "kind": "person",
        "name": values.get("applicant_name", "").strip(),
        "id_type": "resident_id",
        "id_number": values.get("applicant_id_number", "").strip(),
        "phone": phone,
    }


def _field_errors(exc: CaseError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for field in exc.fields:
        path = str(field.get("field", ""))
        errors.setdefault(path, str(field.get("message", "")))
    if not errors:
        errors[""] = exc.message
    return errors


def _unverified_form(request: web.Request, item: Item) -> web.Response:
    """No provider, and the operator takes unverified applications: the form asks for name
    and ID number (staff check them at the window before 受理) under a new unverified
    session, which only carries the form's CSRF token."""
    rp = request.app[IDENTITY]
    config = request.app[CONFIG]
    lifetime = rp.settings.session_minutes * 60
    citizen = unverified_session(rp.clock(), lifetime)
    response = _form_page(request, item, citizen)
    set_session(
        response,
        request.app[CASES].sealer,
        config.region,
        citizen,
        lifetime=lifetime,
        secure=config.url.startswith("https://"),
    )
    return response


def _refused(
    request: web.Request,
    item: Item,
    citizen: CitizenSession,
    posted: _Posted,
    errors: dict[str, str],
) -> web.Response:
    """The form again with ``errors``, as filled in, the files already stored kept."""
    return _form_page(
        request,
        item,
        citizen,
        values=posted.values,
        errors=errors,
        kept=posted.files,
        pledged=posted.pledged,
        status=400,
    )


def routes() -> web.RouteTableDef:
    table = web.RouteTableDef()

    @table.get("/apply/{item_code}")
    async def apply_form(request: web.Request) -> web.StreamResponse:
        item = await own_online_item(request)
        citizen = await citizen_session(request)
        rp = request.app[IDENTITY]
        if citizen is not None and rp.configured and not citizen.verified:
            citizen = None  # a provider now: sign in through it
        if citizen is None:
            if rp.configured:
                return redirect(login_url(request.path))
            if not request.app[CONFIG].identity.allow_unverified_online:
                return _answer(
                    render(request, "citizen/apply_closed.html", item=item, message=UNAVAILABLE)
                )
            return _unverified_form(request, item)
        return _form_page(request, item, citizen)

    @table.post("/apply/{item_code}")
    async def apply(request: web.Request) -> web.StreamResponse:
        item = await own_online_item(request)
        citizen = await citizen_session(request)
        configured = request.app[IDENTITY].configured
        if citizen is None or (configured and not citizen.verified):
            # The session ran out while the form was open (or a provider came since).
            if not configured:
                return redirect(request.path)
            return redirect(login_url(request.path))
        if not request.app[CITIZEN_LIMITER].hit(f"apply:{request.remote}"):
            return _form_page(
                request, item, citizen, errors={"": "提交过于频繁，请稍后再试。"}, status=429
            )
        posted = await _read_form(request, item, citizen)
        if isinstance(posted, web.Response):
            return posted
        if posted.errors:
            return _refused(request, item, citizen, posted, posted.errors)
        try:
            identity = as_citizen(citizen) if citizen.verified else None
            result = await request.app[CASES].receive_online(
                _payload(item, posted, citizen), identity
            )
        except CaseError as exc:
            return _refused(request, item, citizen, posted, _field_errors(exc))
        case = result["case"]
        log.info("online application %s received on the phone page", case["case_no"])
        return _answer(
            render(
                request,
                "citizen/applied.html",
                case=case,
                item=item,
                code=result["query_code"],
                delivery=DELIVERY_LABELS.get(posted.values.get("delivery_method", ""), ""),
                pledged=[m.name for m in item.materials if m.code in posted.pledged],
                verified=citizen.verified,
                csrf_value=citizen.csrf,
            )
        )

    return table
