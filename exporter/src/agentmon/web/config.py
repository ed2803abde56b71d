"""The ``--web.config.file`` of ``agentmon serve``: load, validate, build the TLS context.

The format is the Prometheus exporter-toolkit's (``tls_server_config``, ``http_server_config``,
``basic_auth_users``) plus one agentmon key, ``bearer_token_file``. Everything is checked at
load time so that a bad file stops startup (or ``--check-config``) with one line naming the key
at fault, and never a traceback. Relative paths are resolved against the config file's folder,
as the exporter-toolkit does.
"""

from __future__ import annotations

import os
import re
import ssl
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class WebConfigError(ValueError):
    """A web config that cannot be used; the message is one line naming the key at fault."""


TOP_LEVEL_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users",
                  "bearer_token_file")
TLS_KEYS = ("cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version",
            "max_version", "cipher_suites", "prefer_server_cipher_suites", "curve_preferences",
            "cert", "key", "client_ca", "client_allowed_sans")
HTTP_KEYS = ("http2", "headers")
# HTTP/2 is not served (the parser, httptools, reads HTTP/1.x): Prometheus scrapes HTTP/1.1
# when TLS does not offer h2, nginx proxies to its upstreams in HTTP/1.1, and one scrape per
# interval gains nothing from multiplexing, while HTTP/2's streams and HPACK state are attack
# surface the deadlines here would not bound (rapid reset, CONTINUATION floods).
HTTP2_REFUSAL = ("http_server_config.http2: true is not supported: agentmon serves HTTP/1.1 "
                 "only; set it to false or leave it out")
# exporter-toolkit's list; header values are checked so no CR/LF can reach a response.
HEADER_VALUES: dict[str, tuple[str, ...] | None] = {
    "Content-Security-Policy": None,
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-Content-Type-Options": ("nosniff",),
    "X-XSS-Protection": None,
    "Strict-Transport-Security": None,
}
TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
# client_auth_type -> verify_mode. RequestClientCert and RequireAnyClientCert ask for a
# certificate without verifying it, which Python's ssl module cannot do (and which
# authenticates nobody): refused as unsupported.
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
BCRYPT_RE = re.compile(r"^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$")
# RFC 6750 b64token: what can travel in "Authorization: Bearer <token>".
TOKEN_RE = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
MIN_TOKEN_LEN = 16
# Each distinct credential costs one bcrypt run of 2**cost rounds (cost 10: ~55 ms here, 14:
# ~0.9 s, 31: days, at startup already for the dummy hash). Above this, refused.
MAX_BCRYPT_COST = 14
HTPASSWD_HINT = "htpasswd -nBC 10 '' | tr -d ':\\n'"


