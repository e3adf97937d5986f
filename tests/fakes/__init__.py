"""Fake upstream APIs (GitHub, GitLab): real aiohttp.web servers on 127.0.0.1, port 0."""

from tests.fakes._git import blob_sha
from tests.fakes._server import RecordedRequest
from tests.fakes.github import FakeGitHub
from tests.fakes.gitlab import FakeGitLab

__all__ = ["FakeGitHub", "FakeGitLab", "RecordedRequest", "blob_sha"]
