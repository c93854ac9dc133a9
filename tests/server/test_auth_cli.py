"""The `bearerguard` command line: keys create/list/revoke, store selection, errors."""

from __future__ import annotations

import importlib.util
import json
import socket
from pathlib import Path

import pytest

from bearerguard.cli import main
from bearerguard.stores import open_store
from bearerguard.stores.base import verify_secret
from helpers import remember_secret
from live_service import LiveService, free_port, run_cli


def one_line_error(done_stderr: str) -> str:
    lines = done_stderr.strip().splitlines()
    assert len(lines) == 1, done_stderr
    assert "Traceback" not in done_stderr
    assert lines[0].startswith("bearerguard: error: ")
    return lines[0]


def test_create_list_revoke_json(sqlite_url: str) -> None:
    done = run_cli(
        ["keys", "create", "--api", "vps", "--api", "dns", "--json", "--store", sqlite_url]
    )
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    secret = remember_secret(created["secret"])
    assert created["apis"] == ["dns", "vps"]
    assert created["key_id"].startswith("key_")
    assert len(secret) >= 43

    # The store holds the key with a digest of the secret, never the secret itself.
    store = open_store(sqlite_url)
    try:
        record = store.get_key(created["key_id"])
        assert record is not None and verify_secret(record, secret)
        assert record.introspect is False
    finally:
        store.close()
    assert secret.encode() not in Path(sqlite_url.removeprefix("sqlite:///")).read_bytes()

    rs = run_cli(["keys", "create", "--api", "x", "--introspect", "--json", "--store", sqlite_url])
    rs_key = json.loads(rs.stdout)
    remember_secret(rs_key["secret"])
    assert rs_key["introspect"] is True

    done = run_cli(["keys", "list", "--json", "--store", sqlite_url])
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert [k["key_id"] for k in listed] == [created["key_id"], rs_key["key_id"]]
    assert listed[0]["apis"] == ["dns", "vps"] and listed[1]["introspect"] is True
    assert secret not in done.stdout and "secret" not in done.stdout

    done = run_cli(["keys", "list", "--store", sqlite_url])
    assert created["key_id"] in done.stdout and "dns vps" in done.stdout

    done = run_cli(["keys", "revoke", created["key_id"], "--json", "--store", sqlite_url])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"key_id": created["key_id"], "revoked": True}
    listed = json.loads(run_cli(["keys", "list", "--json", "--store", sqlite_url]).stdout)
    assert [k["key_id"] for k in listed] == [rs_key["key_id"]]

    # Revoking again: nothing to revoke, exit status 1.
    done = run_cli(["keys", "revoke", created["key_id"], "--store", sqlite_url])
    assert done.returncode == 1
    assert "no such key" in done.stderr


def test_bearerguard_store_environment_variable(sqlite_url: str, tmp_path: Path) -> None:
    done = run_cli(
        ["keys", "create", "--api", "dns", "--json"], env={"BEARERGUARD_STORE": sqlite_url}
    )
    assert done.returncode == 0, done.stderr
    key_id = json.loads(done.stdout)["key_id"]
    remember_secret(json.loads(done.stdout)["secret"])
    listed = json.loads(run_cli(["keys", "list", "--json", "--store", sqlite_url]).stdout)
    assert [k["key_id"] for k in listed] == [key_id]
    # --store wins over the environment.
    other = "sqlite:///" + str(tmp_path / "other.db")
    done = run_cli(
        ["keys", "list", "--json", "--store", other], env={"BEARERGUARD_STORE": sqlite_url}
    )
    assert json.loads(done.stdout) == []


def test_default_store_is_bearerguard_db_in_the_current_directory(tmp_path: Path) -> None:
    done = run_cli(["keys", "create", "--api", "dns", "--json"], cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    remember_secret(json.loads(done.stdout)["secret"])
    assert (tmp_path / "bearerguard.db").is_file()


@pytest.mark.parametrize(
    "url",
    [
        "bogus://x",
        "not a url",
        "sqlite:////nonexistent-dir/sub/x.db",
        "memory://with/path",
    ],
)
def test_bad_store_url_is_one_line_exit_2(url: str) -> None:
    for args in (["keys", "list"], ["keys", "create", "--api", "dns"], ["serve", "--port", "0"]):
        done = run_cli([*args, "--store", url])
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        one_line_error(done.stderr)
        assert done.stdout == ""


def test_unreachable_redis_is_one_line_exit_2() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    for args in (["keys", "list"], ["serve", "--port", str(free_port())]):
        done = run_cli([*args, "--store", url])
        assert done.returncode == 2, done.stderr
        assert "unavailable" in one_line_error(done.stderr)


@pytest.mark.parametrize(
    "url",
    [
        "redis://:hunter2-password@127.0.0.1:{port}/0",  # unreachable
        "redis://:hunter2-password@127.0.0.1:{port}/notadb",  # bad URL
        "redix://:hunter2-password@127.0.0.1:{port}/0",  # unknown scheme
    ],
)
def test_store_password_is_not_echoed(url: str) -> None:
    done = run_cli(["keys", "list", "--store", url.format(port=free_port())])
    assert done.returncode == 2
    line = one_line_error(done.stderr)
    assert "hunter2-password" not in line


def test_port_in_use_is_one_line_exit_2(sqlite_url: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_cli(["serve", "--port", str(port), "--store", sqlite_url])
    assert done.returncode == 2
    assert "cannot listen" in one_line_error(done.stderr)


def test_second_server_on_the_same_port_fails_cleanly(sqlite_url: str) -> None:
    with LiveService(sqlite_url) as live:
        done = run_cli(["serve", "--port", str(live.port), "--store", sqlite_url])
        assert done.returncode == 2
        one_line_error(done.stderr)


def test_demo_subcommand() -> None:
    if importlib.util.find_spec("bearerguard.demo") is None:
        done = run_cli(["demo"])
        assert done.returncode == 2
        assert "demo" in one_line_error(done.stderr)
    else:
        done = run_cli(["demo", "--help"])
        assert done.returncode == 0, done.stderr
        assert "usage: bearerguard demo" in done.stdout


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "--store", "memory://"]) == 2  # no --api (nor --admin)
    assert "--api" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert main(["serve", "--token-ttl", "0", "--store", "memory://"]) == 2
    assert "token-ttl" in capsys.readouterr().err


def test_main_in_process_with_memory_store(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "create", "--api", "dns", "--json", "--store", "memory://"]) == 0
    out = json.loads(capsys.readouterr().out)
    remember_secret(out["secret"])
    assert out["apis"] == ["dns"]
    assert set(out) >= {"key_id", "secret", "apis"}
