"""The web config file: what loads, and one clear line for everything that must not."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import yaml
from webtls import HASH, PASSWORD, TOKEN, USER, Pki, make_pki

from agentmon.web.config import WebConfigError, load_web_config


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def write(folder: Path, text: str, name: str = "web.yml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def token_file(folder: Path, content: str = TOKEN + "\n", mode: int = 0o600) -> Path:
    path = folder / "token"
    path.write_text(content)
    path.chmod(mode)
    return path


def tls_yaml(pki: Pki, **extra: str) -> str:
    lines = ["tls_server_config:", f"  cert_file: {pki.server_cert}",
             f"  key_file: {pki.server_key}"]
    lines += [f"  {k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def refusal(path: Path) -> str:
    with pytest.raises(WebConfigError) as info:
        load_web_config(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_no_file_means_no_tls_and_no_auth() -> None:
    config = load_web_config(None)
    assert config.tls is None
    assert not config.auth_enabled
    assert config.summary() == "plain HTTP, no authentication"


def test_empty_file_is_an_empty_config(tmp_path: Path) -> None:
    config = load_web_config(write(tmp_path, "# nothing yet\n"))
    assert not config.auth_enabled
    assert config.headers == {}


def test_full_config_with_relative_paths(tmp_path: Path, pki: Pki) -> None:
    for src in (pki.server_cert, pki.server_key, pki.ca):
        (tmp_path / src.name).write_bytes(src.read_bytes())
    (tmp_path / pki.server_key.name).chmod(0o640)
    token_file(tmp_path)
    path = write(tmp_path, f"""
tls_server_config:
  cert_file: {pki.server_cert.name}
  key_file: {pki.server_key.name}
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: {pki.ca.name}
  min_version: TLS13
  cipher_suites: []
  prefer_server_cipher_suites: false
http_server_config:
  http2: false
  headers:
    X-Frame-Options: deny
    X-Content-Type-Options: nosniff
    Strict-Transport-Security: max-age=31536000
    Content-Security-Policy: ""
basic_auth_users:
  {USER}: {HASH}
  other: {HASH.replace("$2b$", "$2y$")}
