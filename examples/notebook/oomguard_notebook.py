#!/usr/bin/env python3
"""The tutorial's notebook flow against oomguard's API: predict -> trigger -> poll the outcome.

"Handling Memory Exhaustion and OOM Kills", steps 4, 5 and 7, with oomguard in place of the
coordination engine: the forecast comes from oomguard's growth fit over Prometheus history, the
scale-out is validated against the namespace policy and applied by the reconciler, and its outcome
(effective / ineffective) is verified by the reconciler after the verification window.

Standard library only (urllib, ssl, json). Usage:

    export OOMGUARD_URL=https://oomguard.oomguard.svc:9443      # --api-addr of the reconciler
    export OOMGUARD_TOKEN=$(kubectl create token my-notebook-sa) # or in a pod: the SA token file
    export OOMGUARD_CA=/path/to/ca.crt                          # the serving certificate's CA
    python3 oomguard_notebook.py --namespace self-healing-platform --deployment memory-leak-app

The token's user needs `get deployments` for the forecast, `patch deployments/scale` to trigger
and `get deployments` to read the outcome (RBAC, checked by oomguard with SubjectAccessReviews).
"""

import argparse
import datetime
import json
import math
import os
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

SA_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


class ApiError(Exception):
    def __init__(self, status, body):
        self.status = status
        self.body = body
        super().__init__(f"HTTP {status}: {body.get('error')}: {body.get('message')}")


class Client:
    """A minimal client of oomguard's /api/v1 (docs/openapi.yaml)."""

    def __init__(self, url, token, ca=None, timeout=30):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.context = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()

    def _call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self.context) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as e:
            try:
                body = json.load(e)
            except ValueError:
                body = {"error": "http", "message": e.reason}
            raise ApiError(e.code, body) from None

    def predict_resource_usage(self, namespace, name, horizon="6h", kind="deployments"):
        q = urllib.parse.urlencode({"horizon": horizon})
        path = f"/api/v1/namespaces/{namespace}/workloads/{kind}/{name}/forecast?{q}"
        return self._call("GET", path)

    def trigger_remediation(self, request):
        return self._call("POST", "/api/v1/remediations", request)

    def remediation(self, action_id):
        return self._call("GET", f"/api/v1/remediations/{urllib.parse.quote(action_id)}")

    def remediations(self, namespace=None):
        q = "?" + urllib.parse.urlencode({"namespace": namespace}) if namespace else ""
        return self._call("GET", f"/api/v1/remediations{q}")


def calculate_required_replicas(current_replicas, current_usage, target_usage=70.0):
    """The tutorial's step 5: scale proportionally, at least one more replica."""
    required = math.ceil(current_replicas * (current_usage / target_usage))
    return max(required, current_replicas + 1)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", default=os.environ.get("OOMGUARD_URL"), help="API base URL ($OOMGUARD_URL)")
    p.add_argument("--token", default=os.environ.get("OOMGUARD_TOKEN"),
                   help=f"bearer token ($OOMGUARD_TOKEN, else {SA_TOKEN})")
    p.add_argument("--ca", default=os.environ.get("OOMGUARD_CA"), help="CA file ($OOMGUARD_CA)")
    p.add_argument("--namespace", default="self-healing-platform")
    p.add_argument("--deployment", default="memory-leak-app")
    p.add_argument("--replicas", type=int, default=2, help="current replicas (the tutorial's 2)")
    p.add_argument("--horizon", default="6h")
    p.add_argument("--threshold", type=float, default=90.0, help="act above this predicted %%")
    p.add_argument("--poll", type=float, default=30.0, help="seconds between outcome polls")
    p.add_argument("--timeout", type=float, default=3600.0, help="give up polling after this")
    p.add_argument("--dry-run", action="store_true", help="predict only")
    a = p.parse_args(argv)
    if not a.url:
        p.error("--url or $OOMGUARD_URL is required")
    token = a.token
    if not token and os.path.exists(SA_TOKEN):
        with open(SA_TOKEN) as f:
            token = f.read().strip()
    if not token:
        p.error("--token, $OOMGUARD_TOKEN or a ServiceAccount token file is required")
    client = Client(a.url, token, a.ca)

    # Step 4: predict memory exhaustion.
    prediction = client.predict_resource_usage(a.namespace, a.deployment, a.horizon)
    print("Memory prediction:")
    for c in prediction["containers"]:
        ttl = c["time_to_limit_seconds"]
        ttl_text = "not within reach" if ttl is None else f"{ttl / 3600:.1f} h"
        cur = c["current_percent"]
        pred = c["predicted_percent"]
        print(f"   {c['name']}: current {'-' if cur is None else f'{cur:.1f}%'}, "
              f"predicted ({a.horizon}) {'-' if pred is None else f'{pred:.1f}%'}, "
              f"confidence {c['confidence']:.2f}, {c['pattern']}, time to limit {ttl_text}")
        print(f"      {c['note']}")
    predicted = prediction["predicted_memory_percent"]
    if predicted is None:
        print("No forecast (no limit or no history yet); nothing to do.")
        return 0
    if predicted <= a.threshold:
        print(f"Predicted {predicted:.1f}% <= {a.threshold:.0f}%: no action needed.")
        return 0
    print(f"WARNING: memory exhaustion predicted ({predicted:.1f}%)")
    if a.dry_run:
        return 0

    # Step 5: trigger proactive scaling.
    replicas = calculate_required_replicas(a.replicas, predicted)
    request = {
        "incident_id": f"memory-exhaustion-{datetime.datetime.now().isoformat(timespec='seconds')}",
        "action": "scale_deployment",
        "target": a.deployment,
        "namespace": a.namespace,
        "parameters": {
            "replicas": replicas,
            "reason": "Proactive scaling to prevent memory exhaustion",
            "predicted_usage": predicted,
        },
    }
    try:
        result = client.trigger_remediation(request)
    except ApiError as e:
        # 422: beyond the policy's bounds (the message names it); 409: excluded, disabled or
        # nothing to do; 429: the reconciler's cooldown (retry_after_seconds).
        print(f"Remediation not triggered: {e}")
        return 1
    action_id = result["action_id"]
    print(f"Remediation triggered: {action_id} ({replicas} replicas)")

    # Step 7: verify that it helped.
    deadline = time.monotonic() + a.timeout
    while True:
        r = client.remediation(action_id)
        if r["status"] != "pending":
            print(f"Outcome: {r['status']}: {r['remediation'].get('detail', '')}")
            break
        if time.monotonic() > deadline:
            print("Still pending; check later with GET /api/v1/remediations/" + action_id)
            return 1
        time.sleep(a.poll)
    summary = client.remediations(a.namespace)["namespaces"].get(a.namespace)
    if summary and summary["success_rate"] is not None:
        print(f"Success rate in {a.namespace}: {summary['success_rate']:.0%} "
              f"({summary['effective']} effective, {summary['ineffective']} ineffective)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
