"""github: a GitHub repository's issues, pull requests, commits and Actions runs, as data."""

from plugins.github.plugin import Github

__all__ = ["Github"]
