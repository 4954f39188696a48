#!/usr/bin/env bash
# Resident memory of the yurthub example: idle, then with 10,000 ConfigMaps cached.
#
# Builds the example (release), starts it with --sandbox (its own in-process TLS test apiserver
# and the node identity system:node:edge-1), reads VmRSS idle, creates N ConfigMaps (default
# 10,000) through the hub's proxy port as kubelet (a cached component), lists them once through
# the hub so the list is teed into the cache, waits until the management endpoint /v1/cache
# counts them, reads VmRSS again, prints both and SIGTERMs the hub.
#
# Caveat: --sandbox runs the test apiserver inside the hub process, so the second number also
# holds the apiserver's copy of the N objects; it is an upper bound of the hub alone.
#
# Usage: scripts/hub-rss.sh [N]   (needs cargo, python3, Linux /proc)
set -euo pipefail

n="${1:-10000}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cargo build --release --example yurthub >&2
bin="${CARGO_TARGET_DIR:-$root/target}/release/examples/yurthub"

work="$(mktemp -d)"
"$bin" --sandbox --node-name edge-1 --proxy-port 0 --serve-port 0 \
    --disk-cache-path "$work/cache" >"$work/out" 2>"$work/err" &
pid=$!
cleanup() {
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

line() { sed -n "s|^yurthub: $1 ||p" "$work/out" | head -n1; }
proxy=""
admin=""
for _ in $(seq 300); do
    proxy="$(line 'proxy on')"
    admin="$(line 'management on')"
    [ -n "$proxy" ] && [ -n "$admin" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/err" >&2; exit 1; }
    sleep 0.1
done
[ -n "$proxy" ] || { echo "hub-rss: yurthub printed no proxy address" >&2; exit 1; }

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"; }

sleep 2 # let startup (first health rounds, yurt-hub-cfg list and watch) settle
idle="$(rss_kib)"

python3 - "$proxy" "$admin" "$n" <<'PY'
import http.client, json, sys, time, urllib.parse

proxy, admin, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
ua = {"User-Agent": "kubelet/v1.36.0 (linux/amd64)", "Accept": "application/json"}

def conn(url):
    u = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=30)

c = conn(proxy)
path = "/api/v1/namespaces/default/configmaps"
for i in range(n):
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": f"rss-{i}", "namespace": "default",
                                    "labels": {"app": "hub-rss"}},
                       "data": {"key": "a value of some forty bytes, like a flag."}})
    c.request("POST", path, body, {**ua, "Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    if r.status != 201:
        sys.exit(f"hub-rss: create rss-{i}: HTTP {r.status}")
c.request("GET", path, headers=ua)
r = c.getresponse()
items = len(json.loads(r.read())["items"])
if r.status != 200 or items < n:
    sys.exit(f"hub-rss: list: HTTP {r.status}, {items} items")

# The tee lands after the client has the body: wait (bounded) until the cache holds them.
a = conn(admin)
deadline = time.time() + 120
while True:
    a.request("GET", "/v1/cache")
    doc = json.loads(a.getresponse().read())
    cached = doc.get("components", {}).get("kubelet", {}).get("objects", 0)
    if cached >= n:
        break
    if time.time() > deadline:
        sys.exit(f"hub-rss: only {cached} objects cached for kubelet")
    time.sleep(0.2)
print(f"hub-rss: {n} ConfigMaps created, listed and cached ({cached} kubelet objects)",
      file=sys.stderr)
PY

cached="$(rss_kib)"
echo "yurthub VmRSS idle:                  ${idle} KiB"
echo "yurthub VmRSS with ${n} ConfigMaps cached: ${cached} KiB (includes the sandbox apiserver's copy)"
