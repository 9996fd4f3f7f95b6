"""Destinations: one interface (base.Backend), one module per store, select.py to pick one.

The SDK-backed modules (s3, gcs, azure) are imported only when a backend of that kind is built.
"""

from pipeline.storage.base import (
    Backend,
    IncompleteStreamError,
    ObjectStat,
    PreflightError,
    StorageError,
    StoredObject,
)
from pipeline.storage.settings import StorageSettings

__all__ = [
    "Backend",
    "IncompleteStreamError",
    "ObjectStat",
    "PreflightError",
    "StorageError",
    "StorageSettings",
    "StoredObject",
]
