"""footfall's wire protocol: records, the v1 batch envelope and Ed25519 request signing.

Pure code: no I/O, no event loop, no imports of the agent or the collector. Both sides
import it, and `vectors/` pins its bytes for other implementations. SPEC.md is the
normative description.
"""
