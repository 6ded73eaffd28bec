"""The master's public key in a login user's authorized_keys: added once, everything
else kept byte for byte (pure; add.py reads and writes the file)."""

from __future__ import annotations

import base64
import binascii

KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
             "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com",
             "sk-ecdsa-sha2-nistp256@openssh.com")


def parse_public_key(text: str) -> tuple[str, str]:
    """(type, base64 body) of an OpenSSH public key line; ValueError if it is not one."""
    words = text.strip().split()
    if len(words) < 2 or words[0] not in KEY_TYPES:
        raise ValueError("not an OpenSSH public key (expected a line like "
                         "'ssh-ed25519 AAAA... comment')")
    try:
        base64.b64decode(words[1], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("the key's base64 body is damaged") from exc
    return words[0], words[1]


def with_key(existing: bytes, key: str) -> bytes | None:
    """``existing`` authorized_keys with ``key`` appended; None if a line already
    authorizes that key (whatever its options or comment)."""
    kind, body = parse_public_key(key)
    for line in existing.decode("utf-8", "replace").splitlines():
        words = line.split()
        if body in words and kind in words:
            return None
    prefix = existing if not existing or existing.endswith(b"\n") else existing + b"\n"
    return prefix + key.strip().encode() + b"\n"
