#!/usr/bin/env python3
"""Checks of pipeline_trace.sh.

  trace_check.py pipeline TRACE.json SCHEDULE STEPS: the Chrome trace of `hp train --trace`
    holds one track per rank of SCHEDULE (hp plan's lines "r0: F0.0 B0.0 ... OPT"), and on each,
    STEPS times the rank's compute actions in that order, each once per step; every time is
    finite and non-negative, a track's events do not overlap, and each RECV ends after the
    matching SEND (same message) started.
  trace_check.py svg FILE.svg RANKS: an SVG with a row label per rank and a box per action.
"""
import json
import math
import re
import sys


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def compact(name):
    """'F c1 m0' -> 'F1.0'; 'OPT' -> 'OPT'; SEND / RECV -> None."""
    m = re.fullmatch(r"(F|B|W|BW) c(\d+) m(\d+)", name)
    if m:
        return "%s%s.%s" % m.groups()
    return "OPT" if name == "OPT" else None


def check_pipeline(path, schedule_path, steps):
    with open(path) as f:
        doc = json.load(f)
    expected = {}
    with open(schedule_path) as f:
        for line in f:
            rank, actions = line.split(":", 1)
            expected[int(rank[1:])] = actions.split()
    tracks = {}
    for e in doc["traceEvents"]:
        if e.get("ph") == "M" and e.get("name") == "thread_name" and e["pid"] == 0:
            tracks[e["tid"]] = e["args"]["name"]
    if sorted(tracks) != sorted(expected):
        fail("tracks %s, schedule ranks %s" % (sorted(tracks), sorted(expected)))
    events = {r: [] for r in expected}
    for e in doc["traceEvents"]:
        if e.get("ph") != "X" or e["pid"] != 0:
            continue
        ts, dur = float(e["ts"]), float(e["dur"])
        if not (math.isfinite(ts) and math.isfinite(dur) and ts >= 0 and dur >= 0):
            fail("%s on rank %d: ts %r dur %r" % (e["name"], e["tid"], ts, dur))
        events[e["tid"]].append((ts, dur, e["name"]))
    sends, recvs = {}, []
    for r, evs in events.items():
        evs.sort()
        for (t0, d0, n0), (t1, _, n1) in zip(evs, evs[1:]):
            if t0 + d0 > t1 + 1e-3:  # microseconds; the JSON rounds nothing, allow a nanosecond
                fail("rank %d: %s [%g, %g) overlaps %s at %g" % (r, n0, t0, t0 + d0, n1, t1))
        got = [c for c in (compact(n) for _, _, n in evs) if c]
        want = expected[r] * steps
        if got != want:
            fail("rank %d ran %d actions %s..., the schedule %d %s..." %
                 (r, len(got), got[:12], len(want), want[:12]))
        for t, d, n in evs:
            m = re.fullmatch(r"(SEND|RECV) (act|grad) c(\d+)->c(\d+) m(\d+) (to|from) r(\d+)", n)
            if not m:
                continue
            key = (m.group(2), m.group(3), m.group(4), m.group(5))
            if m.group(1) == "SEND":
                sends.setdefault(key, []).append(t)
            else:
                recvs.append((key, t + d, r, n))
    chunks = {re.match(r"[A-Z]+(\d*)", a).group(1) for acts in expected.values() for a in acts}
    if len(chunks - {""}) > 1 and not recvs:
        fail("a pipeline trace without RECV")
    for key, end, r, n in recvs:
        starts = sends.get(key, [])
        if len(starts) != steps:
            fail("rank %d %s: %d matching SENDs for %d steps" % (r, n, len(starts), steps))
        if not any(s <= end for s in starts):
            fail("rank %d %s ends at %g before its SEND started" % (r, n, end))
    print("%s: %d ranks, %d events, ok" % (path, len(events), sum(map(len, events.values()))))


def check_svg(path, ranks):
    with open(path) as f:
        svg = f.read()
    if not svg.startswith("<svg"):
        fail(path + " is not an SVG")
    for r in range(ranks):
        if ">r%d</text>" % r not in svg:
            fail("%s has no row for rank %d" % (path, r))
    boxes = len(re.findall(r"<title>(F|B|W|BW) c\d+ m\d+ ", svg))
    if boxes == 0:
        fail(path + " has no action boxes")
    print("%s: %d rows, %d boxes, ok" % (path, ranks, boxes))


if __name__ == "__main__":
    if sys.argv[1] == "pipeline":
        check_pipeline(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1] == "svg":
        check_svg(sys.argv[2], int(sys.argv[3]))
    else:
        fail("unknown check " + sys.argv[1])
