#!/usr/bin/env python3
"""A minimal span collector for `examples/bandit/run --trace`: accepts the
engine's Zipkin v2 POSTs on a free 127.0.0.1 port and appends each body,
one a line, to FILE, which `mycelium trace --from FILE` reads.  Prints
"listening PORT" once ready.  Not a Zipkin server: it keeps nothing else.

usage: span_sink.py FILE
"""
import http.server
import sys


class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(sys.argv[1], "ab") as f:
            f.write(body.replace(b"\n", b" ") + b"\n")
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Sink)
print("listening", server.server_address[1], flush=True)
server.serve_forever()
