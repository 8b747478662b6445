"""The one request-body validator: compiled once from the OpenAPI document, names fields."""

import pytest

from bridge.errors import http_status
from bridge.openapi import document
from bridge.services.errors import Invalid
from bridge.validation import validator

WITHDRAW = "/api/analytics/privacy/withdraw"


def test_every_json_request_body_of_the_document_is_compiled_once():
    ops = [(method, path) for path, item in document()["paths"].items()
           for method, op in item.items() if isinstance(op, dict)
           if "application/json" in ((op.get("requestBody") or {}).get("content") or {})]
    assert ops
    assert all(validator().has(method, path) for method, path in ops)
    assert validator() is validator()


def test_flask_and_openapi_path_parameters_name_the_same_operation():
    assert validator().has("POST", "/api/analytics/alerts/rules")
    assert validator().has("put", "/api/analytics/alerts/rules/<rule_id>") == \
        validator().has("PUT", "/api/analytics/alerts/rules/{ruleId}")


@pytest.mark.parametrize("body, field", [
    ({}, "userId"), ({"userId": 7}, "userId"), ({"userId": "  "}, "userId"),
    ({"userId": "u", "extra": 1}, "extra"), ([], "body")])
def test_a_bad_body_is_invalid_naming_the_field(body, field):
    with pytest.raises(Invalid) as err:
        validator().check("POST", WITHDRAW, body)
    assert http_status(err.value) == 400
    assert err.value.details[0]["field"] == field and err.value.details[0]["problem"]


def test_a_good_body_is_returned():
    assert validator().check("POST", WITHDRAW, {"userId": "u"}) == {"userId": "u"}


def test_problems_come_in_schema_property_order_whatever_the_key_order():
    body = {"alerts": [], "status": "burning", "version": "3"}
    fields = [d["field"] for d in validator().problems("POST", "/hooks/alertmanager", body)]
    assert fields[0] == "version" and fields.index("status") < fields.index("alerts")


def test_x_one_field_reports_inside_problems_at_the_value():
    body = {"version": "4", "receiver": "r", "groupKey": "g", "status": "firing",
            "alerts": [{"status": "firing", "labels": {"a": 1}, "startsAt": "x"}]}
    first = validator().problems("POST", "/hooks/alertmanager", body)[0]
    assert first["field"] == "alerts[0].labels" and first["problem"].startswith("a: ")


def test_the_research_schema_names_the_attributes_the_code_knows():
    from pulse.profiles.research import ATTRIBUTES
    schema = document()["components"]["schemas"]["ResearchDatasetRequest"]
    assert tuple(schema["properties"]["attributes"]["items"]["enum"]) == tuple(ATTRIBUTES)
    assert schema["properties"]["attributes"]["maxItems"] == len(ATTRIBUTES)
