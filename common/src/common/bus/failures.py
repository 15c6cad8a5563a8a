"""What both adapters say about a message they could not process."""

from __future__ import annotations

from pydantic import ValidationError

MAX_REASON_CHARS = 1000


def describe_failure(exc: BaseException) -> str:
    """A short, stable reason for a dead letter: the exception type and its message."""
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False, include_input=False)
        parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5]]
        text = f"invalid message: {'; '.join(parts)}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return text[:MAX_REASON_CHARS]
