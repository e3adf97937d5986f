"""Encryption of secrets at rest: a Fernet key from the environment or a private key file."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

from core_service.errors import StateError

ENV_KEY = "DTM_SECRET_KEY"
ENV_KEY_FILE = "DTM_SECRET_KEY_FILE"


def default_key_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "dtm" / "secret.key"


class SecretBox:
    """Encrypts and decrypts small JSON documents; also gives keyed digests.

    The key comes from $DTM_SECRET_KEY (a Fernet key), or from a key file
    ($DTM_SECRET_KEY_FILE, default ~/.config/dtm/secret.key) that is generated on
    first use with mode 0600. A key file readable by others is refused.
    """

    def __init__(self, key: bytes | None = None, key_file: Path | None = None) -> None:
        from cryptography.fernet import Fernet

        self._key = key or self._load_key(key_file)
        try:
            self._fernet = Fernet(self._key)
        except ValueError as exc:
            raise StateError(
                f"the secret key is not a valid Fernet key (32 url-safe base64 bytes): {exc}. "
                "Make one with `python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`"
            ) from exc

    @staticmethod
    def _load_key(key_file: Path | None) -> bytes:
        env = os.environ.get(ENV_KEY)
        if env:
            return env.strip().encode()
        path = key_file or Path(os.environ.get(ENV_KEY_FILE) or default_key_file())
        if path.exists():
            mode = path.stat().st_mode & 0o777
            if mode & 0o077:
                raise StateError(
                    f"the secret key file {path} is readable by others (mode {mode:04o}); "
                    f"run `chmod 600 {path}`"
                )
            return path.read_bytes().strip()
        from cryptography.fernet import Fernet

        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = Fernet.generate_key()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        return key

    def encrypt(self, value: Any) -> str:
        if not value:
            return ""
        return self._fernet.encrypt(json.dumps(value, sort_keys=True).encode()).decode()

    def decrypt(self, token: str) -> Any:
        if not token:
            return {}
        from cryptography.fernet import InvalidToken

        try:
            return json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken as exc:
            raise StateError(
                "cannot decrypt secrets stored in the state: the secret key changed. Use the "
                f"key the state was written with (${ENV_KEY} or the key file)"
            ) from exc

    def digest(self, text: str) -> str:
        """A keyed digest: compares secret-bearing options without storing them."""
        mac = hmac.new(base64.urlsafe_b64decode(self._key), text.encode(), hashlib.sha256)
        return mac.hexdigest()
