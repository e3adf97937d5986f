"""The localfile plugin: creates, reads, updates and deletes one file."""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from plugin_sdk import InvalidOptions, Plugin


class LocalFile(Plugin):
    name = "localfile"
    version = "0.1.0"
    description = "Manages a file on disk (path, content, mode), like Terraform's local_file."
    options_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["path"],
        "properties": {
            "path": {"type": "string", "minLength": 1, "description": "absolute or relative path"},
            "content": {"type": "string", "default": "", "description": "the file's text"},
            "mode": {
                "type": "string",
                "pattern": "^0?[0-7]{3}$",
                "default": "0644",
                "description": "permission bits, octal",
            },
        },
    }

    async def validate(self, options: Mapping[str, Any]) -> list[str]:
        errors = await super().validate(options)
        path = options.get("path")
        if isinstance(path, str) and path.endswith(os.sep):
            errors.append(f"path: {path!r} names a directory; give a file name")
        return errors

    async def create(self, options: Mapping[str, Any]) -> dict[str, Any]:
        return self._write(options)

    async def update(self, options: Mapping[str, Any]) -> dict[str, Any]:
        return self._write(options)

    async def read(self, options: Mapping[str, Any]) -> dict[str, Any] | None:
        path = Path(options["path"])
        try:
            # One open and an fstat: Read is the hot call of every plan.
            with open(path, "rb") as fh:
                data = fh.read()
                mode = stat.S_IMODE(os.fstat(fh.fileno()).st_mode)
        except FileNotFoundError:
            return None
        except IsADirectoryError as exc:
            raise InvalidOptions(f"path: {path} is a directory") from exc
        return _status(path, data, mode)

    async def delete(self, options: Mapping[str, Any]) -> bool:
        try:
            Path(options["path"]).unlink()
        except FileNotFoundError:
            return False
        return True

    def _write(self, options: Mapping[str, Any]) -> dict[str, Any]:
        path = Path(options["path"])
        data = str(options.get("content", "")).encode()
        mode = int(str(options.get("mode", "0644")), 8)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write a temporary file and rename it, so a crash never leaves half a file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return _status(path, data, mode)


def _status(path: Path, data: bytes, mode: int) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    return {
        "path": str(path),
        "size": len(data),
        "sha256": digest,
        "mode": f"{mode:04o}",
        # abspath, not resolve(): no syscalls, and a symlinked path stays as written.
        "outputs": {"path": os.path.abspath(path), "sha256": digest},
    }
