"""The OpenAPI description of the staff, public and node API, served at
/api/v1/openapi.json. Written by hand beside the routes it describes; a test checks that
every route the app serves is described."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.cases.lifecycle import API_ACTIONS, STATUS_LABELS

ERROR = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "description": "stable code (docs/protocol.md, docs/cases.md)"},
        "detail": {"type": "string", "description": "Chinese message for people"},
        "fields": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string"},
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                },
            },
        },
    },
}


def _op(
    summary: str,
    *,
    auth: bool = True,
    body: str | None = None,
    tag: str = "cases",
    responses: dict[str, str] | None = None,
    params: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": {}}
    for status, text in (responses or {"200": "OK"}).items():
        op["responses"][status] = {"description": text}
    op["responses"]["4XX"] = {
        "description": "refused",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if auth:
        op["security"] = [{"bearer": []}]
    if body:
        op["requestBody"] = {"content": {body: {"schema": {"type": "object"}}}}
    if params:
        op["parameters"] = params
    return op


def _q(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": description,
    }


def _p(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def spec() -> dict[str, Any]:
    jose = "application/jose"
    paths: dict[str, dict[str, Any]] = {
        "/.well-known/tongban/node": {
            "get": _op("node descriptor (JWS)", auth=False, tag="federation")
        },
        "/federation/v1/envelopes": {
            "post": _op(
                "deliver a signed envelope; answers a signed receipt",
                auth=False,
                body=jose,
                tag="federation",
                responses={"200": "receipt (application/jose)"},
            )
        },
        "/federation/v1/blobs/{sha256}": {
            "put": _op(
                "upload a blob named by an envelope (request token in Authorization)",
                auth=False,
                body="application/octet-stream",
                tag="federation",
                responses={"201": "stored", "200": "already held"},
                params=[_p("sha256")],
            )
        },
        "/federation/v1/catalog": {
            "get": _op("this region's catalogue (JWS)", auth=False, tag="federation")
        },
        "/metrics": {"get": _op("Prometheus metrics", auth=False, tag="operations")},
        "/healthz": {"get": _op("liveness", auth=False, tag="operations")},
        "/readyz": {"get": _op("readiness: 200 or 503 with reasons", auth=False, tag="operations")},
        "/inspection/v1/sessions/{session_id}": {
            "get": _op(
                "live state of a video session (participants, checklist, snapshots)",
                tag="inspection",
                params=[_p("session_id")],
            )
        },
        "/inspection/v1/sessions/{session_id}/snapshots": {
            "post": _op(
                "take a snapshot from the applicant's video at full resolution",
                body="application/json",
                tag="inspection",
                responses={"201": "snapshot"},
                params=[_p("session_id")],
            )
        },
        "/inspection/v1/sessions/{session_id}/checklist/{index}": {
            "put": _op(
                "mark one checklist point: pass / fail / not applicable, with a note",
                body="application/json",
                tag="inspection",
                params=[_p("session_id"), _p("index")],
            )
        },
        "/inspection/v1/sessions/{session_id}/end": {
            "post": _op(
                "end the session and sign the 勘验笔录: builds, signs and sends the evidence",
                body="application/json",
                tag="inspection",
                params=[_p("session_id")],
            )
        },
        "/inspection/v1/sessions/{session_id}/evidence": {
            "get": _op(
                "the session's evidence manifest and files",
                tag="inspection",
                params=[_p("session_id")],
            )
        },
        "/inspection/v1/sessions/{session_id}/files/{sha256}": {
            "get": _op(
                "one evidence file (recording, snapshot, record)",
                tag="inspection",
                responses={"200": "the file"},
                params=[_p("session_id"), _p("sha256")],
            )
        },
        "/inspection/v1/cases/{case_id}/invitation": {
            "get": _op(
                "printable invitation with the applicant's join QR code (HTML)",
                tag="inspection",
                responses={"200": "HTML page"},
                params=[_p("case_id")],
            )
        },
        "/inspection/v1/cases/{case_id}/evidence": {
            "get": _op(
                "verified evidence packages of a case (either side)",
                tag="inspection",
                params=[_p("case_id")],
            )
        },
        "/inspection/v1/cases/{case_id}/sessions": {
            "get": _op("video sessions of a case", tag="inspection", params=[_p("case_id")])
        },
        "/api/v1/login": {
            "post": _op(
                "log in: {username, password} -> {token}",
                auth=False,
                body="application/json",
                tag="accounts",
            )
        },
        "/api/v1/cases": {
            "get": _op(
                "inbox, overdue first",
                params=[
                    _q("status", "comma-separated: " + ", ".join(str(s) for s in STATUS_LABELS)),
                    _q("time_status", "normal | warning | overdue"),
                    _q("q", "case number prefix or applicant name prefix"),
                    _q("partner", "partner region code"),
                    _q("side", "receiving | handling"),
                    _q("limit", "1..200"),
                    _q("offset", ">= 0"),
                ],
            ),
            "post": _op(
                "a clerk takes an application (case.submit body less case_no)",
                body="application/json",
                responses={"201": "case and query code"},
            ),
        },
        "/api/v1/cases/{id}": {
            "get": _op("a case with its ratings (好差评) and events", params=[_p("id")])
        },
        "/api/v1/cases/{id}/actions/{action}": {
            "post": _op(
                "perform a lifecycle action: " + ", ".join(sorted(API_ACTIONS)),
                body="application/json",
                params=[_p("id"), _p("action")],
            )
        },
        "/api/v1/bundles": {
            "post": _op(
                "多地联办: one application, several handling regions",
                body="application/json",
                responses={"201": "bundle"},
            )
        },
        "/api/v1/bundles/{id}": {
            "get": _op("a bundle with its parts and combined status", params=[_p("id")])
        },
        "/api/v1/uploads": {
            "post": _op(
                "upload a scan (PDF, JPG, PNG; X-File-Name header)",
                body="application/octet-stream",
                responses={"201": "stored"},
            )
        },
        "/api/v1/files/{sha256}": {"get": _op("download a stored file", params=[_p("sha256")])},
        "/api/v1/supervision": {
            "get": _op(
                "counts per partner (by status, by time status), overdue and warning lists, "
                "容缺 catch-ups in warning or overdue, open 差评 rectifications"
            )
        },
        "/api/v1/public/cases/{case_no}": {
            "get": _op(
                "citizen: timeline by case number and query code",
                auth=False,
                tag="public",
                params=[_p("case_no"), _q("code", "query code from the 收件凭证")],
            )
        },
        "/api/v1/public/applications": {
            "post": _op(
                "全程网办: apply online on the handling region's node, as the citizen whom "
                "`Authorization: Bearer <id_token>` of the province's identity service names "
                "(docs/identity.md); refused identity_required without one",
                auth=False,
                tag="public",
                body="application/json",
                responses={"201": "case and query code"},
            )
        },
        "/api/v1/public/uploads": {
            "post": _op(
                "全程网办: upload a scan",
                auth=False,
                tag="public",
                body="application/octet-stream",
                responses={"201": "stored"},
            )
        },
        "/api/v1/public/cases/{case_no}/rating": {
            "post": _op(
                "citizen: rate (好差评) with the query code",
                auth=False,
                tag="public",
                body="application/json",
                params=[_p("case_no")],
                responses={"201": "rated"},
            )
        },
        "/api/v1/token/refresh": {"post": _op("a fresh token for a valid one", tag="accounts")},
        "/api/v1/logout": {"post": _op("revoke every token of the caller", tag="accounts")},
        "/api/v1/me": {"get": _op("the logged-in staff member", tag="accounts")},
        "/api/v1/users": {
            "get": _op("list staff (admin)", tag="accounts"),
            "post": _op(
                "add staff (admin)",
                body="application/json",
                tag="accounts",
                responses={"201": "created"},
            ),
        },
        "/api/v1/users/{id}": {
            "get": _op("one staff member (admin or self)", tag="accounts", params=[_p("id")])
        },
        "/api/v1/users/{id}/password": {
            "post": _op(
                "set a password (admin or self)",
                tag="accounts",
                body="application/json",
                params=[_p("id")],
            )
        },
        "/api/v1/users/{id}/deactivate": {
            "post": _op("deactivate (admin)", tag="accounts", params=[_p("id")])
        },
        "/api/v1/users/{id}/activate": {
            "post": _op("activate (admin)", tag="accounts", params=[_p("id")])
        },
        "/api/v1/catalog": {
            "get": _op(
                "our and partners' items (一次告知 lists)",
                auth=False,
                tag="catalog",
                params=[
                    _q("q", "code, name, department or place"),
                    _q("mode", "proxy | online | joint"),
                    _q("province", "2-digit province code"),
                    _q("region", "6-digit region code or part of its name"),
                    _q("page", "from 1"),
                    _q("per_page", "1..100, default 20"),
                ],
            )
        },
        "/api/v1/catalog/partners": {
            "get": _op(
                "how current our copy of each partner's catalogue is",
                auth=False,
                tag="catalog",
                params=[_q("page", "from 1"), _q("per_page", "1..100, default 100")],
            )
        },
        "/api/v1/catalog/{code}": {
            "get": _op("one item in full", auth=False, tag="catalog", params=[_p("code")])
        },
        "/api/v1/catalog/refresh": {
            "post": _op("fetch partners' catalogues now (admin)", tag="catalog")
        },
        "/api/v1/calendar": {
            "get": _op(
                "holidays and make-up workdays of a year",
                auth=False,
                tag="calendar",
                params=[_q("year", "YYYY")],
            )
        },
        "/api/v1/calendar/deadline": {
            "get": _op(
                "the deadline N working days after a date",
                auth=False,
                tag="calendar",
                params=[_q("from", "YYYY-MM-DD"), _q("days", "0..1000")],
            )
        },
        "/api/v1/openapi.json": {"get": _op("this document", auth=False, tag="operations")},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Tongban 通办 node API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def routes() -> web.RouteTableDef:
    table = web.RouteTableDef()

    @table.get("/api/v1/openapi.json")
    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(spec())

    return table
