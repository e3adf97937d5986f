"""The core's storage: database, migrations, toolchain state, locks and secrets."""

from core_service.store._db import Database, normalise_url, safe_url, upsert
from core_service.store._lock import StateLock
from core_service.store._secrets import SecretBox
from core_service.store._state import (
    SECRET_MARKER,
    StateStore,
    ToolState,
    canonical,
    get_path,
    mask_values,
    set_path,
    split_secrets,
)

__all__ = [
    "SECRET_MARKER",
    "Database",
    "SecretBox",
    "StateLock",
    "StateStore",
    "ToolState",
    "canonical",
    "get_path",
    "mask_values",
    "normalise_url",
    "safe_url",
    "set_path",
    "split_secrets",
    "upsert",
]
