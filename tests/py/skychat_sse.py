"""The external SSE client of tests/skychat.rs: sseclient-py on skychat's /sse or /events.

Usage: skychat_sse.py HOST PORT PATH TOKEN COUNT [LAST_EVENT_ID [MATCH]]

Sends the bearer TOKEN (and Last-Event-ID when given), prints `open <status>` once the head
is in, then one JSON line per event, flushed at once: {"id", "data"} (data as sent). Events
of the history seed ("history": "true" in the data) are printed with "seed": true and not
counted, nor are events whose data does not contain MATCH (when given). Exits 0 after COUNT counted events, 1 if the stream ends first, 2 on a 30 s silence.
"""

import http.client
import json
import sys

import sseclient


def main():
    host, port, path, token, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
    headers = {"Accept": "text/event-stream", "Authorization": "Bearer " + token}
    if len(sys.argv) > 6 and sys.argv[6]:
        headers["Last-Event-ID"] = sys.argv[6]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    print("open", resp.status, flush=True)
    if resp.status != 200:
        print(json.dumps({"error": resp.read().decode("utf-8", "replace")}), flush=True)
        return 1

    def source():
        while True:
            chunk = resp.read1(65536)
            if not chunk:
                return
            yield chunk

    match = sys.argv[7] if len(sys.argv) > 7 else ""
    got = 0
    try:
        for ev in sseclient.SSEClient(source()).events():
            seed = False
            try:
                seed = json.loads(ev.data).get("history") in ("true", True)
            except ValueError:
                pass
            print(json.dumps({"id": ev.id, "data": ev.data, "seed": seed}), flush=True)
            if not seed and match in ev.data:
                got += 1
                if got >= count:
                    return 0
    except TimeoutError:
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
