"""``radroute web`` refuses to start without credentials; ``--hash-password`` makes a user's hash."""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

from radroute.cli import app
from tests.routing.test_config import MINIMAL as BASE

@pytest.mark.parametrize("web, message", [
    ("", "no [web] section"),
    ("\n[web]\nport = 8081\n", "web: needs token"),
    ('\n[web]\ntoken = "short"\n', "web.token"),
    ('\n[web]\n[[web.users]]\nname = "ana"\npassword_hash = "plain-text"\n', "web.users[0].password_hash: must be"),
    ('\n[web]\n[[web.users]]\nname = "ana"\npassword_hash = "pbkdf2_sha256$1000$salt$AAAA"\n',
     "at least 100000 PBKDF2 iterations"),
])
def test_refuses_to_start_without_credentials(tmp_path, web, message):
    config = tmp_path / "router.toml"
    config.write_text(BASE + web)
    res = CliRunner().invoke(app, ["web", "--config", str(config)])
    assert res.exit_code == 2
    assert "error: invalid_config" in res.output and message in res.output
    assert not (tmp_path / "spool").exists()  # nothing opened


def test_hash_password_from_stdin():
    from radroute.web.auth import verify_password

    res = CliRunner().invoke(app, ["web", "--hash-password"], input="correct horse\n")
    assert res.exit_code == 0, res.output
    encoded = res.stdout.strip().splitlines()[-1]
    assert encoded.startswith("pbkdf2_sha256$600000$")
    assert verify_password("correct horse", encoded) and not verify_password("wrong", encoded)
    assert CliRunner().invoke(app, ["web", "--hash-password"], input="\n").exit_code == 2
    assert CliRunner().invoke(app, ["web"]).exit_code == 2  # no --config
