#!/usr/bin/env python3
"""Checks the Kubernetes examples in docker/kubernetes/: valid YAML with the fields and
cross-references the API server and kubelet need (no schema tool is packaged in Debian), wired
for sluice's hot reload and probes, and each ConfigMap's sluice.toml accepted by `sluice check`.
Usage: test_kubernetes.py SLUICE_BINARY MANIFEST..."""
import os
import re
import subprocess
import sys
import tempfile

import yaml

errors = []


def check(cond, where, what):
    if not cond:
        errors.append(f"{where}: {what}")
    return cond


def toml_value(text, table, key):
    """The string value of KEY in [TABLE] of a small TOML text (enough for these examples)."""
    current = None
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.fullmatch(r"\[\[?([^\]]+)\]\]?", line)
        if m:
            current = m.group(1)
        elif current == table and "=" in line:
            k, v = (x.strip() for x in line.split("=", 1))
            if k == key:
                return v.strip('"')
    return None


def duration_s(text):
    m = re.fullmatch(r"(\d+)(ms|s|m)", text or "")
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)] if m else None


def check_manifest(path, sluice):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    by_kind = {}
    for d in docs:
        where = f"{path}: {d.get('kind')} {d.get('metadata', {}).get('name')}"
        for field in ("apiVersion", "kind", "metadata"):
            check(field in d, where, f"no {field}")
        check(re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", d["metadata"].get("name", "")),
              where, "metadata.name is not a DNS-1123 label")
        by_kind.setdefault(d["kind"], []).append(d)
    configmaps = {c["metadata"]["name"]: c for c in by_kind.get("ConfigMap", [])}
    check(by_kind.get("Deployment"), path, "no Deployment")
    check(by_kind.get("Service"), path, "no Service")

    for dep in by_kind.get("Deployment", []):
        where = f"{path}: Deployment {dep['metadata']['name']}"
        check(dep["apiVersion"] == "apps/v1", where, "apiVersion is not apps/v1")
        spec = dep["spec"]
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"]["labels"]
        check(all(labels.get(k) == v for k, v in spec["selector"]["matchLabels"].items()),
              where, "selector.matchLabels do not match the pod template's labels")
        volumes = {v["name"]: v for v in pod["volumes"]}
        names = [c["name"] for c in pod["containers"]]
        check(len(names) == len(set(names)), where, "duplicate container names")
        sluices = [c for c in pod["containers"] if c["name"] == "sluice"]
        if not check(len(sluices) == 1, where, "no container named sluice"):
            continue
        c = sluices[0]
        where += ": container sluice"
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        for probe, path_want in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = c.get(probe, {}).get("httpGet", {})
            check(get.get("path") == path_want, where, f"{probe} is not an httpGet of {path_want}")
            check(get.get("port") in ports, where, f"{probe} port {get.get('port')} is not declared")
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        for m in c["volumeMounts"]:
            check(m["name"] in volumes, where, f"volumeMount {m['name']} names no volume")
        args = c.get("args", [])
        config_path = args[args.index("-c") + 1] if "-c" in args else "/etc/sluice/sluice.toml"
        config_dir, config_file = os.path.split(config_path)
        mount = mounts.get(config_dir)
        if not check(mount, where, f"nothing mounted at {config_dir}"):
            continue
        # A subPath mount never sees ConfigMap updates: the directory (and its ..data symlink)
        # must be mounted for sluice's file watch to reload.
        check("subPath" not in mount, where, f"{config_dir} is a subPath mount: no hot reload")
        cm_name = volumes[mount["name"]].get("configMap", {}).get("name")
        if not check(cm_name in configmaps, where, f"config volume names no ConfigMap in {path}"):
            continue
        text = configmaps[cm_name]["data"].get(config_file)
        if not check(text, where, f"ConfigMap {cm_name} has no key {config_file}"):
            continue

        # The config agrees with the pod: ports, token file mounted, state dir mounted, drain.
        listen = toml_value(text, "listen", "address")
        admin = toml_value(text, "admin", "address")
        check(listen and int(listen.rsplit(":", 1)[1]) == ports.get("http"), where,
              f"[listen] address {listen} is not the http port {ports.get('http')}")
        check(admin and int(admin.rsplit(":", 1)[1]) == ports.get("admin"), where,
              f"[admin] address {admin} is not the admin port {ports.get('admin')}")
        check(admin and not admin.startswith("127."), where,
              "kubelet probes the pod IP: the admin address must not be loopback")
        token = toml_value(text, "admin", "token_file")
        if check(token, where, "a non-loopback admin address needs token_file"):
            tdir = os.path.dirname(token)
            check(tdir in mounts and "secret" in volumes[mounts[tdir]["name"]], where,
                  f"token_file {token} is not in a mounted Secret")
        state = toml_value(text, "state", "dir")
        check(state in mounts, where, f"[state] dir {state} is not a mounted volume")
        drain = duration_s(toml_value(text, "limits", "drain_timeout"))
        pre = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        pre_s = int(pre[1]) if pre[:1] == ["sleep"] else 0
        grace = pod.get("terminationGracePeriodSeconds", 30)
        check(drain is not None and drain + pre_s < grace, where,
              f"drain_timeout {drain}s + preStop {pre_s}s must stay under the grace {grace}s")

        # sluice check on the ConfigMap's text. Cluster DNS names resolve only in a cluster,
        # and sluice resolves endpoint names when it loads a file: check them as loopback.
        local = re.sub(r'"[a-z0-9.-]+\.svc\.cluster\.local:(\d+)"', r'"127.0.0.1:\1"', text)
        with tempfile.TemporaryDirectory() as tmp:
            f = os.path.join(tmp, config_file)
            with open(f, "w") as out:
                out.write(local)
            r = subprocess.run([sluice, "check", "--strict", "-c", f], capture_output=True,
                               text=True)
            check(r.returncode == 0, where,
                  f"sluice check rejects ConfigMap {cm_name}: {r.stdout}{r.stderr}")

    for svc in by_kind.get("Service", []):
        where = f"{path}: Service {svc['metadata']['name']}"
        sel = svc["spec"]["selector"]
        pods = [d["spec"]["template"] for d in by_kind.get("Deployment", [])
                if all(d["spec"]["template"]["metadata"]["labels"].get(k) == v
                       for k, v in sel.items())]
        if not check(pods, where, "selects no pod of this file's Deployments"):
            continue
        declared = {p["name"] for t in pods for c in t["spec"]["containers"]
                    for p in c.get("ports", [])}
        for p in svc["spec"]["ports"]:
            check(p["targetPort"] in declared, where, f"targetPort {p['targetPort']} not declared")


def main():
    sluice, manifests = sys.argv[1], sys.argv[2:]
    for m in manifests:
        check_manifest(m, sluice)
    for e in errors:
        print(e, file=sys.stderr)
    print(f"{len(manifests)} manifests: {'ok' if not errors else f'{len(errors)} problem(s)'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
