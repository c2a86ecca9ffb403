"""The REST routes of MLflow's basic-auth app, and bearer tokens.

Users (create, get, current, update-password, update-admin, delete), experiment and registered-model
permissions (create, get, update, delete) under ``/api/2.0/mlflow`` and ``/ajax-api/2.0/mlflow``, with
the stock auth app's fields, answers and error codes. Tokens are this gateway's own (the stock server
has none): ``POST users/tokens/create`` mints one for the caller (an admin: for anyone) and answers it
once; only its digest is kept. ``GET users/tokens/list`` and ``DELETE users/tokens/delete`` list and
revoke them. The MLflow client sends a token as ``Authorization: Bearer`` when
``MLFLOW_TRACKING_TOKEN`` is set.

Every change is an event on the auth topic, answered once this gateway's view applied it
(``ingest.auth.view``).
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool

from ingest.auth import credentials
from ingest.auth.access import EDIT, LEVELS, MANAGE, NO_PERMISSIONS, READ, Access
from ingest.auth.guard import Guard, now_ms
from ingest.endpoint import API, Endpoint
from ingest.errors import MlflowError, invalid, not_found
from ingest.requests import Body, Bool, Int64, Str
from schemas.events import AuthChange

PERMISSION_NAMES = (READ, EDIT, MANAGE, NO_PERMISSIONS)
MIN_PASSWORD = 12  # MLflow's rule (mlflow.utils.validation._validate_password)


class UserName(Body):
    username: Str | None = None


class CreateUser(Body):
    username: Str | None = None
    password: Str | None = None


class UpdatePassword(Body):
    username: Str | None = None
    password: Str | None = None
    current_password: Str | None = None


class UpdateAdmin(Body):
    username: Str | None = None
    is_admin: Bool | None = None


class ExperimentPermission(Body):
    experiment_id: Str | None = None
    username: Str | None = None
    permission: Str | None = None


class RegisteredModelPermission(Body):
    name: Str | None = None
    username: Str | None = None
    permission: Str | None = None


class CreateToken(Body):
    username: Str | None = None
    expires_in_seconds: Int64 | None = None


class DeleteToken(Body):
    token_id: Str | None = None


def _guard(ctx: Any) -> Guard:
    guard = ctx.guard
    assert isinstance(guard, Guard), "auth routes are served only with auth on"
    return guard


def _required(p: dict[str, Any], name: str) -> str:
    value = p.get(name)
    if value is None or value == "":
        raise invalid(f"Missing value for required parameter '{name}'.")
    return str(value)


def _password(value: Any) -> str:
    if not isinstance(value, str) or len(value) < MIN_PASSWORD:
        raise invalid(f"Password must be at least {MIN_PASSWORD} characters.")
    return value


def _permission(value: Any) -> str:
    if value not in LEVELS:
        raise invalid(f"Invalid permission '{value}'. Valid permissions are: {PERMISSION_NAMES}")
    return str(value)


def _user_json(guard: Guard, username: str) -> dict[str, Any]:
    user = guard.view.user(username)
    if user is None:
        raise not_found(f"User with username={username} not found")
    return {"user": user.to_json()}


# -- users --
async def create_user(ctx: Any, p: dict[str, Any]) -> dict[str, Any]:
    username, password = p.get("username"), p.get("password")
    if not username or not password:
        raise invalid("Username and password cannot be empty.")
    hashed = await run_in_threadpool(credentials.hash_password, _password(password))
    change = AuthChange(op="create_user", username=username, password_hash=hashed, is_admin=False, time=now_ms())
    await run_in_threadpool(_guard(ctx).view.write, change)
    return _user_json(_guard(ctx), username)


def get_user(ctx: Any, p: dict[str, Any]) -> dict[str, Any]:
    return _user_json(_guard(ctx), _required(p, "username"))


def current_user(ctx: Any, p: dict[str, Any]) -> dict[str, Any]:
    guard = _guard(ctx)
    return _user_json(guard, guard.caller())


def update_password(ctx: Any, p: dict[str, Any]) -> dict[str, Any]:
    guard = _guard(ctx)
    username = _required(p, "username")
    password = _password(p.get("password"))
    if username == guard.caller():  # self-service re-asserts the current password, as the stock server does
        current = p.get("current_password")
        if not current:
            raise invalid("Current password is required when changing your own password.")
        user = guard.view.user(username)
        if user is None or not credentials.password_matches(user.password_hash, current):
            raise invalid("Current password does not match.")
        if password == current:
            raise invalid("New password must differ from the current password.")
    hashed = credentials.hash_password(password)
    guard.view.write(AuthChange(op="update_password", username=username, password_hash=hashed, time=now_ms()))
    return {}


def update_admin(ctx: Any, p: dict[str, Any]) -> dict[str, Any]:
    username = _required(p, "username")
    if p.get("is_admin") is None:
        raise invalid("Missing value for required parameter 'is_admin'.")
    change = AuthChange(op="update_admin", username=username, is_admin=bool(p["is_admin"]), time=now_ms())
    _guard(ctx).view.write(change)
    return {}


def delete_user(ctx: Any, p: dict[str, Any]) -> dict[str, Any]:
    guard = _guard(ctx)
    username = _required(p, "username")
    if username == guard.caller():
        raise MlflowError(
            "Users cannot delete their own account. Ask another admin to delete this user instead.", "BAD_REQUEST"
        )
    guard.view.write(AuthChange(op="delete_user", username=username, time=now_ms()))
    return {}


# -- permissions --
def _permission_routes(resource_type: str, id_field: str, answer_key: str) -> list[tuple[str, str, Any]]:
    def change(op: str, p: dict[str, Any], permission: str | None = None) -> AuthChange:
        return AuthChange(
            op=op,
            username=_required(p, "username"),
            resource_type=resource_type,
            resource_id=_required(p, id_field),
            permission=permission,
            time=now_ms(),
        )

    def answer(ctx: Any, p: dict[str, Any]) -> dict[str, Any]:
        guard = _guard(ctx)
        username, rid = _required(p, "username"), _required(p, id_field)
        user = guard.view.user(username)
        held = guard.view.permission(resource_type, rid, username)
        if user is None or held is None:
            noun = "Experiment" if resource_type == "experiment" else "Registered model"
            raise not_found(f"{noun} permission with {id_field}={rid} and username={username} not found")
        return {answer_key: {id_field: rid, "user_id": user.id, "permission": held}}

    def create(ctx: Any, p: dict[str, Any]) -> dict[str, Any]:
        _guard(ctx).view.write(change("create_permission", p, _permission(p.get("permission"))))
        return answer(ctx, p)

    def update(ctx: Any, p: dict[str, Any]) -> dict[str, Any]:
        _guard(ctx).view.write(change("update_permission", p, _permission(p.get("permission"))))
        return {}

    def delete(ctx: Any, p: dict[str, Any]) -> dict[str, Any]:
        _guard(ctx).view.write(change("delete_permission", p))
        return {}

    return [
        ("create", "POST", create),
        ("get", "GET", answer),
        ("update", "PATCH", update),
        ("delete", "DELETE", delete),
    ]


# -- tokens --
def create_token(ctx: Any, p: dict[str, Any]) -> dict[str, Any]:
    guard = _guard(ctx)
    username = p.get("username") or guard.caller()
    if guard.view.user(username) is None:
        raise not_found(f"User with username={username} not found")
    ttl = p.get("expires_in_seconds")
    if ttl is not None and ttl <= 0:
        raise invalid("expires_in_seconds must be positive.")
    if guard.token_ttl_seconds:
        ttl = min(ttl or guard.token_ttl_seconds, guard.token_ttl_seconds)
    token, token_id, digest = credentials.new_token()
    expires = now_ms() + ttl * 1000 if ttl else None
    change = AuthChange(
        op="create_token", username=username, token_id=token_id, token_hash=digest, expires_ms=expires, time=now_ms()
    )
    guard.view.write(change)
    return {"token": token, "token_info": guard.view.tokens[token_id].to_json()}


def list_tokens(ctx: Any, p: dict[str, Any]) -> dict[str, Any]:
    guard = _guard(ctx)
    tokens = guard.view.tokens_of(p.get("username") or guard.caller())
    return {"tokens": [t.to_json() for t in sorted(tokens, key=lambda t: t.created_ms)]} if tokens else {}


def delete_token(ctx: Any, p: dict[str, Any]) -> dict[str, Any]:
    guard = _guard(ctx)
    token_id = _required(p, "token_id")
    found = guard.view.tokens.get(token_id)
    caller = guard.caller()
    if found is None or (found.username != caller and not guard.is_admin(caller)):
        raise not_found(f"Token with token_id={token_id} not found")
    guard.view.write(AuthChange(op="delete_token", username=found.username, token_id=token_id, time=now_ms()))
    return {}


def _endpoints() -> list[Endpoint]:
    out = [
        Endpoint("/users/create", ("POST",), create_user, CreateUser, blocking=False, access=Access.admin),
        Endpoint("/users/get", ("GET",), get_user, UserName, access=Access.self_),
        Endpoint("/users/current", ("GET",), current_user, None, access=Access.user),
        Endpoint("/users/update-password", ("PATCH",), update_password, UpdatePassword, access=Access.self_),
        Endpoint("/users/update-admin", ("PATCH",), update_admin, UpdateAdmin, access=Access.admin),
        Endpoint("/users/delete", ("DELETE",), delete_user, UserName, access=Access.admin),
        Endpoint("/users/tokens/create", ("POST",), create_token, CreateToken, access=Access.self_),
        Endpoint("/users/tokens/list", ("GET",), list_tokens, UserName, access=Access.self_),
        # the owner or an admin: checked by the handler, which knows the token's owner
        Endpoint("/users/tokens/delete", ("DELETE",), delete_token, DeleteToken, access=Access.user),
    ]
    for verb, method, handler in _permission_routes("experiment", "experiment_id", "experiment_permission"):
        out.append(
            Endpoint(f"/experiments/permissions/{verb}", (method,), handler, ExperimentPermission,
                     access=Access.experiment(MANAGE))
        )  # fmt: skip
    for verb, method, handler in _permission_routes("registered_model", "name", "registered_model_permission"):
        out.append(
            Endpoint(f"/registered-models/permissions/{verb}", (method,), handler, RegisteredModelPermission,
                     access=Access.registered_model(MANAGE))
        )  # fmt: skip
    return out


# Served only with auth on (``ingest.app.create_app``), before the registry's routes.
ENDPOINTS: list[Endpoint] = _endpoints()
__all__ = ["API", "ENDPOINTS"]
