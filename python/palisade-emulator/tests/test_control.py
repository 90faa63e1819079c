"""The control client against the real control plane: outcome rules, the operator
token, errors; and the requests every call makes (test_clock.py, test_faults.py,
test_state.py, test_recorder.py and test_alerts.py run those against the server)."""

import datetime as dt

import pytest
import requests

from palisade_emulator import (
    ControlClient,
    ControlError,
    iso_duration,
    iso_instant,
    parse_duration,
    parse_instant,
    whole_seconds,
)


def poll(palisade, action_id):
    reply = palisade.api_get(f"/api/machineactions/{action_id}")
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_an_outcome_rule_carries_an_isolation_poll_by_poll(palisade):
    default_rules = palisade.control.outcomes.list()
    assert len(default_rules) == 1, "the demo tenant's own rule"
    rule = palisade.control.outcomes.add(
        {"actionType": "Isolate"},
        [{"status": "Pending", "polls": 1}, {"status": "InProgress", "polls": 2}, {"status": "Succeeded"}],
        position=0,
    )
    assert rule["id"] and rule["hits"] == 0
    assert rule["match"] == {"actionType": "Isolate"}
    assert [r["id"] for r in palisade.control.outcomes.list()] == [rule["id"], default_rules[0]["id"]]

    machine = palisade.machines(top=1)[0]
    created = palisade.api_post(f"/api/machines/{machine['id']}/isolate",
                                json={"Comment": "contain", "IsolationType": "Full"})
    assert created.status_code == 201, created.text
    action = created.json()
    assert (action["type"], action["status"]) == ("Isolate", "Pending")

    seen = [poll(palisade, action["id"])["status"] for _ in range(5)]
    assert seen == ["Pending", "InProgress", "InProgress", "Succeeded", "Succeeded"]
    done = poll(palisade, action["id"])
    assert done["machineId"] == machine["id"]
    assert done["errorHResult"] == 0

    # The machine's actions show it done (MDE's Machine has no isolation property to read).
    listed = palisade.api_get(f"/api/machines/{machine['id']}/machineactions").json()["value"]
    assert [(a["id"], a["status"]) for a in listed if a["type"] == "Isolate"] == [(action["id"], "Succeeded")]

    # A release is not matched by the rule: the demo's default rule takes it.
    released = palisade.api_post(f"/api/machines/{machine['id']}/unisolate", json={"Comment": "done"})
    assert released.status_code == 201, released.text
    hits = [(r["id"], r["hits"]) for r in palisade.control.outcomes.list()]
    assert hits == [(rule["id"], 1), (default_rules[0]["id"], 1)]


def test_a_scripted_failure_reads_as_mde_reports_one(palisade):
    palisade.control.outcomes.clear()
    assert palisade.control.outcomes.list() == []
    palisade.control.outcomes.add(None, [{"status": "Failed", "error_h_result": -2147024891,
                                          "troubleshoot_info": "Access is denied"}])
    machine = palisade.machines(filter="osPlatform eq 'Windows11'", top=1)[0]
    scan = palisade.api_post(f"/api/machines/{machine['id']}/runAntiVirusScan",
                             json={"Comment": "scan", "ScanType": "Quick"})
    assert scan.status_code == 201, scan.text
    action = scan.json()
    assert action["type"] == "RunAntiVirusScan"
    failed = poll(palisade, action["id"])
    assert (failed["status"], failed["errorHResult"]) == ("Failed", -2147024891)
    assert failed["troubleshootInfo"] == "Access is denied"


def test_rules_are_deleted_one_or_all(palisade):
    outcomes = palisade.control.outcomes
    first = outcomes.add({"machineId": "0" * 40}, [{"status": "Pending", "duration": dt.timedelta(seconds=3)},
                                                    {"status": "Succeeded"}])
    assert first["script"][0]["duration"] == "PT3S"
    outcomes.delete(first["id"])
    assert first["id"] not in [r["id"] for r in outcomes.list()]
    with pytest.raises(ControlError) as gone:
        outcomes.delete(first["id"])
    assert gone.value.status == 404 and gone.value.code == "ResourceNotFound"
    outcomes.clear()
    assert outcomes.list() == []


