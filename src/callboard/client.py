"""A Python client for the callboard HTTP API (httpx).

The one place that builds callboard URLs: the CLI and the dashboard use it. Errors
from the server come back as typed exceptions carrying status, code and message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"


class ClientError(Exception):
    """An error answer from the server (or no answer at all, `status` 0)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class InvalidRequest(ClientError):
    pass


class Unauthorized(ClientError):
    pass


class Forbidden(ClientError):
    pass


class NotFound(ClientError):
    pass


class Conflict(ClientError):
    pass


class TooLarge(ClientError):
    pass


class Unavailable(ClientError):
    pass


class ConnectionFailed(ClientError):
    pass


_BY_STATUS: dict[int, type[ClientError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
    422: InvalidRequest,
    503: Unavailable,
}


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", f"HTTP {response.status_code}: {response.text[:200]}"
    raise _BY_STATUS.get(response.status_code, ClientError)(response.status_code, code, message)


def read_token_file(path: Path) -> str | None:
    try:
        token = path.read_text().strip()
    except (FileNotFoundError, PermissionError):
        return None
    return token or None


@dataclass
class Client:
    """A synchronous client. `Client(url, token)`; use as a context manager or call
    `close()`."""

    url: str = DEFAULT_URL
    token: str | None = None
    timeout: float = 10.0

    def __post_init__(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._http = httpx.Client(
            base_url=self.url.rstrip("/"), headers=headers, timeout=self.timeout
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ConnectionFailed(
                0, "connection_failed", f"cannot reach {self.url}: {exc}"
            ) from exc
        _raise_for(response)
        return response.json() if response.content else None

    # --- companies and tokens ------------------------------------------------------------

    def create_company(self, name: str) -> dict[str, Any]:
        return self._request("POST", "/api/companies", json={"name": name})

    def companies(self) -> list[dict[str, Any]]:
        return self._request("GET", "/api/companies")["items"]

    def company_id(self, name_or_id: str) -> str:
        """A company's id from its name or id (the CLI takes either)."""
        for company in self.companies():
            if name_or_id in (company["id"], company["name"]):
                return company["id"]
        raise NotFound(404, "not_found", f"no company named or with id {name_or_id!r}")

    def create_token(self, company: str, label: str) -> dict[str, Any]:
        return self._request(
            "POST", f"/api/companies/{self.company_id(company)}/tokens", json={"label": label}
        )

    def tokens(self, company: str) -> list[dict[str, Any]]:
        return self._request("GET", f"/api/companies/{self.company_id(company)}/tokens")["items"]

    def revoke_token(self, company: str, token_id: str) -> None:
        self._request("DELETE", f"/api/companies/{self.company_id(company)}/tokens/{token_id}")
