"""Choosing a backend: from a Telnyx storage credential, or from a destination URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.storage.azure import AzureBackend
from pipeline.storage.gcs import GCSBackend
from pipeline.storage.local import LocalBackend
from pipeline.storage.s3 import S3Backend
from pipeline.storage.select import backend_for_credential, backend_for_url
from pipeline.storage.settings import StorageSettings
from pipeline.telnyx.models import (
    AzureConfiguration,
    GCSConfiguration,
    S3Configuration,
    Secret,
    StorageCredential,
)

SETTINGS = StorageSettings(prefix="telnyx-archive", s3_endpoint_url="http://127.0.0.1:1")


def s3_cred(kind: str, endpoint: str | None) -> StorageCredential:
    return StorageCredential(
        connection_id="c",
        backend=kind,
        configuration=S3Configuration(
            bucket="bkt",
            region="eu-west-1",
            aws_access_key_id="AKIAEXAMPLE",
            aws_secret_access_key=Secret("very-secret"),
            endpoint=endpoint,
        ),
    )


def test_an_s3_credential_uses_the_settings_endpoint_override() -> None:
    backend = backend_for_credential(s3_cred("s3", None), SETTINGS)
    assert isinstance(backend, S3Backend)
    assert (backend.name, backend.bucket, backend.prefix) == ("s3", "bkt", "telnyx-archive")
    assert backend._endpoint_url == "http://127.0.0.1:1"


def test_an_s3_generic_credential_uses_its_own_endpoint_and_gets_a_scheme() -> None:
    backend = backend_for_credential(s3_cred("s3-generic", "objects.example.net"), SETTINGS)
    assert isinstance(backend, S3Backend)
    assert backend.name == "s3-generic"
    assert backend._endpoint_url == "https://objects.example.net"
    assert backend.uri("a.mp3") == "s3://bkt/telnyx-archive/a.mp3"


def test_gcs_and_azure_credentials_pick_their_backends() -> None:
    gcs = backend_for_credential(
        StorageCredential("c", "gcs", GCSConfiguration("g-bkt", Secret("{}"))), SETTINGS
    )
    azure = backend_for_credential(
        StorageCredential("c", "azure", AzureConfiguration("ctr", "acct", Secret("a2V5"))),
        SETTINGS,
    )
    assert isinstance(gcs, GCSBackend) and gcs.uri("k") == "gs://g-bkt/telnyx-archive/k"
    assert isinstance(azure, AzureBackend) and azure.uri("k") == "az://ctr/telnyx-archive/k"
    assert azure.label == "azure container 'ctr' (account 'acct')"


def test_no_backend_repr_shows_a_secret() -> None:
    for backend in (
        backend_for_credential(s3_cred("s3", None), SETTINGS),
        backend_for_credential(
            StorageCredential("c", "azure", AzureConfiguration("ctr", "acct", Secret("a2V5"))),
            SETTINGS,
        ),
    ):
        shown = repr(backend)
        assert "very-secret" not in shown and "a2V5" not in shown and "AKIA" not in shown


@pytest.mark.parametrize(
    ("url", "kind", "bucket", "prefix"),
    [
        ("s3://my-bucket/some/prefix", S3Backend, "my-bucket", "some/prefix"),
        ("s3://my-bucket", S3Backend, "my-bucket", ""),
        ("gs://g-bucket/p/", GCSBackend, "g-bucket", "p"),
    ],
)
def test_a_url_names_the_bucket_and_the_prefix(
    url: str, kind: type, bucket: str, prefix: str
) -> None:
    backend = backend_for_url(url, StorageSettings(prefix="ignored"))
    assert isinstance(backend, kind)
    assert (backend.bucket, backend.prefix) == (bucket, prefix)


def test_a_file_url_is_a_local_folder(tmp_path: Path) -> None:
    backend = backend_for_url(tmp_path.as_uri(), StorageSettings())
    assert isinstance(backend, LocalBackend)
    assert backend.bucket == str(tmp_path)
    assert backend.uri("a/b.mp3") == (tmp_path / "a/b.mp3").as_uri()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "destination URL is empty (use file:///abs/path, s3://bucket/prefix"),
        ("ftp://host/x", "unsupported destination URL scheme 'ftp'"),
        ("/plain/path", "unsupported destination URL scheme 'none'"),
        ("s3://", "s3:// destination needs a bucket name"),
        ("s3://AKIA:hunter2@bucket/x", "destination URL must not contain credentials"),
        ("file://server/share", "file:// destination must be a local absolute path"),
        ("gs://b/../x", "destination URL has a bad prefix: key has a '..' segment"),
        ("s3://b/x?token=1", "destination URL must not have a query or fragment"),
    ],
)
def test_a_bad_url_is_a_one_line_value_error(url: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        backend_for_url(url, StorageSettings())
    text = str(caught.value)
    assert text.startswith(message)
    assert "\n" not in text and "hunter2" not in text
