"""The client's error hierarchy. The pipeline catches these, never aiohttp's."""

from __future__ import annotations


class TelnyxError(Exception):
    """Base of every error the Telnyx client raises."""


class APIConnectionError(TelnyxError):
    """The request never got an HTTP answer (reset, refused, DNS, timeout)."""


class APITimeoutError(APIConnectionError):
    """The request timed out."""


class MalformedResponseError(TelnyxError):
    """A 2xx answer whose body is not the JSON shape the spec promises (e.g. an HTML page)."""


class APIError(TelnyxError):
    """An HTTP error answer. Carries the status and the first error's code, title and detail."""

    def __init__(
        self,
        status: int,
        *,
        code: str | None = None,
        title: str | None = None,
        detail: str | None = None,
        request_id: str | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.request_id = request_id
        self.method = method
        self.path = path
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.method} {self.path} " if self.method and self.path else ""
        parts = [f"{where}HTTP {self.status}"]
        if self.code:
            parts.append(f"code {self.code}")
        if self.title:
            parts.append(self.title)
        if self.detail and self.detail != self.title:
            parts.append(self.detail)
        if self.request_id:
            parts.append(f"request id {self.request_id}")
        return ": ".join(parts[:1]) + (" " + " - ".join(parts[1:]) if len(parts) > 1 else "")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, title={self.title!r})"


class BadRequestError(APIError):
    """400."""


class AuthenticationError(APIError):
    """401: the API key is missing or wrong."""


class PermissionDeniedError(APIError):
    """403."""


class NotFoundError(APIError):
    """404."""


class ConflictError(APIError):
    """409."""


class UnprocessableEntityError(APIError):
    """422: invalid parameters."""


class RateLimitError(APIError):
    """429 (Telnyx error code 10011)."""


class InternalServerError(APIError):
    """5xx."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def error_class_for(status: int) -> type[APIError]:
    if status >= 500:
        return InternalServerError
    return _BY_STATUS.get(status, APIError)
