import time

import requests


def isolate_and_wait(api_url, token, machine_id):
    """The playbook under test: isolate, then poll the action once a second until it ends."""
    auth = {"Authorization": f"Bearer {token}"}
    action = requests.post(f"{api_url}/machines/{machine_id}/isolate", headers=auth,
                           json={"Comment": "Contain", "IsolationType": "Full"}).json()
    url = f"{api_url}/machineactions/{action['id']}"
    for polls in range(1, 60):
        time.sleep(1)
        status = requests.get(url, headers=auth).json()["status"]
        if status not in ("Pending", "InProgress"):
            return status, polls


def test_the_playbook_waits_for_the_isolation_to_succeed(palisade):
    # First (position=0): the demo tenant has a rule of its own for every action.
    script = [{"status": "InProgress", "polls": 2}, {"status": "Succeeded"}]
    palisade.control.outcomes.add({"actionType": "Isolate"}, script, position=0)
    machine = palisade.api_get("/api/machines?$top=1").json()["value"][0]
    assert isolate_and_wait(palisade.api_url, palisade.token, machine["id"]) == ("Succeeded", 3)
