"""``check-spec --explain`` and ``test-spec``: a spec tried on sample lines, from the CLI."""

from __future__ import annotations

from pathlib import Path

import log_exporter
from tests.support.serve import run_cli

SHIPPED_CASES = Path(log_exporter.__file__).parent / "specs" / "sustainbot.cases.toml"

SPEC = """\
version = 1

[metrics.shop_orders_total]
type = "counter"
help = "Orders, by status."
events = ["order"]
match = { status = ["paid", "shipped"] }
labels = ["status"]

[metrics.shop_basket_items]
type = "gauge"
help = "Items in the basket."
rules = [{ events = ["basket"], op = "set", value = "items" }]

[metrics.shop_order_value_euros]
type = "histogram"
help = "Order values."
events = ["order"]
value = "euros"
buckets = [10, 100]
"""


def write_spec(tmp_path: Path) -> Path:
    spec = tmp_path / "shop.toml"
    spec.write_text(SPEC)
    return spec


def test_shipped_cases_of_the_builtin_spec_pass(tmp_path: Path) -> None:
    """The cases shipped for the built-in SustainBot spec pass: exit 0, one ok line per case."""
    result = run_cli(["test-spec", str(SHIPPED_CASES)], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "5 passed, 0 failed"
    assert all(x.startswith("ok   ") for x in lines[:-1])


def test_mismatch_exits_1_and_prints_the_differences(tmp_path: Path) -> None:
    """A case whose values differ fails: exit 1, the case named, each difference with both
    values; a passing case in the same file is still reported ok."""
    write_spec(tmp_path)
    cases = tmp_path / "shop.cases.toml"
    cases.write_text(
        'spec = "shop.toml"\n'
        "[[case]]\n"
        'name = "paid orders"\n'
        'lines = [\'{"event":"order","status":"paid","euros":12}\']\n'
        "expect.'shop_orders_total{status=\"paid\"}' = 1\n"
        "[[case]]\n"
        'name = "wrong on purpose"\n'
        'lines = [\'{"event":"order","status":"paid","euros":12}\','
        ' \'{"event":"basket","items":3}\']\n'
        "expect.'shop_orders_total{status=\"paid\"}' = 2\n"
        "expect.'shop_orders_total{status=\"refunded\"}' = 1\n"
        "expect.'shop_basket_items' = 3\n"
        "absent = ['shop_order_value_euros_count']\n"
    )
    result = run_cli(["test-spec", str(cases)], cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "ok   paid orders",
        "FAIL wrong on purpose",
        '  shop_orders_total{status="paid"}: expected 2, got 1',
        '  shop_orders_total{status="refunded"}: expected 1, got no such series',
        "  shop_order_value_euros_count: expected absent, got 1",
        "1 passed, 1 failed",
    ]


def test_yaml_cases_are_read_like_toml(tmp_path: Path) -> None:
    """A cases file in YAML (``.yaml``) has the same keys and passes the same way."""
    write_spec(tmp_path)
    cases = tmp_path / "shop.cases.yaml"
    cases.write_text(
        "spec: shop.toml\n"
        "case:\n"
        "  - name: shipped orders\n"
        "    lines:\n"
        '      - \'{"event":"order","status":"shipped","euros":120}\'\n'
        "    expect:\n"
        "      'shop_orders_total{status=\"shipped\"}': 1\n"
        "      'shop_order_value_euros_bucket{le=\"+Inf\"}': 1\n"
        "      'shop_order_value_euros_bucket{le=\"100.0\"}': 0\n"
    )
    result = run_cli(["test-spec", str(cases)], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "1 passed, 0 failed"


def test_bad_cases_file_exits_2_naming_file_and_case(tmp_path: Path) -> None:
    """A cases file that cannot be run (a series that is not one, a missing spec) exits 2 with
    a message naming the file and the case, not a traceback."""
    bad = tmp_path / "bad.cases.toml"
    bad.write_text("[[case]]\nname = \"broken\"\nlines = []\nexpect.'a{b=' = 1\n")
    result = run_cli(["test-spec", str(bad)], cwd=tmp_path)
    assert result.returncode == 2
    assert f"{bad}: case 'broken':" in result.stderr
    assert "Traceback" not in result.stderr
    nospec = tmp_path / "nospec.cases.toml"
    nospec.write_text('spec = "missing.toml"\n[[case]]\nlines = []\nexpect.x = 1\n')
    result = run_cli(["test-spec", str(nospec)], cwd=tmp_path)
    assert result.returncode == 2
    assert "missing.toml: cannot read" in result.stderr


def test_explain_prints_what_each_line_derives_and_why_not(tmp_path: Path) -> None:
    """--explain prints per line the series changed (+delta, or a gauge's new value) and, for a
    metric its event feeds that did not change, why: a failed match or an invalid value."""
    spec = write_spec(tmp_path)
    sample = tmp_path / "sample.jsonl"
    sample.write_text(
        '{"event":"order","status":"paid","euros":12}\n'
        '{"event":"order","status":"refunded","euros":"twelve"}\n'
        '{"event":"basket","items":3}\n'
        '{"event":"page_view"}\n'
        "not json\n"
    )
    result = run_cli(["check-spec", str(spec), "--explain", str(sample)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "OK: 3 metrics",
        "line 1: event 'order'",
        "  shop_order_value_euros_count +1",
        "  shop_order_value_euros_sum +12",
        '  shop_orders_total{status="paid"} +1',
        "line 2: event 'order'",
        "  shop_orders_total: unchanged: match failed: status is 'refunded' (wants 'paid' or"
        " 'shipped')",
        "  shop_order_value_euros: unchanged: value invalid (missing, not a number, negative or"
        " infinite): nothing observed",
        "line 3: event 'basket'",
        "  shop_basket_items = 3 (was 0)",
        "line 4: event 'page_view': no metric reads this event",
        "line 5: malformed (not one JSON object): counted, nothing derived",
    ]


def test_explain_of_a_missing_file_exits_2(tmp_path: Path) -> None:
    """--explain with a file that cannot be read exits 2 naming it."""
    spec = write_spec(tmp_path)
    result = run_cli(["check-spec", str(spec), "--explain", str(tmp_path / "nope")], cwd=tmp_path)
    assert result.returncode == 2
    assert "nope: cannot read" in result.stderr
