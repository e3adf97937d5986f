"""Finding plugins: manifests under plugin directories and pip-installed entry points."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import yaml

from core_service.errors import ManifestError
from plugin_sdk._protocol import APP_PROTOCOL_VERSIONS

ENTRY_POINT_GROUP = "devstream.plugins"
ENV_PLUGIN_DIRS = "DTM_PLUGIN_DIRS"
MANIFEST = "plugin.yaml"
_KEYS = {"name", "version", "description", "module", "command", "protocol_versions"}


@dataclass(frozen=True)
class PluginManifest:
    name: str
    version: str
    description: str
    command: tuple[str, ...]
    protocol_versions: tuple[int, ...]
    source: str  # "dir:<path>" or "entry-point:<distribution>"
    path: Path  # the folder holding plugin.yaml
    pythonpath: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "protocol_versions": list(self.protocol_versions),
            "source": self.source,
            "path": str(self.path),
            "command": list(self.command),
        }


def builtin_plugin_dir() -> Path:
    import plugins

    return Path(plugins.__file__).resolve().parent


def load_manifest(path: Path, source: str) -> PluginManifest:
    """Read one plugin.yaml; every problem names the file and the key."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ManifestError(f"{path}: cannot read the manifest: {exc}") from exc
    if not isinstance(raw, dict):
        raise ManifestError(f"{path}: a manifest is a mapping with name, version and module")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ManifestError(f"{path}: unknown key(s) {unknown}; allowed: {sorted(_KEYS)}")
    for key in ("name", "version"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ManifestError(f"{path}: `{key}` must be a non-empty string")
    name = raw["name"]
    if not all(c.isalnum() or c in "-_" for c in name):
        raise ManifestError(f"{path}: name {name!r} may hold only letters, digits, - and _")
    versions = raw.get("protocol_versions", list(APP_PROTOCOL_VERSIONS))
    if not (isinstance(versions, list) and versions and all(isinstance(v, int) for v in versions)):
        raise ManifestError(
            f"{path}: `protocol_versions` must be a list of whole numbers, e.g. [1]"
        )
    folder = path.parent.resolve()
    module, command = raw.get("module"), raw.get("command")
    pythonpath: tuple[str, ...] = ()
    if command is not None:
        if not (isinstance(command, list) and command and all(isinstance(c, str) for c in command)):
            raise ManifestError(f"{path}: `command` must be a list of strings")
        # A relative program is relative to the manifest's folder.
        first = command[0]
        if not os.path.isabs(first) and os.sep in first:
            first = str(folder / first)
        argv = (first, *command[1:])
    elif isinstance(module, str) and module:
        argv = (sys.executable, "-m", module)
        depth = len(module.split("."))
        if folder.name == module.split(".")[-1] and len(folder.parents) >= depth:
            pythonpath = (str(folder.parents[depth - 1]),)
    else:
        raise ManifestError(f"{path}: give `module` (a Python module to run) or `command`")
    return PluginManifest(
        name=name,
        version=raw["version"],
        description=str(raw.get("description", "")),
        command=argv,
        protocol_versions=tuple(sorted(set(versions))),
        source=source,
        path=folder,
        pythonpath=pythonpath,
    )


def plugin_dirs(extra: Iterable[Path | str] = ()) -> list[Path]:
    dirs = [Path(d) for d in extra]
    dirs += [Path(d) for d in os.environ.get(ENV_PLUGIN_DIRS, "").split(os.pathsep) if d]
    dirs.append(builtin_plugin_dir())
    seen: list[Path] = []
    for d in dirs:
        r = d.resolve()
        if r not in seen:
            seen.append(r)
    return seen


def discover(
    extra_dirs: Sequence[Path | str] = (),
) -> tuple[dict[str, PluginManifest], list[str]]:
    """Every plugin found, by name, and the problems met on the way.

    Directories come first (extra, then $DTM_PLUGIN_DIRS, then the built-in ones),
    then entry points; the first plugin found under a name wins, so a plugin being
    developed in a folder shadows the installed one.
    """
    found: dict[str, PluginManifest] = {}
    problems: list[str] = []

    def add(manifest: PluginManifest) -> None:
        if manifest.name in found:
            problems.append(
                f"plugin {manifest.name} from {manifest.source} is shadowed by "
                f"{found[manifest.name].source}"
            )
        else:
            found[manifest.name] = manifest

    for d in plugin_dirs(extra_dirs):
        if not d.is_dir():
            problems.append(f"plugin directory {d} does not exist")
            continue
        for path in sorted(d.glob(f"*/{MANIFEST}")):
            try:
                add(load_manifest(path, f"dir:{path.parent}"))
            except ManifestError as exc:
                problems.append(str(exc))
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            manifest_file = resources.files(ep.value).joinpath(MANIFEST)
            dist = ep.dist.name if ep.dist else ep.value
            add(load_manifest(Path(str(manifest_file)), f"entry-point:{dist}"))
        except (ManifestError, ModuleNotFoundError, TypeError) as exc:
            problems.append(f"entry point {ep.name} = {ep.value}: {exc}")
    return found, problems
