"""icla: the committers of the Apache ICLA list, DevLake's tutorial plugin."""

from plugins.icla.plugin import Icla

__all__ = ["Icla"]
