"""Secrets never reach the database; stored payloads stay valid JSON within their budget."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentmon.hook import bounds, redact
from agentmon.hook.bounds import payload, truncate_json
from agentmon.hook.redact import REDACTED, is_secret_key, redact_text


@pytest.mark.parametrize("key", [
    "password", "PASSWORD", "db_password", "passwd", "secret", "client_secret", "token",
    "access_token", "accessToken", "refresh-token", "GITHUB_TOKEN", "api_key", "apiKey",
    "X-Api-Key", "APIKEY", "api-key", "Authorization", "proxy-authorization", "cookie",
    "Set-Cookie", "credentials", "aws_credentials", "private_key", "privateKey", "PrivateKey",
    "pass", "DB_PASS", "pwd", "MYSQL_PWD", "passphrase", "auth", "basic_auth", "dsn",
    "SENTRY_DSN", "database_url", "databaseUrl", "DB_URL", "ssh_key", "signing_key",
    "encryption_key", "AWS_SECRET_ACCESS_KEY", "aws_access_key_id", "AccountKey",
    "SharedAccessKey", "ConnectionStrings", "master_key", "storepass", "PGPASSWORD",
])
def test_secret_keys(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize("key", [
    "totalTokens", "input_tokens", "max_tokens", "cache_read_input_tokens", "tokens",
    "command", "description", "file_path", "key", "monkey", "author", "primary_key", "prompt",
    "bypass", "compass", "passport", "pass_count", "auth_type", "public_key", "tokenizer",
    "cache_key", "sort_keys", "url", "keyboard", "", "--",
])
def test_ordinary_keys(key: str) -> None:
    assert not is_secret_key(key)


def test_nested_values_of_any_type_are_redacted() -> None:
    value = {"headers": {"Authorization": "Bearer abc"}, "list": [{"password": {"x": 1}}],
             "usage": {"input_tokens": 12}, "token": 123, "deep": [[{"api_key": ["k"]}]]}
    out = redact.redact(value)
    assert out == {"headers": {"Authorization": REDACTED}, "list": [{"password": REDACTED}],
                   "usage": {"input_tokens": 12}, "token": REDACTED,
                   "deep": [[{"api_key": REDACTED}]]}
    assert value["token"] == 123  # the input is not modified


@pytest.mark.parametrize(("text", "expected"), [
    ("curl -H 'Authorization: Bearer abc.def' x", "curl -H 'Authorization: [REDACTED]' x"),
    ("GITHUB_TOKEN=ghp_123 make", "GITHUB_TOKEN=[REDACTED] make"),
    ('{"password": "hunter2", "user": "bob"}', '{"password": [REDACTED], "user": "bob"}'),
    ("export API_KEY='s k'", "export API_KEY=[REDACTED]"),
    ("mysql --password=pw db", "mysql --password=[REDACTED] db"),
    ("max_tokens=5 and tokens: 7", "max_tokens=5 and tokens: 7"),
    ("nothing to see here", "nothing to see here"),
])
def test_assignments_in_text_lose_their_value(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    # the secret word anywhere in the name
    ("AWS_SECRET_ACCESS_KEY=abc/def+ghi aws s3 ls", "AWS_SECRET_ACCESS_KEY=[REDACTED] aws s3 ls"),
    ("export PGPASSWORD=pw1; psql -p 5432", "export PGPASSWORD=[REDACTED]; psql -p 5432"),
    ("DB_PASS=x1 MYSQL_PWD=x2 SENTRY_DSN=x3", "DB_PASS=[REDACTED] MYSQL_PWD=[REDACTED] "
     "SENTRY_DSN=[REDACTED]"),
    ("PWD=/home/dev\nOLDPWD=~/x\nPWD=relative", "PWD=/home/dev\nOLDPWD=~/x\nPWD=[REDACTED]"),
    # config lines: the rest of the line; annotations and comparisons
    ("password: two words # c", "password: [REDACTED]"),
    ("password:    aligned two words", "password:    [REDACTED]"),
    ("password: str = 'pw'", "password: str = [REDACTED]"),
    ("def f(password: str) -> bool:", "def f(password: str) -> bool:"),
    ("password: String Pass Word", "password: [REDACTED]"),
    ("'password' => 'pw'", "'password' => [REDACTED]"),
    ("token := os.Getenv(x)", "token := [REDACTED]"),
    ("Token::new() and a == b", "Token::new() and a == b"),
    ("<password>pw</password> if token>5", "<password>[REDACTED]</password> if token>5"),
    ('echo "{\\"password\\": \\"pw\\"}"', 'echo "{\\"password\\": [REDACTED]}"'),
    ("Cookie: a=1; sid=2; theme=dark", "Cookie: [REDACTED]"),
    ("key: see password=pw", "key: see password=[REDACTED]"),
    # flags with a value after a blank
    ("--password pw --password-stdin r --no-auth x", "--password [REDACTED] --password-stdin r "
     "--no-auth x"),
    ("--token -v -storepass pw", "--token -v -storepass [REDACTED]"),
    ("set aws_secret_access_key KEY", "set aws_secret_access_key [REDACTED]"),
    ("the token expired; pass the key", "the token expired; pass the key"),
    ("machine h login bob password pw", "machine h login bob password [REDACTED]"),
    ("  password pw\nPassword reset link", "  password [REDACTED]\nPassword reset link"),
    ("WITH PASSWORD 'pw' IDENTIFIED BY \"pw\"",
     "WITH PASSWORD [REDACTED] IDENTIFIED BY [REDACTED]"),
    # short flags after their commands only, within one shell segment
    ("mysql -uroot -ppw -P 3306; mkdir -p /x", "mysql -uroot -p[REDACTED] -P 3306; mkdir -p /x"),
    ("zip -P pw -p a.zip", "zip -P [REDACTED] -p a.zip"),
    ("curl -u admin -b 'a=1' -u admin:pw", "curl -u admin -b [REDACTED] -u [REDACTED]"),
    ("redis-cli -a pw | ssh -p 22 h", "redis-cli -a [REDACTED] | ssh -p 22 h"),
    ("docker run -u 1000:1000 -p 80:80 img", "docker run -u 1000:1000 -p 80:80 img"),
    # URLs
    ("psql postgres://app:p@ss@db/x https://h:8080/p", "psql postgres://app:[REDACTED]@db/x "
     "https://h:8080/p"),
    ("GET /b?sv=1&sig=ab%2Fc&se=2 X-Amz-Signature=x", "GET /b?sv=1&sig=[REDACTED]&se=2 "
     "X-Amz-Signature=x"),
    ("https://hooks.slack.com/services/T1/B2/xyz", "https://hooks.slack.com/services/[REDACTED]"),
    # key blocks, with or without their end
    ("a\n-----BEGIN RSA PRIVATE KEY-----\nMII+/=\n-----END RSA PRIVATE KEY-----\nb",
     "a\n-----BEGIN RSA PRIVATE KEY-----[REDACTED]\nb"),
    ("-----BEGIN PRIVATE KEY-----\nMII", "-----BEGIN PRIVATE KEY-----[REDACTED]"),
    ("-----BEGIN CERTIFICATE-----\nMII", "-----BEGIN CERTIFICATE-----\nMII"),
    # tokens: whole, not inside longer words; the ones anchored in their middle
    ("x ghp_" + "a1" * 18 + " xghp_" + "a1" * 18, "x [REDACTED] xghp_" + "a1" * 18),
    ("bot1234567890:AA" + "b" * 33 + "/getMe", "[REDACTED]/getMe"),
    ("1234567:AA" + "b" * 33, "1234567:AA" + "b" * 33),
    ("abc8Q~" + "c" * 34 + " Q~" + "c" * 34, "[REDACTED] Q~" + "c" * 34),
    ("x" * 14 + ".atlasv1." + "d" * 60 + " -.atlasv1." + "d" * 60,
     "[REDACTED] -.atlasv1." + "d" * 60),
    # lower-casing that changes lengths does not shift what is blanked
    ("\u0130\u0130 PASSWORD=pw \u0130", "\u0130\u0130 PASSWORD=[REDACTED] \u0130"),
])
def test_secrets_in_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_key_blocks_split_over_list_items_are_blanked() -> None:
    lines = ["-x", "+-----BEGIN OPENSSH PRIVATE KEY-----", "+b3BlbnNzaC1rZXktdjEAAAA", 7,
             "+-----END OPENSSH PRIVATE KEY-----", "+after"]
    assert redact.redact({"lines": lines}) == {"lines": [
        "-x", "+-----BEGIN OPENSSH PRIVATE KEY-----[REDACTED]", REDACTED, 7,
        "+-----END OPENSSH PRIVATE KEY-----", "+after"]}
    whole = ["-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----", "kept"]
    assert redact.redact(whole)[1] == "kept"


def test_long_identifier_chains_do_not_make_redaction_slow() -> None:
    text = "a_" * 200_000 + "token"
    assert redact_text(text) == text  # bounded prefix: linear, finishes at once


def test_too_deep_structures_are_cut() -> None:
    value: Any = "leaf"
    for _ in range(redact.MAX_DEPTH + 10):
        value = [value]
    out = json.dumps(redact.redact(value))
    assert out.startswith("[" * redact.MAX_DEPTH + json.dumps(redact.TOO_DEEP))


def test_truncation_keeps_valid_json_with_a_marker() -> None:
    big = {"content": "x" * 50_000, "quotes": '"\\' * 5_000}
    out = payload(big, 1024)
    assert len(out.encode()) <= 1024
    parsed = json.loads(out)
    assert parsed["truncated"].startswith("[TRUNCATED: ")
    assert parsed["preview"].startswith('{"content":"xxx')
    small = payload({"a": 1}, 1024)
    assert json.loads(small) == {"a": 1}


def test_truncation_of_escape_heavy_text_still_fits() -> None:
    text = json.dumps({"path": "\\" * 5000})  # every character doubles when re-escaped
    for budget in (256, 300, 1000, 4096):
        out = truncate_json(text, budget)
        assert len(out) <= budget
        assert json.loads(out)["preview"].startswith('{"path":')


def test_text_truncation_counts_utf8_bytes_and_marks_the_cut() -> None:
    out = bounds.text("é" * 1000, 300)
    assert len(out.encode()) <= 300
    assert out.endswith("[TRUNCATED: 2000 bytes]")
    assert bounds.text("short", 300) == "short"
    assert bounds.text("lone \udc80 surrogate", 300) == "lone ? surrogate"


def test_payload_escapes_nul_and_lone_surrogates() -> None:
    out = payload({"a": "x\x00\udc80"}, 1024)
    assert out == '{"a":"x\\u0000\\udc80"}'
    out.encode("utf-8")  # storable


# Not all digits (a planted number could be part of a generated integer) and without the letters
# of "[REDACTED]", so a secret is never a substring of what may legitimately be stored.
SECRET = st.text(alphabet="BFGHJKLMNPQSUVWXYZ0123456789", min_size=12, max_size=20).filter(
    lambda s: not s.isdigit())
KEYS = st.sampled_from(["password", "apiKey", "X-Auth-Token", "client_secret", "Cookie",
                        "private_key", "credentials"])
PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet="abc xyz", max_size=8),
    lambda c: st.lists(c, max_size=3)
    | st.dictionaries(st.sampled_from(["a", "command", "file_path", "n"]), c, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(PLAIN, KEYS, SECRET, st.integers(min_value=0, max_value=5))
def test_planted_secret_never_survives(doc: Any, key: str, secret: str, depth: int) -> None:
    planted: Any = {key: secret}
    for _ in range(depth):
        planted = {"wrap": [planted]}
    value = {"doc": doc, "nested": planted}
    out = payload(value, 16_384)
    assert secret not in out
    assert REDACTED in out


@settings(max_examples=300, deadline=None)
@given(PLAIN | st.text(), st.integers(min_value=bounds.MIN_PAYLOAD_BYTES, max_value=2048))
def test_payload_is_always_valid_json_within_budget(value: Any, budget: int) -> None:
    out = payload(value, budget)
    assert len(out.encode("utf-8")) <= budget
    json.loads(out)


@settings(max_examples=200, deadline=None)
@given(st.text(), st.integers(min_value=bounds.MIN_PAYLOAD_BYTES, max_value=1024))
def test_text_is_storable_and_within_budget(value: str, budget: int) -> None:
    out = bounds.text(value, budget)
    assert len(out.encode("utf-8")) <= budget


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="ascii"), max_size=5000),
       st.integers(min_value=bounds.MIN_PAYLOAD_BYTES, max_value=4096))
def test_truncate_json_of_any_json_string(body: str, budget: int) -> None:
    text = json.dumps(body)
    out = truncate_json(text, budget)
    assert len(out) <= budget
    json.loads(out)
    if len(text) <= budget:
        assert out == text
