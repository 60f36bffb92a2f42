"""Pure scoring of SQL results: comparison rules, partial credit, statuses and the holes they close."""

from __future__ import annotations

import itertools
import math
import random
from decimal import Decimal

import pytest

from rewards.model import Finding, Severity, Status
from rewards.sql import (
    Execution,
    ResultSet,
    SortKeys,
    SqlWeights,
    normalise_cell,
    partial_f1,
    results_match,
    score_sql,
)
from sandbox.runner.rows import plain


def rs(columns: str | tuple[str, ...], *rows: tuple, truncated: bool = False) -> ResultSet:
    names = tuple(columns.split()) if isinstance(columns, str) else columns
    return ResultSet(names, tuple(rows), truncated)


def ok(result: ResultSet) -> Execution:
    return Execution(result)


def match(cand: ResultSet, gold: ResultSet, order_matters: bool = False, **options) -> bool:
    return results_match(cand, gold, order_matters=order_matters, **options)


def score(cands, golds, *, order_matters=False, findings=(), weights=None, rel_tol=1e-6, abs_tol=1e-9, sort_keys=()):
    return score_sql(
        list(cands),
        list(golds),
        order_matters=order_matters,
        rel_tol=rel_tol,
        abs_tol=abs_tol,
        weights=weights or SqlWeights(),
        findings=list(findings),
        sort_keys=sort_keys,
    )


def codes(verdict) -> dict[str, Severity]:
    return {f.code: f.severity for f in verdict.findings}


PEOPLE = rs("id name", (1, "ann"), (2, "bob"), (3, "cy"))


# ---------------------------------------------------------------- column alignment


def test_columns_align_by_value_not_by_name_or_position():
    renamed = rs("who n", ("bob", 2), ("ann", 1), ("cy", 3))
    assert match(renamed, PEOPLE)
    assert score([ok(renamed)], [PEOPLE]).status is Status.PASSED


def test_right_names_on_wrong_values_do_not_match():
    assert not match(rs("id name", (1, "ann"), (2, "bob"), (3, "dee")), PEOPLE)
    assert not match(rs("id name", (1, "bob"), (2, "ann"), (3, "cy")), PEOPLE)  # pairs broken


def test_columns_with_equal_value_sets_are_aligned_by_row():
    gold = rs("x y label", (1, 2, "p"), (2, 3, "q"), (3, 1, "r"))
    assert match(rs("y x label", (2, 1, "p"), (3, 2, "q"), (1, 3, "r")), gold)  # x and y swapped
    # each column holds the gold values, but no column order puts the labels on their rows
    assert not match(rs("x y label", (1, 2, "q"), (2, 3, "p"), (3, 1, "r")), gold)


def test_identical_duplicate_columns():
    gold = rs("a a2 b", (1, 1, "x"), (2, 2, "y"), (2, 2, "z"))
    assert match(rs("b a a", ("z", 2, 2), ("x", 1, 1), ("y", 2, 2)), gold)
    assert not match(rs("a b b", (1, "x", "x"), (2, "y", "y"), (2, "z", "z")), gold)
    wide = rs(tuple(f"c{i}" for i in range(12)), *[(i,) * 12 for i in range(50)])
    assert match(wide, wide)


def test_many_interchangeable_looking_columns_resolve_quickly():
    rng = random.Random(5)
    rows = [tuple(rng.randint(0, 1) for _ in range(9)) for _ in range(300)]
    order = list(range(9))
    rng.shuffle(order)
    shuffled = [tuple(row[j] for j in order) for row in rows]
    rng.shuffle(shuffled)
    gold = rs(tuple(f"g{i}" for i in range(9)), *rows)
    assert match(rs(tuple(f"c{i}" for i in range(9)), *shuffled), gold)
    shuffled[0] = (1 - shuffled[0][0], *shuffled[0][1:])
    assert not match(rs(tuple(f"c{i}" for i in range(9)), *shuffled), gold)


def test_column_count_must_agree():
    assert not match(rs("id name extra", (1, "ann", 0), (2, "bob", 0), (3, "cy", 0)), PEOPLE)
    assert not match(rs("id", (1,), (2,), (3,)), PEOPLE)
    verdict = score([ok(rs("id", (1,), (2,), (3,)))], [PEOPLE])
    assert verdict.status is Status.FAILED
    assert verdict.tests[0].message == "column count 1 != 2"


