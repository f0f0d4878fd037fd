"""Values written as Prometheus writes them (Go's strconv.FormatFloat(v, 'f', -1, 64)), fast path or not."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from ironsight.collector.promql.render import _texts, format_value


def go_f(v: float) -> str:
    """The reference: shortest digits that read back the same, no exponent, Go's spellings."""
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    return np.format_float_positional(v, trim="-")


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=50))
def test_every_value_is_written_as_go_writes_it(values: list[float]) -> None:
    want = [go_f(v) for v in values]
    assert [format_value(v) for v in values] == want
    assert _texts(np.array(values, dtype=np.float64)).to_pylist() == want


def test_the_cases_a_float_formatter_writes_otherwise() -> None:
    values = [1.98e9, 1e21, 1.5e16, 2.5e-5, -0.0, 0.30000000000000004, 52387.49999999999, 2.0**53 + 2]
    assert _texts(np.array(values)).to_pylist() == [
        "1980000000", "1000000000000000000000", "15000000000000000", "0.000025", "-0", "0.30000000000000004",
        "52387.49999999999", "9007199254740994"]  # fmt: skip


def test_byte_rates_with_an_exponent_are_written_out() -> None:
    """Arrow writes 1e10 and up with an exponent, orjson 1e16 and up: a GPU's NVLink rates, mixed with
    whole and odd values."""
    values = [12345678901.123455, 1e10 / 7, 1e15 / 7, 4e15 + 0.5, 3.0, -1e12 / 7, 7818929670.833333, 1e-7]
    assert _texts(np.array(values)).to_pylist() == [go_f(v) for v in values] == [
        "12345678901.123455", "1428571428.5714285", "142857142857142.84", "4000000000000000.5", "3",
        "-142857142857.14285", "7818929670.833333", "0.0000001"]  # fmt: skip
    rates = np.random.default_rng(7).uniform(1e10, 9e15, 5000)
    assert _texts(rates).to_pylist() == [go_f(v) for v in rates.tolist()]


def test_values_across_every_magnitude() -> None:
    """Signs, magnitudes from 1e-8 to 1e16 (where float formatters' exponent forms start and stop) and
    few or many decimals, all at once as a panel's values come."""
    rng = np.random.default_rng(3)
    values = 10 ** rng.uniform(-8, 16, 20_000) * rng.choice([-1, 1], 20_000)
    values = np.concatenate([values, np.round(values, 3), np.round(values, 1)])
    assert _texts(values).to_pylist() == [go_f(v) for v in values.tolist()]


def test_infinities_and_nan_alone_or_among_others() -> None:
    inf, nan = float("inf"), float("nan")
    assert _texts(np.array([inf])).to_pylist() == ["+Inf"]
    assert _texts(np.array([nan, 1.5])).to_pylist() == ["NaN", "1.5"]
    assert _texts(np.array([-inf, 3.0])).to_pylist() == ["-Inf", "3"]
    assert _texts(np.array([2e10 + 0.5, nan])).to_pylist() == ["20000000000.5", "NaN"]
