"""The protocol's exception tree: every way a request can be refused, with the answer code it maps to."""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of every protocol error; `code` is a stable machine-readable reason, `status` the HTTP answer."""

    status = 400
    code = "protocol_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        """The human-readable reason."""
        return str(self.args[0]) if self.args else self.code


class MalformedBatch(ProtocolError):
    """The body is not a valid v1 batch (bad compression, msgpack, shape or seq range)."""

    status = 400
    code = "malformed_batch"


class BatchTooLarge(ProtocolError):
    """The body, or what it decompresses to, is over the limit: the sender splits the batch."""

    status = 413
    code = "batch_too_large"


class UnsupportedMediaType(ProtocolError):
    """The body is not in the format the endpoint takes (its Content-Type says so)."""

    status = 415
    code = "unsupported_media_type"


class AuthError(ProtocolError):
    """The request cannot be attributed to a live agent: answered 401."""

    status = 401
    code = "unauthorized"


class BadSignature(AuthError):
    """The signature does not verify against the agent's public key."""

    code = "bad_signature"


class StaleTimestamp(AuthError):
    """The request timestamp is outside the accepted window (a replay, or a wrong clock)."""

    code = "timestamp_out_of_window"


class MissingAuth(AuthError):
    """A signing header is absent or unreadable."""

    code = "missing_signature"
