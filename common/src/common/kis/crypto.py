"""AES-256-CBC of the execution-notice frames (kis-api.md §5.4, §5.8).

The key is the 32-character ASCII ``key`` and the IV the 16-character ``iv`` of the
H0STCNI0/H0STCNI9 subscription ack; the payload is base64 of the PKCS#7-padded UTF-8 text.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


class NoticeDecryptError(ValueError):
    """The payload is not valid base64/AES-CBC/PKCS#7 for this key and IV."""


def _cipher(key: str, iv: str) -> Cipher[modes.CBC]:
    key_bytes, iv_bytes = key.encode(), iv.encode()
    if len(key_bytes) != 32 or len(iv_bytes) != 16:
        raise NoticeDecryptError("AES key must be 32 bytes and iv 16 bytes")
    return Cipher(algorithms.AES(key_bytes), modes.CBC(iv_bytes))


def aes_cbc_base64_decrypt(key: str, iv: str, payload: str) -> str:
    """Decrypt one notice payload to its ``^``-separated text."""
    try:
        data = base64.b64decode(payload, validate=True)
        decryptor = _cipher(key, iv).decryptor()
        padded = decryptor.update(data) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        return (unpadder.update(padded) + unpadder.finalize()).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise NoticeDecryptError(f"cannot decrypt notice payload: {type(exc).__name__}") from exc


def aes_cbc_base64_encrypt(key: str, iv: str, text: str) -> str:
    """The inverse of :func:`aes_cbc_base64_decrypt` (what the server does)."""
    padder = padding.PKCS7(128).padder()
    padded = padder.update(text.encode("utf-8")) + padder.finalize()
    encryptor = _cipher(key, iv).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode("ascii")
