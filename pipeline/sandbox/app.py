"""The HTTP face of the sandbox: /v2 as in the spec, /_audio links, /_sandbox test hooks."""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode
from xml.sax.saxutils import escape

from aiohttp import web

from pipeline.sandbox.audio import CONTENT_TYPES, FORMATS, iter_audio
from pipeline.sandbox.config import SandboxConfig
from pipeline.sandbox.data import iso
from pipeline.sandbox.state import (
    InvalidRequest,
    Page,
    SandboxState,
    decode_cursor,
    encode_cursor,
    validate_credentials_body,
)

STATE = web.AppKey("sandbox_state", SandboxState)
V2 = "/v2"
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 250

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

NOT_FOUND = {
    "code": "10005",
    "title": "Resource not found",
    "detail": "The requested resource or URL could not be found.",
}
PAGE_NOT_FOUND = {"code": "404", "title": "Not Found", "detail": "Page not found"}
UNAUTHORIZED = {"code": "401", "title": "Unauthorized", "detail": "Unauthorized"}
TOO_MANY = {
    "code": "10011",
    "title": "Too many requests",
    "detail": "You have exceeded the maximum number of allowed requests.",
}
SERVER_ERRORS = {
    500: {"code": "500", "title": "Internal Server Error", "detail": "Internal server error"},
    503: {
        "code": "503",
        "title": "Service Unavailable",
        "detail": "The service is temporarily unavailable. Please try again later.",
    },
}