def test_malformed_rows_never_match():
    assert not match(rs("a b", (1, 2), (3,)), rs("a b", (1, 2), (3, None)))


# ---------------------------------------------------------------- rows


def test_rows_are_a_multiset_duplicates_count():
    gold = rs("v", (1,), (1,), (2,))
    assert match(rs("v", (2,), (1,), (1,)), gold)
    assert not match(rs("v", (1,), (2,), (2,)), gold)
    assert not match(rs("v", (1,), (2,)), gold)  # a DISTINCT too many
    assert not match(rs("v", (1,), (1,), (1,), (2,)), gold)


def test_order_matters_only_when_asked():
    gold = rs("id name", (1, "ann"), (2, "bob"), (3, "cy"))
    backwards = rs("id name", (3, "cy"), (2, "bob"), (1, "ann"))
    assert match(backwards, gold, order_matters=False)
    assert not match(backwards, gold, order_matters=True)
    assert match(rs("name id", ("ann", 1), ("bob", 2), ("cy", 3)), gold, order_matters=True)
    verdict = score([ok(backwards)], [gold], order_matters=True)
    assert verdict.tests[0].message == "rows are right but in the wrong order"


# ---------------------------------------------------------------- order with ties

# ORDER BY salary DESC over (name, salary): bob and cy tie, so either order is the answer
SALARIES = rs("name salary", ("ann", 300), ("bob", 200), ("cy", 200), ("dee", 100))
SALARY_KEYS = SortKeys(SALARIES.rows, ((300,), (200,), (200,), (100,)))


def test_rows_with_equal_sort_keys_may_be_permuted():
    tie_broken = rs("name salary", ("ann", 300), ("cy", 200), ("bob", 200), ("dee", 100))
    assert not match(tie_broken, SALARIES, order_matters=True)  # no sort keys: strict order
    assert match(tie_broken, SALARIES, order_matters=True, sort_keys=SALARY_KEYS)
    assert match(
        rs("s n", (300, "ann"), (200, "cy"), (200, "bob"), (100, "dee")), SALARIES, True, sort_keys=SALARY_KEYS
    )
    verdict = score([ok(tie_broken)], [SALARIES], order_matters=True, sort_keys=[SALARY_KEYS])
    assert (verdict.status, verdict.score) == (Status.PASSED, 1.0)


def test_rows_with_different_sort_keys_keep_their_order():
    for wrong in (
        rs("name salary", ("bob", 200), ("ann", 300), ("cy", 200), ("dee", 100)),  # crosses a key boundary
        rs("name salary", ("dee", 100), ("cy", 200), ("bob", 200), ("ann", 300)),  # ascending
        rs("name salary", ("ann", 300), ("bob", 200), ("bob", 200), ("dee", 100)),  # a tie group's multiset differs
    ):
        assert not match(wrong, SALARIES, order_matters=True, sort_keys=SALARY_KEYS), wrong
    verdict = score(
        [ok(rs("name salary", *SALARIES.rows[::-1]))],
        [SALARIES],
        order_matters=True,
        sort_keys=[SALARY_KEYS],
    )
    assert verdict.status is Status.FAILED and verdict.tests[0].message == "rows are right but in the wrong order"


def test_sort_keys_are_grouped_exactly_not_within_tolerance():
    gold = rs("name x", ("a", 1.0), ("b", 1.0000000001))
    keys = SortKeys(gold.rows, ((1.0,), (1.0000000001,)))
    assert not match(rs("name x", ("b", 1.0000000001), ("a", 1.0)), gold, order_matters=True, sort_keys=keys)


