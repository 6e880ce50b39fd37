"""A typed trial spec: one (feature set, classifier, params) configuration of a search.

Specs travel through Ray Tune and the search code as plain dicts (:meth:`TrialSpec.to_dict`,
the form :func:`raypipe.classify.search_space.spec_key` hashes); wherever one is stored (the
trial ledger, trials.parquet, a checkpoint, a model record) it is written as JSON
(:meth:`TrialSpec.to_json`) and read back through :meth:`TrialSpec.parse`, which validates it.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr
from pydantic import ValidationError as PydanticValidationError

from raypipe.errors import RaypipeError

#: A parameter value: a JSON scalar (number, string, boolean, null) or a list of them.
Scalar = StrictBool | StrictInt | StrictFloat | StrictStr | None
ParamValue = Scalar | list[Scalar]


class TrialSpec(BaseModel):
    """One trial of a classifier search.

    Attributes:
        feature_set: '<extractor>' (a media-level set) or '<extractor>.<pooling>'.
        classifier: registered classifier name.
        params: the classifier's parameters (JSON scalars or lists of them).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    feature_set: str = Field(pattern=r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)?$")
    classifier: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    params: dict[str, ParamValue] = Field(default_factory=dict)

    @property
    def extractor(self) -> str:
        """The extractor the feature set reads."""
        return self.feature_set.partition(".")[0]

    @property
    def pooling(self) -> str | None:
        """The pooling of a frame-level (or text) feature set; None for a media-level one."""
        return self.feature_set.partition(".")[2] or None

    @property
    def model_name(self) -> str:
        """Stable model name: '<feature_set>.<classifier>'."""
        return f"{self.feature_set}.{self.classifier}"

    @property
    def key(self) -> str:
        """The spec's key (:func:`raypipe.classify.search_space.spec_key`)."""
        from raypipe.classify.search_space import spec_key

        return spec_key(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """The plain form: ``{"feature_set", "classifier", "params"}``."""
        return {
            "feature_set": self.feature_set,
            "classifier": self.classifier,
            "params": dict(self.params),
        }

    def to_json(self) -> str:
        """The stored form (keys sorted)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def parse(
        cls, value: str | dict[str, Any] | TrialSpec, source: str = "trial spec"
    ) -> TrialSpec:
        """A validated spec from its JSON text or plain dict.

        Raises:
            RaypipeError: not JSON, or not a valid spec (one line naming ``source``).
        """
        if isinstance(value, TrialSpec):
            return value
        try:
            data = json.loads(value) if isinstance(value, str) else value
            return cls.model_validate(data)
        except (ValueError, PydanticValidationError) as exc:
            first = str(exc).strip().splitlines()
            detail = "; ".join(line.strip() for line in first[:3])
            raise RaypipeError(
                f"{source} is not a valid trial spec ({detail}); re-run the search into a new "
                "run folder."
            ) from None
