"""``ModelReview``: what every reviewer model must return for one slice of a pull request.

It mirrors ``contracts/review-output.schema.json``. Models are strict (unknown keys are errors)
because an answer that does not match the contract is a failed review, never a guess.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Verdict(StrEnum):
    APPROVE = "approve"
    COMMENT = "comment"
    REQUEST_CHANGES = "request_changes"


class Severity(StrEnum):
    BLOCKER = "blocker"
    MAJOR = "major"
    MINOR = "minor"
    NIT = "nit"


class Category(StrEnum):
    BUG = "bug"
    SECURITY = "security"
    PERFORMANCE = "performance"
    RELIABILITY = "reliability"
    MAINTAINABILITY = "maintainability"
    STYLE = "style"
    TESTS = "tests"
    DOCS = "docs"


class Finding(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    line: int = Field(ge=1)
    end_line: int | None = Field(default=None, ge=1)
    severity: Severity
    category: Category
    title: str = Field(max_length=200)
    body: str = Field(max_length=8000)
    suggestion: str | None = None

    @model_validator(mode="after")
    def _range_is_ordered(self) -> Finding:
        if self.end_line is not None and self.end_line < self.line:
            raise ValueError("end_line must not be before line")
        return self

    @property
    def last_line(self) -> int:
        return self.end_line if self.end_line is not None else self.line


class ModelReview(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    summary: str = Field(max_length=4000)
    verdict: Verdict
    confidence: float = Field(ge=0.0, le=1.0)
    findings: list[Finding] = Field(default_factory=list, max_length=50)


def review_json_schema() -> dict[str, Any]:
    """The JSON Schema sent to the models as the tool / response-format schema.

    Written out rather than generated from the pydantic model: providers' structured-output modes
    accept a subset of JSON Schema, and this is the contract's own shape.
    """
    finding = {
        "type": "object",
        "additionalProperties": False,
        "required": ["path", "line", "severity", "category", "title", "body"],
        "properties": {
            "path": {"type": "string"},
            "line": {"type": "integer", "minimum": 1},
            "end_line": {"type": "integer", "minimum": 1},
            "severity": {"type": "string", "enum": [s.value for s in Severity]},
            "category": {"type": "string", "enum": [c.value for c in Category]},
            "title": {"type": "string", "maxLength": 200},
            "body": {"type": "string", "maxLength": 8000},
            "suggestion": {"type": "string"},
        },
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["summary", "verdict", "confidence", "findings"],
        "properties": {
            "summary": {"type": "string", "maxLength": 4000},
            "verdict": {"type": "string", "enum": [v.value for v in Verdict]},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "findings": {"type": "array", "maxItems": 50, "items": finding},
        },
    }
