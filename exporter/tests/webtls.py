"""Test helpers for the HTTP side: real certificates (openssl CLI) and real HTTP(S) clients."""

from __future__ import annotations

import base64
import http.client
import shutil
import ssl
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

import bcrypt

OPENSSL = shutil.which("openssl") or "openssl"
USER, PASSWORD = "prometheus", "s3cret-scrape-pass"
# cost 4: the tests check that bcrypt runs once per credential, not how slow it is
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
TOKEN = "tok-0123456789abcdef0123456789abcdef"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_client_cert: Path  # signed by a CA the server does not trust
    other_client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True)


def _ca(folder: Path, name: str) -> tuple[Path, Path]:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
             "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)
    return folder / f"{name}.crt", folder / f"{name}.key"


def _leaf(folder: Path, name: str, ca: str, usage: str) -> tuple[Path, Path]:
    ext = folder / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                   f"extendedKeyUsage={usage}\nauthorityKeyIdentifier=keyid,issuer\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=folder)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", ext.name,
             cwd=folder)
    (folder / f"{name}.key").chmod(0o600)
    return folder / f"{name}.crt", folder / f"{name}.key"


def make_pki(folder: Path) -> Pki:
    folder.mkdir(parents=True, exist_ok=True)
    ca, _ = _ca(folder, "ca")
    _ca(folder, "other-ca")
    cert, key = _leaf(folder, "server", "ca", "serverAuth")
    ccert, ckey = _leaf(folder, "client", "ca", "clientAuth")
    ocert, okey = _leaf(folder, "intruder", "other-ca", "clientAuth")
    return Pki(ca, cert, key, ccert, ckey, ocert, okey)


def basic(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def client_context(pki: Pki, *, cert: bool = False, other: bool = False,
                   min_version: ssl.TLSVersion | None = None,
                   max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    with warnings.catch_warnings():  # TLS 1.1 is deprecated: that is what the tests check
        warnings.simplefilter("ignore", DeprecationWarning)
        if min_version is not None:
            ctx.minimum_version = min_version
        if max_version is not None:
            ctx.maximum_version = max_version
    if max_version is not None and max_version < ssl.TLSVersion.TLSv1_2:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer it; the server must refuse
    if cert:
        ctx.load_cert_chain(pki.client_cert, pki.client_key)
    if other:
        ctx.load_cert_chain(pki.other_client_cert, pki.other_client_key)
    return ctx


def get(port: int, path: str = "/metrics", headers: dict[str, str] | None = None, *,
        method: str = "GET", context: ssl.SSLContext | None = None, host: str = "127.0.0.1",
        ) -> tuple[int, dict[str, str], bytes]:
    conn: http.client.HTTPConnection
    if context is None:
        conn = http.client.HTTPConnection(host, port, timeout=10)
    else:
        conn = http.client.HTTPSConnection(host, port, timeout=10, context=context)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()
