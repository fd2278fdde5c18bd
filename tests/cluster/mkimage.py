#!/usr/bin/env python3
"""Writes a one-layer container image as a docker-archive tarball, with no container engine.

    mkimage.py OUT.tar NAME:TAG [--entrypoint JSON] [--cmd JSON] [--user U] [--env K=V]...
               [--file SRC:DEST]... [--link DEST:TARGET]... [--dir DEST]...

The archive (manifest.json, the config blob, one layer.tar) is what `ctr images import` reads.
Files keep their mode; owners are root; timestamps are zero so that the same inputs give the same
image id (and a second import is a no-op).
"""
import argparse
import hashlib
import io
import json
import os
import tarfile


def layer(files, links, dirs):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        parents = set()
        for dest in list(dirs) + [d for d, _ in files] + [d for d, _ in links]:
            parts = dest.strip("/").split("/")
            for i in range(1, len(parts)):
                parents.add("/".join(parts[:i]))
        for d in sorted(parents | {d.strip("/") for d in dirs}):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            # /tmp is world-writable with the sticky bit, as on any Linux.
            info.mode = 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        for dest, src in sorted(files):
            st = os.stat(src)
            info = tarfile.TarInfo(dest.strip("/"))
            info.size = st.st_size
            info.mode = st.st_mode & 0o7777
            with open(src, "rb") as f:
                tar.addfile(info, f)
        for dest, target in sorted(links):
            info = tarfile.TarInfo(dest.strip("/"))
            info.type = tarfile.SYMTYPE
            info.linkname = target
            info.mode = 0o777
            tar.addfile(info)
    return buf.getvalue()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("ref", help="NAME:TAG, e.g. quay.io/oomguard/oomguard:0.1.0")
    p.add_argument("--entrypoint", type=json.loads)
    p.add_argument("--cmd", type=json.loads)
    p.add_argument("--user")
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--file", action="append", default=[], help="SRC:DEST")
    p.add_argument("--link", action="append", default=[], help="DEST:TARGET (a symlink)")
    p.add_argument("--dir", action="append", default=[])
    a = p.parse_args()

    files = [tuple(reversed(f.split(":", 1))) for f in a.file]
    links = [tuple(link.split(":", 1)) for link in a.link]
    tar = layer(files, links, a.dir)
    diff_id = "sha256:" + hashlib.sha256(tar).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] + a.env,
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "tests/cluster/mkimage.py"}],
    }
    if a.entrypoint is not None:
        config["config"]["Entrypoint"] = a.entrypoint
    if a.cmd is not None:
        config["config"]["Cmd"] = a.cmd
    if a.user:
        config["config"]["User"] = a.user
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_name = diff_id[len("sha256:"):] + "/layer.tar"
    manifest = [{"Config": config_name, "RepoTags": [a.ref], "Layers": [layer_name]}]

    def add(tar_out, name, data):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        tar_out.addfile(info, io.BytesIO(data))

    tmp = a.out + ".tmp"
    with tarfile.open(tmp, mode="w") as out:
        add(out, config_name, config_bytes)
        add(out, layer_name, tar)
        add(out, "manifest.json", json.dumps(manifest).encode())
    os.replace(tmp, a.out)


if __name__ == "__main__":
    main()
