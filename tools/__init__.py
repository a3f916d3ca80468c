"""Developer tools run from a checkout (`scripts/...`); not part of the installed `footfall` package."""
