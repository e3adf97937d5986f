"""localfile: a file on disk as a resource; the smallest reference plugin."""

from plugins.localfile.plugin import LocalFile

__all__ = ["LocalFile"]
