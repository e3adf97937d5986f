"""gitextractor: a git repository's commits, files and refs into the domain layer, via git."""

from plugins.gitextractor.plugin import GitExtractor

__all__ = ["GitExtractor"]
