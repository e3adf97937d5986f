"""The engineering data lake: connections, plans, pipelines, lake tables (DevLake's job)."""

from core_service.lake._connections import Connection, ConnectionStore
from core_service.lake._plan import PipelinePlan, TaskSpec, load_plan, parse_plan
from core_service.lake._runner import PipelineCancelled, PipelineError, PipelineRunner
from core_service.lake._store import LakeError, LakeStore

__all__ = [
    "Connection",
    "ConnectionStore",
    "LakeError",
    "LakeStore",
    "PipelineCancelled",
    "PipelineError",
    "PipelinePlan",
    "PipelineRunner",
    "TaskSpec",
    "load_plan",
    "parse_plan",
]