def errors(
    status: int, *errs: dict[str, Any], headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response({"errors": list(errs)}, status=status, headers=headers)


def invalid(exc: InvalidRequest) -> web.Response:
    # The spec declares no 422; Telnyx answers invalid parameters with 422 and an errors[] body.
    err: dict[str, Any] = {"code": "10015", "title": "Invalid parameter", "detail": exc.detail}
    if exc.parameter:
        err["source"] = {"parameter": exc.parameter}
    elif exc.pointer:
        err["source"] = {"pointer": exc.pointer}
    return errors(422, err)


def s3_error(status: int, code: str, message: str, **extra: str) -> web.Response:
    fields = "".join(
        f"<{k}>{escape(v)}</{k}>" for k, v in {"Code": code, "Message": message, **extra}.items()
    )
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error>{fields}<RequestId>SANDBOX</RequestId></Error>'
    return web.Response(status=status, text=body, content_type="application/xml")


# -- query parsing ---------------------------------------------------------------------------
_KEY = re.compile(r"(filter|page)\[([^\[\]]+)\](?:\[([^\[\]]+)\])?")


def parse_time(text: str, parameter: str) -> datetime:
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidRequest(f"{text[:40]!r} is not an ISO 8601 datetime.", parameter) from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


class ListQuery:
    """filter[...] and page[...] of a list call, checked like the spec's deepObject schema."""

    def __init__(self, request: web.Request, ranges: set[str], equals: set[str], pages: set[str]):
        self.ranges: dict[str, datetime] = {}  # "created_at.gte" -> t
        self.equals: dict[str, str] = {}
        self.raw_filters: list[tuple[str, str]] = []
        self.page: dict[str, str] = {}
        for key, value in request.query.items():
            m = _KEY.fullmatch(key)
            if not m:
                if key.startswith(("filter", "page")):
                    raise InvalidRequest(f"Unknown parameter {key[:60]}.", key[:60])
                continue  # other parameters are ignored, as the SDK's extra_query may send them
            group, name, sub = m.groups()
            if group == "page":
                if name not in pages or sub:
                    raise InvalidRequest(f"Unknown parameter {key}.", key)
                self.page[name] = value
            elif name in ranges and sub in ("gte", "lte"):
                self.ranges[f"{name}.{sub}"] = parse_time(value, key)
                self.raw_filters.append((key, value))
            elif name in equals and not sub:
                self.equals[name] = value
                self.raw_filters.append((key, value))
            else:
                raise InvalidRequest(f"Unknown parameter {key}.", key)

    def size(self) -> int:
        return self._int("size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)

    def number(self) -> int:
        return self._int("number", 1, 1, None)

    def _int(self, name: str, default: int, lo: int, hi: int | None) -> int:
        text = self.page.get(name)
        if text is None:
            return default
        try:
            value = int(text)
        except ValueError:
            raise InvalidRequest(f"page[{name}] must be an integer.", f"page[{name}]") from None
        if value < lo or (hi is not None and value > hi):
            bound = f"between {lo} and {hi}" if hi else f"at least {lo}"
            raise InvalidRequest(f"page[{name}] must be {bound}.", f"page[{name}]")
        return value


def page_meta(number: int, size: int, total: int) -> dict[str, int]:
    return {
        "page_number": number,
        "page_size": size,
        "total_pages": math.ceil(total / size),
        "total_results": total,
    }


# -- serialisation ---------------------------------------------------------------------------
def recording_out(request: web.Request, rec: dict[str, Any]) -> dict[str, Any]:
    state = request.app[STATE]
    base = f"{request.url.origin()}/_audio/"
    out = dict(rec)
    names = {fmt: f"{rec['id']}.{fmt}" for fmt in FORMATS}
    out["download_urls"] = {fmt: f"{base}{n}?{state.download_query(n)}" for fmt, n in names.items()}
    return out


def credentials_out(connection_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "connection_id": connection_id,
        "record_type": "custom_storage_credentials",
        "data": body,
    }


# -- /v2 handlers ----------------------------------------------------------------------------
RECORDING_RANGES = {"created_at", "start_time", "end_time"}
RECORDING_EQUALS = {
    "call_control_id",
    "call_leg_id",
    "call_session_id",
    "conference_id",
    "conference_region",
    "connection_id",
    "from",
    "to",
    "sip_call_id",
}


async def list_recordings(request: web.Request) -> web.Response:
    state = request.app[STATE]
    q = ListQuery(request, RECORDING_RANGES, RECORDING_EQUALS, {"number", "size"})
    size, number = q.size(), q.number()
    r = q.ranges
    filters = {
        name: r[key]
        for name, key in (
            ("created_gte", "created_at.gte"),
            ("created_lte", "created_at.lte"),
            ("start_gte", "start_time.gte"),
            ("start_lte", "start_time.lte"),
            ("end_gte", "end_time.gte"),
            ("end_lte", "end_time.lte"),
        )
        if key in r
    }
    if q.equals:
        filters["equals"] = q.equals
    items, total = state.recordings_page(number, size, **filters)
    data = [recording_out(request, rec) for rec in items]
    return web.json_response({"data": data, "meta": page_meta(number, size, total)})


def _recording(request: web.Request) -> dict[str, Any]:
    rec = request.app[STATE].recordings.get(request.match_info["recording_id"])
    if rec is None:
        raise web.HTTPNotFound
    return rec


async def get_recording(request: web.Request) -> web.Response:
    return web.json_response({"data": recording_out(request, _recording(request))})


async def delete_recording(request: web.Request) -> web.Response:
    rec = _recording(request)
    out = recording_out(request, rec)
    request.app[STATE].delete_recordings([rec["id"]])
    return web.json_response({"data": out})


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidRequest("The request body is not valid JSON.", pointer="/") from None


async def bulk_delete_recordings(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _json_body(request)
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InvalidRequest("ids is required and must be an array of strings.", pointer="/ids")
    partial = state.faults.partial_delete(ids)
    if partial is not None:
        state.delete_recordings(partial)
        return errors(500, SERVER_ERRORS[500])
    state.delete_recordings(ids)
    return web.json_response({"status": "ok"})


async def list_transcriptions(request: web.Request) -> web.Response:
    state = request.app[STATE]
    cursor_mode = state.config.transcription_pagination == "cursor"
    pages = {"number", "size", "after", "before"} if cursor_mode else {"number", "size"}
    q = ListQuery(request, {"created_at"}, {"recording_id"}, pages)
    size = q.size()
    filters: dict[str, Any] = {
        "created_gte": q.ranges.get("created_at.gte"),
        "created_lte": q.ranges.get("created_at.lte"),
        "recording_id": q.equals.get("recording_id"),
    }
    if not cursor_mode:
        number = q.number()
        matched = state.list_transcriptions(**filters)
        data = matched[(number - 1) * size : number * size]
        return web.json_response({"data": data, "meta": page_meta(number, size, len(matched))})
    if "after" in q.page and "before" in q.page:
        raise InvalidRequest("Use page[after] or page[before], not both.", "page[before]")
    after = decode_cursor(q.page["after"], "page[after]") if "after" in q.page else None
    before = decode_cursor(q.page["before"], "page[before]") if "before" in q.page else None
    offset = (q.number() - 1) * size if after is None and before is None else None
    page = state.transcription_keyset_page(
        size, after=after, before=before, offset=offset, **filters
    )
    return web.json_response({"data": page.items, "meta": cursor_meta(state, page, size, q)})


def cursor_meta(state: SandboxState, page: Page, size: int, q: ListQuery) -> dict[str, Any]:
    meta: dict[str, Any] = {"cursors": {}}
    if not page.items:
        return meta
    first = encode_cursor(state.transcription_key(page.items[0]))
    last = encode_cursor(state.transcription_key(page.items[-1]))
    meta["cursors"] = {"after": last, "before": first}

    def link(direction: str, cursor: str) -> str:
        params = [(f"page[{direction}]", cursor), ("page[size]", str(size)), *q.raw_filters]
        return f"{V2}/recording_transcriptions?" + urlencode(params, safe="[]:")

    if page.has_after:
        meta["next"] = link("after", last)
    if page.has_before:
        meta["previous"] = link("before", first)
    return meta


def _transcription(request: web.Request) -> dict[str, Any]:
    tr = request.app[STATE].transcriptions.get(request.match_info["recording_transcription_id"])
    if tr is None:
        raise web.HTTPNotFound
    return tr


async def get_transcription(request: web.Request) -> web.Response:
    return web.json_response({"data": _transcription(request)})


async def delete_transcription(request: web.Request) -> web.Response:
    tr = _transcription(request)
    request.app[STATE].delete_transcription(tr["id"])
    return web.json_response({"data": tr})


def _connection(request: web.Request) -> str:
    conn = request.match_info["connection_id"]
    if conn not in request.app[STATE].connection_ids:
        raise _ConnectionNotFound
    return conn


class _ConnectionNotFound(Exception):
    pass


async def get_credentials(request: web.Request) -> web.Response:
    state, conn = request.app[STATE], _connection(request)
    if conn not in state.credentials:
        raise web.HTTPNotFound
    return web.json_response(credentials_out(conn, state.credentials[conn]))


async def create_credentials(request: web.Request) -> web.Response:
    state, conn = request.app[STATE], _connection(request)
    state.credentials[conn] = validate_credentials_body(await _json_body(request))
    return web.json_response(credentials_out(conn, state.credentials[conn]))


async def update_credentials(request: web.Request) -> web.Response:
    state, conn = request.app[STATE], _connection(request)
    if conn not in state.credentials:
        raise web.HTTPNotFound
    state.credentials[conn] = validate_credentials_body(await _json_body(request))
    return web.json_response(credentials_out(conn, state.credentials[conn]))


async def delete_credentials(request: web.Request) -> web.Response:
    state, conn = request.app[STATE], _connection(request)
    if state.credentials.pop(conn, None) is None:
        raise web.HTTPNotFound
    return web.Response(status=204)


# -- middleware: auth, rate limit, latency, faults, counting ---------------------------------
def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    template = resource.canonical if resource is not None else "(unmatched)"
    return f"{request.method} {template.removeprefix(V2) or '/'}"


def _authorized(request: web.Request, api_key: str) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), api_key.encode()
    )


def _drop_connection(request: web.Request) -> web.Response:
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=599)  # never sent: the connection is gone


