"""Core tables of the data lake (pipelines, tasks, subtasks, connections) and the domain layer."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from core_service.lake._tables import sql_table
from core_service.store._schema import EXTRA_MIGRATIONS, Migration, _create
from plugin_sdk import domain

metadata = MetaData()

connections = Table(
    "dtm_connections",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("plugin", String(200), nullable=False),
    Column("name", String(200), nullable=False, unique=True),
    Column("endpoint", Text, nullable=False, default=""),
    Column("options_json", Text, nullable=False, default="{}"),  # not secret
    Column("secrets_enc", Text, nullable=False, default=""),  # encrypted {key: value}
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

pipelines = Table(
    "dtm_pipelines",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("plan_json", Text, nullable=False),
    Column("status", String(20), nullable=False),  # pending running done failed cancelled
    Column("cancel_requested", Integer, nullable=False, default=0),
    Column("message", Text, nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("owner", String(200), nullable=False, default=""),  # "host pid" running it
    Column("heartbeat_at", DateTime(timezone=True)),
)

tasks = Table(
    "dtm_tasks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pipeline_id", Integer, ForeignKey("dtm_pipelines.id"), nullable=False, index=True),
    Column("stage", Integer, nullable=False),
    Column("position", Integer, nullable=False),
    Column("plugin", String(200), nullable=False),
    Column("options_json", Text, nullable=False),
    Column("subtasks_json", Text, nullable=False, default="[]"),  # chosen; [] = defaults
    Column("connection_id", Integer),
    Column("full_sync", Integer, nullable=False, default=0),
    Column("status", String(20), nullable=False),
    Column("progress", Float, nullable=False, default=0.0),
    Column("message", Text, nullable=False, default=""),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
)

subtasks = Table(
    "dtm_subtasks",
    metadata,
    Column("task_id", Integer, ForeignKey("dtm_tasks.id"), primary_key=True),
    Column("name", String(200), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("kind", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("checkpoint_json", Text),  # committed with each batch: where to resume
    Column("records", BigInteger, nullable=False, default=0),
    Column("current", BigInteger, nullable=False, default=0),
    Column("total", BigInteger, nullable=False, default=0),
    Column("attempts", Integer, nullable=False, default=0),
    Column("message", Text, nullable=False, default=""),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
)

# Incremental state of a subtask for one scope, kept from its last successful run.
subtask_state = Table(
    "dtm_subtask_state",
    metadata,
    Column("plugin", String(200), primary_key=True),
    Column("params", String(255), primary_key=True),
    Column("subtask", String(200), primary_key=True),
    Column("state_json", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Which declared tables a plugin had applied, so unchanged declarations cost nothing.
plugin_tables = Table(
    "dtm_plugin_tables",
    metadata,
    Column("table_name", String(255), primary_key=True),
    Column("plugin", String(200), nullable=False),
    Column("spec_json", Text, nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)

domain_metadata = MetaData()
domain_tables = {spec.name: sql_table(spec, domain_metadata) for spec in domain.ALL}

EXTRA_MIGRATIONS.extend(
    [
        Migration(
            2,
            "pipelines, tasks, subtasks, connections",
            _create(connections, pipelines, tasks, subtasks, subtask_state, plugin_tables),
        ),
        Migration(3, "domain layer", _create(*domain_tables.values())),
    ]
)
