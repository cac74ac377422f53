"""The audit trail for admins (contract section 9): every change made by staff or riders
through the API and the commands, in order, with the verdict on its hash chain."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from fare_gateway.http.auth import require
from fare_gateway.http.errors import ApiError
from fare_gateway.http.inputs import INSTANT
from fare_gateway.http.inputs import instant_arg as _instant
from fare_gateway.http.inputs import whole_arg as _whole
from fare_gateway.http.operations import Schema, json_content, operation
from fare_gateway.trail import DEFAULT_LIMIT, MAX_LIMIT, SCOPES, read_page
from ledger.adapters.db import Sessions
from ledger.fingerprint import Fingerprints

# Under the finance back office's tag (contract section 9) until the description
# declares one of the audit trail's own.
TAG = "audit"
MAX_SEQ = 2**63 - 1
HASH: Schema = {"type": "string", "pattern": "^([0-9a-f]{64})?$"}
RECORD: Schema = {
    "title": "AuditRecord",
    "type": "object",
    "required": ["seq", "at", "actor", "source", "action", "subject", "detail",
                 "prev_hash", "hash"],
    "properties": {
        "seq": {"type": "integer", "minimum": 1,
                "description": "the record's place in the chain, numbered without gaps"},
        "at": {"type": "string", "format": "date-time",
               "description": "when the change was made, ISO-8601 UTC"},
        "actor": {"type": "object", "required": ["kind", "id", "name", "role"],
                  "properties": {
                      "kind": {"enum": ["token", "command", "rider", "system"]},
                      "id": {"type": "string", "description": "the token's id, the "
                             "operating-system user of a command, `account:N` for a "
                             "rider, the gateway for its own changes"},
                      "name": {"type": "string",
                               "description": "the token holder's name, when it has one"},
                      "role": {"type": "string"}}},
        "source": {"type": "string",
                   "description": "the request's address, or the host of a command"},
        "action": {"type": "string", "examples": ["card.topped_up"],
                   "description": "what was done (docs/audit.md lists them)"},
        "subject": {"type": "string", "description": "what it was done to"},
        "detail": {"type": "object", "description": "the change's own facts; never a "
                                                    "secret, a check code or an e-mail"},
        "prev_hash": {**HASH, "description": "the hash of the record before it (empty "
                                             "for the first)"},
        "hash": {**HASH, "description": "the keyed hash of this record with prev_hash"}},
}
TRAIL: Schema = {
    "title": "AuditTrail",
    "type": "object",
    "required": ["records", "next", "chain"],
    "properties": {
        "records": {"type": "array", "items": RECORD},
        "next": {"type": ["integer", "null"],
                 "description": "pass it as `after` for the next page; null: no more"},
        "chain": {"type": "object",
                  "required": ["verified", "problems", "scope", "records_checked"],
                  "properties": {
                      "verified": {"type": "boolean"},
                      "problems": {"type": "array", "items": {"type": "string"},
                                   "description": "each names the record it found wrong"},
                      "scope": {"enum": list(SCOPES),
                                "description": "`page`: the records from this page's "
                                               "first to its last, the one before them "
                                               "and the chain's head; `all`: every "
                                               "record"},
                      "records_checked": {"type": "integer", "minimum": 0}}}},
}


def audit_blueprint(sessions: Sessions, fingerprints: Fingerprints) -> Blueprint:
    """`GET /api/v1/audit`, over the database's audit trail."""
    bp = Blueprint("audit", __name__)

    @bp.get("/api/v1/audit")
    @operation("The audit trail", tag=TAG,
               query={"from": INSTANT, "to": INSTANT,
                      "after": {"type": "integer", "minimum": 0, "maximum": MAX_SEQ,
                                "description": "only records after this seq (the `next` "
                                               "of the page before)"},
                      "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                                "description": f"at most this many records (default "
                                               f"{DEFAULT_LIMIT})"},
                      "scope": {"enum": list(SCOPES),
                                "description": "what the chain's verdict covers: `page` "
                                               "(default) or `all` (every record: its "
                                               "cost grows with the trail)"}},
               responses={200: json_content(TRAIL)}, errors=(400,),
               description="Every change made by staff or riders through the API and the "
                           "commands, and by a gateway on its own (the fare policy it "
                           "loaded): who, when, what and from where, in order (`seq`), "
                           "each record chained to the one before by its keyed hash. "
                           "Records made from `from` (inclusive) to `to` (exclusive), "
                           "both optional; `from` after `to` is a 400 (`bad_range`). "
                           "`chain` says whether the records are as written: a record "
                           "changed, removed or added behind the application's back is "
                           "named in `problems`.")
    @require("admin")
    def trail() -> Response:
        from_ms, to_ms = _instant("from"), _instant("to")
        if from_ms is not None and to_ms is not None and from_ms > to_ms:
            raise ApiError(400, "bad_range", "from must not be after to")
        after = _whole("after", 0, 0, MAX_SEQ)
        limit = _whole("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        scope = request.args.get("scope", "page")
        if scope not in SCOPES:
            raise ApiError(400, "bad_scope", f"scope must be one of {', '.join(SCOPES)}")
        page = read_page(sessions, fingerprints, from_ms, to_ms, after, limit, scope)
        return jsonify({"records": page.records, "next": page.next_after,
                        "chain": page.verdict.as_json()})

    return bp
