"""Where jobs run: the Ray connection section every command shares."""

from __future__ import annotations

from pydantic import Field

from raypipe.config.base import StrictModel


class RayConfig(StrictModel):
    """Where to run: an embedded local Ray (default) or an existing cluster."""

    address: str | None = None
    """Ray cluster address ('ray://head:10001', 'auto'); unset starts an embedded local Ray."""
    num_cpus: int | None = Field(default=None, ge=1)
    """CPUs of the embedded local Ray; unset uses all of this machine's cores."""
    object_store_mb: int = Field(default=512, ge=64)
    """Object store size of the embedded local Ray, MiB."""