def test_control_errors_carry_the_status_and_the_mde_error_body(palisade):
    with pytest.raises(ControlError) as refused:
        palisade.control.outcomes.add({}, [])
    error = refused.value
    assert error.status == 400
    assert error.code == "InvalidInput"
    assert "script" in error.message
    assert error.body["error"]["code"] == "InvalidInput"
    assert error.target == error.response.headers["request-id"]
    assert "400" in str(error) and "POST" in str(error)

    unknown = palisade.control.for_tenant("00000000-0000-0000-0000-00000000dead")
    with pytest.raises(ControlError) as missing:
        unknown.outcomes.list()
    assert (missing.value.status, missing.value.code) == (404, "ResourceNotFound")


def test_the_operator_token_is_required(palisade):
    url = palisade.control.tenant_url + "/outcomes"
    bare = requests.get(url, timeout=10)
    assert bare.status_code == 401
    assert bare.json()["error"]["code"] == "Unauthorized"
    assert bare.headers["WWW-Authenticate"] == "Bearer"
    mde = requests.get(url, headers={"Authorization": "Bearer " + palisade.token}, timeout=10)
    assert mde.status_code == 401, "an MDE token does not open the control plane"

    wrong = ControlClient(palisade.base_url, "palisade_operator_not-the-one", palisade.tenant_id)
    with pytest.raises(ControlError) as refused:
        wrong.outcomes.list()
    assert (refused.value.status, refused.value.code) == (401, "Unauthorized")
    assert "operator token" in refused.value.message
    # And the operator token does not open the MDE API.
    op = requests.get(palisade.api_url + "/machines",
                      headers={"Authorization": "Bearer " + palisade.operator_token}, timeout=10)
    assert op.status_code == 401


def test_the_control_plane_describes_itself(palisade):
    document = palisade.control.openapi()
    assert document["paths"]["/tenants/{tenantId}/outcomes"]["post"]["operationId"] == "AddOutcomeRule"


class Recording:
    """A stand-in session: what the client would send, answered with an empty 200."""

    def __init__(self):
        self.calls = []

    def request(self, method, url, json=None, params=None, data=None, headers=None, **_):
        self.calls.append((method, url, json, params, data, headers))
        reply = requests.Response()
        reply.status_code = 200
        reply._content = b'{"value": []}'
        return reply


def test_every_call_of_the_contract_is_made_as_the_contract_states():
    session = Recording()
    control = ControlClient("http://palisade.test", "op", "t1", session=session)
    tenant = "http://palisade.test/_palisade/v1/tenants/t1"
    control.clock.get()
    control.clock.freeze()
    control.clock.freeze(dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc))
    control.clock.run()
    control.clock.advance(dt.timedelta(hours=72))
    control.clock.set("running", advance="P3DT1M")
    control.faults.list()
    control.faults.add({"operation": "ListMachines"}, {"status": 429, "retry_after": 5}, count=2, position=0)
    control.faults.add({"caller": "app"}, latency=0.5, every_nth=3, probability=0.5)
    control.faults.add("Token", 503)
    control.faults.add("GetAction", {"status": 503, "retry_after": dt.timedelta(seconds=2), "code": "ServiceUnavailable"})
    control.faults.delete("f1")
    control.faults.clear()
    control.reset()
    control.get_state()
    control.put_state({"tenantId": "t1", "machines": []})
    control.put_state("tenantId: t1\n")
    control.put_state(' {"tenantId": "t1"}')
    control.create_tenant({"tenantId": "t2", "name": "Other"})
    control.raise_alert("m1", title="Suspicious", mitre_techniques=["T1059"])
    control.recorder.enable()
    control.recorder.disable()
    control.recorder.entries(top=10, skip=20)
    control.recorder.har()
    control.recorder.report()
    control.recorder.clear()
    sent = [(m, u.replace(tenant, "~"), j, p) for m, u, j, p, _, _ in session.calls]
    assert sent == [
        ("GET", "~/clock", None, None),
        ("PUT", "~/clock", {"mode": "frozen"}, None),
        ("PUT", "~/clock", {"mode": "frozen", "now": "2030-01-02T03:04:05.000Z"}, None),
        ("PUT", "~/clock", {"mode": "running"}, None),
        ("PUT", "~/clock", {"advance": "PT259200S"}, None),
        ("PUT", "~/clock", {"mode": "running", "advance": "P3DT1M"}, None),
        ("GET", "~/faults", None, None),
        ("POST", "~/faults", {"match": {"operation": "ListMachines"},
                              "response": {"status": 429, "retryAfter": 5}, "count": 2}, {"position": 0}),
        ("POST", "~/faults", {"match": {"caller": "app"}, "latency": "PT0.5S", "probability": 0.5,
                              "everyNth": 3}, None),
        ("POST", "~/faults", {"match": {"operation": "Token"}, "response": {"status": 503}}, None),
        ("POST", "~/faults", {"match": {"operation": "GetAction"},
                              "response": {"status": 503, "retryAfter": 2, "code": "ServiceUnavailable"}},
         None),
        ("DELETE", "~/faults/f1", None, None),
        ("DELETE", "~/faults", None, None),
        ("POST", "~/reset", None, None),
        ("GET", "~/state", None, None),
        ("PUT", "~/state", None, None),
        ("PUT", "~/state", None, None),
        ("PUT", "~/state", None, None),
        ("POST", "http://palisade.test/_palisade/v1/tenants", None, None),
        ("POST", "~/alerts", {"machineId": "m1", "title": "Suspicious", "mitreTechniques": ["T1059"]}, None),
        ("PUT", "~/recorder", {"enabled": True}, None),
        ("PUT", "~/recorder", {"enabled": False}, None),
        ("GET", "~/recorder/entries", None, {"$top": 10, "$skip": 20}),
        ("GET", "~/recorder/har", None, None),
        ("GET", "~/recorder/report", None, None),
        ("DELETE", "~/recorder/entries", None, None),
    ]
    # Documents go as they are: a mapping as JSON, text as YAML unless it is JSON.
    bodies = [(data, headers["Content-Type"]) for _, _, _, _, data, headers in session.calls[15:19]]
    assert bodies == [
        (b'{"tenantId": "t1", "machines": []}', "application/json"),
        (b"tenantId: t1\n", "application/yaml"),
        (b' {"tenantId": "t1"}', "application/json"),
        (b'{"tenantId": "t2", "name": "Other"}', "application/json"),
    ]
    assert all(headers["Authorization"] == "Bearer op" for *_, headers in session.calls)


