"""Registry answers read safely: bodies capped, OCI error bodies parsed, statuses mapped to errors.

Every body read here is capped (an error body at :data:`MAX_ERROR_BODY`), so a hostile server
cannot make tank hold more than that; the connection is given back to the pool only when the body
was read to its end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from tank import _json
from tank.errors import AuthError, NotFound, RegistryError, RegistryErrorDetail
from tank.retry import parse_retry_after
from tank.transport import discard, release
from tank.transport.deadline import read_small

if TYPE_CHECKING:
    from urllib3 import BaseHTTPResponse

#: an error body is read up to this many bytes
MAX_ERROR_BODY: Final = 64 * 1024


def read_capped(response: BaseHTTPResponse, cap: int) -> tuple[bytes, bool]:
    """Up to ``cap`` bytes of the body, and whether that was all of it (connection released)."""
    try:
        data = read_small(response, cap + 1)
    except Exception:
        discard(response)
        return b"", False
    if len(data) > cap:
        discard(response)
        return data[:cap], False
    release(response)
    return data, True


def error_details(body: bytes) -> tuple[RegistryErrorDetail, ...]:
    """The entries of an OCI error body (``{"errors": [{"code", "message", "detail"}]}``), at
    most 20, their texts cut short; ``()`` for anything else."""
    try:
        doc = _json.loads(body)
    except ValueError:
        return ()
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not isinstance(errors, list):
        return ()
    out = []
    for entry in errors[:20]:
        if isinstance(entry, dict):
            code = str(entry.get("code", "UNKNOWN"))[:200]
            message = str(entry.get("message", ""))[:500]
            out.append(RegistryErrorDetail(code, message, entry.get("detail")))
    return tuple(out)


def raise_for_status(
    response: BaseHTTPResponse,
    *,
    what: str,
    registry: str | None,
    repository: str | None,
    reference: str | None,
) -> None:
    """Raise the error that fits a non-2xx answer (its body read, capped, and released)."""
    raise_status(
        response, not_found=f"{what} not found", denied=f"access to the {what} denied",
        failed=f"fetching the {what} failed", rate_limited=True,
        registry=registry, repository=repository, reference=reference,
    )


def raise_status(
    response: BaseHTTPResponse, *, not_found: str, denied: str, failed: str,
    rate_limited: bool = False, **place: Any,
) -> None:
    """Raise the error a non-2xx answer means: :class:`~tank.errors.NotFound` (404) saying
    ``not_found``, :class:`~tank.errors.AuthError` (401, 403) saying ``denied``, else
    :class:`~tank.errors.RegistryError` saying ``failed`` and the body's text when it holds no
    registry errors; ``place`` (``registry``, ``repository``, ``reference``) goes to the error.
    The body is read, capped, and released. With ``rate_limited`` a 429 also says what the
    rate-limit headers do."""
    status = response.status
    if 200 <= status < 300:
        return
    body, _ = read_capped(response, MAX_ERROR_BODY)
    errors = error_details(body)
    kwargs: dict[str, Any] = {
        **place, "status": status, "errors": errors,
        "retry_after": parse_retry_after(response.headers.get("Retry-After")),
    }
    if status == 404:
        raise NotFound(not_found, **kwargs)
    if status in (401, 403):
        raise AuthError(denied, **kwargs)
    text = "" if errors else body[:200].decode("utf-8", "replace").strip()
    if status == 429 and rate_limited:  # Docker Hub's pull rate limit: how much is left, and
        text = _rate_limit_hint(response, text)  # how to get more
    raise RegistryError(failed + (f": {text}" if text else ""), **kwargs)


def _rate_limit_hint(response: BaseHTTPResponse, text: str) -> str:
    """``text`` plus what ``ratelimit-limit``/``ratelimit-remaining`` say, and a hint to log in.

    Docker Hub sends ``ratelimit-limit: 100;w=21600`` (pulls per window of seconds) and
    ``ratelimit-remaining: 0;w=21600``; anonymous pulls get the lowest limit.
    """
    limit = response.headers.get("ratelimit-limit")
    remaining = response.headers.get("ratelimit-remaining")
    if limit is None and remaining is None:
        return text

    def pulls(value: str | None) -> str:
        count, _, window = (value or "?").partition(";w=")
        return f"{count.strip()[:20]} per {window.strip()[:20]} s" if window else count[:20]

    parts = [f"rate limit {pulls(limit)}"] if limit is not None else []
    if remaining is not None:
        parts.append(f"{remaining.partition(';')[0].strip()[:20]} left")
    source = response.headers.get("docker-ratelimit-source")
    if source:
        parts.append(f"counted against {source.strip()[:64]}")
    hint = (
        f"too many pulls ({', '.join(parts)}); anonymous pulls have the lowest limit: log in "
        "with `tank login docker.io` (or docker login) to raise it, or wait"
    )
    return f"{text}; {hint}" if text else hint


__all__ = ["MAX_ERROR_BODY", "error_details", "raise_for_status", "raise_status", "read_capped"]
