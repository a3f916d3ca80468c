"""footfall's shipped adapter profiles: one folder per device family (profile.toml, README.md, cases/).

A data package, not code: it installs as `footfall.firmware_adapters` so the agent finds the
profiles with importlib.resources, from a checkout or a wheel. README.md here describes the
profile format.
"""
