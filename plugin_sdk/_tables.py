"""Table declarations shared by plugins and the core: tool tables and the domain layer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Column types a table may use; the core maps each to a SQL type per database.
COLUMN_TYPES = ("string", "text", "int", "bigint", "float", "bool", "datetime", "json")

# DevLake's lineage columns: every tool and domain row points back at its raw row.
LINEAGE_COLUMNS: dict[str, str] = {
    "_raw_data_params": "string",
    "_raw_data_table": "string",
    "_raw_data_id": "bigint",
    "_raw_data_remark": "string",
}


@dataclass(frozen=True)
class TableSpec:
    """A table: its name, columns (name -> type) and primary key; lineage columns added."""

    name: str
    columns: Mapping[str, str]
    primary_key: tuple[str, ...]
    description: str = ""
    lineage: bool = True
    all_columns: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        bad = {c: t for c, t in self.columns.items() if t not in COLUMN_TYPES}
        if bad:
            raise ValueError(f"table {self.name}: unknown column type(s) {bad}; use {COLUMN_TYPES}")
        missing = [k for k in self.primary_key if k not in self.columns]
        if missing or not self.primary_key:
            raise ValueError(f"table {self.name}: primary key {missing or '()'} not among columns")
        cols = dict(self.columns)
        if self.lineage:
            cols.update(LINEAGE_COLUMNS)
        object.__setattr__(self, "all_columns", cols)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "columns": dict(self.columns),
            "primary_key": list(self.primary_key),
            "description": self.description,
            "lineage": self.lineage,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TableSpec:
        return cls(
            name=str(data["name"]),
            columns=dict(data["columns"]),
            primary_key=tuple(data["primary_key"]),
            description=str(data.get("description", "")),
            lineage=bool(data.get("lineage", True)),
        )


def raw_table_name(plugin: str, entity: str) -> str:
    return f"_raw_{plugin.replace('-', '_')}_{entity}"


def tool_table_name(plugin: str, entity: str) -> str:
    return f"_tool_{plugin.replace('-', '_')}_{entity}"
