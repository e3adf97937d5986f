"""Pipeline plans: stages run in order, each a set of tasks run in parallel (DevLake's plan)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core_service.errors import ConfigError

TASK_KEYS = {"plugin", "options", "subtasks", "connection", "fullSync"}


@dataclass
class TaskSpec:
    plugin: str
    options: dict[str, Any] = field(default_factory=dict)
    subtasks: list[str] = field(default_factory=list)  # [] = the plugin's defaults
    connection: str | None = None  # a connection's name or id
    full_sync: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "plugin": self.plugin,
            "options": self.options,
            "subtasks": self.subtasks,
            "connection": self.connection,
            "fullSync": self.full_sync,
        }


@dataclass
class PipelinePlan:
    name: str
    stages: list[list[TaskSpec]]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "plan": [[t.as_dict() for t in s] for s in self.stages]}


def parse_plan(data: Any, source: str = "the plan") -> PipelinePlan:
    """Check a plan's shape; every problem names where it is."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a pipeline is a mapping with `name` and `plan`")
    unknown = sorted(set(data) - {"name", "plan", "stages"})
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown}; use `name` and `plan`")
    stages = data.get("plan", data.get("stages"))
    if not isinstance(stages, list) or not stages:
        raise ConfigError(f"{source}: `plan` must be a list of stages, each a list of tasks")
    out: list[list[TaskSpec]] = []
    for i, stage in enumerate(stages, start=1):
        if isinstance(stage, dict):
            stage = [stage]  # a stage of one task may be written without its list
        if not isinstance(stage, list) or not stage:
            raise ConfigError(f"{source}: stage {i} must be a non-empty list of tasks")
        tasks = []
        for j, task in enumerate(stage, start=1):
            where = f"{source}: stage {i}, task {j}"
            if not isinstance(task, dict) or not isinstance(task.get("plugin"), str):
                raise ConfigError(f"{where}: a task needs `plugin: NAME`")
            bad = sorted(set(task) - TASK_KEYS)
            if bad:
                raise ConfigError(f"{where}: unknown key(s) {bad}; use {sorted(TASK_KEYS)}")
            options = task.get("options") or {}
            subs = task.get("subtasks") or []
            if not isinstance(options, dict):
                raise ConfigError(f"{where}: `options` must be a mapping")
            if not isinstance(subs, list) or not all(isinstance(s, str) for s in subs):
                raise ConfigError(f"{where}: `subtasks` must be a list of subtask names")
            conn = task.get("connection")
            tasks.append(
                TaskSpec(
                    task["plugin"],
                    options,
                    subs,
                    None if conn is None else str(conn),
                    bool(task.get("fullSync", False)),
                )
            )
        out.append(tasks)
    return PipelinePlan(str(data.get("name") or "pipeline"), out)


def load_plan(path: Path) -> PipelinePlan:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_plan(data, str(path))