def test_ties_at_a_limit_cut_off_may_be_any_of_the_tied_rows():
    # ORDER BY salary DESC LIMIT 2: bob and cy tie for second place, the gold kept bob
    gold = rs("name salary", ("ann", 300), ("bob", 200))
    keys = SortKeys(SALARIES.rows, SALARY_KEYS.keys)  # the sorted rows past the limit, with their keys
    assert match(rs("name salary", ("ann", 300), ("cy", 200)), gold, order_matters=True, sort_keys=keys)
    assert not match(rs("name salary", ("ann", 300), ("cy", 200)), gold, order_matters=True)
    assert not match(rs("name salary", ("ann", 300), ("dee", 100)), gold, order_matters=True, sort_keys=keys)
    assert not match(rs("name salary", ("cy", 200), ("ann", 300)), gold, order_matters=True, sort_keys=keys)
    assert not match(rs("name salary", ("bob", 200), ("cy", 200)), gold, order_matters=True, sort_keys=keys)
    # OFFSET 1 LIMIT 1: the window starts inside the tie
    window = rs("name salary", ("bob", 200))
    offset = SortKeys(SALARIES.rows, SALARY_KEYS.keys, offset=1)
    assert match(rs("name salary", ("cy", 200)), window, order_matters=True, sort_keys=offset)
    assert not match(rs("name salary", ("ann", 300)), window, order_matters=True, sort_keys=offset)


def test_sort_keys_that_do_not_describe_the_gold_fall_back_to_strict_order():
    tie_broken = rs("name salary", ("ann", 300), ("cy", 200), ("bob", 200), ("dee", 100))
    unrelated = SortKeys(rs("name salary", ("zed", 1), ("cy", 200), ("bob", 200), ("dee", 100)).rows, SALARY_KEYS.keys)
    short = SortKeys(SALARIES.rows[:3], SALARY_KEYS.keys[:3])
    unsorted_gold = SortKeys(SALARIES.rows, ((300,), (200,), (100,), (200,)))  # keys not in the gold's order
    for keys in (unrelated, short, unsorted_gold):
        assert not match(tie_broken, SALARIES, order_matters=True, sort_keys=keys), keys
        assert match(SALARIES, SALARIES, order_matters=True, sort_keys=keys)


def test_ties_with_float_noise_and_reordered_columns():
    gold = rs("g v", ("x", 0.1 + 0.2), ("y", 0.3), ("z", 0.5))
    keys = SortKeys(gold.rows, (("k",), ("k",), ("m",)))
    cand = rs("v g", (0.3, "y"), (0.30000000000000004, "x"), (0.5, "z"))
    assert match(cand, gold, order_matters=True, sort_keys=keys)
    assert not match(rs("v g", (0.5, "z"), (0.3, "y"), (0.3, "x")), gold, order_matters=True, sort_keys=keys)


# ---------------------------------------------------------------- cells and tolerance


@pytest.mark.parametrize(
    "cand, gold, tol, equal",
    [
        (0.1 + 0.2, 0.3, {}, True),
        (1.0000000004, 0.9999999996, {"rel_tol": 0.0, "abs_tol": 1e-9}, True),
        (1.0000000006, 0.9999999994, {"rel_tol": 0.0, "abs_tol": 1e-9}, False),
        # either side of the 9-decimal rounding boundary: rounding keys would split them
        (1.00000000054, 1.00000000046, {"rel_tol": 0.0, "abs_tol": 1e-9}, True),
        (0.49999999996, 0.50000000004, {"rel_tol": 0.0, "abs_tol": 1e-9}, True),
        (1e12 + 1, 1e12, {}, True),  # relative tolerance
        (1.001, 1.0, {}, False),
        (Decimal("0.3"), 0.1 + 0.2, {}, True),
        (Decimal("2.50"), 2.5, {}, True),
        (3, 3.0, {}, True),
        (Decimal("3.000"), 3, {}, True),
        (1_000_000, 1_000_001, {}, False),  # two integers compare exactly
        (Decimal("1000001"), 1_000_000, {}, False),
        (1_000_000, 1_000_000.5, {}, True),  # an integer against a float is tolerant
        (2**70, 2**70 + 1, {}, False),
        (10**400, 10**400, {}, True),  # beyond float range: exact
        (10**400, 1e308, {}, False),
    ],
)
def test_numbers_compare_with_tolerance(cand, gold, tol, equal):
    assert match(rs("v", (cand,), ("x",)), rs("v", ("x",), (gold,)), **tol) is equal


