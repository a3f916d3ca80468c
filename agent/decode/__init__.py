"""Decoding: a device's frame becomes readings (per its adapter profile), then records (counter arithmetic).

A leaf of the agent: it imports no transport, buffer or pipeline. `profile.py` declares what an
adapter profile of `firmware-adapters/` is, `profile_load.py` reads one from its file (with
`profile_fields.py` for its paths); `framing.py` cuts a byte stream into frames; `formats/`
holds one extractor per wire format; `extract.py` applies a profile to a frame, reading each
field by `fields.py` and `times.py` and raising `errors.DecodeError` when it does not fit;
`signature.py` checks signed webhooks; `counters.py` turns readings into records inside the
buffer's transaction.
"""
