"""The HTTP(S) server and its authentication, on real sockets on 127.0.0.1 with real TLS."""

from __future__ import annotations

import asyncio
import gc
import gzip
import http.client
import re
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress

import bcrypt
import httptools
import pytest
from webtls import HASH, PASSWORD, TOKEN, USER, Pki, basic, bearer, client_context, get, make_pki

from agentmon.web.address import ListenAddressError, parse_listen_address
from agentmon.web.auth import Authenticator
from agentmon.web.config import TLSSettings, WebConfig
from agentmon.web.exposition import Exposition
from agentmon.web.request import Reader, refusal
from agentmon.web.response import CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE, prefers_openmetrics
from agentmon.web.server import MetricsServer

BODY = b"# HELP agentmon_db_up 1 if the database was readable\n# TYPE agentmon_db_up gauge\n" \
       b"agentmon_db_up 1.0\n"
USERS = {USER: HASH.encode()}
ANY = "0.0.0.0"  # noqa: S104 - parsed, never bound


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@contextmanager
def serving(config: WebConfig, host: str = "127.0.0.1:0",
            server_class: type[MetricsServer] = MetricsServer,
            server: MetricsServer | None = None) -> Iterator[MetricsServer]:
    ctx = config.tls.context() if config.tls else None
    if server is None:
        server = server_class(parse_listen_address(host), config, Exposition(BODY), ctx)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def tls(pki: Pki, **kwargs: object) -> TLSSettings:
    return TLSSettings(pki.server_cert, pki.server_key, **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------ listen address


@pytest.mark.parametrize(("text", "host", "port", "family", "loopback"), [
    ("127.0.0.1:9477", "127.0.0.1", 9477, socket.AF_INET, True),
    ("localhost:1", "127.0.0.1", 1, socket.AF_INET, True),
    ("[::1]:9477", "::1", 9477, socket.AF_INET6, True),
    (":9477", ANY, 9477, socket.AF_INET, False),
    (f"{ANY}:0", ANY, 0, socket.AF_INET, False),
    ("[::]:65535", "::", 65535, socket.AF_INET6, False),
    ("192.0.2.7:80", "192.0.2.7", 80, socket.AF_INET, False),
])
def test_listen_addresses(text: str, host: str, port: int, family: int, loopback: bool) -> None:
    address = parse_listen_address(text)
    assert (address.host, address.port, address.family) == (host, port, family)
    assert address.is_loopback is loopback


def test_listen_address_prints_like_it_is_written() -> None:
    assert str(parse_listen_address("[::1]:9477")) == "[::1]:9477"
    assert str(parse_listen_address("127.0.0.1:9477")) == "127.0.0.1:9477"


@pytest.mark.parametrize(("text", "expected"), [
    ("9477", "expected HOST:PORT"),
    ("127.0.0.1:", "port must be 0..65535"),
    ("127.0.0.1:65536", "port must be 0..65535"),
    ("127.0.0.1:-1", "port must be 0..65535"),
    ("::1:9477", "write IPv6 as [ADDRESS]:PORT"),
    ("example.org:9477", "host must be an IP address, localhost or empty"),
    ("[nonsense]:1", "host must be an IP address"),
])
def test_bad_listen_addresses(text: str, expected: str) -> None:
    with pytest.raises(ListenAddressError, match="bad listen address") as info:
        parse_listen_address(text)
    assert expected in str(info.value)


# ------------------------------------------------------------------ authenticator


def test_authenticator_without_credentials_allows_everything() -> None:
    auth = Authenticator({})
    assert not auth.enabled
    assert auth.check(None)
    assert auth.check("Basic garbage")


@pytest.mark.parametrize(("header", "ok"), [
    (basic()["Authorization"], True),
    (bearer()["Authorization"], True),
    (f"bearer   {TOKEN}  ", True),
    (None, False),
    ("", False),
    (basic(password="wrong")["Authorization"], False),
    (basic(user="nobody")["Authorization"], False),
    (basic(user=USER.upper())["Authorization"], False),
    (bearer(TOKEN + "x")["Authorization"], False),
    (bearer(TOKEN[:-1])["Authorization"], False),
    ("Bearer", False),
    ("Basic !!!notbase64", False),
    ("Basic " + "cHJvbWV0aGV1cw==", False),  # "prometheus", no colon
    ("Digest username=prometheus", False),
    (basic(password="x" * 100)["Authorization"], False),  # beyond bcrypt's 72 bytes
])
def test_authenticator_decisions(header: str | None, ok: bool) -> None:
    assert Authenticator(USERS, TOKEN.encode()).check(header) is ok


def test_bearer_is_not_accepted_when_only_users_are_configured() -> None:
    auth = Authenticator(USERS)
    assert not auth.check(bearer()["Authorization"])
    assert Authenticator({}, TOKEN.encode()).check(bearer()["Authorization"])
    assert not Authenticator({}, TOKEN.encode()).check(basic()["Authorization"])


def test_bcrypt_cost_is_paid_once_per_credential() -> None:
    auth = Authenticator(USERS)
    right, wrong = basic()["Authorization"], basic(password="nope")["Authorization"]
    for _ in range(20):
        assert auth.check(right)
    assert auth.bcrypt_calls == 1
    for _ in range(5):
        assert not auth.check(wrong)
    assert auth.bcrypt_calls == 2
    # an unknown user costs a bcrypt run too (no user enumeration by timing), once
    for _ in range(3):
        assert not auth.check(basic(user="ghost")["Authorization"])
    assert auth.bcrypt_calls == 3


def test_wrong_passwords_cannot_evict_the_right_one() -> None:
    auth = Authenticator(USERS, cache_size=2)
    right = basic()["Authorization"]
    assert auth.check(right)
    for n in range(4):
        assert not auth.check(basic(password=f"guess{n}")["Authorization"])
    assert auth.bcrypt_calls == 5
    assert auth.check(right)
    assert auth.bcrypt_calls == 5
    assert not auth.check(basic(password="guess0")["Authorization"])  # evicted: verified again
    assert auth.bcrypt_calls == 6


def test_cache_holds_no_password() -> None:
    auth = Authenticator(USERS)
    assert auth.check(basic()["Authorization"])
    keys = list(auth._good)
    assert len(keys) == 1
    assert PASSWORD.encode() not in keys[0]
    assert len(keys[0]) == 32  # an HMAC-SHA256, keyed per process
    assert keys != list(_fresh_keys())


def _fresh_keys() -> list[bytes]:
    other = Authenticator(USERS)
    other.check(basic()["Authorization"])
    return list(other._good)


def test_unknown_users_cost_as_much_as_the_dearest_known_one() -> None:
    dear = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=6))
    auth = Authenticator({USER: HASH.encode(), "other": dear})
    assert auth._dummy_hash.startswith(b"$2b$06$")


