"""Toolchain state: one row per tool instance, secrets encrypted, statuses normalised."""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select

from core_service.store._db import Database, upsert
from core_service.store._schema import state_table
from core_service.store._secrets import SecretBox

SECRET_MARKER = "<secret>"


def canonical(value: Any) -> str:
    """The one serialisation both sides of every comparison go through.

    A status read from a plugin and one loaded from the database compare equal when
    they hold the same data, whatever the key order or int/float spelling of whole
    numbers (DevStream compared raw structures and reported false drift).
    """
    return json.dumps(_normalise(value), sort_keys=True, separators=(",", ":"))


def _normalise(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    return value


def get_path(options: Mapping[str, Any], path: str) -> Any:
    node: Any = options
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def set_path(options: dict[str, Any], path: str, value: Any) -> None:
    node = options
    *parents, leaf = path.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[leaf] = value


def split_secrets(
    options: Mapping[str, Any], secret_paths: Iterable[str], marker: str | None = SECRET_MARKER
) -> tuple[dict[str, Any], dict[str, str]]:
    """(a copy of the options without the secrets, {dotted path: secret value}).

    Each secret is replaced by `marker` (what the state stores), or removed when the
    marker is None (what goes over the wire, the secrets travelling apart).
    """
    public = json.loads(json.dumps(options))
    secrets: dict[str, str] = {}
    for path in secret_paths:
        value = get_path(public, path)
        if value is None:
            continue
        secrets[path] = value if isinstance(value, str) else json.dumps(value)
        if marker is not None:
            set_path(public, path, marker)
            continue
        *parents, leaf = path.split(".")
        node: Any = public
        for part in parents:
            node = node[part]
        del node[leaf]
    return public, secrets


def mask_values(value: Any, secrets: Iterable[str]) -> Any:
    """Replace any occurrence of a secret value inside a status with a marker."""
    needles = [s for s in secrets if len(s) >= 4]
    if not needles:
        return value
    text = json.dumps(value)
    for needle in needles:
        text = text.replace(json.dumps(needle)[1:-1], SECRET_MARKER)
    return json.loads(text)


@dataclass
class ToolState:
    key: str
    plugin: str
    instance_id: str
    options: dict[str, Any]  # secrets merged back in (decrypted)
    secret_paths: list[str]
    options_digest: str
    status: dict[str, Any]
    depends_on: list[str] = field(default_factory=list)
    updated_at: datetime.datetime | None = None

    @property
    def outputs(self) -> dict[str, Any]:
        outputs = self.status.get("outputs")
        return outputs if isinstance(outputs, dict) else {}


class StateStore:
    """Reads and writes the state of one namespace; each write is its own transaction."""

    def __init__(self, db: Database, namespace: str, box: SecretBox) -> None:
        self.db = db
        self.namespace = namespace
        self.box = box
        self._pending: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    def digest(self, options: Mapping[str, Any]) -> str:
        return self.box.digest(canonical(options))

    async def load(self) -> dict[str, ToolState]:
        async with self.db.connect() as conn:
            rows = (
                await conn.execute(
                    select(state_table).where(state_table.c.namespace == self.namespace)
                )
            ).mappings()
            out: dict[str, ToolState] = {}
            for row in rows:
                options = json.loads(row["options_json"])
                secrets = self.box.decrypt(row["secrets_enc"])
                for path, value in secrets.items():
                    set_path(options, path, value)
                out[row["key"]] = ToolState(
                    key=row["key"],
                    plugin=row["plugin"],
                    instance_id=row["instance_id"],
                    options=options,
                    secret_paths=sorted(secrets),
                    options_digest=row["options_digest"],
                    status=json.loads(row["status_json"]),
                    depends_on=json.loads(row["depends_on_json"]),
                    updated_at=row["updated_at"],
                )
        return out

    async def save(
        self,
        *,
        key: str,
        plugin: str,
        instance_id: str,
        options: Mapping[str, Any],
        secret_paths: Iterable[str],
        status: Mapping[str, Any],
        depends_on: Iterable[str],
        created_at: datetime.datetime | None = None,
    ) -> None:
        public, secrets = split_secrets(options, secret_paths)
        now = datetime.datetime.now(datetime.UTC)
        row = {
            "namespace": self.namespace,
            "key": key,
            "plugin": plugin,
            "instance_id": instance_id,
            "options_json": canonical(public),
            "secrets_enc": self.box.encrypt(secrets),
            "options_digest": self.digest(options),
            "status_json": canonical(mask_values(status, secrets.values())),
            "depends_on_json": json.dumps(sorted(depends_on)),
            "created_at": created_at or now,
            "updated_at": now,
        }
        await self._commit(row)

    async def _commit(self, row: dict[str, Any]) -> None:
        """Group commit: saves made while a commit runs go together in the next one.

        Each caller still returns only once its own row is committed, so "saved after
        each change" holds; parallel applies just share transactions.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((row, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            rows = list({r["key"]: r for r, _ in batch}.values())  # the last save of a key wins
            try:
                async with self.db.begin() as conn:
                    await upsert(conn, state_table, rows, ["namespace", "key"])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)

    async def delete(self, key: str) -> None:
        async with self.db.begin() as conn:
            await conn.execute(
                delete(state_table).where(
                    state_table.c.namespace == self.namespace, state_table.c.key == key
                )
            )