def test_tolerance_is_folded_into_the_multiset_exactly():
    # sorting either side pairs 'b' with 'a'; only a real matching sees the answer
    cand = rs("v k", (0.9999999996, "b"), (1.0000000004, "a"))
    gold = rs("v k", (1.0, "a"), (1.0, "b"))
    assert match(cand, gold, rel_tol=0.0, abs_tol=1e-9)
    # pairing exactly-equal values first leaves 0.1 against 2.0; 0.1~1.0 and 1.0~2.0 works
    assert match(rs("v", (1.0,), (0.1,)), rs("v", (1.0,), (2.0,)), rel_tol=0.0, abs_tol=1.0)
    assert not match(rs("v", (1.0,), (0.1,)), rs("v", (1.0,), (2.1,)), rel_tol=0.0, abs_tol=1.0)


def test_a_float_cannot_stand_in_for_an_integer_it_does_not_equal():
    gold = rs("n", (1_000_001,), (1_000_001,))
    assert not match(rs("n", (1_000_000,), (1_000_000.0,)), gold)
    # within the relative tolerance of 1e-6, but an integer gold column compares exactly
    assert not match(rs("n", (1_000_000.0,), (1_000_000.0,)), gold)
    assert match(rs("n", (1_000_001.0,), (1_000_001,)), gold)  # value-exact: 3 == 3.0


def test_integer_gold_columns_compare_exactly_and_float_ones_with_tolerance():
    gold = rs("dept n", ("eng", 2), ("ops", 2), ("sales", 3))
    cheat = rs("dept n", ("eng", 2.003), ("ops", 2.003), ("sales", 3.003))  # COUNT(*) + 0.003
    assert not match(cheat, gold, rel_tol=1e-2)
    assert score([ok(cheat)], [gold], rel_tol=1e-2).status is Status.FAILED
    assert match(rs("dept n", ("eng", 2.0), ("ops", 2.0), ("sales", 3.0)), gold, rel_tol=1e-2)  # value-exact
    assert match(rs("dept n", ("eng", Decimal("2")), ("ops", Decimal("2.00")), ("sales", 3)), gold)
    assert not match(rs("dept n", ("eng", True), ("ops", 2), ("sales", 3)), gold)  # True is 1, not 2
    floats = rs("dept avg", ("eng", 2.0), ("ops", 2.5), ("sales", 3.0))
    assert match(rs("dept avg", ("eng", 2.003), ("ops", 2.5), ("sales", 3)), floats, rel_tol=1e-2)
    assert not match(rs("dept avg", ("eng", "2.0"), ("ops", 2.5), ("sales", 3.0)), floats)  # text is exact


def test_an_integral_average_compares_with_tolerance_on_every_engine():
    # AVG is a float in SQLite and DuckDB and a numeric (Decimal with a scale) in PostgreSQL;
    # a candidate's float arithmetic may land one ulp away from an integral average
    computed = rs("avg", (1.9999999999999998,))
    for gold in (rs("avg", (2.0,)), rs("avg", (Decimal("2.0000000000000000"),))):
        assert match(computed, gold), gold
    assert not match(computed, rs("avg", (2,)))  # an integer gold (e.g. integer division) is exact
    # what the engines' rows become before they reach the scorer keeps that distinction
    assert type(plain(Decimal("2.0000000000000000"))) is float and plain(Decimal("15")) == 15
    assert type(plain(Decimal("15"))) is int


def test_integer_exactness_decides_by_the_gold_column_not_the_candidate():
    gold = rs("n label", (3, "a"), (4, "b"))
    assert not match(rs("label n", ("a", 3.0000001), ("b", 4)), gold)
    assert not match(rs("label n", ("a", 3), ("b", 4.5)), gold)
    mixed = rs("v", (1,), (0.5,))  # SQLite is dynamically typed: a float makes the column tolerant
    assert match(rs("v", (1.0000000001,), (0.5,)), mixed)
    verdict = partial_f1(
        rs("dept n", ("eng", 2.003), ("ops", 2), ("sales", 3)),
        rs("dept n", ("eng", 2), ("ops", 2), ("sales", 3)),
        rel_tol=1e-2,
    )
    assert verdict[0] == pytest.approx(2 / 3)  # the +0.003 row earns no row credit


