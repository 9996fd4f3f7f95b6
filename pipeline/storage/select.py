"""Which backend serves a destination: a connection's stored credential, or a URL."""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

from pipeline.storage._common import normalize_prefix
from pipeline.storage.base import Backend
from pipeline.storage.settings import StorageSettings
from pipeline.telnyx.models import (
    AzureConfiguration,
    GCSConfiguration,
    S3Configuration,
    Secret,
    StorageCredential,
)

URL_FORMS = "file:///abs/path, s3://bucket/prefix, gs://bucket/prefix or az://container/prefix"


def backend_for_credential(cred: StorageCredential, settings: StorageSettings) -> Backend:
    """The bucket the credential names, under settings.prefix. Nothing is contacted yet."""
    conf = cred.configuration
    if cred.backend in ("s3", "s3-generic") and isinstance(conf, S3Configuration):
        from pipeline.storage.s3 import S3Backend

        # s3-generic: the customer's own endpoint; s3: an override only for tests/emulators.
        endpoint = conf.endpoint if cred.backend == "s3-generic" else settings.s3_endpoint_url
        return S3Backend(
            name=cred.backend,
            bucket=conf.bucket,
            settings=settings,
            region=conf.region,
            access_key_id=conf.aws_access_key_id,
            secret_access_key=conf.aws_secret_access_key,
            endpoint_url=_with_scheme(endpoint) if endpoint else None,
        )
    if cred.backend == "gcs" and isinstance(conf, GCSConfiguration):
        from pipeline.storage.gcs import GCSBackend

        return GCSBackend(bucket=conf.bucket, settings=settings, credentials_json=conf.credentials)
    if cred.backend == "azure" and isinstance(conf, AzureConfiguration):
        from pipeline.storage.azure import AzureBackend

        return AzureBackend(
            container=conf.bucket,
            settings=settings,
            account_name=conf.account_name,
            account_key=conf.account_key,
        )
    raise ValueError(f"no storage backend for credential kind {cred.backend!r}")


def _with_scheme(endpoint: str) -> str:
    # Telnyx's s3-generic examples give a bare host name.
    return endpoint if "://" in endpoint else f"https://{endpoint}"


def backend_for_url(url: str, settings: StorageSettings) -> Backend:
    """A destination URL; credentials come from each SDK's usual environment.

    The prefix is the URL's path (settings.prefix does not apply). Raises ValueError, one line.
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"destination URL is empty (use {URL_FORMS})")
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        raise ValueError(f"destination URL is malformed (use {URL_FORMS})") from None
    scheme = parts.scheme.lower()
    if "@" in parts.netloc or parts.password is not None:
        raise ValueError("destination URL must not contain credentials")
    if parts.query or parts.fragment:
        raise ValueError(f"destination URL must not have a query or fragment (use {URL_FORMS})")
    path = unquote(parts.path)

    if scheme == "file":
        from pipeline.storage.local import LocalBackend

        if parts.netloc not in ("", "localhost"):
            raise ValueError("file:// destination must be a local absolute path (file:///abs/path)")
        if not path.startswith("/"):
            raise ValueError("file:// destination must be an absolute path (file:///abs/path)")
        return LocalBackend(root=os.path.normpath(path), settings=settings)

    if scheme not in ("s3", "gs", "az"):
        shown = scheme or "none"
        raise ValueError(f"unsupported destination URL scheme {shown!r} (use {URL_FORMS})")
    bucket = parts.netloc
    if not bucket:
        raise ValueError(f"{scheme}:// destination needs a bucket name (use {URL_FORMS})")
    prefix = path.strip("/")
    try:
        normalize_prefix(prefix)
    except ValueError as exc:
        raise ValueError(f"destination URL has a bad prefix: {exc}") from None

    if scheme == "s3":
        from pipeline.storage.s3 import S3Backend

        return S3Backend(
            bucket=bucket, settings=settings, prefix=prefix, endpoint_url=settings.s3_endpoint_url
        )
    if scheme == "gs":
        from pipeline.storage.gcs import GCSBackend

        return GCSBackend(bucket=bucket, settings=settings, prefix=prefix)

    from pipeline.storage.azure import AzureBackend

    conn = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
    if conn:
        fields = _connection_string(conn)
        name, key = fields.get("accountname"), fields.get("accountkey")
        endpoint = fields.get("blobendpoint")
    else:
        name = os.environ.get("AZURE_STORAGE_ACCOUNT_NAME")
        key = os.environ.get("AZURE_STORAGE_ACCOUNT_KEY")
        endpoint = None
    if not name:
        raise ValueError(
            "az:// destination needs AZURE_STORAGE_CONNECTION_STRING or "
            "AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY"
        )
    return AzureBackend(
        container=bucket,
        settings=settings,
        prefix=prefix,
        account_name=name,
        account_key=Secret(key) if key else None,
        endpoint=endpoint,
    )


def _connection_string(conn: str) -> dict[str, str]:
    # The format is `Key=Value;...` (values such as keys may contain '='); the SDK's own
    # parser is private.
    fields: dict[str, str] = {}
    for item in conn.split(";"):
        name, sep, value = item.partition("=")
        if sep:
            fields[name.strip().lower()] = value.strip()
    return fields
