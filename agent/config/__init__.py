"""The agent's configuration, `agent.toml`: what it may say, and how a file is read and checked.

`sections.py` declares every section and key (with its kind, default and doc); `transports.py`
registers each transport with the options its sources take; `reader.py` reads any declared
dataclass from a TOML table, collecting every problem with its full key; `load.py` reads a
whole file, checks what spans sections (unique names, routes and ports; adapters that exist)
and raises `ConfigError` listing everything wrong at once. agent/CONFIG.md documents each key.
"""
