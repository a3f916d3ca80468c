"""The collector's exception tree.

`ApiError` and its subclasses are answers: the one error middleware in `app.py` turns each into
`{"error": code, "message": text}` with its HTTP status. `CollectorError` and its subclasses are
operator problems (a cluster that will not start, a config file, a schema ahead of this code):
the CLI prints them and exits non-zero.
"""

from __future__ import annotations


class ApiError(Exception):
    """An HTTP answer other than success: `status`, a stable machine-readable `code` and a human `message`."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.headers = headers or {}

    @property
    def message(self) -> str:
        """The human-readable reason."""
        return str(self.args[0])


class BadRequest(ApiError):
    """The request is malformed; retrying it unchanged will fail again."""


class Unauthorized(ApiError):
    """No credential, or one that is unknown, revoked or expired."""

    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    """A valid credential whose role does not allow this."""

    status = 403
    code = "forbidden"


class NotFound(ApiError):
    """Nothing here, or nothing this credential may see (the two are indistinguishable on purpose)."""

    status = 404
    code = "not_found"


class Conflict(ApiError):
    """The request clashes with what exists (an already-enrolled public key)."""

    status = 409
    code = "conflict"


class UnsupportedMediaType(ApiError):
    """The body is not in the format this endpoint takes."""

    status = 415
    code = "unsupported_media_type"


class Unavailable(ApiError):
    """The database is unreachable or restarting: retryable, answered with Retry-After."""

    status = 503
    code = "unavailable"


class CollectorError(Exception):
    """An operator-facing problem: the message says what is wrong and what to do."""


class ClusterError(CollectorError):
    """The embedded PostgreSQL cluster cannot be created, started or stopped."""


class MigrationError(CollectorError):
    """The database schema cannot be brought to this collector's version."""


class AdminError(CollectorError):
    """An administrative request that cannot be done as asked (unknown organization, bad zone, ...)."""
