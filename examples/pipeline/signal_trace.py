#!/usr/bin/env python3
"""The trace id of the first signal in FILE, the spans span_sink.py kept
(one Zipkin v2 JSON array a line): the trace of the earliest span named
TOPIC (the recorder handling bandit.signal).  Exit 1 when there is none.

usage: signal_trace.py FILE TOPIC
"""
import json
import sys

best = None
with open(sys.argv[1]) as f:
    for n, line in enumerate(f, 1):
        line = line.strip()
        if not line:
            continue
        try:
            spans = json.loads(line)
        except ValueError as e:
            sys.exit("signal_trace.py: %s:%d: not JSON (%s)" % (sys.argv[1], n, e))
        for s in spans if isinstance(spans, list) else [spans]:
            if s.get("name") == sys.argv[2]:
                at = s.get("timestamp", 0)
                if best is None or at < best[0]:
                    best = (at, s["traceId"])
if best is None:
    sys.exit(1)
print(best[1])
