"""Connections to DevOps tools: endpoint and options in the clear, secrets encrypted."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from core_service.errors import DtmError
from core_service.lake._schema import connections
from core_service.store import Database, SecretBox


class ConnectionError_(DtmError):
    """A connection is missing, duplicated or malformed."""


@dataclass
class Connection:
    id: int
    plugin: str
    name: str
    endpoint: str
    options: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        """What may be shown: secrets only by name, never by value."""
        return {
            "id": self.id,
            "plugin": self.plugin,
            "name": self.name,
            "endpoint": self.endpoint,
            **self.options,
            "secrets": sorted(self.secrets),
        }

    def for_plugin(self) -> tuple[dict[str, Any], dict[str, str]]:
        """(connection JSON without secrets, secrets by key) for one call."""
        return {"id": self.id, "name": self.name, "endpoint": self.endpoint, **self.options}, dict(
            self.secrets
        )


class ConnectionStore:
    def __init__(self, db: Database, box: SecretBox) -> None:
        self.db = db
        self.box = box

    async def add(
        self,
        plugin: str,
        name: str,
        endpoint: str,
        options: dict[str, Any] | None = None,
        secrets: dict[str, str] | None = None,
    ) -> Connection:
        now = datetime.datetime.now(datetime.UTC)
        try:
            async with self.db.begin() as conn:
                result = await conn.execute(
                    insert(connections).values(
                        plugin=plugin,
                        name=name,
                        endpoint=endpoint,
                        options_json=json.dumps(options or {}),
                        secrets_enc=self.box.encrypt(secrets or {}),
                        created_at=now,
                        updated_at=now,
                    )
                )
                new_id = int(result.inserted_primary_key[0])
        except IntegrityError as exc:
            raise ConnectionError_(
                f"a connection named {name!r} exists already; pick another name or remove it "
                f"with `dtm connection remove {name}`"
            ) from exc
        return Connection(new_id, plugin, name, endpoint, dict(options or {}), dict(secrets or {}))

    async def update(self, name: str, **changes: Any) -> Connection:
        current = await self.get(name)
        options = {**current.options, **(changes.get("options") or {})}
        secrets = {**current.secrets, **(changes.get("secrets") or {})}
        endpoint = changes.get("endpoint") or current.endpoint
        async with self.db.begin() as conn:
            await conn.execute(
                update(connections)
                .where(connections.c.id == current.id)
                .values(
                    endpoint=endpoint,
                    options_json=json.dumps(options),
                    secrets_enc=self.box.encrypt(secrets),
                    updated_at=datetime.datetime.now(datetime.UTC),
                )
            )
        return Connection(current.id, current.plugin, current.name, endpoint, options, secrets)

    async def all(self) -> list[Connection]:
        async with self.db.connect() as conn:
            rows = (await conn.execute(select(connections).order_by(connections.c.id))).mappings()
            return [self._row(r) for r in rows]

    async def get(self, name_or_id: str | int) -> Connection:
        column = (
            connections.c.id
            if isinstance(name_or_id, int) or str(name_or_id).isdigit()
            else connections.c.name
        )
        key = int(name_or_id) if column is connections.c.id else str(name_or_id)
        async with self.db.connect() as conn:
            row = (await conn.execute(select(connections).where(column == key))).mappings().first()
        if row is None:
            raise ConnectionError_(
                f"no connection {name_or_id!r}; `dtm connection list` shows them, "
                "`dtm connection add PLUGIN --name NAME ...` makes one"
            )
        return self._row(row)

    async def remove(self, name: str) -> None:
        found = await self.get(name)
        async with self.db.begin() as conn:
            await conn.execute(delete(connections).where(connections.c.id == found.id))

    def _row(self, row: Any) -> Connection:
        return Connection(
            id=int(row["id"]),
            plugin=row["plugin"],
            name=row["name"],
            endpoint=row["endpoint"],
            options=json.loads(row["options_json"] or "{}"),
            secrets=self.box.decrypt(row["secrets_enc"]),
        )