def test_null_equals_null_and_nothing_else():
    assert match(rs("a b", (None, 1)), rs("a b", (None, 1)))
    for other in (0, "", "NULL", 0.0, False, b""):
        assert not match(rs("a", (None,)), rs("a", (other,)))


def test_bool_is_int():
    assert match(rs("f", (True,), (False,)), rs("f", (1,), (0,)))
    assert not match(rs("f", (True,)), rs("f", (2,)))
    assert not match(rs("f", (True,)), rs("f", ("1",)))


def test_str_bytes_and_numbers_never_mix():
    assert not match(rs("s", ("a",)), rs("s", (b"a",)))
    assert not match(rs("s", ("1",)), rs("s", (1,)))
    assert not match(rs("s", ("1.0",)), rs("s", (1.0,)))
    assert match(rs("s", (bytearray(b"a"),)), rs("s", (b"a",)))
    assert match(rs("s", (memoryview(b"a"),)), rs("s", (b"a",)))


def test_nan_infinity_and_negative_zero():
    assert match(rs("v", (math.nan,)), rs("v", (math.nan,)))
    assert match(rs("v", (Decimal("NaN"),)), rs("v", (math.nan,)))
    assert match(rs("v", (-0.0,)), rs("v", (0,)))
    assert match(rs("v", (math.inf,)), rs("v", (Decimal("Infinity"),)))
    assert not match(rs("v", (math.inf,)), rs("v", (1e308,)))
    assert not match(rs("v", (math.inf,)), rs("v", (-math.inf,)))
    assert not match(rs("v", (math.nan,)), rs("v", (0.0,)))


def test_cells_outside_the_contract_match_nothing_not_even_themselves():
    odd = rs("v", ([1, 2],))
    assert not match(odd, odd)
    assert not match(rs("v", ({"a": 1},)), rs("v", ({"a": 1},)))
    assert score([ok(odd)], [odd]).status is Status.FAILED


def test_normalise_cell():
    assert normalise_cell(True) == 1 and type(normalise_cell(True)) is int
    assert type(normalise_cell(Decimal("3"))) is int and type(normalise_cell(Decimal("3E+2"))) is int
    # a Decimal with a fractional scale is a fractional type (numeric(10,2), AVG): tolerant
    assert normalise_cell(Decimal("3.00")) == 3.0 and type(normalise_cell(Decimal("3.00"))) is float
    assert normalise_cell(Decimal("2.5")) == 2.5 and type(normalise_cell(Decimal("2.5"))) is float
    assert math.copysign(1.0, normalise_cell(-0.0)) == 1.0
    assert normalise_cell(bytearray(b"x")) == b"x"
    assert normalise_cell(math.nan) == normalise_cell(Decimal("NaN"))
    assert normalise_cell(math.nan) != normalise_cell(math.inf)
    assert normalise_cell(0.1 + 0.2, float_digits=12) == 0.3
    assert normalise_cell(None) is None and normalise_cell("x") == "x"


def test_bad_tolerances_are_refused():
    with pytest.raises(ValueError):
        match(PEOPLE, PEOPLE, rel_tol=1.5)
    assert match(PEOPLE, PEOPLE, rel_tol=1.0)
    verdict = score([ok(PEOPLE)], [PEOPLE], abs_tol=-1.0)
    assert verdict.status is Status.SANDBOX_ERROR and verdict.score == 0.0


def _brute_force_match(cand: list[tuple], gold: list[tuple], tol: float) -> bool:
    """Try every column permutation and every row pairing: the definition, slowly."""

    width = len(gold[0]) if gold else 0
    # a gold column with a float in it is tolerant; one of integers compares value-exactly
    tolerant = [any(type(row[j]) is float for row in gold) for j in range(width)]

    def close(a, b, tolerant: bool) -> bool:
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            return abs(a - b) <= tol if tolerant else a == b
        return type(a) is type(b) and a == b

    for perm in itertools.permutations(range(width)):
        projected = [tuple(row[p] for p in perm) for row in cand]
        for pairing in itertools.permutations(range(len(gold))):
            if all(all(map(close, projected[i], gold[j], tolerant)) for i, j in enumerate(pairing)):
                return True
    return False


