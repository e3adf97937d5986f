"""Toolchain as code: config, plan, apply, state (DevStream's job)."""

from core_service.toolchain._config import (
    Config,
    ConfigProblems,
    Problem,
    ToolSpec,
    find_cycle,
    load_config,
)
from core_service.toolchain._engine import (
    CREATE,
    DELETE,
    NOOP,
    UPDATE,
    Change,
    Outcome,
    Toolchain,
)
from core_service.toolchain._session import ENV_STATE_URL, open_store, open_toolchain, state_url

__all__ = [
    "CREATE",
    "DELETE",
    "ENV_STATE_URL",
    "NOOP",
    "UPDATE",
    "Change",
    "Config",
    "ConfigProblems",
    "Outcome",
    "Problem",
    "ToolSpec",
    "Toolchain",
    "find_cycle",
    "load_config",
    "open_store",
    "open_toolchain",
    "state_url",
]
