"""Settings shared by every storage backend (from the config file, the environment and flags)."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class StorageSettings:
    # The destination for connections with no stored credential, as a URL:
    # file:///abs/path, s3://bucket/prefix, gs://bucket/prefix, az://container/prefix. None: skip them.
    default_destination: str | None = None
    # The prefix inside a credential's bucket under which everything is written.
    prefix: str = "telnyx-archive"
    part_size: int = 8 * MiB  # memory per in-flight upload stays within one part
    multipart_threshold: int = 8 * MiB
    max_concurrency: int = 8  # in-flight operations per backend
    # Endpoint overrides; None means: let each SDK read its own environment variable
    # (AWS_ENDPOINT_URL, STORAGE_EMULATOR_HOST) or, for Azure, AZURE_STORAGE_BLOB_ENDPOINT.
    s3_endpoint_url: str | None = None
    gcs_endpoint_url: str | None = None
    azure_blob_endpoint: str | None = None  # e.g. http://127.0.0.1:10000/{account_name}