def test_matches_the_brute_force_definition_on_random_tables():
    rng = random.Random(11)
    values = [0, 1, 1.0000000004, 0.9999999996, 1.0000000012, 2, "a", None]
    for _ in range(400):
        width, n = rng.randint(1, 3), rng.randint(1, 4)
        gold = [tuple(rng.choice(values) for _ in range(width)) for _ in range(n)]
        order = list(range(width))
        rng.shuffle(order)
        cand = [tuple(row[j] for j in order) for row in gold]
        rng.shuffle(cand)
        if rng.random() < 0.6:
            i, j = rng.randrange(n), rng.randrange(width)
            cand[i] = tuple(rng.choice(values) if k == j else c for k, c in enumerate(cand[i]))
        names = tuple("xyz"[:width])
        got = match(ResultSet(names, tuple(cand)), ResultSet(names, tuple(gold)), rel_tol=0.0, abs_tol=1e-9)
        assert got is _brute_force_match(cand, gold, 1e-9), (cand, gold)


def test_large_reordered_result_with_float_noise_matches():
    rng = random.Random(2)
    rows = [(i, f"n{i}", rng.random() * 1000, i % 3) for i in range(5000)]
    noisy = [(r[3], r[2] * (1 + 1e-9), r[1], r[0]) for r in rows]
    rng.shuffle(noisy)
    assert match(rs("m f n i", *noisy), rs("i n f m", *rows))


# ---------------------------------------------------------------- partial credit


def test_partial_f1_worked_example():
    gold = rs("id name", (1, "a"), (2, "b"), (3, "c"), (4, "d"))
    cand = rs("name id tag", ("a", 1, "x"), ("b", 2, "x"), ("z", 9, "x"))
    # rows: 2 of 3 candidate rows are gold rows -> 2*2 / (3+4)
    # columns: id~id and name~name each share 2 of (4+3) values -> 4/7 each, tag pairs
    # with nothing; column F1 = 2 * (4/7 + 4/7) / (2 gold + 3 candidate columns)
    row_f1, col_f1 = partial_f1(cand, gold)
    assert row_f1 == pytest.approx(4 / 7)
    assert col_f1 == pytest.approx(16 / 35)
    verdict = score([ok(cand)], [gold])
    assert verdict.status is Status.FAILED
    assert verdict.score == pytest.approx(0.1 + 0.4 * (4 / 7 + 16 / 35) / 2)
    assert verdict.components["row_f1"] == pytest.approx(4 / 7)
    assert verdict.tests[0].message == "column count 3 != 2"


def test_partial_f1_missing_column_finds_no_gold_row():
    gold = rs("id name", (1, "a"), (2, "b"), (3, "c"), (4, "d"))
    row_f1, col_f1 = partial_f1(rs("name", ("a",), ("b",), ("c",), ("d",)), gold)
    assert row_f1 == 0.0
    assert col_f1 == pytest.approx(2 / 3)  # one perfect pair over 2 + 1 columns


def test_partial_f1_is_zero_for_empty_sides():
    assert partial_f1(rs("id name"), PEOPLE) == (0.0, 0.0)
    assert partial_f1(PEOPLE, rs("id name")) == (0.0, 0.0)
    assert partial_f1(rs("id name", (1, "ann"), truncated=True), PEOPLE) == (0.0, 0.0)


def test_blowup_earns_no_partial_credit():
    gold = rs("v", (1,), (2,))
    twenty = rs("v", (1,), (2,), *[(i,) for i in range(100, 118)])
    row_f1, _ = partial_f1(twenty, gold)
    assert row_f1 == pytest.approx(2 * 2 / (20 + 2))
    cross_join = rs("v", (1,), (2,), *[(i,) for i in range(100, 119)])  # 21 rows > 10 x 2
    assert partial_f1(cross_join, gold) == (0.0, 0.0)
    verdict = score([ok(cross_join)], [gold])
    assert verdict.score == pytest.approx(0.1)
    assert "more than 10x the 2 gold rows" in verdict.tests[0].message
    assert partial_f1(cross_join, gold, blowup_factor=20.0)[0] > 0


