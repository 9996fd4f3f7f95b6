"""The async Telnyx API client: one session, one rate limiter, retries, typed errors.

The pipeline depends on the methods of `TelnyxClient` and on `pipeline.telnyx.errors`, never on
aiohttp. Which calls are safe to repeat is written down in `pipeline.telnyx.retry`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from functools import partial
from types import TracebackType
from typing import Any, Literal, TypeVar
from urllib.parse import quote, urlsplit

import aiohttp
from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from pipeline.telnyx.errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    MalformedResponseError,
    NotFoundError,
    TelnyxError,
    error_class_for,
)
from pipeline.telnyx.models import (
    MalformedItemError,
    Recording,
    Secret,
    StorageCredential,
    Transcription,
)
from pipeline.telnyx.pagination import (
    FetchPage,
    OnMalformed,
    Page,
    is_cursor_meta,
    iterate,
    parse_page,
)
from pipeline.telnyx.retry import (
    MALFORMED_ATTEMPTS,
    Backoff,
    PauseGate,
    RetryableFailure,
    is_retryable_status,
    retry_after_seconds,
)

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.telnyx.com/v2"
MAX_PAGE_SIZE = 250
USER_AGENT = "telnyx-archiver/0.1"

T = TypeVar("T", Recording, Transcription)
R = TypeVar("R")
Expect = Literal["list", "object", "json", "none"]
_CREDENTIAL = "/custom_storage_credentials/{connection_id}"


def format_time(value: datetime) -> str:
    """ISO 8601 UTC with milliseconds and a Z. A naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class RecordingFilters:
    """`filter[...]` of GET /recordings. Only the values given are sent."""

    created_at_gte: datetime | None = None
    created_at_lte: datetime | None = None
    start_time_gte: datetime | None = None
    start_time_lte: datetime | None = None
    end_time_gte: datetime | None = None
    end_time_lte: datetime | None = None
    connection_id: str | None = None
    call_leg_id: str | None = None
    call_session_id: str | None = None
    call_control_id: str | None = None
    conference_id: str | None = None
    conference_region: str | None = None
    from_: str | None = None
    to: str | None = None
    sip_call_id: str | None = None

    def to_params(self) -> dict[str, str]:
        params: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, datetime):
                name, op = f.name.rsplit("_", 1)
                params[f"filter[{name}][{op}]"] = format_time(value)
            else:
                params[f"filter[{f.name.rstrip('_')}]"] = str(value)
        return params


@dataclass(frozen=True)
class BulkDeleteResult:
    deleted: list[str]
    failed: dict[str, str]  # id -> one-line reason


