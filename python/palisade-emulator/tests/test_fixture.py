"""The `palisade` fixture and PalisadeServer, against the real binary ($PALISADE_BIN)."""

import json
import os
import socket
from urllib.parse import urlsplit

import pytest
import requests

from palisade_emulator import PalisadeNotFound, PalisadeServer, PalisadeStartError


def test_the_fixture_serves_the_demo_tenant_with_a_working_token(palisade):
    assert palisade.running
    assert palisade.base_url.startswith("http://127.0.0.1:")
    assert palisade.api_url == palisade.base_url + "/api"
    creds = palisade.credentials
    assert palisade.tenant_id == creds["tenant_id"]
    assert palisade.operator_token == creds["operator_token"]
    assert {"client_id", "client_secret", "token_url", "onboarding_token", "users"} <= set(creds)
    assert palisade.token.count(".") == 2, "a JWT"

    reply = palisade.api_get("/api/machines", params={"$top": 5})
    assert reply.status_code == 200, reply.text
    machines = reply.json()["value"]
    assert len(machines) == 5
    assert all(m["id"] and m["computerDnsName"] for m in machines)
    assert palisade.machines(top=2) == machines[:2]

    # The same token works as a plain bearer token, as a playbook would send it.
    plain = requests.get(palisade.api_url + "/machines/" + machines[0]["id"],
                         headers={"Authorization": "Bearer " + palisade.token}, timeout=10)
    assert plain.status_code == 200, plain.text
    assert plain.json()["id"] == machines[0]["id"]
    # And without it the API refuses.
    assert requests.get(palisade.api_url + "/machines", timeout=10).status_code == 401


def test_a_demo_user_token_carries_the_users_roles(palisade):
    reader = palisade.new_token("reader@contoso.example")
    headers = {"Authorization": "Bearer " + reader}
    machines = requests.get(palisade.api_url + "/machines?$top=1", headers=headers, timeout=10)
    assert machines.status_code == 200, machines.text
    machine_id = machines.json()["value"][0]["id"]
    isolate = requests.post(f"{palisade.api_url}/machines/{machine_id}/isolate", headers=headers,
                            json={"Comment": "not allowed", "IsolationType": "Full"}, timeout=10)
    assert isolate.status_code == 403, isolate.text
    with pytest.raises(KeyError):
        palisade.new_token("nobody@contoso.example")


def test_the_fixture_stops_its_server_after_the_test_and_takes_marker_arguments(pytester):
    record = pytester.path / "record.json"
    pytester.makepyfile(
        f"""
        import json
        import pytest

        @pytest.mark.palisade("--rate-limit", "off")
        def test_one(palisade):
            assert "--rate-limit" in palisade.args
            assert palisade.api_get("/api/machines?$top=1").status_code == 200
            with open({str(record)!r}, "w") as f:
                json.dump({{"pid": palisade.process.pid, "dir": str(palisade.dir),
                           "base_url": palisade.base_url}}, f)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    seen = json.loads(record.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(seen["pid"], 0)
    assert not os.path.exists(seen["dir"]), "the temporary directory is removed"
    with pytest.raises(requests.ConnectionError):
        requests.get(seen["base_url"] + "/healthz", timeout=5)


def test_a_server_stops_on_exit_of_its_context_exiting_cleanly_on_sigterm():
    with PalisadeServer() as server:
        process, directory = server.process, server.dir
        assert requests.get(server.base_url + "/healthz", timeout=5).status_code == 200
        assert (directory / "demo.json").exists()
        port = urlsplit(server.base_url).port
    assert process.poll() == 0, "SIGTERM: the server finishes and exits 0"
    assert server.returncode == 0
    assert not directory.exists()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "nothing listens any more"


def test_extra_arguments_reach_the_server_and_a_failed_start_shows_its_output():
    with pytest.raises(PalisadeStartError) as failed:
        PalisadeServer(extra_args=["--no-such-flag"]).start()
    message = str(failed.value)
    assert "exited with status 2" in message
    assert "--no-such-flag" in message


def test_a_missing_binary_is_named_clearly(monkeypatch, tmp_path):
    with pytest.raises(PalisadeNotFound, match="not an executable"):
        PalisadeServer(binary=str(tmp_path / "palisade"))
    monkeypatch.delenv("PALISADE_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PalisadeNotFound, match="PALISADE_BIN"):
        PalisadeServer()


def test_the_session_fixture_is_one_server_for_the_session(palisade_session, request):
    assert palisade_session.running
    assert request.getfixturevalue("palisade_session") is palisade_session
    assert palisade_session.api_get("/api/machines?$top=1").status_code == 200


def test_palisade_tenant_is_the_session_server_with_the_demo_tenant_reset_after_each_test(pytester):
    pytester.makepyfile(
        """
        import datetime as dt

        seen = {}

        def test_a_changes_the_tenant(palisade_tenant):
            seen["pid"] = palisade_tenant.process.pid
            seen["state"] = palisade_tenant.control.get_state()
            machine = palisade_tenant.machines(top=1)[0]
            tagged = palisade_tenant.api_post(f"/api/machines/{machine['id']}/tags",
                                              json={"Value": "left over", "Action": "Add"})
            assert tagged.status_code == 200, tagged.text
            palisade_tenant.control.faults.add("GetMachine", 500)
            palisade_tenant.control.recorder.enable()
            palisade_tenant.control.clock.advance("PT2H")
            palisade_tenant.renew_token("reader@contoso.example")

        def test_b_finds_it_as_it_started(palisade_tenant):
            assert palisade_tenant.process.pid == seen["pid"], "one server"
            assert palisade_tenant.control.get_state() == seen["state"]
            assert palisade_tenant.control.recorder.get() == {"enabled": False}
            assert abs(palisade_tenant.control.clock.offset()) < dt.timedelta(seconds=5)
            # The app's token again, valid at the tenant's time: it may isolate (a reader may not).
            machine = palisade_tenant.machines(top=1)[0]
            isolated = palisade_tenant.api_post(f"/api/machines/{machine['id']}/isolate",
                                                json={"Comment": "c", "IsolationType": "Full"})
            assert isolated.status_code == 201, isolated.text

        def test_c_changes_the_session_server_itself(palisade_session):
            palisade_session.control.faults.add("ListMachines", 503)

        def test_d_starts_from_the_demo_tenant_all_the_same(palisade_tenant):
            assert palisade_tenant.control.faults.list() == []
            assert palisade_tenant.control.get_state()["machineActions"] == []
            assert len(palisade_tenant.machines(top=2)) == 2
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_palisade_tenant_gives_the_session_server(palisade_tenant, palisade_session):
    assert palisade_tenant is palisade_session
    palisade_tenant.control.clock.freeze()
    assert palisade_tenant.control.clock.get()["mode"] == "frozen"
