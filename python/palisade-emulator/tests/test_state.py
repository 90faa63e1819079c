"""Tenant state against the real server: export (GET /state), replace (PUT /state),
reset, tenants made from documents (POST /tenants, the fixture's seed=), and bad
documents refused naming the field."""

import copy
import datetime as dt
import json
from pathlib import Path

import pytest
import requests

from palisade_emulator import ControlError, TokenError

SMALL = "7e57a000-0000-4000-8000-000000000001"
SMALL_APP = "7e57a000-0000-4000-8000-00000000a001"
SMALL_SECRET = "the small tenant's secret"
FROM_YAML = "7e57a000-0000-4000-8000-000000000002"


def small_document():
    """A tenant of two machines and an app with a secret (the rest defaults)."""
    return {
        "tenantId": SMALL,
        "name": "Small",
        "machines": [
            {"id": "a" * 40, "computerDnsName": "ws-1.small.example", "machineTags": ["pilot"]},
            {"id": "b" * 40, "computerDnsName": "srv-1.small.example", "osPlatform": "WindowsServer2022",
             "healthStatus": "Inactive"},
        ],
        "apps": [{"clientId": SMALL_APP, "name": "Small playbook", "clientSecret": SMALL_SECRET,
                  "permissions": ["Machine.Read.All", "Machine.ReadWrite.All"]}],
        "users": [{"username": "analyst@small.example", "password": "a long enough password",
                   "roles": ["View data"]}],
    }


# What a person would write: needs no PyYAML, the server reads it.
YAML_DOCUMENT = f"""\
tenantId: {FROM_YAML}
name: From YAML
retentionDays: 30
deviceGroups:
  - id: 1
    name: Servers
    rules:
      namePrefixes: [srv-]
machines:
  - id: {"c" * 40}
    computerDnsName: srv-9.yaml.example
    osPlatform: Linux
    machineTags:
      - yaml
"""


def to_yaml(value, indent=""):
    """A JSON-like value as block YAML (scalars as JSON, which YAML reads), for
    the tests to send YAML without PyYAML."""
    if isinstance(value, dict) and value:
        lines = []
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{indent}{json.dumps(key)}:\n{to_yaml(item, indent + '  ')}")
            else:
                lines.append(f"{indent}{json.dumps(key)}: {to_yaml(item)}")
        return "\n".join(lines)
    if isinstance(value, list) and value:
        lines = []
        for item in value:
            text = to_yaml(item, indent + "  ")
            lines.append(f"{indent}- {text.lstrip()}" if isinstance(item, (dict, list)) and item
                         else f"{indent}- {text}")
        return "\n".join(lines)
    return json.dumps(value)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_a_reset_puts_the_demo_tenant_back_exactly(palisade):
    control = palisade.control
    before = control.get_state()
    assert before["tenantId"] == palisade.tenant_id
    assert len(before["machines"]) == 400
    assert len(before["outcomes"]) == 1 and before["faults"] == [] and before["machineActions"] == []
    assert all("clientSecret" not in app for app in before["apps"])
    assert all("password" not in user for user in before["users"])

    # Everything a test might change, changed.
    machine = palisade.machines(top=1)[0]
    tagged = palisade.api_post(f"/api/machines/{machine['id']}/tags", json={"Value": "touched", "Action": "Add"})
    assert tagged.status_code == 200, tagged.text
    isolated = palisade.api_post(f"/api/machines/{machine['id']}/isolate",
                                 json={"Comment": "contain", "IsolationType": "Full"})
    assert isolated.status_code == 201, isolated.text
    control.faults.add("Offboard", 500)
    control.outcomes.add({"actionType": "Offboard"}, [{"status": "Failed"}], position=0)
    control.clock.advance("PT2H")
    palisade.renew_token()  # the old one expired with the advance
    changed = control.get_state()
    assert changed != before
    touched = next(m for m in changed["machines"] if m["id"] == machine["id"])
    assert "touched" in touched["machineTags"]
    assert [a["type"] for a in changed["machineActions"]] == ["Isolate"]
    assert len(changed["faults"]) == 1 and len(changed["outcomes"]) == 2

    assert control.reset() is None
    assert control.get_state() == before, "the demo tenant as it was made, exactly"
    assert control.clock.offset() == dt.timedelta(0)
    assert control.faults.list() == []
    # The apps stay; a token issued at the tenant's old time is not valid yet.
    assert palisade.api_get("/api/machines?$top=1").status_code == 401
    palisade.renew_token()
    reread = palisade.api_get(f"/api/machines/{machine['id']}")
    assert reread.status_code == 200, reread.text
    assert reread.json()["machineTags"] == machine["machineTags"]
    assert palisade.api_get(f"/api/machineactions/{isolated.json()['id']}").status_code == 404


def test_an_export_put_back_gives_the_same_export_as_json_and_as_yaml(palisade, tmp_path):
    control = palisade.control
    machine = palisade.machines(top=1)[0]
    palisade.api_post(f"/api/machines/{machine['id']}/tags", json={"Value": "round-trip", "Action": "Add"})
    control.faults.add("GetAction", 404, every_nth=2)
    control.clock.freeze()
    exported = control.get_state()

    control.reset()
    assert control.get_state() != exported
    assert control.put_state(exported) == exported, "PUT answers the state as it now is"
    assert control.get_state() == exported
    shown = palisade.api_get(f"/api/machines/{machine['id']}").json()
    assert "round-trip" in shown["machineTags"]

    # YAML text (written here without PyYAML), and a file by its suffix.
    control.reset()
    assert control.put_state(to_yaml(exported)) == exported
    control.reset()
    saved = tmp_path / "state.json"
    saved.write_text(json.dumps(exported))
    assert control.put_state(saved) == exported
    try:
        import yaml  # noqa: F401
    except ImportError:
        return
    # With PyYAML: a mapping sent as YAML, and the export written as YAML.
    control.reset()
    assert control.put_state(exported, yaml=True) == exported
    assert yaml.safe_load(control.get_state(yaml=True)) == exported


