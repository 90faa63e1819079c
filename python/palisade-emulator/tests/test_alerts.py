"""Alerts against the real server: an alert raised through the control plane is
the one a playbook starts from (poll alerts, find the machine, isolate it, resolve
the alert), and a reset takes the tenant back to its seeded alerts."""

import datetime as dt


def test_a_playbook_starts_from_a_raised_alert(palisade):
    machine = palisade.machines(top=1)[0]
    since = palisade.api_get("/api/alerts", params={
        "$orderby": "lastUpdateTime desc", "$top": 1}).json()["value"][0]["lastUpdateTime"]
    raised = palisade.control.raise_alert(
        machine["id"], title="Suspicious PowerShell", severity="High",
        mitre_techniques=["T1059.001"],
        evidence=[{"entityType": "Ip", "ipAddress": "203.0.113.5"}])
    assert raised["machineId"] == machine["id"]
    assert raised["computerDnsName"] == machine["computerDnsName"]
    assert raised["status"] == "New"

    # The playbook: incremental polling from its last time, as SOAR connectors do.
    new = palisade.api_get("/api/alerts", params={
        "$filter": f"lastUpdateTime gt {since}", "$orderby": "lastUpdateTime asc",
        "$expand": "evidence"})
    assert new.status_code == 200, new.text
    found = [a for a in new.json()["value"] if a["id"] == raised["id"]]
    assert found and found[0]["evidence"][0]["ipAddress"] == "203.0.113.5"
    target = palisade.api_get(f"/api/alerts/{raised['id']}/machine").json()
    assert target["id"] == machine["id"]
    isolate = palisade.api_post(f"/api/machines/{target['id']}/isolate",
                                json={"Comment": f"alert {raised['id']}", "IsolationType": "Full"})
    assert isolate.status_code in (201, 400), isolate.text
    resolved = palisade.api_patch(f"/api/alerts/{raised['id']}", json={
        "status": "Resolved", "classification": "TruePositive", "determination": "Malware",
        "comment": "contained"})
    assert resolved.status_code == 200, resolved.text
    body = resolved.json()
    assert body["status"] == "Resolved" and body["resolvedTime"]
    assert body["comments"][-1]["comment"] == "contained"
    assert body["lastUpdateTime"] > raised["lastUpdateTime"]


def test_a_reset_brings_back_the_seeded_alerts_only(palisade):
    seeded = palisade.api_get("/api/alerts", params={"$count": "true", "$top": 1}).json()
    machine = palisade.machines(top=1)[0]
    palisade.control.raise_alert(machine["id"], title="Raised by a test")
    after = palisade.api_get("/api/alerts", params={"$count": "true", "$top": 1}).json()
    assert after["@odata.count"] == seeded["@odata.count"] + 1
    palisade.reset()
    again = palisade.api_get("/api/alerts", params={"$count": "true", "$top": 1}).json()
    assert again["@odata.count"] == seeded["@odata.count"]
    assert dt.datetime.fromisoformat(again["value"][0]["alertCreationTime"].replace("Z", "+00:00"))
