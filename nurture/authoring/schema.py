"""The published JSON Schema of journey files (`nurture schema`)."""

from __future__ import annotations

from typing import Any

from nurture.authoring.journey import Journey

SCHEMA_ID = "https://nurture.dev/schemas/journey.json"


def journey_schema() -> dict[str, Any]:
    """Generated from the `Journey` model, so the schema and the loader never disagree."""
    schema = Journey.model_json_schema(by_alias=True, mode="validation")
    # our title last: the model's own ("Journey") must not override it
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            **schema, "title": "nurture journey"}
