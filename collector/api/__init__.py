"""The collector's HTTP API beyond ingest: enrollment and fleet admin (agents.py), analysts' metrics (metrics.py)."""