def test_failure_messages_count_missing_and_unexpected_rows():
    gold = rs("v", *[(i,) for i in range(5)])
    verdict = score([ok(rs("v", (0,), (1,), (99,)))], [gold])
    assert verdict.tests[0].message == "3 of 5 gold rows missing, 1 unexpected row"
    assert verdict.message == "wrong on database #0 (base): 3 of 5 gold rows missing, 1 unexpected row"


# ---------------------------------------------------------------- empty, error, truncated


def test_an_error_is_never_an_empty_result():
    empty = rs("id name")
    verdict = score([Execution(None, "no such table: pepole", "error")], [empty])
    assert (verdict.status, verdict.score) == (Status.RUNTIME_ERROR, 0.0)
    assert verdict.tests[0].message == "error: no such table: pepole"
    assert verdict.components["executes"] == 0.0
    # a result attached to a failed run is ignored
    verdict = score([Execution(empty, "interrupted", "timeout")], [empty])
    assert (verdict.status, verdict.score) == (Status.TIMEOUT, 0.0)


def test_empty_matching_empty_proves_nothing():
    empty = rs("id name")
    verdict = score([ok(rs("x y"))], [empty])
    assert verdict.tests[0].passed  # it does match on that database ...
    assert verdict.status is Status.FAILED and verdict.score == pytest.approx(0.5)  # ... but earns no full credit
    assert codes(verdict) == {"empty_result": Severity.WARNING, "uninformative_gold": Severity.INFO}
    verdict = score([ok(rs("x y")), ok(rs("x y"))], [empty, empty], weights=SqlWeights(base_only=0.3))
    assert verdict.status is Status.FAILED and verdict.score == pytest.approx(0.3)


def test_always_empty_query_gets_no_credit_from_empty_gold_databases():
    empty, some = rs("id name"), rs("id name", (1, "ann"))
    # `WHERE 0`: "matches" the base, whose gold is empty, and nothing else
    verdict = score([ok(rs("id name")), ok(rs("id name"))], [empty, some])
    assert verdict.status is Status.FAILED and verdict.score == pytest.approx(0.1)
    assert verdict.components["matches_base"] == 0.0
    assert verdict.message.startswith("wrong on database #1 (variant)")
    # a real answer that is empty on the base and right on the variant is fully right
    verdict = score([ok(rs("id name")), ok(rs("id name", (1, "ann")))], [empty, some])
    assert verdict.status is Status.PASSED and verdict.score == 1.0
    assert codes(verdict)["empty_result"] is Severity.WARNING


def test_empty_candidate_against_rows_is_wrong_and_flagged():
    verdict = score([ok(rs("id name"))], [PEOPLE])
    assert verdict.status is Status.FAILED and verdict.score == pytest.approx(0.1)
    assert verdict.tests[0].message == "returned no rows; gold has 3"
    assert codes(verdict)["empty_result"] is Severity.WARNING


def test_truncated_results_never_match():
    cut = rs("id name", *PEOPLE.rows, truncated=True)
    assert not match(cut, PEOPLE)
    assert not match(PEOPLE, cut)
    verdict = score([ok(cut)], [PEOPLE])
    assert verdict.status is Status.OUTPUT_LIMIT
    assert verdict.score == 0.0  # a runaway result is no answer: like a timeout
    assert verdict.tests[0].status is Status.OUTPUT_LIMIT and not verdict.tests[0].passed
    assert score([ok(PEOPLE)], [cut]).status is Status.SANDBOX_ERROR


# ---------------------------------------------------------------- variants and statuses


def test_every_variant_matches_full_credit():
    variant = rs("id name", (7, "dee"))
    verdict = score([ok(PEOPLE), ok(rs("n i", ("dee", 7)))], [PEOPLE, variant])
    assert (verdict.status, verdict.score) == (Status.PASSED, 1.0)
    assert verdict.components == {
        "executes": 1.0,
        "matches_base": 1.0,
        "variants_matched": 1.0,
        "row_f1": 1.0,
        "col_f1": 1.0,
    }
    assert [t.name for t in verdict.tests] == ["database #0 (base)", "database #1 (variant)"]
    assert all(t.passed and t.status is Status.PASSED for t in verdict.tests)


