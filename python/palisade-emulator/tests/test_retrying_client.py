"""An example of testing a client's retries with fault rules (the README shows it):
the client under test honours Retry-After on 429; the rule answers the first two
calls 429 with `Retry-After: 1`, then the real answer."""

import time

import requests


def get_with_retries(session, url, tries=5, **kwargs):
    """The client under test: GET, and on 429 wait Retry-After seconds (1 without one) and try again."""
    for attempt in range(1, tries + 1):
        reply = session.get(url, **kwargs)
        if reply.status_code != 429 or attempt == tries:
            return reply
        time.sleep(int(reply.headers.get("Retry-After", "1")))


def timed(session):
    """Every answer's status and when it came, as the session receives them."""
    answers = []
    session.hooks["response"].append(lambda reply, **_: answers.append((time.monotonic(), reply.status_code)))
    return answers


def test_the_client_waits_retry_after_between_tries_and_gets_the_real_answer(palisade):
    palisade.control.faults.add({"operation": "ListMachines"}, {"status": 429, "retry_after": 1}, count=2)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {palisade.token}"
    answers = timed(session)

    reply = get_with_retries(session, f"{palisade.api_url}/machines", params={"$top": 3}, timeout=10)

    assert reply.status_code == 200, reply.text
    assert len(reply.json()["value"]) == 3
    assert [status for _, status in answers] == [429, 429, 200]
    waits = [later - earlier for (earlier, _), (later, _) in zip(answers, answers[1:])]
    assert all(wait >= 1.0 for wait in waits), waits
    [rule] = palisade.control.faults.list()
    assert (rule["hits"], rule["spent"]) == (2, True)


def test_the_client_gives_up_after_its_tries(palisade):
    palisade.control.faults.add("ListMachines", {"status": 429, "retry_after": 1})
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {palisade.token}"
    answers = timed(session)

    reply = get_with_retries(session, f"{palisade.api_url}/machines", tries=3, timeout=10)

    assert reply.status_code == 429
    assert reply.json()["error"]["code"] == "TooManyRequests"
    assert [status for _, status in answers] == [429, 429, 429]
    assert answers[-1][0] - answers[0][0] >= 2.0
    assert palisade.control.faults.list()[0]["hits"] == 3
