"""The tenant's clock (``palisade.control.clock``) against the real server: frozen,
advanced past the 3-day time-out of an action nothing carries on, and what the
next read sees (the old token expired, the action TimeOut)."""

import base64
import datetime as dt
import json
import time

import pytest
import requests

from palisade_emulator import ControlError, parse_duration, parse_instant


def claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def isolate(palisade, machine_id):
    created = palisade.api_post(f"/api/machines/{machine_id}/isolate",
                                json={"Comment": "contain", "IsolationType": "Full"})
    assert created.status_code == 201, created.text
    return created.json()


def action(palisade, action_id):
    reply = palisade.api_get(f"/api/machineactions/{action_id}")
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_a_frozen_clock_advanced_past_three_days_times_the_action_out_and_expires_the_token(palisade):
    control = palisade.control
    # The demo tenant's default rule would carry the isolation to Succeeded: without
    # rules it waits for a device that never comes, as a real one can.
    control.outcomes.clear()
    fresh = control.clock.get()
    assert (fresh["mode"], fresh["offset"]) == ("running", "PT0S")

    frozen = control.clock.freeze()
    assert frozen["mode"] == "frozen"
    at = parse_instant(frozen["now"])
    time.sleep(0.3)
    assert control.clock.get()["now"] == frozen["now"], "a frozen clock stands still"
    assert control.clock.now() == at

    machine = palisade.machines(top=1)[0]
    waiting = isolate(palisade, machine["id"])
    assert waiting["status"] == "Pending"
    assert waiting["creationDateTimeUtc"] == frozen["now"], "stamped with the tenant's time"
    assert action(palisade, waiting["id"])["status"] == "Pending"

    old_token = palisade.token
    advanced = control.clock.advance("P3DT1M")
    assert advanced["mode"] == "frozen"
    assert parse_instant(advanced["now"]) == at + dt.timedelta(days=3, minutes=1)
    # The offset is from the server's time, which went on while the clock stood still.
    offset = parse_duration(advanced["offset"])
    assert dt.timedelta(days=3) < offset <= dt.timedelta(days=3, minutes=1), advanced
    assert control.clock.offset() <= offset

    # The token was issued for an hour at the old time: refused at the next call.
    refused = requests.get(f"{palisade.api_url}/machineactions/{waiting['id']}",
                           headers={"Authorization": f"Bearer {old_token}"}, timeout=10)
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["code"] == "Unauthorized"
    assert "expired" in refused.json()["error"]["message"].lower()
    assert palisade.api_get("/api/machines?$top=1").status_code == 401, "api sends the old token"

    # A new token is issued at the tenant's time, and sees the action timed out.
    token = palisade.renew_token()
    assert token == palisade.token != old_token
    issued = claims(token)
    tenant_now = control.clock.now().timestamp()
    assert abs(issued["iat"] - tenant_now) < 60 and issued["exp"] > tenant_now, issued
    ended = action(palisade, waiting["id"])
    assert ended["status"] == "TimeOut", ended
    assert parse_instant(ended["lastUpdateDateTimeUtc"]) >= at + dt.timedelta(hours=72)
    listed = palisade.api_get(f"/api/machines/{machine['id']}/machineactions").json()["value"]
    assert [a["status"] for a in listed if a["id"] == waiting["id"]] == ["TimeOut"]

    # Time never goes backwards: refused naming `now`, and the clock did not move.
    with pytest.raises(ControlError) as back:
        control.clock.freeze(now=at)
    assert (back.value.status, back.value.code) == (400, "InvalidInput")
    assert "now" in back.value.message and "backwards" in back.value.message
    assert control.clock.get()["now"] == advanced["now"]

    running = control.clock.run()
    assert running["mode"] == "running"
    time.sleep(0.2)
    assert control.clock.now() > parse_instant(running["now"]), "a running clock moves on"


def test_an_advance_short_of_the_time_out_leaves_the_action_waiting_and_changes_combine(palisade):
    control = palisade.control
    control.outcomes.clear()
    machine = palisade.machines(top=1)[0]
    waiting = isolate(palisade, machine["id"])

    # In a running clock too, by a timedelta.
    moved = control.clock.advance(dt.timedelta(hours=71))
    assert moved["mode"] == "running"
    assert parse_duration(moved["offset"]) >= dt.timedelta(hours=71)
    palisade.renew_token()
    assert action(palisade, waiting["id"])["status"] == "Pending", "71 hours are not 72"

    # A mode and an advance in one change.
    stopped = control.clock.set("frozen", advance="PT61M")
    assert stopped["mode"] == "frozen"
    assert parse_instant(stopped["now"]) >= parse_instant(moved["now"]) + dt.timedelta(minutes=61)
    palisade.renew_token()
    assert action(palisade, waiting["id"])["status"] == "TimeOut"

    # Frozen at a time of one's choosing (ahead of the reading), to the microsecond.
    ahead = parse_instant(stopped["now"]) + dt.timedelta(days=1, microseconds=250)
    assert parse_instant(control.clock.freeze(now=ahead)["now"]) == ahead

    # A body the server cannot read is InvalidRequestBody; one that asks nothing, InvalidInput.
    with pytest.raises(ControlError) as unread:
        control.request("PUT", "/clock", {"advance": 5})
    assert (unread.value.status, unread.value.code) == (400, "InvalidRequestBody")
    assert "advance" in unread.value.message
    with pytest.raises(ControlError) as empty:
        control.clock.set()
    assert (empty.value.status, empty.value.code) == (400, "InvalidInput")
    with pytest.raises(ControlError) as month:
        control.clock.advance("P1M")
    assert month.value.status == 400 and "advance" in month.value.message
    with pytest.raises(ControlError) as running_at:
        control.clock.set("running", now=ahead + dt.timedelta(days=1))
    assert running_at.value.status == 400 and "now" in running_at.value.message
    assert parse_instant(control.clock.get()["now"]) == ahead, "nothing refused moved it"
