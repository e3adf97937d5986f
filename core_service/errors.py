"""Errors the core raises, one tree; plugin call failures keep plugin_sdk's tree.

    DtmError
    ├── ConfigError                 a config file is wrong (file, line, what, fix)
    ├── StateError                  the state store failed or is inconsistent
    │   └── LockHeld                another apply holds the state lock
    └── PluginHostError             finding, starting or keeping a plugin process
        ├── PluginNotFound          no manifest or entry point has that name
        ├── ManifestError           a plugin.yaml is wrong
        ├── PluginStartError        the process did not become a usable plugin
        │   ├── HandshakeError      garbage or a malformed handshake line, a bad cookie
        │   ├── IncompatibleVersion no protocol version both sides speak
        │   ├── PluginExitedEarly   it exited before its handshake (carries stderr's tail)
        │   └── HandshakeTimeout    no handshake within the start timeout
        ├── PluginCrashed           it died during a call (retriable: the next call restarts it)
        └── PluginGaveUp            it crashed more often than the restart budget allows

plugin_sdk.PluginError and its subclasses come back from calls that reached the plugin.
"""

from __future__ import annotations


class DtmError(Exception):
    """Root of the core's errors; `str()` is meant for a person."""

    retriable = False


class ConfigError(DtmError):
    pass


class StateError(DtmError):
    pass


class LockHeld(StateError):
    pass


class PluginHostError(DtmError):
    def __init__(self, message: str, *, plugin: str = "", stderr_tail: str = "") -> None:
        super().__init__(message)
        self.plugin = plugin
        self.stderr_tail = stderr_tail

    def __str__(self) -> str:
        text = super().__str__()
        if self.stderr_tail:
            text += "\n--- last lines of its stderr ---\n" + self.stderr_tail
        return text


class PluginNotFound(PluginHostError):
    pass


class ManifestError(PluginHostError):
    pass


class PluginStartError(PluginHostError):
    pass


class HandshakeError(PluginStartError):
    pass


class IncompatibleVersion(PluginStartError):
    pass


class PluginExitedEarly(PluginStartError):
    pass


class HandshakeTimeout(PluginStartError):
    pass


class PluginCrashed(PluginHostError):
    retriable = True


class PluginGaveUp(PluginHostError):
    pass
