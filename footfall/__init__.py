"""footfall: retail people counting from the store to the analyst."""

__version__ = "0.1.0"