def test_htpasswd_style_2y_hashes_verify() -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).replace(b"$2b$", b"$2y$")
    assert Authenticator({"u": hashed}).check(basic("u", "pw")["Authorization"])


def test_exposition_keeps_plain_and_gzip_in_step() -> None:
    exposition = Exposition()
    assert exposition.get()[0] == b""
    assert exposition.get_openmetrics() is None
    exposition.set(BODY)
    plain, packed = exposition.get()
    assert plain == BODY
    assert gzip.decompress(packed) == BODY
    exposition.set(BODY, OM_BODY)
    plain, packed = exposition.get_openmetrics()  # type: ignore[misc]
    assert (plain, gzip.decompress(packed)) == (OM_BODY, OM_BODY)
    exposition.set(BODY)
    assert exposition.get_openmetrics() is None  # never an older rendering than the text


# ------------------------------------------------------------------ HTTP


def test_open_server_serves_metrics_landing_and_404() -> None:
    with serving(WebConfig()) as server:
        status, headers, body = get(server.port)
        assert (status, body) == (200, BODY)
        assert headers["Content-Type"] == CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
        assert headers["Server"] == "agentmon"
        status, headers, body = get(server.port, "/")
        assert status == 200
        assert b'href="/metrics"' in body
        assert get(server.port, "/metrics/extra")[0] == 404
        assert get(server.port, "/favicon.ico")[0] == 404
        assert get(server.port, "/metrics?x=1")[0] == 200


def test_methods_other_than_get_and_head() -> None:
    with serving(WebConfig()) as server:
        status, headers, body = get(server.port, method="HEAD")
        assert (status, body) == (200, b"")
        assert headers["Content-Length"] == str(len(BODY))
        status, headers, _ = get(server.port, method="POST")
        assert status == 405
        assert headers["Allow"] == "GET, HEAD"
        assert get(server.port, method="DELETE")[0] == 405
        assert get(server.port, method="BREW")[0] == 501


def test_gzip_only_when_accepted() -> None:
    with serving(WebConfig()) as server:
        status, headers, body = get(server.port, headers={"Accept-Encoding": "deflate, gzip"})
        assert status == 200
        assert headers["Content-Encoding"] == "gzip"
        assert headers["Vary"] == "Accept, Accept-Encoding"
        assert gzip.decompress(body) == BODY
        for refused in ("gzip;q=0", "identity", "br, gzip; q=0.0", ""):
            status, headers, body = get(server.port, headers={"Accept-Encoding": refused})
            assert "Content-Encoding" not in headers
            assert body == BODY


OM_BODY = BODY + b"# EOF\n"
PROMETHEUS_2 = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
                "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
PROMETHEUS_3 = ("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
                "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;"
                "escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1")


@pytest.mark.parametrize(("accept", "openmetrics"), [
    (PROMETHEUS_2, True),
    (PROMETHEUS_3, True),
    ("application/openmetrics-text; version=1.0.0", True),
    ("Application/OpenMetrics-Text", True),  # no version: 1.0.0 will do
    ("text/plain;q=0.5, application/openmetrics-text;q=0.6", True),
    ("", False),
    ("*/*", False),
    ("text/plain;version=0.0.4", False),
    ("application/openmetrics-text;q=0, text/plain", False),
    ("application/openmetrics-text, text/plain", False),  # a tie: the text format
    ("text/plain, application/openmetrics-text;q=0.9", False),
    ("application/openmetrics-text;version=0.0.1", False),  # only 1.0.0 is rendered
    ("application/openmetrics-text;version=2.0.0", False),
    ("application/openmetrics-text;q=nan", False),
    ("application/openmetrics-text;q=x", False),
    ("application/openmetrics-text;q=7", False),
    ("application/json", False),
])
def test_openmetrics_is_negotiated(accept: str, openmetrics: bool) -> None:
    assert prefers_openmetrics(accept) is openmetrics


