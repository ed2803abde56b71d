"""The price table: parsing, one-line errors for each bad input, and its exported gauges."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from collector_db import add_usage, make_db, samples, value, writer

from agentmon.collector.collector import ExporterCollector
from agentmon.collector.prices import PricesError, load, parse
from agentmon.serve import cli as serve

TABLE = {"models": {"claude-sonnet-4-5-20250929": {"input": 3, "output": 15, "cache_read": 0.3,
                                                   "cache_creation": 3.75},
                    "claude-opus-4-1-20250805": {"input": 15}},
         "daily_budget_usd": 40}


def test_a_table_gives_prices_per_token_and_a_budget() -> None:
    prices = parse(TABLE)
    assert prices.per_token[("claude-sonnet-4-5-20250929", "output")] == 15e-6
    assert prices.per_token[("claude-opus-4-1-20250805", "input")] == 15e-6
    assert ("claude-opus-4-1-20250805", "output") not in prices.per_token  # no price: no cost
    assert prices.daily_budget == 40
    assert parse({"models": {}, "daily_budget_usd": 0}).daily_budget is None
    assert parse({}).per_token == {}


@pytest.mark.parametrize(("data", "message"), [
    ([], "expected an object"),
    ({"modles": {}}, "expected an object"),
    ({"models": []}, "'models' must be an object"),
    ({"models": {"bad model": {}}}, "not a valid label value"),
    ({"models": {"m": {"inputs": 1}}}, "keys among input, output"),
    ({"models": {"m": {"input": -1}}}, "m.input must be a number >= 0"),
    ({"models": {"m": {"input": "3"}}}, "m.input must be a number >= 0"),
    ({"models": {"m": {"input": True}}}, "m.input must be a number >= 0"),
    ({"daily_budget_usd": "lots"}, "daily_budget_usd must be a number"),
])
def test_bad_tables_are_refused_with_one_line(data: object, message: str) -> None:
    with pytest.raises(PricesError, match=message) as caught:
        parse(data)
    assert "\n" not in str(caught.value)


def test_bad_files_are_refused(tmp_path: Path) -> None:
    assert load(None).per_token == {}
    with pytest.raises(PricesError, match="cannot read"):
        load(tmp_path / "missing.json")
    (tmp_path / "p.json").write_text("{nope")
    with pytest.raises(PricesError, match="is not JSON"):
        load(tmp_path / "p.json")
    (tmp_path / "p.json").write_text(" " * (1024 * 1024 + 1))
    with pytest.raises(PricesError, match="larger than"):
        load(tmp_path / "p.json")


def test_serve_refuses_a_bad_price_file_in_one_line(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "prices.json"
    bad.write_text(json.dumps({"models": {"m": {"input": -3}}}))
    db = make_db(tmp_path / "a.db")
    assert serve.main(["--db", str(db), "--prices.file", str(bad), "--check-config"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("agentmon serve: error: ")
    assert "m.input" in err
    assert err.count("\n") == 1
    bad.write_text(json.dumps(TABLE))
    assert serve.main(["--db", str(db), "--prices.file", str(bad), "--check-config"]) == 0


def test_prices_and_budget_are_exported_beside_the_tokens(tmp_path: Path) -> None:
    db = make_db(tmp_path / "a.db")
    conn = writer(db)
    add_usage(conn, model="claude-sonnet-4-5-20250929", counts=(1000, 2000, 0, 0, 0, 0), key="a")
    add_usage(conn, model="claude-unpriced", counts=(5, 5, 0, 0, 0, 0), key="b")
    conn.close()
    collector = ExporterCollector(db, prices=parse(TABLE))
    collector.refresh()
    snap = samples(collector)
    assert value(snap, "agentmon_token_price_usd", model="claude-sonnet-4-5-20250929",
                 type="output") == 15e-6
    assert value(snap, "agentmon_cost_budget_usd_per_day") == 40
    # the unpriced model shows its tokens and no price
    assert value(snap, "agentmon_tokens_total", agent="main", model="claude-unpriced",
                 type="output") == 5
    assert not [k for k in snap if k[0] == "agentmon_token_price_usd"
                and ("model", "claude-unpriced") in k[1]]
    plain = ExporterCollector(db)
    plain.refresh()
    assert not [k for k in samples(plain) if k[0].startswith(("agentmon_token_price",
                                                              "agentmon_cost_budget"))]