async def _handle(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except InvalidRequest as exc:
        return invalid(exc)
    except _ConnectionNotFound:
        return errors(404, {**NOT_FOUND, "source": {"pointer": "/connection_id"}})
    except web.HTTPNotFound:
        if request.match_info.route.resource is None:
            return errors(404, PAGE_NOT_FOUND)
        return errors(404, NOT_FOUND)
    except web.HTTPMethodNotAllowed as exc:
        return errors(
            405,
            {
                "code": "405",
                "title": "Method Not Allowed",
                "detail": f"{request.method} is not allowed here.",
            },
            headers={"Allow": ",".join(sorted(exc.allowed_methods))},
        )


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(V2 + "/"):
        return await handler(request)
    state = request.app[STATE]
    config = state.config
    label = _route(request)
    if config.latency > 0:
        await asyncio.sleep(config.latency)
    if not _authorized(request, config.api_key):
        resp: web.StreamResponse = errors(401, UNAUTHORIZED)
        state.request_counts[f"{label} 401"] += 1
        return resp
    rate = state.faults.rate(state.monotonic())
    rate_headers = rate.headers(fractional=config.rate_reset_fractional) if rate else {}
    if rate is not None and not rate.allowed:
        if config.retry_after_header:
            rate_headers["Retry-After"] = str(max(1, math.ceil(rate.reset)))
        state.request_counts[f"{label} 429"] += 1
        return errors(429, TOO_MANY, headers=rate_headers)
    fault = state.faults.api()
    # Half the faults on changing calls strike after the change was made: the answer is lost.
    if fault is None or (request.method != "GET" and state.faults.rng.random() < 0.5):
        resp = await _handle(request, handler)
    if fault == "reset":
        state.request_counts[f"{label} reset"] += 1
        return _drop_connection(request)
    if fault is not None:
        resp = errors(fault, SERVER_ERRORS[fault])
    resp.headers.update(rate_headers)
    state.request_counts[f"{label} {resp.status}"] += 1
    return resp


# -- audio -----------------------------------------------------------------------------------
_AUDIO_NAME = re.compile(r"(?P<id>[^/]+)\.(?P<fmt>mp3|wav)")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


async def download_audio(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    config = state.config
    name = request.match_info["name"]
    label = _route(request)

    def count(outcome: int | str) -> None:
        state.request_counts[f"{label} {outcome}"] += 1

    m = _AUDIO_NAME.fullmatch(name)
    if m is None or not state.recording_was_created(m["id"]):
        count(404)
        return s3_error(404, "NoSuchKey", "The specified key does not exist.", Key=name)
    if "Authorization" in request.headers:
        # S3 refuses a presigned URL that also carries an Authorization header, and sending the
        # Telnyx key to a storage host would leak it.
        count(400)
        return s3_error(
            400,
            "InvalidArgument",
            "Only one auth mechanism allowed; only the "
            "X-Amz-Algorithm query parameter, Signature query string parameter or the "
            "Authorization header should be specified",
            ArgumentName="Authorization",
        )
    verdict, expiry = state.check_link(name, dict(request.query))
    if verdict == "denied":
        count(403)
        return s3_error(
            403,
            "AccessDenied",
            "Query-string authentication requires the "
            "X-Amz-Signature, X-Amz-Date and X-Amz-Expires parameters",
        )
    if verdict == "signature":
        count(403)
        return s3_error(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        )
    fault = state.faults.audio()
    if verdict == "expired" or fault == "expire":
        count(403)
        now = datetime.fromtimestamp(state.now(), UTC)
        return s3_error(
            403,
            "AccessDenied",
            "Request has expired",
            **{
                "X-Amz-Expires": request.query.get("X-Amz-Expires", ""),
                "Expires": iso(datetime.fromtimestamp(expiry, UTC)),
                "ServerTime": iso(now),
            },
        )
    if m["id"] not in state.recordings:
        count(404)
        return s3_error(404, "NoSuchKey", "The specified key does not exist.", Key=name)
    if config.audio_latency > 0:
        await asyncio.sleep(config.audio_latency)
    if fault == "reset":
        count("reset")
        return _drop_connection(request)

    rec = state.recordings[m["id"]]
    fmt = m["fmt"]
    size = config.audio_bytes
    start, stop, status = 0, size, 200
    headers = {
        "Content-Type": CONTENT_TYPES[fmt],
        "Accept-Ranges": "bytes",
        "Last-Modified": datetime.fromisoformat(rec["created_at"]).strftime(
            "%a, %d %b %Y %H:%M:%S GMT"
        ),
    }
    if "Range" in request.headers:
        r = _RANGE.fullmatch(request.headers["Range"].strip())
        if r and (r[1] or r[2]):
            if r[1]:
                start, stop = int(r[1]), (int(r[2]) + 1 if r[2] else size)
            else:
                start, stop = max(size - int(r[2]), 0), size
            stop = min(stop, size)
            if start >= stop:
                count(416)
                return s3_error(416, "InvalidRange", "The requested range is not satisfiable")
            status = 206
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_length = stop - start
    await resp.prepare(request)
    if request.method == "HEAD":
        count(status)
        return resp
    cut = start + state.faults.truncate_at(stop - start) if fault == "truncate" else None
    sent = start
    for piece in iter_audio(config.seed, rec["id"], fmt, size, state.channels(rec), start, stop):
        if cut is not None and sent + len(piece) > cut:
            await resp.write(piece[: cut - sent])
            count("truncated")
            return _drop_connection(request)
        await resp.write(piece)
        sent += len(piece)
    await resp.write_eof()
    count(status)
    return resp


# -- /_sandbox hooks for tests ---------------------------------------------------------------
async def sandbox_state(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].snapshot())


async def sandbox_audio(request: web.Request) -> web.Response:
    state = request.app[STATE]
    rid = request.match_info["recording_id"]
    if not state.recording_was_created(rid):
        return errors(404, NOT_FOUND)
    digests = {}
    for fmt in FORMATS:
        size, sha = await asyncio.to_thread(state.audio_digest, rid, fmt)
        digests[fmt] = {"size": size, "sha256": sha}
    return web.json_response(digests)


async def sandbox_config(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        changes = await request.json()
        if not isinstance(changes, dict):
            raise ValueError("expected a JSON object")
        state.config.update(changes)
    except ValueError as exc:  # also json.JSONDecodeError
        return errors(422, {"code": "10015", "title": "Invalid config", "detail": str(exc)})
    return web.json_response(state.config.public())


async def sandbox_clock(request: web.Request) -> web.Response:
    """POST {"advance": seconds}: move the sandbox's clock (link expiry, rate limit) forward."""
    state = request.app[STATE]
    body = await request.json()
    state.advance_clock(float(body.get("advance", 0)))
    return web.json_response({"now": iso(datetime.fromtimestamp(state.now(), UTC))})


def create_app(config: SandboxConfig, state: SandboxState | None = None) -> web.Application:
    app = web.Application(middlewares=[api_middleware])
    app[STATE] = state or SandboxState(config)
    r = app.router
    r.add_get(V2 + "/recordings", list_recordings)
    r.add_post(V2 + "/recordings/actions/delete", bulk_delete_recordings)
    r.add_get(V2 + "/recordings/{recording_id}", get_recording)
    r.add_delete(V2 + "/recordings/{recording_id}", delete_recording)
    r.add_get(V2 + "/recording_transcriptions", list_transcriptions)
    r.add_get(V2 + "/recording_transcriptions/{recording_transcription_id}", get_transcription)
    r.add_delete(
        V2 + "/recording_transcriptions/{recording_transcription_id}", delete_transcription
    )
    creds = V2 + "/custom_storage_credentials/{connection_id}"
    r.add_get(creds, get_credentials)
    r.add_post(creds, create_credentials)
    r.add_put(creds, update_credentials)
    r.add_delete(creds, delete_credentials)
    r.add_get("/_audio/{name}", download_audio)
    r.add_get("/_sandbox/state", sandbox_state)
    r.add_get("/_sandbox/audio/{recording_id}", sandbox_audio)
    r.add_post("/_sandbox/config", sandbox_config)
    r.add_post("/_sandbox/clock", sandbox_clock)
    return app
