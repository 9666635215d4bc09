"""A small typed client for the ThingsBoard REST endpoints provisioning needs (the tenant administrator's,
and the system administrator's rule-engine queues).

Plain httpx rather than tb-rest-client: that package installs cleanly next to ours, but it is untyped
generated code, starts a token-refresh thread per client and deserialises every response into models
pinned to one server version; provisioning needs ten endpoints and a handful of fields.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

JsonObject = dict[str, Any]
RULE_ENGINE = "TB_RULE_ENGINE"  # the service type whose queues the rule engine runs


class ThingsBoardError(Exception):
    """ThingsBoard refused or could not be reached; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"ThingsBoard: {message}" + (f" (HTTP {status})" if status else ""))
        self.status = status


def entity_id(entity: JsonObject) -> str:
    """The id of a ThingsBoard entity (``{"id": {"entityType": ..., "id": ...}}``)."""
    ref = entity.get("id")
    if not isinstance(ref, dict) or not isinstance(ref.get("id"), str):
        raise ThingsBoardError(0, f"unexpected entity without an id: {str(entity)[:200]}")
    value: str = ref["id"]
    return value


class ThingsBoardAdmin:
    PAGE_SIZE = 100

    def __init__(self, base_url: str, *, timeout_s: float = 15.0) -> None:
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        try:
            response = self._http.request(method, path, json=json, params=params)
        except httpx.HTTPError as exc:
            raise ThingsBoardError(0, f"{method} {path} failed: {exc}") from exc
        if response.status_code >= 400:
            try:
                message = response.json().get("message") or response.text
            except ValueError:
                message = response.text
            raise ThingsBoardError(response.status_code, f"{method} {path}: {message}")
        try:
            return response.json()
        except ValueError as exc:
            raise ThingsBoardError(response.status_code, f"{method} {path}: answer is not JSON") from exc

    def _object(self, method: str, path: str, **kwargs: Any) -> JsonObject:
        result = self._call(method, path, **kwargs)
        if not isinstance(result, dict):
            raise ThingsBoardError(0, f"{method} {path}: expected a JSON object")
        return result

    def _pages(self, path: str, **params: Any) -> Iterator[JsonObject]:
        page = 0
        while True:
            data = self._object("GET", path, params={**params, "pageSize": self.PAGE_SIZE, "page": page})
            yield from data.get("data") or []
            if not data.get("hasNext"):
                return
            page += 1

    def login(self, username: str, password: str) -> None:
        tokens = self._object("POST", "/api/auth/login", json={"username": username, "password": password})
        if not isinstance(tokens.get("token"), str):
            raise ThingsBoardError(0, "login answered without a token")
        self._http.headers["X-Authorization"] = f"Bearer {tokens['token']}"

    def find_device(self, name: str) -> JsonObject | None:
        try:
            return self._object("GET", "/api/tenant/devices", params={"deviceName": name})
        except ThingsBoardError as exc:
            if exc.status == 404:
                return None
            raise

    def save_device(self, device: JsonObject) -> JsonObject:
        return self._object("POST", "/api/device", json=device)

    def access_token(self, device_id: str) -> str:
        credentials = self._object("GET", f"/api/device/{device_id}/credentials")
        if credentials.get("credentialsType") != "ACCESS_TOKEN" or not credentials.get("credentialsId"):
            raise ThingsBoardError(
                0,
                f"device {device_id} has {credentials.get('credentialsType')} credentials, not a token",
            )
        token: str = credentials["credentialsId"]
        return token

    def device_profiles(self, name: str) -> list[JsonObject]:
        return [p for p in self._pages("/api/deviceProfiles", textSearch=name) if p.get("name") == name]

    def save_device_profile(self, profile: JsonObject) -> JsonObject:
        return self._object("POST", "/api/deviceProfile", json=profile)

    def rule_chains(self, name: str) -> list[JsonObject]:
        return [
            c for c in self._pages("/api/ruleChains", type="CORE", textSearch=name) if c.get("name") == name
        ]

    def rule_chain(self, chain_id: str) -> JsonObject:
        return self._object("GET", f"/api/ruleChain/{chain_id}")

    def save_rule_chain(self, chain: JsonObject) -> JsonObject:
        return self._object("POST", "/api/ruleChain", json=chain)

    def rule_chain_metadata(self, chain_id: str) -> JsonObject:
        return self._object("GET", f"/api/ruleChain/{chain_id}/metadata")

    def save_rule_chain_metadata(self, metadata: JsonObject) -> JsonObject:
        return self._object("POST", "/api/ruleChain/metadata", json=metadata)

    # Rule-engine queues (QueueController): anyone logged in may read them, only the system
    # administrator may save them (a tenant administrator gets 403)
    def queue(self, name: str) -> JsonObject | None:
        try:
            return self._object("GET", f"/api/queues/name/{quote(name, safe='')}")
        except ThingsBoardError as exc:
            if exc.status == 404:
                return None
            raise

    def save_queue(self, queue: JsonObject) -> JsonObject:
        """Create (no ``id``) or update (the queue's ``id``; name and topic cannot change)."""
        return self._object("POST", "/api/queues", json=queue, params={"serviceType": RULE_ENGINE})