def test_openmetrics_served_when_preferred() -> None:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
    server = MetricsServer(parse_listen_address("127.0.0.1:0"), WebConfig(),
                           Exposition(BODY, OM_BODY))
    with serving(WebConfig(), server=server) as server:
        status, headers, body = get(server.port, headers={"Accept": PROMETHEUS_2})
        assert (status, body) == (200, OM_BODY)
        assert headers["Content-Type"] == OPENMETRICS_CONTENT_TYPE == (
            "application/openmetrics-text; version=1.0.0; charset=utf-8")
        assert headers["Vary"] == "Accept, Accept-Encoding"
        assert [f.name for f in text_string_to_metric_families(body.decode())] == [
            "agentmon_db_up"]
        status, headers, body = get(server.port, headers={"Accept": PROMETHEUS_3,
                                                          "Accept-Encoding": "gzip"})
        assert headers["Content-Type"] == OPENMETRICS_CONTENT_TYPE
        assert gzip.decompress(body) == OM_BODY
        status, headers, body = get(server.port, headers={"Accept": "text/plain"})
        assert (headers["Content-Type"], body) == (CONTENT_TYPE, BODY)
        assert get(server.port)[2] == BODY


def test_text_format_until_openmetrics_is_rendered() -> None:
    with serving(WebConfig()) as server:  # Exposition(BODY): no OpenMetrics rendering yet
        status, headers, body = get(server.port, headers={"Accept": PROMETHEUS_2})
        assert (status, headers["Content-Type"], body) == (200, CONTENT_TYPE, BODY)


def test_configured_headers_are_added() -> None:
    config = WebConfig(headers={"X-Frame-Options": "deny", "X-Content-Type-Options": "nosniff"})
    with serving(config) as server:
        for path in ("/metrics", "/", "/nope"):
            _, headers, _ = get(server.port, path)
            assert headers["X-Frame-Options"] == "deny"
            assert headers["X-Content-Type-Options"] == "nosniff"


def test_basic_auth_over_http() -> None:
    with serving(WebConfig(basic_auth_users=USERS)) as server:
        assert get(server.port, headers=basic())[:3:2] == (200, BODY)
        for headers in ({}, basic(password="wrong"), basic(user="root"), bearer()):
            status, response_headers, body = get(server.port, headers=headers)
            assert status == 401
            assert response_headers["WWW-Authenticate"] == 'Basic realm="agentmon"'
            assert BODY not in body
        # nothing is revealed before authentication, not even which paths exist
        assert get(server.port, "/")[0] == 401
        assert get(server.port, "/nope")[0] == 401
        assert get(server.port, "/nope", basic())[0] == 404
        assert get(server.port, method="HEAD")[0] == 401
        assert server.authenticator.bcrypt_calls == 3  # right, wrong password, unknown user


def test_bearer_token_over_http() -> None:
    with serving(WebConfig(bearer_token=TOKEN.encode(), basic_auth_users=USERS)) as server:
        assert get(server.port, headers=bearer())[0] == 200
        assert get(server.port, headers=basic())[0] == 200
        status, headers, _ = get(server.port, headers=bearer("not-the-token-at-all"))
        assert status == 401
        assert headers["WWW-Authenticate"] == 'Basic realm="agentmon"'


def test_repeated_scrapes_on_one_connection_pay_bcrypt_once() -> None:
    with serving(WebConfig(basic_auth_users=USERS)) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        with closing(conn):
            for _ in range(50):
                conn.request("GET", "/metrics", headers=basic())
                response = conn.getresponse()
                assert (response.status, response.read()) == (200, BODY)
        assert server.authenticator.bcrypt_calls == 1


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this kernel")
    try:
        server_cm = serving(WebConfig(), "[::1]:0")
        server = server_cm.__enter__()
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        assert get(server.port, host="::1")[0] == 200
    finally:
        server_cm.__exit__(None, None, None)


def test_port_in_use_raises_oserror() -> None:
    with serving(WebConfig()) as server, pytest.raises(OSError, match="in use"):
        MetricsServer(parse_listen_address(f"127.0.0.1:{server.port}"), WebConfig(),
                      Exposition(BODY))


class TinyServer(MetricsServer):
    max_connections = 1


def test_connections_beyond_the_limit_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    with serving(WebConfig(), server_class=TinyServer) as server:
        held = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        with closing(held), caplog.at_level("WARNING", logger="agentmon.web"):
            held.request("GET", "/metrics")
            assert held.getresponse().read() == BODY  # keep-alive: its thread stays busy
            for _ in range(3):
                with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
                    get(server.port)
        assert caplog.messages == ["1 authenticated connections open; refusing new ones"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the slot comes back once the client is gone
            try:
                if get(server.port)[0] == 200:
                    break
            except (http.client.RemoteDisconnected, ConnectionError):
                time.sleep(0.02)
        else:
            pytest.fail("the connection slot was never released")


def test_control_characters_in_request_lines_never_reach_the_logs(
        caplog: pytest.LogCaptureFixture) -> None:
    with serving(WebConfig()) as server, caplog.at_level("DEBUG", logger="agentmon.web"):
        with closing(socket.create_connection(("127.0.0.1", server.port), timeout=10)) as s:
            s.sendall(b"GET /\x1b[31mred HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 400")  # not a request-target
        deadline = time.monotonic() + 10
        while '"-" 400' not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.01)
    assert "bad request from 127.0.0.1: Invalid char in url path" in caplog.text
    assert '127.0.0.1 "-" 400' in caplog.text
    assert "\x1b" not in caplog.text


