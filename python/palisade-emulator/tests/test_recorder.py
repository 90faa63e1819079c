"""The recorder against the real server: the calls made while it is on, as entries
and as HAR 1.2, and the report of how each caller behaved."""

import json
from urllib.parse import parse_qs

import pytest
import requests

from palisade_emulator import parse_instant


def test_the_recorder_keeps_the_calls_made_while_it_is_on_and_gives_them_as_har(palisade):
    recorder = palisade.control.recorder
    assert recorder.get() == {"enabled": False}
    palisade.machines(top=1)  # not recorded
    assert recorder.enable() == {"enabled": True}
    assert recorder.enabled

    machine = palisade.machines(top=2)[0]
    assert palisade.api_get(f"/api/machines/{machine['id']}").status_code == 200
    assert palisade.api_get("/api/machines/" + "0" * 40).status_code == 404
    action = palisade.api_post(f"/api/machines/{machine['id']}/isolate",
                               json={"Comment": "contain", "IsolationType": "Full"}).json()
    assert recorder.disable() == {"enabled": False}
    palisade.machines(top=1)  # not recorded

    entries = recorder.entries()
    assert [(e["operation"], e["method"], e["status"]) for e in entries] == [
        ("ListMachines", "GET", 200), ("GetMachine", "GET", 200), ("GetMachine", "GET", 404),
        ("Isolate", "POST", 201)]
    assert {e["caller"] for e in entries} == {palisade.credentials["client_id"]}
    assert parse_qs(entries[0]["query"]) == {"$top": ["2"]}
    assert entries[1]["path"] == f"/api/machines/{machine['id']}"
    assert json.loads(entries[1]["responseBody"])["id"] == machine["id"]
    assert "ResourceNotFound" in entries[2]["responseBody"]
    assert json.loads(entries[3]["requestBody"]) == {"Comment": "contain", "IsolationType": "Full"}
    assert json.loads(entries[3]["responseBody"])["id"] == action["id"]
    assert entries[0]["requestBody"] is None
    times = [parse_instant(e["time"]) for e in entries]
    assert times == sorted(times)
    assert all(isinstance(e["latencyMs"], int) and e["latencyMs"] >= 0 for e in entries)
    assert palisade.token not in json.dumps(entries), "no token is kept"
    assert recorder.entries(top=2, skip=1) == entries[1:3]

    har = recorder.har()
    log = har["log"]
    assert log["version"] == "1.2"
    assert log["creator"]["name"] == "Palisade"
    assert len(log["entries"]) == 4
    for entry, recorded in zip(log["entries"], entries):
        for field in ("startedDateTime", "time", "request", "response", "cache", "timings"):
            assert field in entry, field
        query = "?" + recorded["query"] if recorded["query"] else ""
        assert entry["request"]["url"] == palisade.base_url + recorded["path"] + query
        assert (entry["request"]["method"], entry["response"]["status"]) == (recorded["method"], recorded["status"])
    assert log["entries"][0]["request"]["queryString"] == [{"name": "$top", "value": "2"}]
    posted = log["entries"][3]["request"]["postData"]
    assert posted["mimeType"] == "application/json" and json.loads(posted["text"])["IsolationType"] == "Full"
    assert json.loads(log["entries"][1]["response"]["content"]["text"])["id"] == machine["id"]

    recorder.clear()
    assert recorder.entries() == []
    assert recorder.har()["log"]["entries"] == []


def test_the_report_names_a_client_that_ignored_retry_after(palisade):
    control = palisade.control
    control.recorder.enable()
    control.faults.add("ListMachines", {"status": 429, "retry_after": 30}, count=1)
    # A careless client: straight back after being told to wait 30 s.
    first = palisade.api_get("/api/machines")
    assert first.status_code == 429 and first.headers["Retry-After"] == "30"
    assert palisade.api_get("/api/machines").status_code == 200
    # A careful one (a demo user): one call.
    reader = palisade.new_token("reader@contoso.example")
    one = requests.get(f"{palisade.api_url}/machines?$top=1", headers={"Authorization": f"Bearer {reader}"},
                       timeout=10)
    assert one.status_code == 200, one.text

    report = control.recorder.report()
    assert {r["caller"] for r in report} == {palisade.credentials["client_id"], "reader@contoso.example"}
    careless = control.recorder.report_of(palisade.credentials["client_id"])
    assert (careless["calls"], careless["retryAfterIgnored"]) == (2, 1), careless
    assert (careless["pagingUrlsBuilt"], careless["fastPolls"]) == (0, 0)
    assert "Machine.Read.All" in careless["permissionsUsed"]
    assert "Machine.Isolate" in careless["permissionsNeverUsed"]
    assert sorted(careless["permissionsUsed"] + careless["permissionsNeverUsed"]) == sorted(
        careless["permissionsGranted"])
    careful = control.recorder.report_of("reader@contoso.example")
    assert (careful["calls"], careful["retryAfterIgnored"]) == (1, 0), careful

    # A reset forgets the record and turns the recorder off.
    palisade.reset()
    assert control.recorder.get() == {"enabled": False}
    assert control.recorder.entries() == [] and control.recorder.report() == []
    with pytest.raises(KeyError):
        control.recorder.report_of("reader@contoso.example")
