#!/usr/bin/env python3
"""A local stand-in for the SaaS APIs handoff's actions call, for trying the examples offline.

It speaks the documented formats closely enough for handoff:
  dbt Cloud Admin API v2   POST /api/v2/accounts/{account}/jobs/{job}/run/   -> {"data": {"id": N, "href": ...}}
                           GET  /api/v2/accounts/{account}/runs/{run}/      -> queued, running, then success
  Slack incoming webhook   POST /services/...                               -> 200 "ok"
  anything else            POST /...                                        -> 200 {"ok": true} (dashboards, Elementary)
Every request is printed. Standard library only.

    python3 examples/fakes/fake_saas.py            # listens on 127.0.0.1:8099
    FAKE_SAAS_FAIL=1 python3 ...                   # dbt Cloud runs end in error (status 20)
"""
import itertools
import json
import os
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("FAKE_SAAS_PORT", "8099"))
FINAL = 20 if os.environ.get("FAKE_SAAS_FAIL") else 10
run_ids = itertools.count(70001)
polls = {}


class Handler(BaseHTTPRequestHandler):
    def _send(self, status, body, content_type="application/json"):
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length).decode(errors="replace") if length else ""

    def do_POST(self):
        body = self._body()
        print(f"POST {self.path}\n  {body}", flush=True)
        trigger = re.fullmatch(r"/api/v2/accounts/(\d+)/jobs/(\d+)/run/", self.path)
        if trigger:
            if not self.headers.get("Authorization", "").startswith("Token "):
                return self._send(401, {"status": {"code": 401, "is_success": False}})
            run_id = next(run_ids)
            polls[run_id] = 0
            href = f"http://127.0.0.1:{PORT}/deploy/{trigger.group(1)}/runs/{run_id}"
            return self._send(200, {"status": {"code": 200, "is_success": True}, "data": {"id": run_id, "status": 1, "href": href}})
        if self.path.startswith("/services/"):
            return self._send(200, "ok", "text/plain")
        return self._send(200, {"ok": True})

    def do_GET(self):
        poll = re.fullmatch(r"/api/v2/accounts/(\d+)/runs/(\d+)/", self.path)
        if not poll:
            return self._send(404, {"error": "not found"})
        run_id = int(poll.group(2))
        polls[run_id] = polls.get(run_id, 0) + 1
        status = [1, 3][polls[run_id] - 1] if polls[run_id] <= 2 else FINAL
        print(f"GET {self.path} -> status {status}", flush=True)
        return self._send(200, {"status": {"code": 200, "is_success": True}, "data": {"id": run_id, "status": status}})

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    print(f"fake dbt Cloud / Slack / HTTP on http://127.0.0.1:{PORT}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
