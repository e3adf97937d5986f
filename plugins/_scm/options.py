"""Option schema fragments and checks shared by the plugins that write into a repository.

A repository is named the same way everywhere (DevStream's `scmType`, `path` for a local
working copy, `owner`/`name`/`apiURL`/`token` for GitHub), so the schemas are built here and
the rules a JSON Schema cannot say clearly ("path is required when scmType is local") are
checked here, each message naming the option's dotted path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from plugins._scm.git import check_branch_name

GITHUB_API = "https://api.github.com"
SCM_TYPES = ("local", "github")
DEFAULT_BRANCH = "main"


def repo_properties(*, role: str, with_private: bool = False) -> dict[str, Any]:
    """JSON Schema properties naming one repository that a plugin writes into."""
    props: dict[str, Any] = {
        "scmType": {
            "type": "string",
            "enum": list(SCM_TYPES),
            "default": "local",
            "description": f"where the {role} lives: `local` (a git working copy on this "
            "machine) or `github`",
        },
        "path": {
            "type": "string",
            "default": "",
            "examples": ["./myapp"],
            "description": f"local: the directory of the {role}'s git working copy "
            "(required when scmType is local)",
        },
        "owner": {
            "type": "string",
            "default": "",
            "examples": ["my-org"],
            "description": "github: the user or organization owning the repository "
            "(required when scmType is github)",
        },
        "name": {
            "type": "string",
            "default": "",
            "examples": ["myapp"],
            "description": "github: the repository's name (required when scmType is github)",
        },
        "branch": {
            "type": "string",
            "minLength": 1,
            "default": DEFAULT_BRANCH,
            "description": "the branch to commit to",
        },
        "apiURL": {
            "type": "string",
            "format": "uri",
            "default": GITHUB_API,
            "description": "github: the REST API's base URL (GitHub Enterprise: "
            "https://HOST/api/v3)",
        },
        "token": {
            "type": "string",
            "x-secret": True,
            "default": "",
            "description": "github: a token allowed to write the repository (a secret: "
            "kept out of state and logs; required when scmType is github)",
        },
    }
    if with_private:
        props["private"] = {
            "type": "boolean",
            "default": False,
            "description": "github: create the repository as private",
        }
    return props


def repo_errors(repo: Mapping[str, Any], prefix: str = "", *, token: bool = True) -> list[str]:
    """The rules between a repository's options that the schema leaves to code."""
    errors: list[str] = []
    kind = repo.get("scmType", "local")
    if kind == "local" and not str(repo.get("path") or "").strip():
        errors.append(f"{prefix}path: required when {prefix}scmType is local")
    if kind == "github":
        for key in ("owner", "name") + (("token",) if token else ()):
            if not str(repo.get(key) or "").strip():
                errors.append(f"{prefix}{key}: required when {prefix}scmType is github")
        for key in ("owner", "name"):
            value = str(repo.get(key) or "")
            if "/" in value or value.strip() != value:
                errors.append(f"{prefix}{key}: {value!r} must be a bare name, without / or spaces")
    branch = repo.get("branch", DEFAULT_BRANCH)
    if isinstance(branch, str) and branch and (why := check_branch_name(branch)):
        errors.append(f"{prefix}branch: {why}")
    return errors


def with_defaults(schema: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """`options` with the schema's defaults filled in, recursively through nested objects.

    The SDK hands a plugin the options as written; applying defaults in one place keeps the
    plugins from scattering `.get(key, default)` with defaults that drift from the schema.
    """
    out = dict(options)
    for key, sub in (schema.get("properties") or {}).items():
        if not isinstance(sub, Mapping):
            continue
        if key not in out and "default" in sub:
            out[key] = sub["default"]
        if sub.get("type") == "object" and isinstance(out.get(key, {}), Mapping):
            out[key] = with_defaults(sub, out.get(key, {}))
    return out


def schema_gaps(schema: Mapping[str, Any], where: str = "") -> list[str]:
    """Options a generated example config could not explain: no description, or (when not
    required) no default; objects that accept unknown keys. Each plugin's tests assert none."""
    gaps: list[str] = []
    if schema.get("type") == "object" and schema.get("properties"):
        if schema.get("additionalProperties") is not False:
            gaps.append(f"{where or '(options)'}: accepts unknown keys")
        required = set(schema.get("required") or ())
        for key, sub in schema["properties"].items():
            path = f"{where}{key}"
            if not sub.get("description"):
                gaps.append(f"{path}: no description")
            if key not in required and "default" not in sub:
                gaps.append(f"{path}: optional without a default")
            gaps += schema_gaps(sub, f"{path}.")
    if schema.get("type") == "array" and isinstance(schema.get("items"), Mapping):
        gaps += schema_gaps(schema["items"], f"{where.rstrip('.')}[].")
    return gaps
