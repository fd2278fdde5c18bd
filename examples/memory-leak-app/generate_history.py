#!/usr/bin/env python3
"""Writes history.json: the memory history the bundled demo checks manifests.yaml against.

Deterministic (fixed seed and clock), so the committed file can be regenerated and diffed.

- memory-leak-app/web: the tutorial's app. Python starts at ~30 MiB and appends 10 MiB every
  5 s until the 256Mi limit OOM-kills it; kubelet restarts it after a CrashLoopBackOff delay
  (10 s doubling to 5 min). Two replicas, scraped every 30 s, for 3 days.
- web-frontend/web: steady around 200 MiB with rare bursts, one to 301 MiB; 14 days.
- session-cache/cache: no limit; grows 5 MiB an hour from 400 MiB (a slow leak); 14 days.
- api-gateway/gateway: limit 4Gi, uses about 300 MiB; 14 days.
"""
import json
import math
import os
import random

MI = 1024 * 1024
NOW = 1795392000  # 2026-11-22T00:00:00Z
STEP = 300        # per-interval peaks: 5 minutes
SCRAPE = 30

rng = random.Random(42)


def peaks_of(samples, start, end):
    """5-minute peaks of (t, bytes) samples, windows ending at multiples of STEP."""
    out, by = [], {}
    for t, b in samples:
        if start < t <= end:
            w = ((t - 1) // STEP + 1) * STEP
            by[w] = max(by.get(w, 0), b)
    for w in sorted(by):
        out.append([int(w), round(by[w])])
    return out


def leak_pod(start, end, phase):
    """Scrapes of one pod of the leaking app, and its OOM kill times."""
    samples, kills = [], []
    t = start + phase
    backoff = 10
    while t < end:
        life = (256 - 30) / 2.0  # seconds until 256 MiB at 2 MiB/s
        s = t + (SCRAPE - (t % SCRAPE)) % SCRAPE
        while s < t + life and s < end:
            samples.append((int(s), (30 + 2.0 * (s - t)) * MI + rng.uniform(0, 512 * 1024)))
            s += SCRAPE
        kills.append(int(t + life))
        t = t + life + backoff
        backoff = min(backoff * 2, 300)
    return samples, kills


def memory_leak_app():
    start = NOW - 3 * 86400
    pods = [leak_pod(start, NOW, 0), leak_pod(start, NOW, 47)]
    allsamples = sorted(s for p in pods for s in p[0])
    kills = sorted(k for p in pods for k in p[1] if k <= NOW)
    recent = [[int(t), round(b)] for t, b in pods[0][0] if t > NOW - 3600]
    return {
        "namespace": "self-healing-platform",
        "kind": "Deployment",
        "name": "memory-leak-app",
        "containers": {
            "web": {
                "peaks": peaks_of(allsamples, start, NOW),
                "samples": recent,
                "oomKills": kills,
                "limit": "256Mi",
            }
        },
    }


def steady(ns, kind, name, container, base_mi, noise_mi, bursts, limit=None, growth_mi_per_h=0.0):
    start = NOW - 14 * 86400
    samples = []
    t = start + STEP
    while t <= NOW:
        b = base_mi + growth_mi_per_h * (t - start) / 3600 + rng.gauss(0, noise_mi)
        if rng.random() < 0.002:
            b += rng.uniform(10, 40)
        samples.append([t, round(max(b, 1) * MI)])
        t += STEP
    for i, mi in bursts:
        samples[i][1] = round(mi * MI)
    c = {"peaks": samples}
    if limit:
        c["limit"] = limit
    return {"namespace": ns, "kind": kind, "name": name, "containers": {container: c}}


history = {
    "apiVersion": "oomguard.io/v1",
    "kind": "History",
    "now": NOW,
    "workloads": [
        memory_leak_app(),
        steady("self-healing-platform", "Deployment", "web-frontend", "web", 200, 6, [(2500, 301)], "256Mi"),
        steady("self-healing-platform", "StatefulSet", "session-cache", "cache", 400, 3, [], None, 5.0),
        steady("self-healing-platform", "Deployment", "api-gateway", "gateway", 300, 8, [], "4Gi"),
    ],
}

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "history.json")
with open(out, "w") as f:
    json.dump(history, f, separators=(",", ":"))
    f.write("\n")
print(f"wrote {out}")
