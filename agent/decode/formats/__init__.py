"""Format extractors: one module per wire format, registered in extract.default_extractors."""
