#!/usr/bin/env python3
"""An independent Stratix traces client, written from shared/stratix-api.md
with the Python standard library only, the way the official SDK talks to the
API. It uploads a file and reads it back through every traces endpoint.

    scripts/sdk-compat.py BASE_URL FILE [FILE...]

The key comes from LAYERLENS_STRATIX_API_KEY (default "test-key", the key of
stratix-fake). Exit status 0 when every step behaved as the contract says.
Used by cmd/stratix-fake's tests to show that stratix-fake serves any client
written from the contract, not only tracesync's own.
"""

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request


def unwrap(body):
    # The SDK builds a dict from each body and unwraps only when BOTH keys exist.
    if not isinstance(body, dict):
        raise AssertionError("top-level body is not a JSON object: %r" % (body,))
    if "status" in body and "data" in body:
        return body["data"]
    return body


class Client:
    def __init__(self, base, key):
        self.base = base.rstrip("/")
        self.key = key

    def call(self, method, url, payload=None):
        data = None
        headers = {"x-api-key": self.key, "Accept": "application/json"}
        if payload is not None:
            data = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else {}

    def discover(self):
        body = self.call("GET", self.base + "/organizations")
        if "data" not in body:
            raise AssertionError("organizations answer has no data: %r" % (body,))
        org = body["data"]
        if not org.get("projects"):
            raise AssertionError("organization is missing project")
        self.traces = "%s/organizations/%s/projects/%s/traces" % (
            self.base, org["id"], org["projects"][0]["id"])

    def upload(self, path):
        name = os.path.basename(path)
        ctype = "application/jsonl" if name.endswith(".jsonl") else "application/json"
        with open(path, "rb") as f:
            content = f.read()
        pre = unwrap(self.call("POST", self.traces + "/upload",
                               {"filename": name, "type": ctype, "size": len(content)}))
        if not pre.get("url"):
            raise AssertionError("presign gave no url: %r" % (pre,))
        put = urllib.request.Request(pre["url"], data=content, method="PUT",
                                     headers={"Content-Type": ctype})
        with urllib.request.urlopen(put, timeout=30) as resp:
            if not 200 <= resp.status < 300:
                raise AssertionError("put: HTTP %d" % resp.status)
        created = unwrap(self.call("POST", self.traces, {"filename": name}))
        ids = created if isinstance(created, list) else created.get("trace_ids")
        if not ids:
            raise AssertionError("create gave no trace ids: %r" % (created,))
        return name, ids

    def list(self, **params):
        q = {"page": "1", "page_size": "100"}
        q.update({k: str(v) for k, v in params.items()})
        res = unwrap(self.call("GET", self.traces + "?" + urllib.parse.urlencode(q)))
        traces = res.get("traces", [])
        count = res.get("count", len(traces))
        return traces, count, res.get("total_count", count)


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    c = Client(argv[1], os.environ.get("LAYERLENS_STRATIX_API_KEY") or "test-key")
    c.discover()
    total = 0
    for path in argv[2:]:
        name, ids = c.upload(path)
        traces, count, _ = c.list(source=name, sort_by="created_at", sort_order="desc")
        got = {t["id"] for t in traces if t.get("filename") == name}
        if not set(ids) <= got:
            raise AssertionError("%s: list by source lacks %r" % (name, set(ids) - got))
        one = unwrap(c.call("GET", c.traces + "/" + urllib.parse.quote(ids[0])))
        if one.get("id") != ids[0] or not isinstance(one.get("data"), dict):
            raise AssertionError("get %s: %r" % (ids[0], one))
        for key in ("organization_id", "project_id", "created_at", "filename", "input", "integration_id"):
            if key not in one:
                raise AssertionError("get %s: no %s" % (ids[0], key))
        total += len(ids)
        print("uploaded %s: %d traces" % (name, len(ids)))
    sources = unwrap(c.call("GET", c.traces + "/sources")).get("sources")
    for path in argv[2:]:
        if os.path.basename(path) not in sources:
            raise AssertionError("sources %r lack %s" % (sources, os.path.basename(path)))
    _, _, total_count = c.list(source="upload")
    if total_count < total:
        raise AssertionError("list source=upload: total_count %d < %d uploaded" % (total_count, total))
    victim = c.list(page_size=1)[0][0]["id"]
    c.call("DELETE", c.traces + "/" + urllib.parse.quote(victim))
    try:
        c.call("GET", c.traces + "/" + urllib.parse.quote(victim))
        raise AssertionError("deleted trace %s still there" % victim)
    except urllib.error.HTTPError as e:
        if e.code != 404:
            raise
    print("ok: %d traces, %d sources" % (total, len(sources)))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (AssertionError, urllib.error.URLError) as e:
        print("sdk-compat: FAILED: %s" % e, file=sys.stderr)
        sys.exit(1)
