"""Passwords out of sight: masked in every URL and text perfsuite prints or stores.

Two nets: URL shapes (``//user:pw@``, ``//:pw@``, ``?password=pw``) are masked
wherever they appear, and the passwords perfsuite itself made or was given
(:func:`register`) are masked as plain strings too, since a library may quote
them in an error message without any URL around them.
"""

from __future__ import annotations

import re
import threading

__all__ = ["MASK", "redact", "register"]

MASK = "***"
_URL_PASSWORD = re.compile(r"(//[^:/@\s]*):[^@\s/]*@")
_QUERY_PASSWORD = re.compile(r"([?&;](?:password|passwd|pwd|pass)=)[^&;#\s]*", re.IGNORECASE)
_known: set[str] = set()
_lock = threading.Lock()


def register(secret: str) -> None:
    """Mask ``secret`` wherever :func:`redact` sees it from now on.

    Secrets shorter than 4 characters are not masked as plain strings (an
    empty or one-letter password would mask every such letter in the text);
    the URL shapes still hide them.
    """
    if len(secret) >= 4:
        with _lock:
            _known.add(secret)


def redact(text: str) -> str:
    """``text`` with every password in it replaced by ``***``."""
    text = _URL_PASSWORD.sub(rf"\1:{MASK}@", text)
    text = _QUERY_PASSWORD.sub(rf"\1{MASK}", text)
    with _lock:
        known = sorted(_known, key=len, reverse=True)  # a longer secret may contain a shorter
    for secret in known:
        text = text.replace(secret, MASK)
    return text
