"""The price table (``--prices.file``): USD per million tokens, per model and token type.

The exporter exports it as ``agentmon_token_price_usd{model, type}`` (USD per token) and the
optional daily budget as ``agentmon_cost_budget_usd_per_day``; the cost itself is a recording
rule (tokens x price, files/rules), so that a price change applies from then on and never
rewrites the cost already spent, and a model without a price has tokens and no cost at all.

The file is JSON: ``{"models": {"<model id>": {"input": 3, "output": 15, "cache_read": 0.3,
"cache_creation": 3.75}}, "daily_budget_usd": 50}``; each price is optional, the budget too
(absent, null or 0: no budget alert).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from agentmon.collector.state import TOKEN_TYPES
from agentmon.schema.labels import NAME

MAX_FILE = 1024 * 1024


class PricesError(ValueError):
    """The price file is missing, not JSON, or not a price table."""


@dataclass(frozen=True)
class Prices:
    per_token: dict[tuple[str, str], float] = field(default_factory=dict)  # (model, type) -> USD
    daily_budget: float | None = None


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value < 0:
        raise PricesError(f"{where} must be a number >= 0, not {value!r}"[:200])
    return float(value)


def parse(data: object) -> Prices:
    if not isinstance(data, dict) or set(data) - {"models", "daily_budget_usd"}:
        raise PricesError("expected an object with 'models' and optionally 'daily_budget_usd'")
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise PricesError("'models' must be an object of model id -> prices")
    per_token = {}
    for model, prices in models.items():
        if NAME.fullmatch(model) is None:
            raise PricesError(f"model {model[:80]!r} is not a valid label value")
        if not isinstance(prices, dict) or set(prices) - set(TOKEN_TYPES):
            raise PricesError(f"prices of {model} must be an object with keys among"
                              f" {', '.join(TOKEN_TYPES)}")
        for kind, price in prices.items():
            per_token[(model, kind)] = _number(price, f"{model}.{kind}") / 1e6
    budget = data.get("daily_budget_usd")
    daily = None if budget is None else _number(budget, "daily_budget_usd") or None
    return Prices(per_token, daily)


def load(path: Path | None) -> Prices:
    """The table in ``path`` (None: no prices); raises PricesError with a one-line reason."""
    if path is None:
        return Prices()
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE + 1)
    except OSError as exc:
        raise PricesError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE:
        raise PricesError(f"{path} is larger than {MAX_FILE} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise PricesError(f"{path} is not JSON: {exc}"[:300]) from None
    try:
        return parse(data)
    except PricesError as exc:
        raise PricesError(f"{path}: {exc}") from None