bearer_token_file: token
""")
    config = load_web_config(path)
    assert config.tls is not None
    assert config.tls.cert_file == tmp_path / pki.server_cert.name
    assert config.tls.client_ca_file == tmp_path / pki.ca.name
    assert config.tls.min_version == "TLS13"
    ctx = config.tls.context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    assert not ctx.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert config.headers == {"X-Frame-Options": "deny", "X-Content-Type-Options": "nosniff",
                              "Strict-Transport-Security": "max-age=31536000"}
    assert set(config.basic_auth_users) == {USER, "other"}
    assert config.bearer_token == TOKEN.encode()
    summary = config.summary()
    assert summary == ("TLS TLS13..TLS13, client certificates: RequireAndVerifyClientCert, "
                       "basic auth (2 users), bearer token")
    assert TOKEN not in repr(config)


def test_tls_defaults(tmp_path: Path, pki: Pki) -> None:
    config = load_web_config(write(tmp_path, tls_yaml(pki)))
    assert config.tls is not None
    ctx = config.tls.context()
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.maximum_version == ssl.TLSVersion.TLSv1_3
    assert ctx.verify_mode == ssl.CERT_NONE
    assert ctx.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert config.summary() == ("TLS TLS12..TLS13, client certificates: NoClientCert, "
                                "no authentication")


def test_verify_if_given_maps_to_optional(tmp_path: Path, pki: Pki) -> None:
    path = write(tmp_path, tls_yaml(pki, client_auth_type="VerifyClientCertIfGiven",
                                    client_ca_file=str(pki.ca)))
    config = load_web_config(path)
    assert config.tls is not None
    assert config.tls.context().verify_mode == ssl.CERT_OPTIONAL


def test_single_user_summary(tmp_path: Path) -> None:
    config = load_web_config(write(tmp_path, f"basic_auth_users:\n  {USER}: '{HASH}'\n"))
    assert config.summary() == "plain HTTP, basic auth (1 user)"


# ------------------------------------------------------------------------- refusals


def test_missing_file(tmp_path: Path) -> None:
    assert refusal(tmp_path / "nope.yml") == (
        f"cannot read web config {tmp_path / 'nope.yml'}: No such file or directory")


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_bytes(b"basic_auth_users: \xff\n")
    assert refusal(path).startswith(f"cannot read web config {path}: 'utf-8' codec can't decode")


def test_null_sections_are_empty(tmp_path: Path) -> None:
    config = load_web_config(write(tmp_path, "http_server_config:\n  headers:\n"
                                             "basic_auth_users:\ntls_server_config:\n"))
    assert config.headers == {}
    assert config.tls is None
    assert not config.auth_enabled


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    message = refusal(write(tmp_path, "basic_auth_users:\n  a: [unclosed\n"))
    assert "invalid YAML at line" in message


def test_yaml_tags_are_not_executed(tmp_path: Path) -> None:
    message = refusal(write(tmp_path, "x: !!python/object/apply:os.system ['true']\n"))
    assert "invalid YAML" in message


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert refusal(write(tmp_path, "- a\n")).endswith("the file must be a mapping, not list")


@pytest.mark.parametrize(("text", "expected"), [
    ("rate_limit: {}\n", "unknown key rate_limit; known: tls_server_config"),
    ("http_server_config:\n  http3: true\n", "unknown key http_server_config.http3"),
    ("http_server_config:\n  http2: maybe\n", "http_server_config.http2 must be true or false"),
    ("http_server_config:\n  http2: true\n",
     "http_server_config.http2: true is not supported: agentmon serves HTTP/1.1 only; set it to "
     "false or leave it out"),
    ("http_server_config:\n  headers:\n    X-Evil: 1\n",
     "unsupported header 'X-Evil'; allowed: Content-Security-Policy"),
    ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
     "X-Frame-Options: 'allow' is not one of deny, sameorigin"),
    ("http_server_config:\n  headers:\n    X-XSS-Protection: \"1\\r\\nSet-Cookie: a=b\"\n",
     "X-XSS-Protection must be a one-line string"),
    ("http_server_config:\n  headers: [a]\n", "http_server_config.headers must be a mapping"),
    ("basic_auth_users: [a]\n", "basic_auth_users must be a mapping, not list"),
    ("basic_auth_users:\n  'a:b': x\n", "user name 'a:b' must be a non-empty string"),
    ("tls_server_config:\n  key_file: k\n", "tls_server_config.cert_file is required"),
    ("tls_server_config:\n  cert: PEM\n", "tls_server_config.cert (inline PEM) is not supported"),
    ("tls_server_config:\n  cert_file: c\n  bogus: 1\n", "unknown key tls_server_config.bogus"),
    ("tls_server_config:\n  cert_file: [c]\n  key_file: k\n",
     "tls_server_config.cert_file must be a file name"),
])
def test_refused_keys_and_values(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in refusal(write(tmp_path, text))


def test_plain_text_password_is_refused_without_echoing_it(tmp_path: Path) -> None:
    message = refusal(write(tmp_path, f"basic_auth_users:\n  {USER}: {PASSWORD}\n"))
    assert f"basic_auth_users.{USER}: not a bcrypt hash (plain-text passwords are refused)" in (
        message)
    assert "htpasswd -nBC 10" in message
    assert PASSWORD not in message


@pytest.mark.parametrize("bad", [
    "$2b$10$tooshort",
    "$2b$03$" + "a" * 53,  # cost below bcrypt's minimum
    "$1$" + "a" * 53,  # md5-crypt
    "",
])
def test_non_bcrypt_values_are_refused(tmp_path: Path, bad: str) -> None:
    assert "not a bcrypt hash" in refusal(write(tmp_path, f"basic_auth_users:\n  u: '{bad}'\n"))


@pytest.mark.parametrize("cost", [15, 31])
def test_bcrypt_cost_above_the_maximum_is_refused(tmp_path: Path, cost: int) -> None:
    """Cost 31 used to hang startup (the dummy hash alone takes days); now one line."""
    hashed = f"$2b${cost}$" + "a" * 53
    message = refusal(write(tmp_path, f"basic_auth_users:\n  u: '{hashed}'\n"))
    assert message.startswith(f"web config {tmp_path / 'web.yml'}: basic_auth_users.u: bcrypt "
                              f"cost {cost} is above the maximum of 14")
    assert "\n" not in message
    assert hashed not in message


def test_bcrypt_cost_at_the_maximum_is_accepted(tmp_path: Path) -> None:
    hashed = "$2b$14$" + "a" * 53
    config = load_web_config(write(tmp_path, f"basic_auth_users:\n  u: '{hashed}'\n"))
    assert config.basic_auth_users == {"u": hashed.encode()}


@pytest.mark.parametrize(("extra", "expected"), [
    ({"cipher_suites": "[TLS_AES_128_GCM_SHA256]"},
     "tls_server_config.cipher_suites is not supported by agentmon"),
    ({"curve_preferences": "[X25519]"}, "curve_preferences is not supported"),
    ({"client_allowed_sans": "[a]"}, "client_allowed_sans is not supported"),
    ({"min_version": "TLS11"}, "min_version: 'TLS11' is not one of TLS12, TLS13"),
    ({"max_version": "TLS10"}, "max_version: 'TLS10' is not one of TLS12, TLS13"),
    ({"min_version": "TLS13", "max_version": "TLS12"}, "max_version TLS12 is below min_version"),
    ({"client_auth_type": "RequireAnyClientCert"},
     "client_auth_type RequireAnyClientCert is not supported (it does not verify"),
    ({"client_auth_type": "RequestClientCert"}, "RequestClientCert is not supported"),
    ({"client_auth_type": "Sometimes"}, "client_auth_type: 'Sometimes' is not one of"),
    ({"client_auth_type": "RequireAndVerifyClientCert"},
     "client_auth_type RequireAndVerifyClientCert needs client_ca_file"),
    ({"prefer_server_cipher_suites": "yes please"},
     "prefer_server_cipher_suites must be true or false"),
])
def test_refused_tls_settings(tmp_path: Path, pki: Pki, extra: dict[str, str],
                              expected: str) -> None:
    assert expected in refusal(write(tmp_path, tls_yaml(pki, **extra)))


def test_client_ca_without_client_auth(tmp_path: Path, pki: Pki) -> None:
    message = refusal(write(tmp_path, tls_yaml(pki, client_ca_file=str(pki.ca))))
    assert "client_ca_file is set but client_auth_type is NoClientCert" in message


def test_missing_client_ca_file(tmp_path: Path, pki: Pki) -> None:
    message = refusal(write(tmp_path, tls_yaml(
        pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file="absent.pem")))
    assert message.endswith(f"tls_server_config.client_ca_file: cannot read "
                            f"{tmp_path / 'absent.pem'}: No such file or directory")


def test_client_ca_file_that_is_not_pem(tmp_path: Path, pki: Pki) -> None:
    ca = write(tmp_path, "not a certificate\n", "ca.pem")
    message = refusal(write(tmp_path, tls_yaml(
        pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file=str(ca))))
    assert "tls_server_config: cannot load client_ca_file" in message


def test_missing_cert_file(tmp_path: Path, pki: Pki) -> None:
    text = f"tls_server_config:\n  cert_file: missing.crt\n  key_file: {pki.server_key}\n"
    message = refusal(write(tmp_path, text))
    assert message.endswith(f"tls_server_config.cert_file: cannot read "
                            f"{tmp_path / 'missing.crt'}: No such file or directory")


def test_world_readable_key_is_refused(tmp_path: Path, pki: Pki) -> None:
    key = tmp_path / "open.key"
    key.write_bytes(pki.server_key.read_bytes())
    key.chmod(0o644)
    text = f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {key}\n"
    message = refusal(write(tmp_path, text))
    assert message.endswith(f"tls_server_config.key_file: {key} is readable by everyone "
                            "(mode 0644); chmod o-rwx it")


def test_unreadable_key_is_refused(tmp_path: Path, pki: Pki) -> None:
    # a folder cannot be read as a file, even by root (the tests may run as root)
    folder = tmp_path / "key.d"
    folder.mkdir(mode=0o700)
    text = f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {folder}\n"
    message = refusal(write(tmp_path, text))
    assert message.endswith(f"tls_server_config.key_file: cannot read {folder}: Is a directory")


def test_key_that_does_not_match_the_cert(tmp_path: Path, pki: Pki) -> None:
    text = f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.client_key}\n"
    message = refusal(write(tmp_path, text))
    assert f"cannot load cert_file {pki.server_cert} with key_file {pki.client_key}" in message
    assert "key values mismatch" in message


@pytest.mark.parametrize(("content", "mode", "expected"), [
    (TOKEN, 0o644, "is readable by everyone (mode 0644)"),
    ("", 0o600, "the token must be one line"),
    ("two words but long enough\n", 0o600, "the token must be one line"),
    ("\u00e9" * 20, 0o600, "the token must be one line"),
    ("tiny-tok", 0o600, "the token is shorter than 16 characters"),
])
def test_bad_bearer_token_files(tmp_path: Path, content: str, mode: int, expected: str) -> None:
    token_file(tmp_path, content, mode)
    message = refusal(write(tmp_path, "bearer_token_file: token\n"))
    assert expected in message
    assert content.strip() not in message or not content.strip()


def test_missing_bearer_token_file(tmp_path: Path) -> None:
    message = refusal(write(tmp_path, "bearer_token_file: /nonexistent/token\n"))
    assert message.endswith("bearer_token_file: cannot read /nonexistent/token: "
                            "No such file or directory")


def test_the_shipped_example_is_valid(tmp_path: Path, pki: Pki) -> None:
    example = Path(__file__).resolve().parents[2] / "docs" / "web-config.example.yml"
    data = yaml.safe_load(example.read_text())
    tls = data["tls_server_config"]
    assert set(tls) == {"cert_file", "key_file", "client_auth_type", "client_ca_file",
                        "min_version"}
    tls.update(cert_file=str(pki.server_cert), key_file=str(pki.server_key),
               client_ca_file=str(pki.ca))
    config = load_web_config(write(tmp_path, yaml.safe_dump(data)))
    assert config.tls is not None
    assert config.tls.client_auth_type == "RequireAndVerifyClientCert"
    assert list(config.basic_auth_users) == ["prometheus"]
    assert len(config.headers) == 3
