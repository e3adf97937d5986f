"""Options, connection and raw params of the github plugin, and the time helpers they need."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from plugin_sdk import InvalidOptions, SubtaskContext

DEFAULT_ENDPOINT = "https://api.github.com"
DEFAULT_DEPLOYMENT = "(?i)deploy"
DEFAULT_PRODUCTION = "(?i)prod"
# GitHub's own rule for owner and repository names (letters, digits, '-', '_', '.').
REPO_RE = r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$"

CONNECTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "endpoint": {"type": "string", "default": DEFAULT_ENDPOINT,
                     "description": "the REST API root (GitHub Enterprise: https://HOST/api/v3)"},
        "token": {"type": "string", "x-secret": True,
                  "description": "a personal access token (read access to the repositories)"},
        "proxy": {"type": "string", "description": "HTTP proxy for this connection"},
        "rateLimitPerHour": {"type": "integer", "minimum": 1,
                             "description": "spread requests to stay under this many an hour"},
    },
}  # fmt: skip

OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["repo"],
    "properties": {
        "repo": {"type": "string", "pattern": REPO_RE, "examples": ["apache/incubator-devlake"],
                 "description": "the repository to collect, as owner/name"},
        "timeAfter": {"type": "string", "examples": ["2024-01-01", "2024-01-01T00:00:00Z"],
                      "description": "collect only what changed (runs: what started) after "
                                     "this ISO 8601 date or time"},
        "deploymentPattern": {"type": "string", "default": DEFAULT_DEPLOYMENT,
                              "description": "a regex: runs whose name matches are deployments"},
        "productionPattern": {"type": "string", "default": DEFAULT_PRODUCTION,
                              "description": "a regex: deployments whose name or branch "
                                             "matches go to PRODUCTION"},
        "batchSize": {"type": "integer", "minimum": 1, "default": 500,
                      "description": "rows per batch sent to the core"},
    },
}  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """A task's options, parsed: what every subtask reads."""

    repo: str  # owner/name, as given
    time_after: str | None  # GitHub's `since` form, or None
    deployment: re.Pattern[str]
    production: re.Pattern[str]

    @property
    def api_path(self) -> str:
        return f"repos/{self.repo}"


def option_errors(options: Mapping[str, Any]) -> list[str]:
    """What a JSON Schema cannot check: the regexes compile and timeAfter is a date."""
    errors = []
    for key in ("deploymentPattern", "productionPattern"):
        value = options.get(key)
        if isinstance(value, str):
            try:
                re.compile(value)
            except re.error as exc:
                errors.append(f"{key}: {value!r} is not a valid regular expression: {exc}")
    after = options.get("timeAfter")
    if isinstance(after, str) and after:
        try:
            parse_time(after)
        except ValueError:
            errors.append(f"timeAfter: {after!r} is not an ISO 8601 date or time")
    return errors


def parse_settings(options: Mapping[str, Any]) -> Settings:
    repo = str(options.get("repo") or "")
    if not re.match(REPO_RE, repo):
        raise InvalidOptions(f"repo: {repo!r} is not owner/name, e.g. apache/incubator-devlake")
    problems = option_errors(options)
    if problems:
        raise InvalidOptions("; ".join(problems))
    after = options.get("timeAfter")
    return Settings(
        repo=repo,
        time_after=github_time(parse_time(after)) if after else None,
        deployment=re.compile(str(options.get("deploymentPattern") or DEFAULT_DEPLOYMENT)),
        production=re.compile(str(options.get("productionPattern") or DEFAULT_PRODUCTION)),
    )


_SETTING_KEYS = ("repo", "timeAfter", "deploymentPattern", "productionPattern")


def settings(ctx: SubtaskContext) -> Settings:
    # Task data is prepare_task_data's answer (the options with defaults and params);
    # a subtask run without the core may only have the options.
    merged = {**ctx.options, **ctx.task_data}
    return _settings(*(str(merged.get(key) or "") for key in _SETTING_KEYS))


@lru_cache(maxsize=64)
def _settings(*values: str) -> Settings:
    # Converters ask once per row: parse (and compile) once per task instead.
    return parse_settings({k: v for k, v in zip(_SETTING_KEYS, values, strict=True) if v})


def raw_params(connection_id: int, repo: str) -> str:
    """DevLake's raw params, e.g. {"ConnectionId":1,"Name":"owner/repo"}: fixed key order and
    no spaces, so the same scope always gives the same string."""
    return json.dumps({"ConnectionId": connection_id, "Name": repo}, separators=(",", ":"))


# -- time ------------------------------------------------------------------------------


def parse_time(value: str) -> datetime:
    """An ISO 8601 date or time as an aware datetime (naive means UTC, as GitHub's are)."""
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def github_time(when: datetime) -> str:
    """The form GitHub prints and accepts in `since`: 2024-01-31T12:00:00Z."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now() -> str:
    # Truncated to the second, which rounds down: `since` is inclusive, so the next run
    # asks again for what changed within that second rather than missing it.
    return github_time(datetime.now(UTC))


def latest(*times: str | None) -> str | None:
    """The latest of some ISO times (None ignored), or None."""
    given = [t for t in times if t]
    return github_time(max(parse_time(t) for t in given)) if given else None


def seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (parse_time(end) - parse_time(start)).total_seconds()
