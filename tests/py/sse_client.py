"""The external SSE client of tests/http_stream.rs: sseclient-py over http.client.

Usage: sse_client.py HOST PORT PATH

Prints `open <status> <content-type>` once the response head is in, then one JSON line per
event as it arrives (flushed at once): {"event", "id", "data", "keepalives"}, where
keepalives counts the `: keep-alive` comments seen on the wire since the previous event
(sseclient-py skips comments, so the byte source counts them). Exits 0 after an event
named `end`, 1 if the stream ends before it.
"""

import http.client
import json
import sys

import sseclient


def main():
    host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.request("GET", path, headers={"Accept": "text/event-stream"})
    resp = conn.getresponse()
    print("open", resp.status, resp.getheader("Content-Type"), flush=True)
    seen = {"ka": 0, "tail": b""}

    def source():
        while True:
            chunk = resp.read1(65536)
            if not chunk:
                return
            # Count comments across read boundaries (a comment is one short line).
            text = seen["tail"] + chunk
            seen["ka"] += text.count(b": keep-alive\n") - seen["tail"].count(b": keep-alive\n")
            seen["tail"] = text[-32:]
            yield chunk

    for ev in sseclient.SSEClient(source()).events():
        print(
            json.dumps(
                {"event": ev.event, "id": ev.id, "data": ev.data, "keepalives": seen["ka"]}
            ),
            flush=True,
        )
        seen["ka"] = 0
        if ev.event == "end":
            return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