def test_client_resetting_mid_request_is_logged_at_debug(
        caplog: pytest.LogCaptureFixture) -> None:
    with serving(WebConfig()) as server, caplog.at_level("DEBUG", logger="agentmon.web"):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        s.sendall(b"GET /metrics HTTP/1.1\r\n")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # RST while the server reads the headers
        deadline = time.monotonic() + 10
        while "ended with an error" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.01)
        assert get(server.port)[0] == 200
    assert "connection from 127.0.0.1 ended with an error" in caplog.text


# ------------------------------------------------------------------ TLS


def test_tls_12_and_13_accepted_11_refused(pki: Pki) -> None:
    with serving(WebConfig(tls=tls(pki), basic_auth_users=USERS)) as server:
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            ctx = client_context(pki, min_version=version, max_version=version)
            assert get(server.port, headers=basic(), context=ctx)[:3:2] == (200, BODY)
            assert get(server.port, context=ctx)[0] == 401
        old = client_context(pki, min_version=ssl.TLSVersion.TLSv1_1,
                             max_version=ssl.TLSVersion.TLSv1_1)
        with pytest.raises(ssl.SSLError, match=r"PROTOCOL_VERSION|protocol version"):
            get(server.port, headers=basic(), context=old)


def test_min_version_tls13_refuses_tls12(pki: Pki) -> None:
    with serving(WebConfig(tls=tls(pki, min_version="TLS13"))) as server:
        tls12 = client_context(pki, max_version=ssl.TLSVersion.TLSv1_2)
        with pytest.raises(ssl.SSLError, match=r"PROTOCOL_VERSION|protocol version"):
            get(server.port, context=tls12)
        assert get(server.port, context=client_context(pki))[0] == 200


def test_max_version_tls12_refuses_tls13_only_clients(pki: Pki) -> None:
    with serving(WebConfig(tls=tls(pki, max_version="TLS12"))) as server:
        tls13 = client_context(pki, min_version=ssl.TLSVersion.TLSv1_3)
        with pytest.raises(ssl.SSLError):
            get(server.port, context=tls13)
        assert get(server.port, context=client_context(pki))[0] == 200


def test_client_certificates_required_and_verified(pki: Pki) -> None:
    settings = tls(pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file=pki.ca)
    with serving(WebConfig(tls=settings)) as server:
        assert get(server.port, context=client_context(pki, cert=True))[:3:2] == (200, BODY)
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            without = client_context(pki, min_version=version, max_version=version)
            with pytest.raises((ssl.SSLError, ConnectionError)):
                get(server.port, context=without)
            intruder = client_context(pki, other=True, min_version=version,
                                      max_version=version)
            with pytest.raises((ssl.SSLError, ConnectionError)):
                get(server.port, context=intruder)
        assert get(server.port, context=client_context(pki, cert=True))[0] == 200


def test_client_certificate_if_given(pki: Pki) -> None:
    settings = tls(pki, client_auth_type="VerifyClientCertIfGiven", client_ca_file=pki.ca)
    with serving(WebConfig(tls=settings)) as server:
        assert get(server.port, context=client_context(pki))[0] == 200
        assert get(server.port, context=client_context(pki, cert=True))[0] == 200
        with pytest.raises((ssl.SSLError, ConnectionError)):
            get(server.port, context=client_context(pki, other=True))


def test_client_certs_and_basic_auth_both_apply(pki: Pki) -> None:
    settings = tls(pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file=pki.ca)
    with serving(WebConfig(tls=settings, basic_auth_users=USERS)) as server:
        ctx = client_context(pki, cert=True)
        assert get(server.port, context=ctx)[0] == 401
        assert get(server.port, headers=basic(), context=ctx)[0] == 200


def test_silent_and_plain_text_clients_do_not_stall_tls(pki: Pki) -> None:
    with serving(WebConfig(tls=tls(pki))) as server:
        silent = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        with closing(silent):
            # the accept loop is not waiting on this client's handshake
            assert get(server.port, context=client_context(pki))[0] == 200
            with pytest.raises((http.client.HTTPException, ConnectionError)):
                get(server.port)  # plain HTTP to the TLS port
            assert get(server.port, context=client_context(pki))[0] == 200


def test_untrusted_server_cert_is_rejected_by_a_verifying_client(pki: Pki) -> None:
    """Sanity check of the test PKI itself: the client really verifies the server."""
    with serving(WebConfig(tls=tls(pki))) as server:
        ctx = ssl.create_default_context(cafile=str(pki.other_client_cert))
        with pytest.raises(ssl.SSLCertVerificationError):
            get(server.port, context=ctx)


# ------------------------------------------------------------------ hostile clients (issue 8)


def closed_by_server(port: int, data: bytes) -> bool:
    """True when the server closes the connection without an answer (not our timeout)."""
    with closing(socket.create_connection(("127.0.0.1", port), timeout=10)) as s:
        s.sendall(data)
        try:
            return s.recv(100) == b""
        except ConnectionResetError:
            return True


