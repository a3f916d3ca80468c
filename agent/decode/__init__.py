"""Decoding: a device's frame becomes readings (per its adapter profile), then records (counter arithmetic).

`profile.py` loads the declarative profiles of `firmware-adapters/`; `extract.py` applies one
to a frame; `counters.py` turns readings into records inside the buffer's transaction.
"""