def test_a_tenant_made_from_a_document_serves_its_machines_to_its_app(palisade):
    created = palisade.control.create_tenant(small_document())
    assert created["tenantId"] == SMALL and created["name"] == "Small"
    by_id = {m["id"]: m for m in created["machines"]}
    assert sorted(by_id) == ["a" * 40, "b" * 40]
    # What the document left out has MDE's defaults.
    assert (by_id["a" * 40]["osPlatform"], by_id["a" * 40]["healthStatus"]) == ("Windows11", "Active")
    assert by_id["b" * 40]["healthStatus"] == "Inactive"
    assert [(a["clientId"], "clientSecret" in a) for a in created["apps"]] == [(SMALL_APP, False)]
    assert [(u["username"], "password" in u) for u in created["users"]] == [("analyst@small.example", False)]

    token = palisade.app_token(SMALL_APP, SMALL_SECRET, SMALL)
    listed = requests.get(f"{palisade.api_url}/machines", headers=bearer(token), timeout=10)
    assert listed.status_code == 200, listed.text
    assert sorted((m["id"], m["computerDnsName"]) for m in listed.json()["value"]) == [
        ("a" * 40, "ws-1.small.example"), ("b" * 40, "srv-1.small.example")]
    # The tenants are apart: the demo app does not see them, nor the wrong secret a token.
    assert palisade.api_get("/api/machines/" + "a" * 40).status_code == 404
    with pytest.raises(TokenError) as refused:
        palisade.app_token(SMALL_APP, "not the secret at all", SMALL)
    assert refused.value.status in (400, 401)

    with pytest.raises(ControlError) as exists:
        palisade.control.create_tenant(small_document())
    assert (exists.value.status, exists.value.code) == (409, "InvalidInput")
    assert "tenantId" in exists.value.message

    # Its control plane: a reset puts it back to its document.
    small = palisade.control.for_tenant(SMALL)
    tagged = requests.post(f"{palisade.api_url}/machines/{'b' * 40}/tags", headers=bearer(token),
                           json={"Value": "later", "Action": "Add"}, timeout=10)
    assert tagged.status_code == 200, tagged.text
    assert small.get_state() != created
    small.reset()
    assert small.get_state() == created


def test_a_tenant_is_made_from_yaml_text(palisade):
    created = palisade.control.create_tenant(YAML_DOCUMENT)
    assert created["tenantId"] == FROM_YAML and created["retentionDays"] == 30
    assert created["deviceGroups"][0]["rules"] == {"namePrefixes": ["srv-"]}
    (machine,) = created["machines"]
    assert (machine["osPlatform"], machine["machineTags"], machine["rbacGroupName"]) == ("Linux", ["yaml"], "Servers")


@pytest.mark.palisade(seed=[small_document(), YAML_DOCUMENT])
def test_the_marker_seeds_tenants_from_documents_at_start(palisade):
    seeds = [palisade.args[i + 1] for i, arg in enumerate(palisade.args) if arg == "--seed"]
    assert [Path(seed).suffix for seed in seeds] == [".json", ".yaml"], "the server reads a file by its suffix"
    small = palisade.control.for_tenant(SMALL).get_state()
    assert sorted(m["id"] for m in small["machines"]) == ["a" * 40, "b" * 40]
    token = palisade.app_token(SMALL_APP, SMALL_SECRET, SMALL)
    listed = requests.get(f"{palisade.api_url}/machines", headers=bearer(token), timeout=10).json()["value"]
    assert len(listed) == 2
    assert [m["computerDnsName"] for m in palisade.control.for_tenant(FROM_YAML).get_state()["machines"]] == [
        "srv-9.yaml.example"]
    # The demo tenant is there as ever.
    assert len(palisade.machines(top=3)) == 3


def test_a_bad_document_raises_control_error_naming_the_field(palisade):
    control = palisade.control
    before = control.get_state()
    bad = copy.deepcopy(before)
    bad["machines"][1]["osPlatform"] = "Windows95"
    with pytest.raises(ControlError) as refused:
        control.put_state(bad)
    error = refused.value
    assert (error.status, error.code) == (400, "InvalidInput")
    assert "machines[1].osPlatform" in error.message and "Windows95" in error.message
    assert control.get_state() == before, "nothing changed"

    def broken(change):
        document = small_document()
        change(document)
        return document

    for document, field in [
        (broken(lambda d: d["apps"][0].update(clientSecret="too short")), "apps[0].clientSecret"),
        (broken(lambda d: d["users"][0].update(password="short")), "users[0].password"),
        (broken(lambda d: d["users"][0].update(roles=["Boss"])), "users[0].roles[0]"),
        (broken(lambda d: d["machines"][1].update(id="a" * 40)), "machines[1].id"),
        (broken(lambda d: d["machines"][0].pop("computerDnsName")), "machines[0]"),
        (broken(lambda d: d.update(tenantId="not-a-guid")), "tenantId"),
        (YAML_DOCUMENT.replace("osPlatform: Linux", "osPlatform: Plan9"), "machines[0].osPlatform"),
    ]:
        with pytest.raises(ControlError) as refused:
            control.create_tenant(document)
        assert (refused.value.status, refused.value.code) == (400, "InvalidInput"), field
        assert field in refused.value.message, refused.value.message
    for tenant in (SMALL, FROM_YAML):
        with pytest.raises(ControlError) as missing:
            control.for_tenant(tenant).get_state()
        assert missing.value.status == 404, "no tenant was made"
