"""Errors a user can cause. Each message is one sentence naming the file or field and the fix."""


class RaypipeError(Exception):
    """Base class for errors that carry a user-facing, one-sentence message."""


class ConfigError(RaypipeError):
    """A configuration file or flag holds a wrong field or value."""


class ManifestError(RaypipeError):
    """A manifest (or dataset layout) cannot be read or holds invalid rows."""


class MediaError(RaypipeError):
    """One media file cannot be used; the pipeline records it as a ``failed`` row and goes on."""


class WeightsError(RaypipeError):
    """Pretrained weights cannot be found or do not match the expected architecture."""


class SearchError(RaypipeError):
    """A Ray Tune search or a Ray Train run ended without a usable result (every trial failed,
    no checkpoint); the message says where the trials' errors are and what to change."""