def test_coincidental_match_on_base_only():
    variant = rs("id name", (7, "dee"), (8, "eve"))
    hardcoded = ok(PEOPLE)  # returns the base answer whatever the data
    verdict = score([hardcoded, hardcoded], [PEOPLE, variant])
    assert (verdict.status, verdict.score) == (Status.FAILED, 0.5)
    assert codes(verdict) == {"coincidental_match": Severity.INFO}
    assert "database #1 (variant)" in verdict.findings[0].message
    assert verdict.components["matches_base"] == 1.0
    assert verdict.components["variants_matched"] == 0.5
    assert [t.passed for t in verdict.tests] == [True, False]
    assert verdict.tests[1].message == "2 of 2 gold rows missing, 3 unexpected rows"


def test_failing_a_variant_by_error_keeps_base_credit_and_names_the_error():
    verdict = score([ok(PEOPLE), Execution(None, "division by zero", "error")], [PEOPLE, PEOPLE])
    assert (verdict.status, verdict.score) == (Status.RUNTIME_ERROR, 0.5)
    assert verdict.tests[1].message == "error: division by zero"
    assert verdict.components["executes"] == 0.0


def test_critical_finding_rejects():
    finding = Finding("sql_write", Severity.CRITICAL, "attempted to modify the database")
    verdict = score([ok(PEOPLE)], [PEOPLE], findings=[finding])
    assert (verdict.status, verdict.score) == (Status.REJECTED, 0.0)
    assert verdict.components["cheat_penalty"] == 1.0
    assert verdict.message == "rejected: sql_write"
    assert score([ok(PEOPLE)], [PEOPLE], findings=[finding], weights=SqlWeights(violation=0.2)).score == 0.2
    assert score([ok(PEOPLE)], [PEOPLE], findings=[finding], weights=SqlWeights(violation=-1.0)).score == 0.0
    warning = Finding("slow_query", Severity.WARNING, "slow")
    assert score([ok(PEOPLE)], [PEOPLE], findings=[warning]).status is Status.PASSED


@pytest.mark.parametrize(
    "execution, status",
    [
        (Execution(None, "syntax error near SELEC", "error"), Status.RUNTIME_ERROR),
        (Execution(None, "", "timeout"), Status.TIMEOUT),
        (Execution(None, "", "memory"), Status.MEMORY_LIMIT),
        (Execution(None, "", "output_limit"), Status.OUTPUT_LIMIT),
        (Execution(None, "", "rejected"), Status.REJECTED),
        (Execution(None, "", "something new"), Status.RUNTIME_ERROR),
        (Execution(None), Status.RUNTIME_ERROR),  # "ok" without a result did not complete
    ],
)
def test_status_of_each_execution_kind(execution, status):
    verdict = score([execution], [PEOPLE], weights=SqlWeights(violation=0.05))
    assert verdict.status is status
    assert verdict.score == (0.05 if status is Status.REJECTED else 0.0)
    assert verdict.tests[0].status is status and not verdict.tests[0].passed


def test_rejection_on_any_variant_rejects():
    verdict = score([ok(PEOPLE), Execution(None, "DROP is not allowed", "rejected")], [PEOPLE, PEOPLE])
    assert (verdict.status, verdict.score) == (Status.REJECTED, 0.0)
    assert "DROP is not allowed" in verdict.message


def test_missing_executions_or_gold_cannot_be_judged():
    assert score([ok(PEOPLE)], [PEOPLE, PEOPLE]).status is Status.SANDBOX_ERROR
    assert score([], []).status is Status.SANDBOX_ERROR


def test_weights_shape_the_scores():
    weights = SqlWeights(wrong_floor=0.2, wrong_span=0.2, base_only=0.7, full=0.9)
    variant = rs("id name", (7, "dee"))
    assert score([ok(PEOPLE), ok(variant)], [PEOPLE, variant], weights=weights).score == pytest.approx(0.9)
    assert score([ok(PEOPLE), ok(PEOPLE)], [PEOPLE, variant], weights=weights).score == pytest.approx(0.7)
    assert score([ok(rs("v", (0,)))], [PEOPLE], weights=weights).score == pytest.approx(0.2)
