"""Fault rules (``palisade.control.faults``) against the real server: errors answered
instead of the MDE API's and the token service's real answers, latency, counts."""

import datetime as dt
import time

import pytest
import requests

from palisade_emulator import ControlError, TokenError, parse_duration


def test_a_429_with_retry_after_for_the_first_three_calls_then_the_real_answer(palisade):
    faults = palisade.control.faults
    rule = faults.add({"operation": "ListMachines"}, {"status": 429, "retry_after": 7}, count=3)
    assert rule["id"]
    assert rule["match"] == {"operation": "ListMachines"}
    assert rule["response"] == {"status": 429, "retryAfter": 7}
    assert (rule["count"], rule["hits"], rule["spent"]) == (3, 0, False)
    assert faults.list() == [rule]

    for _ in range(3):
        reply = palisade.api_get("/api/machines", params={"$top": 1})
        assert reply.status_code == 429, reply.text
        assert reply.headers["Retry-After"] == "7"
        error = reply.json()["error"]
        assert error["code"] == "TooManyRequests"
        assert "7 seconds" in error["message"]
        assert error["target"], "the request id, as MDE gives it"
        # Other operations are not touched.
        assert palisade.api_get("/api/machineactions", params={"$top": 1}).status_code == 200
    real = palisade.api_get("/api/machines", params={"$top": 1})
    assert real.status_code == 200, real.text
    assert len(real.json()["value"]) == 1

    [listed] = faults.list()
    assert (listed["id"], listed["hits"], listed["spent"]) == (rule["id"], 3, True)
    assert palisade.api_get("/api/machines", params={"$top": 1}).status_code == 200
    assert faults.list()[0]["hits"] == 3, "a spent rule takes no more calls"


def test_the_token_service_answers_a_token_fault_as_entra_does_then_issues_one(palisade):
    rule = palisade.control.faults.add("Token", {"status": 503, "retry_after": 2}, count=1)
    assert rule["match"] == {"operation": "Token"}

    with pytest.raises(TokenError) as refused:
        palisade.new_token()
    error = refused.value
    assert error.status == 503
    assert error.error == "temporarily_unavailable"
    assert error.description.startswith("AADSTS"), error.body
    assert error.retry_after == 2
    assert isinstance(error, RuntimeError)

    token = palisade.renew_token()
    assert token.count(".") == 2
    assert palisade.api_get("/api/machines?$top=1").status_code == 200
    [spent] = palisade.control.faults.list()
    assert (spent["hits"], spent["spent"]) == (1, True)

    # The MDE API is not the token service: a Token rule leaves it alone.
    palisade.control.faults.add("Token", 500)
    assert palisade.api_get("/api/machines?$top=1").status_code == 200
    raw = requests.post(palisade.credentials["token_url"], timeout=10, data={
        "grant_type": "client_credentials", "client_id": palisade.credentials["client_id"],
        "client_secret": palisade.credentials["client_secret"],
        "scope": "https://api.securitycenter.microsoft.com/.default"})
    assert raw.status_code == 500, raw.text
    assert raw.json()["error_description"].startswith("AADSTS"), raw.text


def test_latency_delays_the_real_answer(palisade):
    machine = palisade.machines(top=1)[0]
    rule = palisade.control.faults.add({"operation": "GetMachine"}, latency="PT0.3S")
    assert parse_duration(rule["latency"]) == dt.timedelta(milliseconds=300)
    assert "response" not in rule

    started = time.monotonic()
    reply = palisade.api_get(f"/api/machines/{machine['id']}")
    took = time.monotonic() - started
    assert reply.status_code == 200, reply.text
    assert reply.json()["id"] == machine["id"], "the real answer, later"
    assert took >= 0.3, took
    assert palisade.control.faults.list()[0]["hits"] == 1


def test_every_nth_call_and_rules_first_deleted_one_or_all(palisade):
    faults = palisade.control.faults
    machine = palisade.machines(top=1)[0]
    action_id = palisade.api_post(f"/api/machines/{machine['id']}/isolate",
                                  json={"Comment": "contain", "IsolationType": "Full"}).json()["id"]
    lag = faults.add("GetAction", {"status": 404, "message": "Action was not found"}, every_nth=2)
    statuses = [palisade.api_get(f"/api/machineactions/{action_id}").status_code for _ in range(4)]
    assert statuses == [200, 404, 200, 404]

    first = faults.add(None, {"status": 503, "code": "ServiceUnavailable"}, probability=1, position=0)
    assert [r["id"] for r in faults.list()] == [first["id"], lag["id"]]
    down = palisade.api_get("/api/machines?$top=1")
    assert down.status_code == 503 and down.json()["error"]["code"] == "ServiceUnavailable"
    faults.delete(first["id"])
    assert [r["id"] for r in faults.list()] == [lag["id"]]
    with pytest.raises(ControlError) as gone:
        faults.delete(first["id"])
    assert (gone.value.status, gone.value.code) == (404, "ResourceNotFound")
    faults.clear()
    assert faults.list() == []

    # A rule that cannot apply is refused naming its field.
    for match, response, field in [({"operation": "Isolated"}, 500, "match.operation"),
                                   (None, 200, "response.status"),
                                   (None, {"status": 500, "code": "NoSuchCode"}, "code")]:
        with pytest.raises(ControlError) as refused:
            faults.add(match, response)
        assert refused.value.status == 400 and field in refused.value.message, refused.value
    with pytest.raises(ControlError) as nothing:
        faults.add({"operation": "ListMachines"}, count=1)
    assert "response" in nothing.value.message
    assert faults.list() == []