def test_durations_and_instants_are_written_and_read_as_iso_8601():
    assert iso_duration("PT72H") == "PT72H"
    assert iso_duration(dt.timedelta(seconds=3)) == "PT3S"
    assert iso_duration(1.25) == "PT1.25S"
    with pytest.raises(ValueError):
        iso_duration(-1)
    assert iso_instant(dt.datetime(2030, 1, 1)) == "2030-01-01T00:00:00.000Z"
    offset = dt.timezone(dt.timedelta(hours=2))
    assert iso_instant(dt.datetime(2030, 1, 1, 2, tzinfo=offset)) == "2030-01-01T00:00:00.000Z"
    # Not cut to the millisecond: the tenant's clock would read it as going backwards.
    assert iso_instant(dt.datetime(2030, 1, 1, 0, 0, 0, 123456)) == "2030-01-01T00:00:00.123456Z"

    # As the server writes them: 100-ns ticks, ISO-8601 offsets with a sign.
    utc = dt.timezone.utc
    assert parse_instant("2026-12-05T14:26:29.4383801Z") == dt.datetime(2026, 12, 5, 14, 26, 29, 438380, tzinfo=utc)
    assert parse_instant("2030-01-01T02:00:00+02:00") == dt.datetime(2030, 1, 1, tzinfo=utc)
    assert parse_duration("P3DT1M") == dt.timedelta(days=3, minutes=1)
    assert parse_duration("PT0.300S") == dt.timedelta(milliseconds=300)
    assert parse_duration("P2DT23H59M59.994S") == dt.timedelta(days=3, milliseconds=-6)
    assert parse_duration("-PT5S") == dt.timedelta(seconds=-5)
    assert parse_duration("PT0S") == dt.timedelta(0)
    for bad in ("P", "PT", "P1DT", "P1M", "3s", "2030-01-01"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    with pytest.raises(ValueError):
        parse_instant("2030-01-01")

    # Retry-After is whole seconds.
    assert whole_seconds(dt.timedelta(minutes=1)) == whole_seconds("PT1M") == whole_seconds(60.0) == 60
    for bad in (1.5, -1, True):
        with pytest.raises(ValueError):
            whole_seconds(bad)
    with pytest.raises(ValueError, match="retryAfter"):
        ControlClient("http://palisade.test", "op", "t1", session=Recording()).faults.add(
            "ListMachines", {"status": 429, "retry_after": 0.5})
