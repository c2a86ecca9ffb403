"""Users and permissions are the same on every gateway and survive a restart (they live on the log)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import pytest

from tests.auth.conftest import API, Api, AuthGateway, admin, auth_settings, basic, grant, new_user
from trackstream.settings import Settings


@pytest.mark.services
def test_two_replicas_share_users_and_decide_a_name_once(
    kafka_settings: Callable[..., Settings], auth_gateway_factory: Callable[[Settings], AuthGateway]
) -> None:
    settings = auth_settings(kafka_settings, kafka=True)
    a, b = auth_gateway_factory(settings), auth_gateway_factory(settings)
    new_user(a, "rita")
    rita_on_b = Api(b.url, basic("rita", "rita-password-1"))
    assert rita_on_b.ok("GET", f"{API}/users/current")["user"]["username"] == "rita"  # b's view caught up
    experiment_id = admin(b).ok("POST", f"{API}/experiments/create", {"name": f"r-{uuid.uuid4().hex[:6]}"})[
        "experiment_id"
    ]
    grant(a, "rita", experiment_id, "NO_PERMISSIONS")
    assert rita_on_b.call("GET", f"{API}/experiments/get", {"experiment_id": experiment_id}).status_code == 403
    grant_b = {"experiment_id": experiment_id, "username": "rita", "permission": "EDIT"}
    admin(a).ok("PATCH", f"{API}/experiments/permissions/update", grant_b)
    # b may not have applied a's change yet: a refusal is only given once b's view caught up with the log
    assert rita_on_b.call("POST", f"{API}/runs/create", {"experiment_id": experiment_id}).status_code == 200

    # the same new name sent to both replicas at once: exactly one create wins, wherever it was sent
    answers: list[int] = []
    body = {"username": "twin", "password": "twin-password-1"}

    def create(gateway: AuthGateway) -> None:
        answers.append(admin(gateway).call("POST", f"{API}/users/create", body).status_code)

    threads = [threading.Thread(target=create, args=(g,)) for g in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(answers) == [200, 400, 400, 400]
    ids = {admin(g).ok("GET", f"{API}/users/get", {"username": "twin"})["user"]["id"] for g in (a, b)}
    assert len(ids) == 1


@pytest.mark.parametrize("mode", ["embedded", pytest.param("kafka", marks=pytest.mark.services)])
def test_users_and_permissions_survive_a_restart(
    mode: str, request: pytest.FixtureRequest, auth_gateway_factory: Callable[[Settings], AuthGateway]
) -> None:
    kafka = mode == "kafka"
    settings = auth_settings(request.getfixturevalue("kafka_settings" if kafka else "embedded_settings"), kafka)
    first = auth_gateway_factory(settings)
    new_user(first, "kept")
    experiment_id = admin(first).ok("POST", f"{API}/experiments/create", {"name": f"k-{uuid.uuid4().hex[:6]}"})[
        "experiment_id"
    ]
    grant(first, "kept", experiment_id, "MANAGE")
    first.runtime.close()
    # the initial admin's password setting is ignored once the admin exists
    second = auth_gateway_factory(settings.model_copy(update={"auth_admin_password": None}))
    kept = Api(second.url, basic("kept", "kept-password-1"))
    got = kept.ok("GET", f"{API}/experiments/permissions/get", {"experiment_id": experiment_id, "username": "kept"})
    assert got["experiment_permission"]["permission"] == "MANAGE"
    assert admin(second).ok("GET", f"{API}/users/get", {"username": "kept"})["user"]["id"] == 2
