"""Transports: how bytes arrive from devices. No device knowledge here; adapters decode (decode/)."""