class ApiStats:
    """Counts of API calls by "METHOD /path-template STATUS" and of retries by status."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()

    def snapshot(self) -> dict[str, int]:
        """Calls under their own keys, retries as "retry <status|ERR|MALFORMED>"."""
        return {**self.calls, **{f"retry {k}": v for k, v in self.retries.items()}}

    def __repr__(self) -> str:
        return f"ApiStats({self.snapshot()!r})"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def _parsed(parse: Callable[[Any], R], value: Any) -> R:
    """`parse(value)`, with an untrustworthy item reported as a malformed response."""
    try:
        return parse(value)
    except MalformedItemError as exc:
        raise MalformedResponseError(str(exc)) from None


def _error_from(
    status: int, reason: str | None, headers: Any, body: bytes, method: str, path: str
) -> APIError:
    code = title = detail = None
    try:
        parsed = json.loads(body)
        first = parsed["errors"][0]
        code = str(first["code"]) if first.get("code") is not None else None
        title = first.get("title") if isinstance(first.get("title"), str) else None
        detail = first.get("detail") if isinstance(first.get("detail"), str) else None
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        pass
    return error_class_for(status)(
        status,
        code=code,
        title=(title or reason or None),
        detail=detail[:300] if detail else None,
        request_id=headers.get("x-request-id"),
        method=method,
        path=path,
    )


class _Download:
    """`async with client.download(url) as response:` (also works after an `await`)."""

    def __init__(self, session: aiohttp.ClientSession, url: str, timeout: float) -> None:
        self._session = session
        self._url = url
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        self._response: aiohttp.ClientResponse | None = None

    def __await__(self) -> Generator[Any, None, _Download]:
        if False:  # pragma: no cover - makes this a generator
            yield
        return self

    async def __aenter__(self) -> aiohttp.ClientResponse:
        parts = urlsplit(self._url)
        where = f"{parts.scheme}://{parts.netloc}{parts.path}"  # never the signed query
        try:
            response = await self._session.get(self._url, timeout=self._timeout)
        except TimeoutError:
            raise APITimeoutError(f"GET {where}: timed out") from None
        except aiohttp.ClientError as exc:
            raise APIConnectionError(f"GET {where}: {type(exc).__name__}") from None
        if response.status >= 300:
            try:
                text = (await response.content.read(4096)).decode("utf-8", "replace")
            except (aiohttp.ClientError, TimeoutError):
                text = ""
            finally:
                response.release()
            code = re.search(r"<Code>([^<]{1,80})</Code>", text)
            message = re.search(r"<Message>([^<]{1,200})</Message>", text)
            raise error_class_for(response.status)(
                response.status,
                code=code.group(1) if code else None,
                title=response.reason,
                detail=message.group(1) if message else None,
                request_id=response.headers.get("x-amz-request-id")
                or response.headers.get("x-request-id"),
                method="GET",
                path=where,
            )
        self._response = response
        return response

    async def __aexit__(self, *exc: object) -> None:
        if self._response is not None:
            self._response.release()
            self._response = None


class TelnyxClient:
    """Async client for the Telnyx call-recording endpoints.

    Every API call shares one rate limiter (requests per second), one concurrency limit and one
    "not before" pause set by 429s. Audio downloads use presigned URLs: no Authorization header,
    no rate limit, no retry.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        requests_per_second: float = 20.0,
        max_concurrency: int = 16,
        max_attempts: int = 6,
        timeout: float = 60.0,
        page_concurrency: int = 8,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get("TELNYX_API_KEY")
        if not key:
            raise ValueError("TELNYX_API_KEY is not set")
        if requests_per_second <= 0 or max_concurrency < 1 or max_attempts < 1:
            raise ValueError(
                "requests_per_second, max_concurrency and max_attempts must be positive"
            )
        if page_concurrency < 1 or timeout <= 0:
            raise ValueError("page_concurrency and timeout must be positive")
        # Held only until the session exists; from then on it lives in its default headers.
        self._key: Secret | None = Secret(key)
        self.base_url = (base_url or os.environ.get("TELNYX_BASE_URL") or DEFAULT_BASE_URL).rstrip(
            "/"
        )
        self.requests_per_second = requests_per_second
        self.max_concurrency = max_concurrency
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.page_concurrency = page_concurrency
        self.backoff_max = backoff_max
        # A bucket of a tenth of a second's worth of tokens (at least one): a full second's
        # burst would trip a server-side token bucket with a smaller burst straight into 429s.
        burst = max(1, int(requests_per_second / 10))
        self._limiter = AsyncLimiter(burst, burst / requests_per_second)
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._gate = PauseGate()
        self._backoff = Backoff(backoff_base, backoff_max)
        self.stats = ApiStats()
        self._connector: aiohttp.TCPConnector | None = None
        self._session: aiohttp.ClientSession | None = None
        self._download_session: aiohttp.ClientSession | None = None
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"TelnyxClient(base_url={self.base_url!r}, "
            f"requests_per_second={self.requests_per_second!r}, "
            f"max_concurrency={self.max_concurrency!r})"
        )

    async def __aenter__(self) -> TelnyxClient:
        self._api_session()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        for session in (self._session, self._download_session):
            if session is not None:
                await session.close()
        if self._connector is not None:
            await self._connector.close()
        self._session = self._download_session = self._connector = None

    # -- sessions -------------------------------------------------------------------------------

    def _api_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("TelnyxClient is closed")
        if self._session is None:
            assert self._key is not None
            self._connector = aiohttp.TCPConnector(limit=max(100, 2 * self.max_concurrency))
            self._session = aiohttp.ClientSession(
                connector=self._connector,
                connector_owner=False,
                headers={
                    "Authorization": f"Bearer {self._key.reveal()}",
                    "Accept": "application/json",
                    "User-Agent": USER_AGENT,
                },
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            )
            self._key = None
        return self._session

    def _plain_session(self) -> aiohttp.ClientSession:
        # Same connector, no default Authorization: presigned URLs reject a second auth scheme.
        self._api_session()
        if self._download_session is None:
            self._download_session = aiohttp.ClientSession(
                connector=self._connector,
                connector_owner=False,
                headers={"User-Agent": USER_AGENT},
            )
        return self._download_session

    # -- one API call, with limits and retries --------------------------------------------------

    async def _request(
        self,
        method: str,
        template: str,
        item_id: str | None = None,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        expect: Expect = "object",
        retry_conflict: bool = True,
    ) -> Any:
        """One API call. `item_id`, percent-encoded, fills the template's one `{...}` slot."""
        path = template
        if item_id is not None:
            path = re.sub(r"\{\w+\}", lambda _: quote(item_id, safe=""), template, count=1)
        malformed = 0

        def stop(state: RetryCallState) -> bool:
            nonlocal malformed
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, RetryableFailure) and exc.kind == "MALFORMED":
                malformed += 1
            return state.attempt_number >= self.max_attempts or malformed >= MALFORMED_ATTEMPTS

        def before_sleep(state: RetryCallState) -> None:
            failure = state.outcome.exception() if state.outcome else None
            kind = failure.kind if isinstance(failure, RetryableFailure) else "ERR"
            self.stats.retries[kind] += 1
            wait = state.next_action.sleep if state.next_action else 0.0
            log.info(
                "retrying %s %s after %s in %.2f s (attempt %d of %d)",
                method,
                template,
                kind,
                wait,
                state.attempt_number + 1,
                self.max_attempts,
            )

        retrying = AsyncRetrying(
            stop=stop,
            wait=self._backoff,
            retry=retry_if_exception_type(RetryableFailure),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._attempt(
                        method, template, path, params, body, expect, retry_conflict
                    )
        except RetryableFailure as failure:
            raise failure.error from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(
        self,
        method: str,
        template: str,
        path: str,
        params: dict[str, str] | None,
        body: Any,
        expect: Expect,
        retry_conflict: bool,
    ) -> Any:
        session = self._api_session()
        key = f"{method} {template}"
        async with self._semaphore:
            await self._gate.wait()
            async with self._limiter:
                try:
                    async with session.request(
                        method, self.base_url + path, params=params, json=body
                    ) as response:
                        status, reason, headers = response.status, response.reason, response.headers
                        raw = await response.read()
                except TimeoutError:
                    self.stats.calls[f"{key} ERR"] += 1
                    raise RetryableFailure(
                        APITimeoutError(f"{key}: timed out"), kind="ERR"
                    ) from None
                except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                    self.stats.calls[f"{key} ERR"] += 1
                    raise RetryableFailure(
                        APIConnectionError(f"{key}: {type(exc).__name__}"), kind="ERR"
                    ) from None
                except aiohttp.ClientError as exc:
                    self.stats.calls[f"{key} ERR"] += 1
                    raise APIConnectionError(f"{key}: {type(exc).__name__}") from None
        self.stats.calls[f"{key} {status}"] += 1
        if 200 <= status < 300:
            return self._decode(key, status, headers, raw, expect)
        error = _error_from(status, reason, headers, raw, method, path)
        hint = retry_after_seconds(status, headers)
        if status == 429 and hint is not None:
            self._gate.pause_for(min(hint, self.backoff_max))
        if is_retryable_status(status) and (retry_conflict or status != 409):
            raise RetryableFailure(error, hint=hint)
        raise error

    @staticmethod
    def _decode(key: str, status: int, headers: Any, raw: bytes, expect: Expect) -> Any:
        if expect == "none":
            return None
        kind = headers.get("Content-Type", "no content type").split(";")[0]
        try:
            parsed = json.loads(raw)
        except ValueError:
            error = MalformedResponseError(f"{key}: HTTP {status} with a non-JSON body ({kind})")
            raise RetryableFailure(error, kind="MALFORMED") from None
        data = parsed.get("data") if isinstance(parsed, dict) else None
        shape_ok = isinstance(parsed, dict) and (
            expect == "json"
            or (expect == "list" and isinstance(data, list))
            or (expect == "object" and isinstance(data, dict))
        )
        if not shape_ok:
            error = MalformedResponseError(f"{key}: HTTP {status} JSON without a {expect} in data")
            raise RetryableFailure(error, kind="MALFORMED")
        return parsed

    # -- recordings -----------------------------------------------------------------------------

    def _page_fetcher(self, path: str, parse: Callable[[Any], T]) -> FetchPage[T]:
        async def fetch(params: dict[str, str]) -> tuple[Page[T], bool]:
            body = await self._request("GET", path, params=params, expect="list")
            return parse_page(body, parse), is_cursor_meta(body)

        return fetch

    @staticmethod
    def _check_page_size(page_size: int) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")

    async def get_recordings_page(
        self,
        *,
        page_number: int = 1,
        page_size: int = MAX_PAGE_SIZE,
        filters: RecordingFilters | None = None,
    ) -> Page[Recording]:
        self._check_page_size(page_size)
        params = {
            **(filters or RecordingFilters()).to_params(),
            "page[number]": str(page_number),
            "page[size]": str(page_size),
        }
        page, _ = await self._page_fetcher("/recordings", Recording.from_api)(params)
        return page

    def list_recordings(
        self,
        filters: RecordingFilters | None = None,
        *,
        page_size: int = MAX_PAGE_SIZE,
        on_malformed: OnMalformed | None = None,
    ) -> AsyncIterator[Recording]:
        """Every recording matching `filters`, once, as pages arrive. List a closed time slice:
        paging by number through a set that is being deleted from skips items."""
        self._check_page_size(page_size)
        return iterate(
            self._page_fetcher("/recordings", Recording.from_api),
            (filters or RecordingFilters()).to_params(),
            page_size=page_size,
            page_concurrency=self.page_concurrency,
            on_malformed=on_malformed,
            what="recordings",
        )

    async def get_recording(self, recording_id: str) -> Recording:
        body = await self._request("GET", "/recordings/{id}", recording_id)
        return _parsed(Recording.from_api, body["data"])

    async def _delete(self, template: str, item_id: str) -> bool:
        """True if deleted now, False if it was already gone (404)."""
        try:
            await self._request("DELETE", template, item_id, expect="none")
        except NotFoundError:
            return False
        return True

    async def delete_recording(self, recording_id: str) -> bool:
        """True if deleted now, False if it was already gone (404)."""
        return await self._delete("/recordings/{id}", recording_id)

    async def delete_recordings(
        self, ids: Sequence[str], *, chunk_size: int = 100
    ) -> BulkDeleteResult:
        """Delete in chunks (concurrently, within the shared limits). Never raises for failures:
        ids that could not be deleted come back in `failed` with a one-line reason."""
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        unique = list(dict.fromkeys(ids))
        chunks = [unique[i : i + chunk_size] for i in range(0, len(unique), chunk_size)]
        outcomes = await asyncio.gather(*(self._delete_chunk(c) for c in chunks))
        deleted: list[str] = []
        failed: dict[str, str] = {}
        for done, bad in outcomes:
            deleted.extend(done)
            failed.update(bad)
        return BulkDeleteResult(deleted=deleted, failed=failed)

    async def _delete_chunk(self, ids: list[str]) -> tuple[list[str], dict[str, str]]:
        try:
            await self._request(
                "POST", "/recordings/actions/delete", body={"ids": ids}, expect="none"
            )
        except NotFoundError:
            log.info("bulk delete of %d ids answered 404; deleting one by one", len(ids))
            return await self._delete_one_by_one(ids)
        except TelnyxError as exc:
            reason = _one_line(exc)
            return [], dict.fromkeys(ids, reason)
        return ids, {}

    async def _delete_one_by_one(self, ids: list[str]) -> tuple[list[str], dict[str, str]]:
        async def one(recording_id: str) -> str | None:
            try:
                await self.delete_recording(recording_id)  # 404: already gone, counts as deleted
            except TelnyxError as exc:
                return _one_line(exc)
            return None

        reasons = await asyncio.gather(*(one(i) for i in ids))
        deleted = [i for i, r in zip(ids, reasons, strict=True) if r is None]
        failed = {i: r for i, r in zip(ids, reasons, strict=True) if r is not None}
        return deleted, failed

    # -- transcriptions -------------------------------------------------------------------------

    def list_transcriptions(
        self,
        *,
        created_at_gte: datetime | None = None,
        created_at_lte: datetime | None = None,
        recording_id: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
        on_malformed: OnMalformed | None = None,
    ) -> AsyncIterator[Transcription]:
        self._check_page_size(page_size)
        params: dict[str, str] = {}
        if created_at_gte is not None:
            params["filter[created_at][gte]"] = format_time(created_at_gte)
        if created_at_lte is not None:
            params["filter[created_at][lte]"] = format_time(created_at_lte)
        if recording_id is not None:
            params["filter[recording_id]"] = recording_id
        return iterate(
            self._page_fetcher("/recording_transcriptions", Transcription.from_api),
            params,
            page_size=page_size,
            page_concurrency=self.page_concurrency,
            on_malformed=on_malformed,
            what="transcriptions",
        )

    async def get_transcription(self, transcription_id: str) -> Transcription:
        body = await self._request("GET", "/recording_transcriptions/{id}", transcription_id)
        return _parsed(Transcription.from_api, body["data"])

    async def delete_transcription(self, transcription_id: str) -> bool:
        """True if deleted now, False if it was already gone (404)."""
        return await self._delete("/recording_transcriptions/{id}", transcription_id)

    # -- custom storage credentials -------------------------------------------------------------

    @staticmethod
    def _parse_credential(body: Any, connection_id: str) -> StorageCredential:
        return _parsed(partial(StorageCredential.from_api, connection_id=connection_id), body)

    async def get_storage_credential(self, connection_id: str) -> StorageCredential | None:
        """The connection's stored credential, or None if it has none (404)."""
        try:
            body = await self._request("GET", _CREDENTIAL, connection_id)
        except NotFoundError:
            return None
        return self._parse_credential(body, connection_id)

    async def create_storage_credential(
        self, connection_id: str, credential: StorageCredential
    ) -> StorageCredential:
        """Not idempotent: a 409 (e.g. a repeat of a create that did succeed) goes to the caller."""
        body = await self._request(
            "POST", _CREDENTIAL, connection_id, body=credential.to_api(), retry_conflict=False
        )
        return self._parse_credential(body, connection_id)

    async def update_storage_credential(
        self, connection_id: str, credential: StorageCredential
    ) -> StorageCredential:
        body = await self._request("PUT", _CREDENTIAL, connection_id, body=credential.to_api())
        return self._parse_credential(body, connection_id)

    async def delete_storage_credential(self, connection_id: str) -> None:
        """Deletes the stored credential; one that is already gone (404) is fine."""
        if not await self._delete(_CREDENTIAL, connection_id):
            log.info("storage credential of connection %s was already gone", connection_id)

    # -- audio ----------------------------------------------------------------------------------

    def download(self, url: str) -> _Download:
        """`async with client.download(url) as response:` for a presigned URL.

        No Authorization header, no rate limit, no retry: an expired link is the pipeline's to
        handle (refetch the recording). Non-2xx raises the typed error (403 ->
        PermissionDeniedError, 404 -> NotFoundError) with S3's <Code>/<Message> if present.
        """
        return _Download(self._plain_session(), url, self.timeout)
