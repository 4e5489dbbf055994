"""The project's exception base: the CLI turns these into one clear message and a non-zero exit."""


class SSDError(Exception):
    """A user-facing error (bad input file, bad config, mismatched checkpoint)."""
