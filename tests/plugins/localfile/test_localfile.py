"""The localfile plugin: real CRUD on disk, drift visible through Read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from plugin_sdk import InvalidOptions
from plugin_sdk.testing import serve_in_process
from plugins.localfile import LocalFile


async def test_lifecycle_and_drift(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "hello.txt"
    options = {"path": str(path), "content": "hi", "mode": "0600"}
    async with serve_in_process(LocalFile()) as client:
        assert await client.read(options) is None
        created = await client.create(options)
        assert path.read_text() == "hi"
        assert oct(os.stat(path).st_mode & 0o777) == "0o600"
        assert created["outputs"] == {"path": str(path), "sha256": created["sha256"]}
        assert await client.read(options) == created
        path.write_text("edited by hand")  # drift: Read reports what is there now
        drifted = await client.read(options)
        assert drifted is not None and drifted["sha256"] != created["sha256"]
        updated = await client.update(options)
        assert updated == created and path.read_text() == "hi"
        path.unlink()  # removed by hand: Read says it does not exist
        assert await client.read(options) is None
        await client.create(options)
        assert await client.delete(options) is True
        assert not path.exists()
        assert await client.delete(options) is False


async def test_bad_options_are_refused_before_touching_disk(tmp_path: Path) -> None:
    async with serve_in_process(LocalFile()) as client:
        errors = await client.validate({"path": str(tmp_path) + "/", "mode": "999", "colour": 1})
        assert any("colour" in e for e in errors)
        assert any(e.startswith("mode:") for e in errors)
        assert any("names a directory" in e for e in errors)
        with pytest.raises(InvalidOptions, match="required property"):
            await client.create({"content": "x"})
    assert list(tmp_path.iterdir()) == []
