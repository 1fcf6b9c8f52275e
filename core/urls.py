"""URLs as they may be shown: in errors, logs, model observations and results files."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def public_url(url: str | None) -> str:
    """``url`` without userinfo, query string or fragment (where tokens and keys hide).

    >>> public_url("https://user:s3cret@judge.example:8443/v1/chat?api_key=abc#x")
    'https://judge.example:8443/v1/chat'
    >>> public_url("http://127.0.0.1:8000")
    'http://127.0.0.1:8000'
    >>> public_url(None)
    ''
    """
    if not url:
        return ""
    try:
        parts = urlsplit(str(url))
        host = parts.hostname or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return "<unparseable URL>"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def has_credentials(url: str) -> bool:
    """Whether a URL carries userinfo or a query string (where keys hide).

    >>> has_credentials("http://u:p@h/"), has_credentials("http://h/?key=1"), has_credentials("http://Host:8/v1")
    (True, True, False)
    """
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return False
    return bool(parts.username or parts.password or parts.query)
