from tests.helpers import call_task, status_name


def test_correct_and_wrong(client, assert_healthy):
    good = client.score(call_task("good", "def f(x):\n    return x * 2\n", "f", [([1], 2), ([3], 6)]))
    assert status_name(good) == "PASSED" and good.score == 1.0
    partial = client.score(
        call_task("partial", "def f(x):\n    return 2 if x == 1 else 0\n", "f", [([1], 2), ([3], 6)])
    )
    assert status_name(partial) == "FAILED" and partial.score == 0.5
    assert_healthy()
