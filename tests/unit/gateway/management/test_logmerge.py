"""The logs of several pods as one stream: timestamps parsed (not compared as text), merged by
time, stripped, each line prefixed by its pod; and the reorder window of a followed stream."""

from conch_gateway.management.logmerge import PodLines, Reorder, merge, split


def test_split_parses_rfc3339_with_trimmed_nanoseconds():
    # The API trims trailing zeros: .1 is 100 ms, later than .05 and earlier than .12 — text order says otherwise.
    tenth, _ = split("2026-12-06T05:00:01.1Z a")
    twelfth, _ = split("2026-12-06T05:00:01.12Z b")
    whole, text = split("2026-12-06T05:00:01Z c\n")
    assert whole < tenth < twelfth and text == "c\n"
    assert tenth == (1796533201, 100_000_000)
    assert split("2026-12-06T06:00:01.000000001+01:00 x") == ((1796533201, 1), "x")  # an offset, nanoseconds kept
    assert split("no stamp here") == (None, "no stamp here")


def test_merge_orders_every_pod_s_lines_by_time_and_prefixes_the_pod():
    merged = merge({
        "m-triton-b": ["2026-12-06T05:00:01.12Z b1", "2026-12-06T05:00:03Z b2\n"],
        "m-triton-a": ["2026-12-06T05:00:01.1Z a1", "2026-12-06T05:00:02.5Z a2", "2026-12-06T05:00:03Z a3"],
    })
    assert merged == ["m-triton-a a1\n", "m-triton-b b1\n", "m-triton-a a2\n",
                      "m-triton-a a3\n", "m-triton-b b2\n"]  # a tie: pods in name order
    assert merge({}) == [] and merge({"p": []}) == []


def test_a_line_without_a_stamp_stays_behind_its_predecessor():
    merged = merge({"a": ["2026-12-06T05:00:01Z first", "continued", "2026-12-06T05:00:05Z late"],
                    "b": ["2026-12-06T05:00:03Z middle"]})
    assert merged == ["a first\n", "a continued\n", "b middle\n", "a late\n"]
    reader = PodLines("p")
    assert reader.take("orphan")[1] == "p orphan\n"  # before any stamp: the earliest time


def test_reorder_lets_an_earlier_stamped_line_that_arrives_later_go_first():
    order = Reorder(0.25)
    late_pod = PodLines("b")
    early_pod = PodLines("a")
    order.push(*late_pod.take("2026-12-06T05:00:02Z later"), now=10.0)
    assert order.due(10.1) == []  # still inside its window
    order.push(*early_pod.take("2026-12-06T05:00:01Z earlier"), now=10.2)
    # The earliest stamp waits its own window, and nothing stamped after it overtakes it.
    assert order.due(10.3) == []
    assert order.due(10.45) == ["a earlier\n", "b later\n"]
    assert len(order) == 0
    # Beyond the window arrival order wins: a line stamped earlier but arriving late goes out when due.
    order.push(*early_pod.take("2026-12-06T05:00:00Z stale"), now=11.0)
    assert order.due(11.3) == ["a stale\n"]