@dataclass(frozen=True)
class TLSSettings:
    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"
    prefer_server_cipher_suites: bool = True

    def context(self) -> ssl.SSLContext:
        """A server context; raises WebConfigError when the files do not load."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = TLS_VERSIONS[self.min_version]
        ctx.maximum_version = TLS_VERSIONS[self.max_version]
        if self.prefer_server_cipher_suites:
            ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        else:
            ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
        ctx.options |= ssl.OP_NO_COMPRESSION
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        except (ssl.SSLError, OSError) as exc:
            raise WebConfigError(
                f"tls_server_config: cannot load cert_file {self.cert_file} with key_file "
                f"{self.key_file}: {_reason(exc)}") from None
        ctx.verify_mode = CLIENT_AUTH[self.client_auth_type]
        if self.client_ca_file is not None:
            try:
                ctx.load_verify_locations(cafile=self.client_ca_file)
            except (ssl.SSLError, OSError) as exc:
                raise WebConfigError(f"tls_server_config: cannot load client_ca_file "
                                     f"{self.client_ca_file}: {_reason(exc)}") from None
        return ctx


@dataclass(frozen=True)
class WebConfig:
    path: Path | None = None
    tls: TLSSettings | None = None
    headers: dict[str, str] = field(default_factory=dict)
    basic_auth_users: dict[str, bytes] = field(default_factory=dict)
    bearer_token: bytes | None = field(default=None, repr=False)
    bearer_token_file: Path | None = None

    @property
    def auth_enabled(self) -> bool:
        return bool(self.basic_auth_users) or self.bearer_token is not None

    def summary(self) -> str:
        """One line for logs and --check-config; names no secret."""
        parts = []
        if self.tls is None:
            parts.append("plain HTTP")
        else:
            parts.append(f"TLS {self.tls.min_version}..{self.tls.max_version}, "
                         f"client certificates: {self.tls.client_auth_type}")
        users = len(self.basic_auth_users)
        if users:
            parts.append(f"basic auth ({users} user{'s' if users != 1 else ''})")
        if self.bearer_token is not None:
            parts.append("bearer token")
        if not self.auth_enabled:
            parts.append("no authentication")
        return ", ".join(parts)


def load_web_config(path: str | Path | None) -> WebConfig:
    """Read and validate the web config file; ``None`` means no file (no TLS, no auth)."""
    if path is None:
        return WebConfig()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WebConfigError(f"cannot read web config {path}: {_reason(exc)}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise WebConfigError(f"web config {path}: invalid YAML{where}: {problem}") from None
    try:
        return parse_web_config(data, base_dir=path.parent, path=path)
    except WebConfigError as exc:
        raise WebConfigError(f"web config {path}: {exc}") from None


def parse_web_config(data: Any, *, base_dir: Path, path: Path | None = None) -> WebConfig:
    if data is None:
        data = {}
    top = _mapping(data, "the file")
    _known_keys(top, TOP_LEVEL_KEYS, "")
    tls = _tls(top.get("tls_server_config"), base_dir)
    headers = _http(top.get("http_server_config"))
    users = _users(top.get("basic_auth_users"))
    token_file: Path | None = None
    token: bytes | None = None
    if top.get("bearer_token_file") is not None:
        token_file = _path(top["bearer_token_file"], "bearer_token_file", base_dir)
        token = _read_token(token_file)
    return WebConfig(path, tls, headers, users, token, token_file)


def _tls(section: Any, base_dir: Path) -> TLSSettings | None:
    if section is None:
        return None
    tls = _mapping(section, "tls_server_config")
    _known_keys(tls, TLS_KEYS, "tls_server_config.")
    for inline, use in (("cert", "cert_file"), ("key", "key_file"), ("client_ca",
                                                                      "client_ca_file")):
        if inline in tls:
            raise WebConfigError(f"tls_server_config.{inline} (inline PEM) is not supported; "
                                 f"use {use}")
    for unsupported in ("cipher_suites", "curve_preferences", "client_allowed_sans"):
        if tls.get(unsupported):
            raise WebConfigError(f"tls_server_config.{unsupported} is not supported by agentmon; "
                                 "remove it (OpenSSL's defaults are used)")
    for required in ("cert_file", "key_file"):
        if not tls.get(required):
            raise WebConfigError(f"tls_server_config.{required} is required")
    cert = _path(tls["cert_file"], "tls_server_config.cert_file", base_dir)
    key = _path(tls["key_file"], "tls_server_config.key_file", base_dir)
    _check_readable(cert, "tls_server_config.cert_file")
    _read_secret(key, "tls_server_config.key_file")
    min_v = _choice(tls.get("min_version", "TLS12"), TLS_VERSIONS, "tls_server_config.min_version")
    max_v = _choice(tls.get("max_version", "TLS13"), TLS_VERSIONS, "tls_server_config.max_version")
    if TLS_VERSIONS[max_v] < TLS_VERSIONS[min_v]:
        raise WebConfigError(f"tls_server_config: max_version {max_v} is below min_version {min_v}")
    auth = tls.get("client_auth_type") or "NoClientCert"
    if auth in ("RequestClientCert", "RequireAnyClientCert", "RequireClientCert"):
        raise WebConfigError(f"tls_server_config.client_auth_type {auth} is not supported (it "
                             "does not verify the certificate); use RequireAndVerifyClientCert")
    auth = _choice(auth, CLIENT_AUTH, "tls_server_config.client_auth_type")
    ca: Path | None = None
    if tls.get("client_ca_file"):
        ca = _path(tls["client_ca_file"], "tls_server_config.client_ca_file", base_dir)
        _check_readable(ca, "tls_server_config.client_ca_file")
        if auth == "NoClientCert":
            raise WebConfigError("tls_server_config.client_ca_file is set but client_auth_type "
                                 "is NoClientCert; set client_auth_type: "
                                 "RequireAndVerifyClientCert")
    elif auth != "NoClientCert":
        raise WebConfigError(f"tls_server_config.client_auth_type {auth} needs client_ca_file")
    prefer = tls.get("prefer_server_cipher_suites", True)
    if not isinstance(prefer, bool):
        raise WebConfigError("tls_server_config.prefer_server_cipher_suites must be true or false")
    settings = TLSSettings(cert, key, auth, ca, min_v, max_v, prefer)
    settings.context()  # loads the files now, so a mismatched key stops startup
    return settings


def _http(section: Any) -> dict[str, str]:
    if section is None:
        return {}
    http = _mapping(section, "http_server_config")
    _known_keys(http, HTTP_KEYS, "http_server_config.")
    if "http2" in http and not isinstance(http["http2"], bool):
        raise WebConfigError("http_server_config.http2 must be true or false")
    if http.get("http2"):  # refused, not ignored: the file would say what the server does not
        raise WebConfigError(HTTP2_REFUSAL)
    raw = http.get("headers")
    if raw is None:
        return {}
    headers = _mapping(raw, "http_server_config.headers")
    out: dict[str, str] = {}
    for name, value in headers.items():
        if name not in HEADER_VALUES:
            raise WebConfigError(f"http_server_config.headers: unsupported header {name!r}; "
                                 f"allowed: {', '.join(HEADER_VALUES)}")
        if value is None or value == "":
            continue  # blank means unset, as in the exporter-toolkit
        if not isinstance(value, str) or not value.isprintable():
            raise WebConfigError(f"http_server_config.headers.{name} must be a one-line string")
        allowed = HEADER_VALUES[name]
        if allowed is not None and value.lower() not in allowed:
            raise WebConfigError(f"http_server_config.headers.{name}: {value!r} is not one of "
                                 f"{', '.join(allowed)}")
        out[name] = value
    return out


def _users(section: Any) -> dict[str, bytes]:
    if section is None:
        return {}
    users = _mapping(section, "basic_auth_users")
    out: dict[str, bytes] = {}
    for name, hashed in users.items():
        if not isinstance(name, str) or not name or ":" in name:
            raise WebConfigError(f"basic_auth_users: user name {name!r} must be a non-empty "
                                 "string without ':'")
        if not isinstance(hashed, str) or not BCRYPT_RE.match(hashed):
            # Never echo the value: it may be a plain-text password.
            raise WebConfigError(f"basic_auth_users.{name}: not a bcrypt hash (plain-text "
                                 f"passwords are refused); make one with: {HTPASSWD_HINT}")
        cost = int(hashed[4:6])
        if cost > MAX_BCRYPT_COST:
            raise WebConfigError(f"basic_auth_users.{name}: bcrypt cost {cost} is above the "
                                 f"maximum of {MAX_BCRYPT_COST} (every check would take "
                                 f"{2 ** (cost - 10) * 0.05:g}+ s); make a hash with cost 10 to "
                                 f"{MAX_BCRYPT_COST}: {HTPASSWD_HINT}")
        out[name] = hashed.encode("ascii")
    return out


def _read_token(path: Path) -> bytes:
    token = _read_secret(path, "bearer_token_file").strip()
    try:
        text = token.decode("ascii")
    except UnicodeDecodeError:
        text = ""
    if not TOKEN_RE.match(text):
        raise WebConfigError(f"bearer_token_file {path}: the token must be one line of "
                             "letters, digits and -._~+/ (base64 or hex works)")
    if len(token) < MIN_TOKEN_LEN:
        raise WebConfigError(f"bearer_token_file {path}: the token is shorter than "
                             f"{MIN_TOKEN_LEN} characters")
    return token


def _check_readable(path: Path, key: str) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise WebConfigError(f"{key}: cannot read {path}: {_reason(exc)}") from None


def _read_secret(path: Path, key: str) -> bytes:
    """Read a file only its owner and group may read (mode checked on the open file)."""
    try:
        with path.open("rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            data = f.read()
    except OSError as exc:
        raise WebConfigError(f"{key}: cannot read {path}: {_reason(exc)}") from None
    if mode & stat.S_IROTH:
        raise WebConfigError(f"{key}: {path} is readable by everyone (mode "
                             f"{stat.S_IMODE(mode):04o}); chmod o-rwx it")
    return data


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise WebConfigError(f"{where} must be a mapping, not {type(value).__name__}")
    return value


def _known_keys(section: dict[str, Any], known: tuple[str, ...], prefix: str) -> None:
    for key in section:
        if key not in known:
            raise WebConfigError(f"unknown key {prefix}{key}; known: {', '.join(known)}")


def _path(value: Any, key: str, base_dir: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise WebConfigError(f"{key} must be a file name")
    path = Path(value)
    return path if path.is_absolute() else base_dir / path


def _choice(value: Any, allowed: dict[str, Any], key: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise WebConfigError(f"{key}: {value!r} is not one of {', '.join(allowed)}")
    return value


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)
