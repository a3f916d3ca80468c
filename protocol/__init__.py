"""footfall's wire protocol: every rule both sides keep, in one place.

Records and their bounds (`records`), the v1 batch envelope (`envelope`), Ed25519 request
signing (`signing`), the ingest checks in their order (`ingest`), the answers and what an agent
does with each (`answers`), the fleet messages (`fleet`), strict JSON (`strict_json`), ISO 4217
(`currencies`) and the error tree (`errors`). Pure code: no I/O, no event loop, no imports of
the agent or the collector. Both sides import it, and `vectors/` pins its bytes for other
implementations (built by `./scripts/vectors`). SPEC.md is the normative description.
"""