def raw(port: int, data: bytes, *, read_all: bool = True, timeout: float = 10) -> bytes:
    """Send bytes on a new connection; everything the server answers until it closes."""
    with closing(socket.create_connection(("127.0.0.1", port), timeout=timeout)) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionError, TimeoutError):
                break
            if not chunk:
                break
            out += chunk
            if not read_all:
                break
        return out


def statuses(answer: bytes) -> list[int]:
    return [int(m) for m in re.findall(rb"^HTTP/1\.1 (\d{3}) ", answer, re.M)]


HARDENED = {"X-Frame-Options": "deny", "X-Content-Type-Options": "nosniff"}
AUTH = basic()["Authorization"]


def test_authentication_comes_before_405_and_501() -> None:
    with serving(WebConfig(basic_auth_users=USERS, headers=HARDENED)) as server:
        for method in ("POST", "DELETE", "OPTIONS", "PROPFIND"):
            status, headers, _ = get(server.port, method=method)
            assert status == 401, method
            assert headers["WWW-Authenticate"] == 'Basic realm="agentmon"'
        assert get(server.port, method="POST", headers=basic())[0] == 405
        status, headers, body = get(server.port, method="PROPFIND", headers=basic())
        assert status == 501
        assert headers["X-Frame-Options"] == "deny"
        assert b"<" not in body
        # a method the parser does not know cannot be read any further: 501 and close, as
        # for any request that cannot be parsed (so before authentication)
        status, headers, body = get(server.port, method="BREW")
        assert (status, headers["Connection"]) == (501, "close")
        assert headers["X-Frame-Options"] == "deny"
        assert b"<" not in body


