"""`callboard companies` and `callboard tokens` against a real server process."""

from __future__ import annotations

import json
import stat

import httpx
import pytest
from serve_process import serve

pytestmark = pytest.mark.slow


def test_companies_and_tokens_through_the_api(tmp_path):
    with serve(tmp_path) as server:
        token_file = server.data_dir / "operator.token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert any(str(token_file) in line for line in server.log)

        created = server.cli("companies", "create", "acme")
        assert created.returncode == 0, created.stderr
        company_id, name = created.stdout.split()
        assert name == "acme"
        again = server.cli("companies", "create", "acme")
        assert again.returncode == 1
        assert again.stderr.strip() == "callboard: a company named 'acme' already exists"

        listed = json.loads(server.cli("companies", "list", "--json").stdout)
        assert [c["name"] for c in listed] == ["acme"]

        capped = server.cli("companies", "set-max-running", "acme", "5")
        assert capped.returncode == 0, capped.stderr
        assert capped.stdout.split() == [company_id, "acme", "at", "most", "5", "running"]
        listed = json.loads(server.cli("companies", "list", "--json").stdout)
        assert [c["maxRunning"] for c in listed] == [5]
        lifted = server.cli("companies", "set-max-running", "acme", "none", "--json")
        assert lifted.returncode == 0 and json.loads(lifted.stdout)["maxRunning"] is None
        for bad in ("0", "-2", "many"):
            refused = server.cli("companies", "set-max-running", "acme", bad)
            assert refused.returncode == 2 and "at least 1 or none" in refused.stderr
        unknown = server.cli("companies", "set-max-running", "nobody", "3")
        assert unknown.returncode == 1 and "nobody" in unknown.stderr

        made = server.cli("tokens", "create", "--company", "acme", "--label", "ci")
        assert made.returncode == 0, made.stderr
        secret = made.stdout.strip()
        assert secret.startswith("cb_") and "shown only now" in made.stderr

        # The new token sees its company and nothing more.
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {secret}"}) as c:
            assert [x["id"] for x in c.get("/api/companies").json()["items"]] == [company_id]
            assert c.get("/api/stats").status_code == 403

        tokens = json.loads(server.cli("tokens", "list", "--company", company_id, "--json").stdout)
        assert [t["label"] for t in tokens] == ["ci"] and "token" not in tokens[0]
        revoked = server.cli("tokens", "revoke", tokens[0]["id"], "--company", "acme")
        assert revoked.returncode == 0, revoked.stderr
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {secret}"}) as c:
            assert c.get("/api/companies").status_code == 401


def test_client_errors_are_one_line_with_exit_2(tmp_path):
    with serve(tmp_path) as server:
        bad = server.cli("companies", "list", "--token", "cb_000000000000_nope")
        assert bad.returncode == 2
        assert bad.stderr.strip() == "callboard: the bearer token is not valid"
        down = server.cli("companies", "list", "--url", "http://127.0.0.1:9")
        assert down.returncode == 2
        assert down.stderr.startswith("callboard: cannot reach http://127.0.0.1:9")
        assert "Traceback" not in bad.stderr + down.stderr
