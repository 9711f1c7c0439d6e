"""The stand-in answers the corpus exactly as the real FastAPI service of its flavour does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from fidelity.corpus import API_KEY, cases
from fidelity.harness import Outcome, RealService, send
from humanloop_logging._fake_validate import pydantic_available
from humanloop_logging.testing import FakeHumanloop

SPEC = Path(__file__).parents[1] / "data" / "humanloop-v4-feedback.openapi.json"
SPEC_SCHEMAS = json.loads(SPEC.read_text())["components"]["schemas"]


def _disagreements(flavour: str, validator: str, theirs: list[Outcome]) -> list[str]:
    with FakeHumanloop(api_key=API_KEY, flavour=flavour, validator=validator) as fake:
        ours = [send(fake.base_url, case) for case in cases()]
    return [
        f"{case.name}: stand-in {a.status} {sorted(a.locs, key=str)}, "
        f"service {b.status} {sorted(b.locs, key=str)}"
        for case, a, b in zip(cases(), ours, theirs)
        if a.status != b.status or a.locs != b.locs
    ]


def test_the_corpus_covers_bodies_and_framing() -> None:
    """At least 80 requests: objects and batches, valid and broken, and framing faults."""
    corpus = cases()
    assert len(corpus) >= 80
    bodies = [case.body.lstrip() for case in corpus]
    assert sum(body.startswith(b"[") for body in bodies) >= 40
    assert sum(body.startswith(b"{") for body in bodies) >= 40
    assert any(case.content_type is None for case in corpus)
    assert any(case.api_key != API_KEY for case in corpus)
    assert any(case.path.endswith("/") for case in corpus)


@pytest.mark.parametrize("validator", ["pydantic", "stdlib"])
def test_the_stand_in_answers_like_the_real_service(
    real_answers: dict[str, list[Outcome]], validator: str
) -> None:
    """Same status and the same 422 locs as the real service, body for body, in each flavour."""
    for flavour, theirs in real_answers.items():
        if validator == "pydantic" and not pydantic_available(flavour):
            continue
        assert _disagreements(flavour, validator, theirs) == []


def test_validated_by_pydantic_the_422_bodies_are_identical(
    real_answers: dict[str, list[Outcome]],
) -> None:
    """With pydantic installed, every 422 detail matches entry for entry: msg, type, input, ctx."""
    for flavour, theirs in real_answers.items():
        if not pydantic_available(flavour):
            continue
        with FakeHumanloop(api_key=API_KEY, flavour=flavour, validator="pydantic") as fake:
            for case, their in zip(cases(), theirs):
                if their.status == 422:
                    assert send(fake.base_url, case).detail() == their.detail(), case.name


def test_the_two_flavours_differ_where_the_services_do(
    real_answers: dict[str, list[Outcome]],
) -> None:
    """Each real service disagrees with the other flavour's stand-in somewhere, so flavours matter."""
    for flavour, theirs in real_answers.items():
        other = "v2" if flavour == "v1" else "v1"
        assert _disagreements(other, "stdlib", theirs) != []


def _schema_shape(schema: dict[str, Any]) -> dict[str, Any]:
    """A field schema without what the two pydantic versions render differently."""
    return {key: value for key, value in schema.items() if key not in {"default", "title"}}


def test_the_service_is_built_from_the_vendored_models(real_services: list[RealService]) -> None:
    """The service's own OpenAPI FeedbackRequest has the vendored document's fields and types."""
    vendored = SPEC_SCHEMAS["FeedbackRequest"]
    for service in real_services:
        root = service.base_url.removesuffix("/v4")
        served = requests.get(f"{root}/openapi.json", timeout=10).json()["components"]["schemas"]
        schema = served["FeedbackRequest"]
        assert schema["required"] == vendored["required"]
        assert {name: _schema_shape(field) for name, field in schema["properties"].items()} == {
            name: _schema_shape(field) for name, field in vendored["properties"].items()
        }
        assert served["FeedbackType"]["enum"] == SPEC_SCHEMAS["FeedbackType"]["enum"]


def test_the_service_takes_the_key_as_the_documents_security_scheme(
    real_services: list[RealService],
) -> None:
    """The key is the vendored document's ``APIKeyHeader`` on ``X-API-KEY``, declared on the
    operation as a FastAPI security dependency (which FastAPI solves before it validates the
    body), not a header read inside the endpoint."""
    document = json.loads(SPEC.read_text())
    for service in real_services:
        root = service.base_url.removesuffix("/v4")
        served = requests.get(f"{root}/openapi.json", timeout=10).json()
        assert served["components"]["securitySchemes"] == document["components"]["securitySchemes"]
        operation = served["paths"]["/v4/feedback"]["post"]
        assert operation["security"] == document["paths"]["/feedback"]["post"]["security"]
        assert "parameters" not in operation  # no X-API-KEY header parameter of its own
