#!/usr/bin/env python3
"""Run every panel query of the dashboards against a live Prometheus, as Grafana would.

    query_dashboards.py --url https://mon.example/prometheus --user admin --password-file F
                        [--cacert CA] [--rate-interval 1m] [FOLDER]

The URL is the datasource (Prometheus, or VictoriaMetrics: the dashboards' `datasource`
variable picks either in Grafana). Template variables get real values: each
`label_values(selector, label)` variable is asked of the label API; a multi-value variable gets
all its values, a single-value one the first value (in sorted order) for which every query of
the dashboard returns data. Grafana's own
variables ($__rate_interval, ...) get fixed values. Each query then runs as an instant query;
one line per query gives the series count, and the exit code is 1 when a query returned no
series or failed. Standard library only: it can run on the monitoring host itself.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from check_dashboards import BUILTINS, LABEL_VALUES, VARIABLE

MAX_CANDIDATES = 10  # values of a single-value variable tried before giving up


class Prometheus:
    def __init__(
        self, url: str, user: str | None, password: str | None, cacert: str | None
    ) -> None:
        self.url = url.rstrip("/")
        self.headers: dict[str, str] = {}
        if user is not None:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"
        self.context = ssl.create_default_context(cafile=cacert)

    def get(self, path: str, params: dict[str, str]) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        if not url.startswith(("https://", "http://")):
            raise ValueError(f"not an http(s) URL: {self.url}")
        request = urllib.request.Request(url, headers=self.headers)  # noqa: S310 (checked above)
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=30) as reply:  # noqa: S310
                body = json.load(reply)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:200]
            raise RuntimeError(f"HTTP {exc.code} from {path}: {detail}") from exc
        if body.get("status") != "success":
            raise RuntimeError(f"{path}: {body.get('error', body)}")
        return body["data"]

    def series(self, expr: str) -> int:
        data = self.get("/api/v1/query", {"query": expr})
        result = data["result"]
        return len(result) if isinstance(result, list) else 1

    def label_values(self, label: str, selector: str | None) -> list[str]:
        params = {"match[]": selector} if selector else {}
        return sorted(self.get(f"/api/v1/label/{label}/values", params))


def promql_regex(value: str) -> str:
    """A label value as Grafana puts it into a =~ matcher: regex-escaped, inside a PromQL string."""
    return re.escape(value).replace("\\", "\\\\")


def substitute(expr: str, values: dict[str, str], rate_interval: str) -> str:
    builtins = {**BUILTINS, "__rate_interval": rate_interval}

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return builtins.get(name, values.get(name, match.group(0)))

    return VARIABLE.sub(value, expr)


def run_dashboard(api: Prometheus, board: dict[str, Any], rate_interval: str) -> list[str]:
    """Query every panel; print a line per query; return the problems."""
    name = board.get("title", "?")
    targets = [(panel.get("title", "?"), target.get("refId", "?"), target.get("expr", ""))
               for panel in board.get("panels", []) for target in panel.get("targets", [])]
    values: dict[str, str] = {}
    problems: list[str] = []
    for var in board.get("templating", {}).get("list", []):
        if var.get("type") == "datasource":
            continue  # the URL queried is the datasource
        query = var.get("query", {})
        text = query.get("query", "") if isinstance(query, dict) else str(query)
        found = LABEL_VALUES.match(text)
        if found is None:
            return [f"{name}: variable {var.get('name')}: not label_values(...)"]
        selector = substitute(found.group("sel") or "", values, rate_interval) or None
        candidates = api.label_values(found.group("label"), selector)
        if not candidates:
            return [f"{name}: variable {var.get('name')} has no values in Prometheus"]
        if var.get("multi"):
            values[var["name"]] = "|".join(promql_regex(v) for v in candidates)
            continue
        for candidate in candidates[:MAX_CANDIDATES]:
            values[var["name"]] = promql_regex(candidate)
            if all(api.series(substitute(e, values, rate_interval)) for _, _, e in targets):
                break
    for title, ref, expr in targets:
        query = substitute(expr, values, rate_interval)
        try:
            count = api.series(query)
        except RuntimeError as exc:
            problems.append(f"{name} / {title} / {ref}: {exc}")
            continue
        print(f"{name} | {title} | {ref} | {count} series | {query}")
        if count == 0:
            problems.append(f"{name} / {title} / {ref}: no series for {query}")
    chosen = ", ".join(f"{k}={v}" for k, v in values.items())
    print(f"{name}: variables {chosen or 'none'}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    dashboards = Path(__file__).resolve().parents[1] / "roles" / "grafana" / "files" / "dashboards"
    parser.add_argument("folder", nargs="?", type=Path, default=dashboards)
    parser.add_argument("--url", required=True, help="Prometheus base URL (its /api/v1 is below)")
    parser.add_argument("--user", help="basic auth user")
    parser.add_argument("--password-file", type=Path, help="file holding the basic auth password")
    parser.add_argument("--cacert", help="CA certificate to verify Prometheus' TLS certificate")
    parser.add_argument("--rate-interval", default="1m",
                        help="value of $__rate_interval (default 1m; at least 4 scrape intervals)")
    args = parser.parse_args(argv)
    password = None
    if args.password_file is not None:
        try:
            password = args.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            print(f"query_dashboards.py: {exc}", file=sys.stderr)
            return 1
    api = Prometheus(args.url, args.user, password, args.cacert)
    problems: list[str] = []
    files = sorted(args.folder.glob("*.json"))
    for path in files:
        try:
            problems += run_dashboard(api, json.loads(path.read_text(encoding="utf-8")),
                                      args.rate_interval)
        except (OSError, ValueError, RuntimeError) as exc:
            problems.append(f"{path.name}: {exc}")
    for line in problems:
        print(f"query_dashboards.py: {line}", file=sys.stderr)
    print(f"{len(files)} dashboards: {'ok' if not problems else f'{len(problems)} problems'}")
    return 1 if problems or not files else 0


if __name__ == "__main__":
    sys.exit(main())
