"""The batch envelope v1: records framed as one msgpack map, zlib-compressed.

Pure functions, no I/O: the agent's uploader and the collector's ingest both call
these, and `vectors/` pins their exact bytes (see SPEC.md).

Decoding is bounded in every dimension, because a small body can describe a great deal: zlib
expands a thousandfold, and one msgpack byte is one Python object. So the payload is inflated
a chunk at a time as the decoder asks for it (never past MAX_PAYLOAD_BYTES), and the decoder
walks the one shape a batch has (a map, its `records` array, one flat map of scalars per
record), reading the first two through their headers. Anything else is refused as soon as it
shows: an array at its header (none belongs below the records array), a map inside a record
when it completes, before anything holding it is built. Strings are bounded by the longest
text a record may carry; binaries and extensions do not occur. The work and memory of a
refusal are therefore a few chunks, and those of a valid batch are bounded by MAX_RECORDS
flat records.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import msgpack

from .errors import BatchTooLarge, MalformedBatch
from .records import MAX_RAW_CHARS, RECORD_TYPES, Record, from_storage, from_wire, record_time_ms, to_wire

VERSION = 1
CONTENT_TYPE = "application/vnd.footfall.batch.v1"
# Limits every implementation must respect; the collector answers 413 above them.
MAX_BODY_BYTES = 8 * 1024 * 1024
# An agent packs at most 8 MiB of records per batch (agent.toml [upload] max_bytes), or one record over it.
MAX_PAYLOAD_BYTES = 16 * 1024 * 1024
MAX_RECORDS = 20_000
# The records of one batch fall in at most this many calendar months (UTC): each new month makes
# the collector create partitions, which locks their tables against every other upload meanwhile.
MAX_MONTHS = 6
# Level 6 is zlib's default: within a few percent of 9 at a third of the CPU on a gateway.
COMPRESSION_LEVEL = 6
_ENVELOPE_KEYS = ("v", "agent", "seq_first", "seq_last", "sent_at_ms", "records")
# The decoder's bounds: the longest string is the longest text a record may carry, in UTF-8; a
# record map has at most its type's fields and `type`.
_MAX_STR_BYTES = 4 * MAX_RAW_CHARS
_MAX_RECORD_KEYS = max(len(fields(cls)) for cls in RECORD_TYPES.values()) + 1
_INFLATE_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Batch:
    """A run of an agent's records, oldest first, covering seq_first..seq_last."""

    agent: str
    seq_first: int
    seq_last: int
    sent_at_ms: int
    records: tuple[Record, ...]


def make_batch(agent: str, records: Sequence[Record], sent_at_ms: int) -> Batch:
    """A batch whose seq range is exactly that of `records` (which must be in seq order)."""
    if not records:
        raise ValueError("a batch needs at least one record")
    return Batch(agent, records[0].seq, records[-1].seq, sent_at_ms, tuple(records))


def encode_payload(batch: Batch) -> bytes:
    """The uncompressed msgpack payload of a batch (deterministic: fixed key order)."""
    envelope = {
        "v": VERSION,
        "agent": batch.agent,
        "seq_first": batch.seq_first,
        "seq_last": batch.seq_last,
        "sent_at_ms": batch.sent_at_ms,
        "records": [to_wire(r) for r in batch.records],
    }
    return msgpack.packb(envelope, use_bin_type=True)


def encode_packed_records(agent: str, packed: Sequence[bytes], seq_first: int, seq_last: int, sent_at_ms: int) -> bytes:
    """The request body for records already packed one by one (the agent's buffer stores them packed).

    Splicing the stored bytes avoids decoding and re-encoding every record on upload;
    the result is byte-for-byte what `encode_body` gives for the same records.
    """
    packer = msgpack.Packer(use_bin_type=True)
    parts = [packer.pack_map_header(len(_ENVELOPE_KEYS))]
    for key, value in zip(_ENVELOPE_KEYS[:-1], (VERSION, agent, seq_first, seq_last, sent_at_ms), strict=True):
        parts += [packer.pack(key), packer.pack(value)]
    parts += [packer.pack("records"), packer.pack_array_header(len(packed)), *packed]
    return zlib.compress(b"".join(parts), COMPRESSION_LEVEL)


def pack_record(record: Record, *, seq: int | None = None) -> bytes:
    """One record as msgpack bytes, the form the agent's buffer stores; `seq` given replaces the record's."""
    wire = to_wire(record)
    if seq is not None:
        wire["seq"] = seq
    return msgpack.packb(wire, use_bin_type=True)


