"""The batch envelope v1: records framed as one msgpack map, zlib-compressed.

Pure functions, no I/O: the agent's uploader and the collector's ingest both call
these, and `vectors/` pins their exact bytes (see SPEC.md).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from .errors import BatchTooLarge, MalformedBatch
from .records import Record, from_wire, to_wire

VERSION = 1
CONTENT_TYPE = "application/vnd.footfall.batch.v1"
# Limits every implementation must respect; the collector answers 413 above them.
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
MAX_RECORDS = 20_000
# Level 6 is zlib's default: within a few percent of 9 at a third of the CPU on a gateway.
COMPRESSION_LEVEL = 6
_ENVELOPE_KEYS = ("v", "agent", "seq_first", "seq_last", "sent_at_ms", "records")


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
    """The inverse of `pack_record`."""
    return from_wire(msgpack.unpackb(data, raw=False))


def encode_body(batch: Batch) -> bytes:
    """The request body: the compressed payload."""
    return zlib.compress(encode_payload(batch), COMPRESSION_LEVEL)


def decode_body(body: bytes) -> Batch:
    """Decompress, parse and validate a request body; raises MalformedBatch or BatchTooLarge with the reason."""
    if len(body) > MAX_BODY_BYTES:
        raise BatchTooLarge(f"body is {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
    payload = _decompress(body)
    try:
        obj = msgpack.unpackb(payload, raw=False, strict_map_key=True, max_array_len=MAX_RECORDS)
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError, TypeError) as exc:
        raise MalformedBatch(f"payload is not valid msgpack: {exc}") from None
    return _parse_envelope(obj)


def _decompress(body: bytes) -> bytes:
    decompressor = zlib.decompressobj()
    try:
        payload = decompressor.decompress(body, MAX_PAYLOAD_BYTES)
    except zlib.error as exc:
        raise MalformedBatch(f"body is not zlib-compressed: {exc}") from None
    if decompressor.unconsumed_tail:
        raise BatchTooLarge(f"payload decompresses to more than {MAX_PAYLOAD_BYTES} bytes")
    if not decompressor.eof:
        raise MalformedBatch("body is a truncated zlib stream")
    if decompressor.unused_data:
        raise MalformedBatch("body has bytes after the end of the zlib stream")
    return payload


def _parse_envelope(obj: Any) -> Batch:
    if not isinstance(obj, dict):
        raise MalformedBatch("payload must be a msgpack map")
    missing = [k for k in _ENVELOPE_KEYS if k not in obj]
    if missing:
        raise MalformedBatch(f"envelope is missing {missing}")
    extra = sorted(set(obj) - set(_ENVELOPE_KEYS))
    if extra:
        raise MalformedBatch(f"envelope has unknown keys {extra}")
    if obj["v"] != VERSION:
        raise MalformedBatch(f"envelope version {obj['v']!r} is not supported; this collector speaks v{VERSION}")
    agent, first, last, sent, raw_records = (obj[k] for k in _ENVELOPE_KEYS[1:])
    if not isinstance(agent, str) or not agent:
        raise MalformedBatch("envelope.agent must be a non-empty string")
    for name, value in (("seq_first", first), ("seq_last", last), ("sent_at_ms", sent)):
        if type(value) is not int:
            raise MalformedBatch(f"envelope.{name} must be an integer")
    if not 1 <= first <= last:
        raise MalformedBatch(f"seq range {first}..{last} is invalid; need 1 <= seq_first <= seq_last")
    if not isinstance(raw_records, list) or not raw_records:
        raise MalformedBatch("envelope.records must be a non-empty array")
    records = tuple(from_wire(r) for r in raw_records)
    _check_seq_range(records, first, last)
    return Batch(agent, first, last, sent, records)


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
