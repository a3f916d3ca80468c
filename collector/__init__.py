"""The footfall collector: verifies signed uploads, stores them in PostgreSQL with exact rollups, serves the API.

Read it in the order the data flows: `ingest.py` (verify and dedupe) -> `store.py` (partitions, COPY,
rollups) -> `api/` (analysts and fleet admin). `app.py` wires them into one aiohttp application;
`embedded_pg.py` and `migrate.py` give it a database. ARCHITECTURE.md walks through it.
"""
