"""Opening a toolchain: config, database, state store, lock and plugin host, closed together."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from core_service.host import PluginHost
from core_service.store import Database, SecretBox, StateLock, StateStore
from core_service.toolchain._config import Config, StateConfig
from core_service.toolchain._engine import Progress, Toolchain

ENV_STATE_URL = "DTM_STATE_URL"


def state_url(config: Config | None, override: str | None = None) -> str:
    """--state, then $DTM_STATE_URL, then the config's `config.state`, then ./devstream.db."""
    if override:
        return override
    if os.environ.get(ENV_STATE_URL):
        return os.environ[ENV_STATE_URL]
    if config is None:
        return "devstream.db"
    state = config.state
    if state.backend == "database":
        return state.url
    path = Path(state.url or "devstream.db")
    return str(path if path.is_absolute() else config.base_dir / path)


@asynccontextmanager
async def open_store(
    url: str, namespace: str = "default"
) -> AsyncIterator[tuple[Database, StateStore]]:
    async with Database(url) as db:
        yield db, StateStore(db, namespace, SecretBox())


@asynccontextmanager
async def open_toolchain(
    config: Config,
    *,
    state: str | None = None,
    plugin_dirs: Sequence[Path | str] = (),
    reattach: str | None = None,
    parallelism: int = 8,
    progress: Progress | None = None,
    lock: str | None = None,
    lock_timeout: float = 0.0,
) -> AsyncIterator[Toolchain]:
    """Everything a command needs; `lock` names the purpose when the state must be locked."""
    namespace = (config.state or StateConfig()).namespace
    async with AsyncExitStack() as stack:
        db, store = await stack.enter_async_context(open_store(state_url(config, state), namespace))
        if lock:
            state_lock = StateLock(db, namespace, purpose=lock)
            await state_lock.acquire(wait=lock_timeout)
            stack.push_async_callback(state_lock.release)
        host = await stack.enter_async_context(
            PluginHost(plugin_dirs=plugin_dirs, reattach=reattach)
        )
        yield Toolchain(config, host, store, parallelism=parallelism, progress=progress)