def unpack_record(data: bytes) -> Record:
    """The inverse of `pack_record`, for the agent's own store: types checked, bounds not (`records.from_storage`)."""
    return from_storage(msgpack.unpackb(data, raw=False))


def encode_body(batch: Batch) -> bytes:
    """The request body: the compressed payload."""
    return zlib.compress(encode_payload(batch), COMPRESSION_LEVEL)


def decode_body(body: bytes, *, now_ms: int | None = None) -> Batch:
    """Decompress, parse and validate a request body; raises MalformedBatch or BatchTooLarge with the reason.

    `now_ms`, the reader's clock, also refuses record times more than `records.MAX_FUTURE_MS` ahead of it.
    """
    if len(body) > MAX_BODY_BYTES:
        raise BatchTooLarge(f"body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
    payload = _Inflater(body)
    unpacker = msgpack.Unpacker(
        payload,
        read_size=_INFLATE_CHUNK,
        raw=False,
        strict_map_key=True,
        max_buffer_size=max(_MAX_STR_BYTES, _INFLATE_CHUNK) * 2,
        max_str_len=_MAX_STR_BYTES,
        max_bin_len=0,
        max_ext_len=0,
        # The envelope and its records array are read by `_Reader` through their headers; `unpack`
        # meets nothing but a record (a map of scalars: `_flat`) or a scalar.
        max_array_len=0,
        max_map_len=_MAX_RECORD_KEYS,
        object_pairs_hook=_flat,
    )
    reader = _Reader(unpacker, now_ms)
    try:
        batch = reader.envelope()
        if unpacker.tell() != payload.produced or payload.read(1):
            raise MalformedBatch("payload has bytes after the envelope")
    except msgpack.OutOfData:
        raise MalformedBatch("payload is not a valid batch: it ends inside the envelope") from None
    except msgpack.BufferFull:
        # Only a string can outgrow the decoder's buffer, before its length is even checked.
        raise MalformedBatch(
            f"payload is not a valid batch: a string is over {_MAX_STR_BYTES} bytes, longer than any text a "
            f"record may carry ({MAX_RAW_CHARS} characters)"
        ) from None
    except (msgpack.UnpackException, ValueError) as exc:
        # A value over a bound, or a container where a scalar belongs (max_array_len 0, `_flat`).
        raise MalformedBatch(f"payload is not a valid batch: {exc}") from None
    payload.finish()
    return batch


class _Inflater:
    """A zlib stream read as a file, inflated only as far as it is read and never past MAX_PAYLOAD_BYTES."""

    def __init__(self, body: bytes) -> None:
        self._zlib = zlib.decompressobj()
        self._input = body
        self.produced = 0

    def read(self, size: int = _INFLATE_CHUNK) -> bytes:
        """Up to `size` more bytes of the payload (b"" at its end)."""
        if self._zlib.eof:
            return b""
        try:
            out = self._zlib.decompress(self._input, size)
        except zlib.error as exc:
            raise MalformedBatch(f"body is not zlib-compressed: {exc}") from None
        self._input = self._zlib.unconsumed_tail
        self.produced += len(out)
        if self.produced > MAX_PAYLOAD_BYTES:
            raise BatchTooLarge(f"payload decompresses to more than {MAX_PAYLOAD_BYTES} bytes")
        if not out and not self._zlib.eof:
            raise MalformedBatch("body is a truncated zlib stream")
        return out

    def finish(self) -> None:
        """Refuse a stream that is not over, or that has bytes after its end."""
        if not self._zlib.eof:
            raise MalformedBatch("body is a truncated zlib stream")
        if self._zlib.unused_data:
            raise MalformedBatch("body has bytes after the end of the zlib stream")


class _Nested(ValueError):
    """A map holding a container, or a key twice: no record has one."""


def _flat(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """msgpack's hook for every map it completes, innermost first: a map holding a container is refused
    as soon as it is complete, before anything holding it is built; so is a key that appears twice."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Nested("a record has a key twice")
    for value in obj.values():
        if type(value) in (dict, list):
            raise _Nested("a record's fields are scalars, not arrays or maps")
    return obj


class _Reader:
    """Walks a batch's shape: the envelope and the records array through their headers, then each record."""

    def __init__(self, unpacker: msgpack.Unpacker, now_ms: int | None) -> None:
        self._unpacker = unpacker
        self._now_ms = now_ms

    def envelope(self) -> Batch:
        """The batch, validated (section 3)."""
        size = self._header(self._unpacker.read_map_header, "payload must be a msgpack map")
        obj: dict[str, Any] = {}
        for _ in range(size):
            key = self._key("envelope", obj)
            if key not in _ENVELOPE_KEYS:
                raise MalformedBatch(f"envelope has unknown keys [{key!r:.60}]")
            obj[key] = self._records() if key == "records" else self._unpacker.unpack()
        missing = [k for k in _ENVELOPE_KEYS if k not in obj]
        if missing:
            raise MalformedBatch(f"envelope is missing {missing}")
        return _parse_envelope(obj, self._now_ms)

    def _records(self) -> list[dict[str, Any]]:
        """The records as flat maps of scalars (checked as records once the envelope is)."""
        count = self._header(self._unpacker.read_array_header, "envelope.records must be a non-empty array")
        if count > MAX_RECORDS:
            raise BatchTooLarge(f"batch has {count} records; the limit is {MAX_RECORDS}")
        records = []
        for index in range(count):
            try:
                record = self._unpacker.unpack()
            except _Nested as exc:
                raise MalformedBatch(f"record {index}: {exc}") from None
            except ValueError as exc:
                # Over a bound: a string too long, a map too wide, or any array (none belongs in a record).
                raise MalformedBatch(f"record {index}: {exc}; a record is one map of scalars") from None
            if not isinstance(record, dict):
                raise MalformedBatch(f"record {index}: a record must be a map, got {type(record).__name__}")
            records.append(record)
        return records

    def _key(self, where: str, seen: dict[str, Any]) -> str:
        key = self._unpacker.unpack()
        if not isinstance(key, str):
            raise MalformedBatch(f"{where} has a key that is not a string: {key!r:.60}")
        if key in seen:
            raise MalformedBatch(f"{where} has the key {key!r:.60} twice")
        return key

    @staticmethod
    def _header(read: Any, expected: str) -> int:
        """A container header; MalformedBatch(`expected`) when the next object is something else."""
        try:
            return int(read())
        except msgpack.OutOfData:
            raise
        except ValueError:
            raise MalformedBatch(expected) from None


def _parse_envelope(obj: dict[str, Any], now_ms: int | None) -> Batch:
    if obj["v"] != VERSION:
        raise MalformedBatch(f"envelope version {obj['v']!r:.60} is not supported; this collector speaks v{VERSION}")
    agent, first, last, sent, raw_records = (obj[k] for k in _ENVELOPE_KEYS[1:])
    if not isinstance(agent, str) or not agent or len(agent) > 128 or not agent.isprintable():
        raise MalformedBatch("envelope.agent must be 1-128 printable characters")
    for name, value in (("seq_first", first), ("seq_last", last), ("sent_at_ms", sent)):
        if type(value) is not int:
            raise MalformedBatch(f"envelope.{name} must be an integer")
    if not 1 <= first <= last:
        raise MalformedBatch(f"seq range {first}..{last} is invalid; need 1 <= seq_first <= seq_last")
    if not raw_records:
        raise MalformedBatch("envelope.records must be a non-empty array")
    records = tuple(_record(index, raw, now_ms) for index, raw in enumerate(raw_records))
    _check_seq_range(records, first, last)
    _check_months(records)
    return Batch(agent, first, last, sent, records)


def _record(index: int, obj: dict[str, Any], now_ms: int | None) -> Record:
    try:
        return from_wire(obj, now_ms=now_ms)
    except MalformedBatch as exc:
        raise MalformedBatch(f"record {index}: {exc.message}") from None


def _check_months(records: tuple[Record, ...]) -> None:
    """At most MAX_MONTHS distinct UTC months (each may need partitions made); BatchTooLarge otherwise."""
    months: set[int] = set()
    for record in records:
        when = datetime.fromtimestamp(record_time_ms(record) / 1000, UTC)
        months.add(when.year * 12 + when.month)
        if len(months) > MAX_MONTHS:
            raise BatchTooLarge(
                f"the batch's records fall in more than {MAX_MONTHS} calendar months; the limit is {MAX_MONTHS}: "
                "split the batch"
            )


def _check_seq_range(records: tuple[Record, ...], first: int, last: int) -> None:
    """The envelope's range must be exactly the records' range, strictly increasing."""
    if records[0].seq != first or records[-1].seq != last:
        raise MalformedBatch(
            f"envelope claims seq {first}..{last} but its records run {records[0].seq}..{records[-1].seq}"
        )
    previous = 0
    for record in records:
        if record.seq <= previous:
            raise MalformedBatch(f"record seq {record.seq} does not increase after {previous}")
        previous = record.seq