def test_a_body_is_read_not_parsed_as_the_next_request() -> None:
    smuggled = b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
    with serving(WebConfig(basic_auth_users=USERS)) as server:
        answer = raw(server.port, (
            f"POST /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\n"
            f"Content-Length: {len(smuggled)}\r\n\r\n").encode() + smuggled + (
            f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\n"
            "Connection: close\r\n\r\n").encode())
        assert statuses(answer) == [405, 200]
        # and without credentials: 401, the body still not a request
        answer = raw(server.port, (
            f"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: {len(smuggled)}\r\n\r\n"
            ).encode() + smuggled + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert statuses(answer) == [401, 401]


def test_large_bodies_close_the_connection_small_chunked_ones_are_read() -> None:
    with serving(WebConfig(basic_auth_users=USERS, headers=HARDENED)) as server:
        answer = raw(server.port, (
            f"POST /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\n"
            "Content-Length: 1000000\r\n\r\n").encode() + b"x" * 100_000)
        assert statuses(answer) == [413]
        assert b"Connection: close" in answer
        assert b"X-Frame-Options: deny" in answer
        # chunked framing is the parser's: a small chunked body is read, not taken for a request
        answer = raw(server.port, (
            f"POST /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\n"
            "Connection: close\r\n\r\n").encode())
        assert statuses(answer) == [405, 200]
        # a chunked body longer than max_body is not read to its end: 413, closed
        chunk = b"4000\r\n" + b"x" * 0x4000 + b"\r\n"
        answer = raw(server.port, (
            f"POST /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode() + chunk * 3)
        assert statuses(answer) == [413]
        assert b"Connection: close" in answer
        answer = raw(server.port, b"POST /metrics HTTP/1.1\r\nHost: x\r\n"
                     b"Transfer-Encoding: gzip\r\n\r\n")
        assert statuses(answer) == [501]
        for bad in ("abc", "-1", "1, 2"):
            answer = raw(server.port, f"GET /metrics HTTP/1.1\r\nContent-Length: {bad}\r\n\r\n"
                         .encode())
            assert statuses(answer) == [400], bad


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GARBAGE\r\n\r\n", 501),  # not a method the parser knows
    (b"GET /metrics\r\n\r\n", 505),  # HTTP/0.9
    (b"GET /metrics FTP/1.1\r\n\r\n", 400),
    (b"GET /metrics HTTP/2.0\r\n\r\n", 505),
    (b"GET /metrics HTTP/1.1\r\nNo colon here\r\n\r\n", 400),
    (b"GET /metrics HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
    (b"GET /metrics HTTP/1.1\r\n folded: x\r\n\r\n", 400),
    (b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n", 400),
    (b"GET /metrics HTTP/1.2\r\n\r\n", 400),
    (b"GET /metrics HTTP/1.1\nHost: x\n\n", 400),  # bare LF
    (b"GET /metrics HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    (b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400),
    (b"GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET /" + b"a" * 20000, 414),  # never ends
    (b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
    (b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000, 431),  # never ends
    (b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 20000, 431),  # first header never ends
    (b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"X-Many: a\r\n" * 40 + b"\r\n", 431),
])
def test_error_responses_carry_the_configured_headers_and_no_html(request_bytes: bytes,
                                                                  status: int) -> None:
    with serving(WebConfig(basic_auth_users=USERS, headers=HARDENED)) as server:
        answer = raw(server.port, request_bytes)
        assert statuses(answer) == [status]
        head, _, body = answer.partition(b"\r\n\r\n")
        assert b"\r\nX-Frame-Options: deny\r\n" in head + b"\r\n"
        assert b"\r\nX-Content-Type-Options: nosniff" in head
        assert b"Content-Type: text/plain; charset=utf-8" in head
        assert b"Connection: close" in head
        assert b"<" not in body
        assert len(body) == int(re.search(rb"Content-Length: (\d+)", head).group(1))


def test_the_head_bound_is_exact_whatever_the_reads() -> None:
    """A head of max_header_bytes (blank line included) is served, one byte more is 431, sent in
    one piece (the server counts what the parser reports of a complete head)."""
    def head(size: int) -> bytes:
        start = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: "
        return start + b"a" * (size - len(start) - 4) + b"\r\n\r\n"

    with serving(WebConfig()) as server:
        limit = MetricsServer.max_header_bytes
        assert len(head(limit)) == limit
        assert statuses(raw(server.port, head(limit))) == [200]
        assert statuses(raw(server.port, head(limit + 1))) == [431]


def test_a_request_after_a_head_near_the_bound_in_the_same_read_is_served() -> None:
    """The parser is fed at most the bound of an unfinished head: a read that holds the end of
    a head near the bound and the next request serves both."""
    start = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: "
    first = start + b"a" * (MetricsServer.max_header_bytes - 40 - len(start) - 4) + b"\r\n\r\n"
    second = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with serving(WebConfig()) as server, closing(
            socket.create_connection(("127.0.0.1", server.port), timeout=10)) as s:
        # Two sends: where the server's reads split them is the kernel's choice, and both
        # requests are served either way (the split itself: the Reader test below).
        s.sendall(first[:100])
        s.sendall(first[100:] + second)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert statuses(answer) == [200, 200]


def test_a_head_that_follows_a_request_in_one_read_is_bounded_too() -> None:
    """A head that came with the previous request goes straight to that request's parser:
    it is held to the same bound."""
    first = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    with serving(WebConfig()) as server:
        answer = raw(server.port, first + b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 20000)
        assert statuses(answer) == [200, 431]
        answer = raw(server.port, first + b"GET /" + b"a" * 20000)
        assert statuses(answer) == [200, 414]
        answer = raw(server.port, first + b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n")
        assert statuses(answer) == [200, 414]


def test_a_head_arriving_line_by_line_holds_its_bytes_not_a_parser() -> None:
    """A parser is made when a head has ended and dropped once its request is done (a head
    that outgrows the bound first is refused unparsed): a slow client holds its bytes only."""
    reader = Reader(MetricsServer.max_header_bytes)
    reader.feed(b"\r\n")
    assert not reader.started
    for line in (b"GET /metrics HTTP/1.1\r\n", b"Host: x\r\n", b"X-Slow: 1\r\n"):
        reader.feed(line)
        assert reader.started
        assert reader.parser is None
        assert not reader.ready
    reader.feed(b"\r")
    assert reader.parser is None
    reader.feed(b"\nGET / HT")  # the head ends; the next one begins in the same read
    assert [m.url for m in reader.ready] == [bytearray(b"/metrics")]
    assert reader.ready[0].headers == [(b"host", b"x"), (b"x-slow", b"1")]
    reader.ready.pop(0)
    reader.release()
    assert reader.parser is not None  # it holds the start of the next head
    reader.feed(b"TP/1.1\r\n\r\n")
    assert [m.url for m in reader.ready] == [bytearray(b"/")]
    reader.ready.pop(0)
    reader.release()
    assert reader.parser is None
    assert not reader.started
    # a head that outgrows the bound is refused unparsed, and its bytes let go
    reader.feed(b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * MetricsServer.max_header_bytes)
    assert reader.fed > MetricsServer.max_header_bytes
    assert reader.parser is None
    assert reader.oversized().status == 431
    assert not reader.pending


def test_a_head_that_follows_another_is_fed_up_to_the_bound_and_what_follows_it_too() -> None:
    """A head begun in the previous request's read is given to the parser up to the bound;
    when it ends within that, the requests after it in the same read are parsed too."""
    limit = MetricsServer.max_header_bytes
    reader = Reader(limit)
    reader.feed(b"GET / HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\nX-Pad: ")
    assert [m.url for m in reader.ready] == [bytearray(b"/")]
    reader.ready.pop(0)
    reader.release()
    third = b"GET /third HTTP/1.1\r\n\r\n"
    reader.feed(b"a" * (limit - 100) + b"\r\n\r\n" + third * 20)  # past the bound
    assert [m.url for m in reader.ready][:2] == [bytearray(b"/metrics"), bytearray(b"/third")]
    assert len(reader.ready) == 21


def test_a_malformed_head_in_two_reads_is_400() -> None:
    """The first read is held (its head has not ended); the second ends it and the parser
    refuses it, as 400. Fed to the Reader directly: where a socket's reads split is not ours."""
    reader = Reader(MetricsServer.max_header_bytes)
    reader.feed(b"GET /metrics HTTP/1.1\r\n")
    assert reader.parser is None
    with pytest.raises(httptools.HttpParserError) as caught:
        reader.feed(b"Bad Name: x\r\n\r\n")
    assert refusal(caught.value, "test").status == 400


def test_a_connections_parser_is_freed_without_the_cycle_collector() -> None:
    """The parser holds its callbacks, never the other way round: when a connection ends
    (served, refused or cut mid-body) its parser is freed at once, not left to the cycle
    collector (which, under an attack's churn, ran too seldom to keep the memory down)."""
    heads = [b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
             b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
             b"GET /metrics HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
             b"GET / HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n"]  # one and a half
    gc.collect()
    gc.disable()
    try:
        for head in heads:
            reader = Reader(MetricsServer.max_header_bytes)
            reader.feed(head)
            assert reader.parser is not None
            del reader
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_blank_lines_before_a_request_are_skipped() -> None:
    with serving(WebConfig()) as server:
        answer = raw(server.port, b"\r\n\r\n\nGET /metrics HTTP/1.1\r\nHost: x\r\n"
                     b"Connection: close\r\n\r\n")
        assert statuses(answer) == [200]
        with closing(socket.create_connection(("127.0.0.1", server.port), timeout=10)) as s:
            s.sendall(b"\r\n")  # alone in its segment: not yet a request
            time.sleep(0.1)  # lets the server read it on its own (either way, the answer is 200)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 200")


def test_upgrade_and_connect_are_answered_then_closed() -> None:
    """After an Upgrade or a CONNECT the parser reads nothing more: answered, then closed, and
    what follows is not taken for a request."""
    with serving(WebConfig(basic_auth_users=USERS)) as server:
        answer = raw(server.port, (
            f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\nUpgrade: h2c\r\n"
            "Connection: Upgrade\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n").encode())
        assert statuses(answer) == [200]
        assert b"Connection: close" in answer
        answer = raw(server.port, b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\n\r\nSSH-2.0")
        assert statuses(answer) == [401]
        answer = raw(server.port, (f"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\n"
                                   f"Authorization: {AUTH}\r\n\r\n").encode())
        assert statuses(answer) == [405]


def test_a_malformed_chunked_body_is_400() -> None:
    with serving(WebConfig()) as server:
        answer = raw(server.port, b"POST /metrics HTTP/1.1\r\nHost: x\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
        assert statuses(answer) == [400]
        assert b"Connection: close" in answer


def test_repeated_headers_are_joined() -> None:
    with serving(WebConfig()) as server:
        answer = raw(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: br\r\n"
                     b"Accept-Encoding: gzip\r\nConnection: close\r\n\r\n")
        assert statuses(answer) == [200]
        assert b"Content-Encoding: gzip" in answer


@pytest.mark.parametrize("partial", [
    b"GET /metrics HTTP/1.1\r\nHost: x\r\n",  # mid-head
    b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",  # mid-body
    b"POST /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
])
def test_a_client_leaving_mid_request_gets_no_answer(partial: bytes) -> None:
    with serving(WebConfig()) as server:
        with closing(socket.create_connection(("127.0.0.1", server.port), timeout=10)) as s:
            s.sendall(partial)
            s.shutdown(socket.SHUT_WR)  # the server reads the end of the stream
            assert s.recv(100) == b""  # closed without a word
        assert get(server.port)[0] == 200


class QuickServer(MetricsServer):
    handshake_timeout = 0.5
    header_timeout = 0.5
    idle_timeout = 1.0


def test_slow_heads_get_408_and_idle_sockets_are_closed() -> None:
    with serving(WebConfig(headers=HARDENED), server_class=QuickServer) as server:
        # raw() reads until the server closes; its 10 s socket timeout is only a failure guard
        answer = raw(server.port, b"GET /metrics HTTP/1.1\r\nX-Slow: 1\r\n")
        assert statuses(answer) == [408]
        assert b"X-Frame-Options: deny" in answer
        assert b"Connection: close" in answer
        assert closed_by_server(server.port, b"")  # an idle socket: closed, no answer


def test_the_head_deadline_is_total_not_per_line() -> None:
    """A header line every 0.1 s (faster than the 0.5 s head deadline) used to keep a connection
    (and its slot) forever: the server must end the request while the lines still arrive."""
    with serving(WebConfig(), server_class=QuickServer) as server, closing(
            socket.create_connection(("127.0.0.1", server.port), timeout=10)) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\n")
        answer = None
        for n in range(600):  # 60 s of dripping: only a failure guard
            if select.select([s], [], [], 0.1)[0]:  # the server answered or closed
                with suppress(ConnectionResetError):
                    answer = s.recv(4096)
                answer = answer or b""
                break
            try:
                s.sendall(f"X-Drip-{n}: x\r\n".encode())
            except (BrokenPipeError, ConnectionResetError):
                answer = b""
                break
        assert answer is not None, "a dripping client kept its connection for 60 s"
        assert answer == b"" or statuses(answer) == [408]


def test_tls_handshake_has_a_deadline(pki: Pki) -> None:
    with serving(WebConfig(tls=tls(pki)), server_class=QuickServer) as server, closing(
            socket.create_connection(("127.0.0.1", server.port), timeout=10)) as s:
        s.sendall(b"\x16\x03\x01")  # the start of a ClientHello, then nothing
        assert s.recv(100) == b""  # closed by the server (the 10 s timeout is a failure guard)


class LongIdle(MetricsServer):
    header_timeout = 0.3
    idle_timeout = 120.0


def test_authenticated_keep_alive_may_idle_between_scrapes() -> None:
    """An authenticated connection idles past the head deadline and stays open: the proof that
    the head deadline has passed is a slow anonymous head, started later, getting its 408."""
    with serving(WebConfig(basic_auth_users=USERS), server_class=LongIdle) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        with closing(conn):
            conn.request("GET", "/metrics", headers=basic())
            assert conn.getresponse().read() == BODY
            later = raw(server.port, b"GET /metrics HTTP/1.1\r\nX-Slow: 1\r\n")
            assert statuses(later) == [408]
            conn.request("GET", "/metrics", headers=basic())
            assert conn.getresponse().read() == BODY


class SmallTable(MetricsServer):
    max_connections = 20


def test_anonymous_connections_cannot_take_every_slot() -> None:
    """A full table of silent anonymous sockets: a new authenticated scrape still gets in, by
    evicting the oldest anonymous connection; authenticated keep-alive connections stay."""
    with serving(WebConfig(basic_auth_users=USERS), server_class=SmallTable) as server:
        keeper = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        keeper.request("GET", "/metrics", headers=basic())
        assert keeper.getresponse().read() == BODY
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(40)]
        try:
            for _ in range(5):
                assert get(server.port, headers=basic())[:3:2] == (200, BODY)
            keeper.request("GET", "/metrics", headers=basic())
            assert keeper.getresponse().read() == BODY
            assert server.evicted >= 20
        finally:
            for s in idle:
                s.close()
            keeper.close()


def _wrong_password_clients(port: int, n: int, stop: threading.Event) -> list[threading.Thread]:
    def hammer(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        guess = 0
        with closing(conn):
            while not stop.is_set():
                try:
                    conn.request("GET", "/metrics", headers=basic(password=f"guess{i}-{guess}"))
                    conn.getresponse().read()
                except (OSError, http.client.HTTPException):
                    conn.close()
                    time.sleep(0.1)
                guess += 1

    threads = [threading.Thread(target=hammer, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    return threads


@pytest.mark.slow
def test_slow_anonymous_and_wrong_password_clients_do_not_stop_scrapes(pki: Pki) -> None:
    """A smaller version of bench/bench_attack.py: 100 slow anonymous TLS clients (a header
    line every 0.5 s), 100 idle sockets and 20 keep-alive wrong-password clients; every
    authenticated scrape on a new connection succeeds. The old server (64 threads) failed
    every one."""
    config = WebConfig(tls=tls(pki), basic_auth_users=USERS)
    stop = threading.Event()
    with serving(config) as server:
        ctx = client_context(pki)
        assert get(server.port, headers=basic(), context=ctx)[0] == 200
        slow_ctx = client_context(pki)
        slow: list[ssl.SSLSocket] = []
        for _ in range(100):
            s = slow_ctx.wrap_socket(socket.create_connection(("127.0.0.1", server.port),
                                                              timeout=10),
                                     server_hostname="localhost")
            s.sendall(b"GET /metrics HTTP/1.1\r\n")
            slow.append(s)
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(100)]
        hammers = _wrong_password_clients(server.port, 20, stop)
        results = []
        try:
            for n in range(8):
                for s in slow:
                    with suppress(OSError):
                        s.sendall(f"X-Slow-{n}: x\r\n".encode())
                status, _, body = get(server.port, headers=basic(), context=ctx)
                results.append((status, body))
                time.sleep(0.5)
        finally:
            stop.set()
            for t in hammers:
                t.join(15)
            for s in slow + idle:  # type: ignore[operator]
                s.close()
        assert results == [(200, BODY)] * 8


def test_bcrypt_runs_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """While a bcrypt check is held inside bcrypt (until the test lets it go), a cached
    credential is answered: if bcrypt ran on the event loop, nothing would be answered."""
    entered, release = threading.Event(), threading.Event()
    real_checkpw = bcrypt.checkpw

    def held_checkpw(password: bytes, hashed: bytes) -> bool:
        entered.set()
        release.wait(30)  # a failure guard only
        return real_checkpw(password, hashed)

    with serving(WebConfig(basic_auth_users=USERS)) as server:
        assert get(server.port, headers=basic())[0] == 200  # now cached
        monkeypatch.setattr(bcrypt, "checkpw", held_checkpw)
        slow_status: list[int] = []
        slow = threading.Thread(target=lambda: slow_status.append(
            get(server.port, headers=basic(password="wrong"))[0]))
        slow.start()
        try:
            assert entered.wait(30), "the wrong password never reached bcrypt"
            assert get(server.port, headers=basic())[0] == 200
            assert slow.is_alive()  # answered while the wrong password was held in bcrypt
        finally:
            release.set()
            slow.join(30)
        assert slow_status == [401]


def test_handshake_turns_go_to_the_newest_waiter_a_few_per_iteration() -> None:
    from agentmon.web.stream import Turns

    async def scenario() -> tuple[list[int], list[int]]:
        turns = Turns(per_iteration=2)
        order: list[int] = []
        iterations: list[int] = []
        tick = 0

        async def ticker() -> None:
            nonlocal tick
            while True:
                await asyncio.sleep(0)
                tick += 1

        async def client(n: int) -> None:
            await turns.wait()
            order.append(n)
            iterations.append(tick)

        clock = asyncio.create_task(ticker())
        tasks = [asyncio.create_task(client(n)) for n in range(7)]
        await asyncio.sleep(0)  # all seven wait now
        tasks[3].cancel()  # its deadline passed while waiting: skipped, not granted
        await asyncio.gather(*tasks, return_exceptions=True)
        clock.cancel()
        return order, iterations

    order, iterations = asyncio.run(scenario())
    assert order == [6, 5, 4, 2, 1, 0]  # newest first, the cancelled one skipped
    assert max(iterations.count(t) for t in set(iterations)) <= 2
