"""The real HumanEval data end to end: every canonical solution passes, a wrong twin fails."""

from __future__ import annotations

import pytest

from sandbox.api import pb
from sandbox.python.humaneval import canonical_task, load_problems, wrong_task

PROBLEMS = load_problems()


def test_dataset_is_complete():
    assert len(PROBLEMS) == 164


@pytest.fixture(scope="module")
def canonical_results(client):
    results = {r.id: r for r in client.score_batch([canonical_task(p) for p in PROBLEMS])}
    assert len(results) == len(PROBLEMS)
    return results


@pytest.fixture(scope="module")
def wrong_results(client):
    results = {r.id: r for r in client.score_batch([wrong_task(p) for p in PROBLEMS])}
    assert len(results) == len(PROBLEMS)
    return results


def test_every_canonical_solution_scores_one(canonical_results):
    failures = {
        k: (pb.Status.Name(r.status), r.message)
        for k, r in canonical_results.items()
        if r.status != pb.PASSED or r.score != 1.0
    }
    assert failures == {}
    assert all(not any(f.severity == pb.CRITICAL for f in r.findings) for r in canonical_results.values())


def test_every_wrong_variant_scores_below_one(wrong_results):
    too_high = {k: r.score for k, r in wrong_results.items() if r.score >= 1.0 or r.status == pb.PASSED}
    assert too_high == {}
    assert all(r.status != pb.SANDBOX_ERROR for r in wrong_results.values())


def test_results_carry_per_test_outcomes(canonical_results, wrong_results):
    first = canonical_results["HumanEval/0"]
    assert len(first.tests) == 7 and all(t.passed for t in first.tests)
    assert first.tests[0].name.startswith("assert candidate(")
    assert first.components["tests_passed"] == 1.0
    wrong = wrong_results["HumanEval/0/wrong"]
    assert wrong.status == pb.FAILED and all(not t.passed for t in wrong.tests)
    assert "got" in wrong.tests[0].message
