#!/usr/bin/env bash
# Resident memory of the yurthub example: idle, then with N ConfigMaps (default 10,000) cached.
#
# Builds the yurt-testkit `sandbox` example and the `yurthub` example (release). Starts the test
# apiserver as its own process (TLS, on a free loopback port, its admin kubeconfig written to a
# temporary directory; the testkit does no authorization, so the admin identity may write the
# node Lease), then the hub in front of it with `--kubeconfig` (proxy and management on free
# loopback ports). Reads the hub's VmRSS idle, creates N ConfigMaps through the hub's proxy port
# as kubelet (a cached component), lists them once through the hub so the list is teed into the
# cache, waits (bounded) until the management endpoint /v1/cache counts them, reads the hub's
# VmRSS again, prints both and the size of the cache store, then SIGTERMs both processes.
#
# Only the hub's pid is measured: the apiserver's copy of the objects is in the other process.
#
# Usage: scripts/hub-rss.sh [N]   (needs cargo, python3, Linux /proc)
set -euo pipefail

n="${1:-10000}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cargo build --release -p yurt-testkit --example sandbox >&2
cargo build --release --example yurthub >&2
bin_dir="${CARGO_TARGET_DIR:-$root/target}/release/examples"
api_bin="$bin_dir/sandbox"
hub_bin="$bin_dir/yurthub"

work="$(mktemp -d)"
api_pid=""
hub_pid=""

# SIGTERM a process we started, wait for it (bounded, then SIGKILL) and reap it.
stop() {
    local pid="$1" i
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "hub-rss: pid $pid ignored SIGTERM for 10s, killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    stop "$hub_pid"
    hub_pid=""
    stop "$api_pid"
    api_pid=""
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Wait (bounded, 30 s) until a process prints a line starting with a prefix; print the rest.
await_line() {
    local pid="$1" out="$2" err="$3" prefix="$4" value="" i
    for i in $(seq 300); do
        value="$(sed -n "s|^$prefix||p" "$out" | head -n1)"
        [ -n "$value" ] && { echo "$value"; return 0; }
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "hub-rss: pid $pid exited before printing '$prefix'" >&2
            cat "$err" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "hub-rss: pid $pid printed no '$prefix' within 30s" >&2
    cat "$err" >&2
    return 1
}

# The test apiserver, its own process, on a free loopback port (--port 0).
kubeconfig="$work/kubeconfig"
"$api_bin" --port 0 --tls --kubeconfig-out "$kubeconfig" \
    >"$work/api.out" 2>"$work/api.err" &
api_pid=$!
# The URL line is printed after the kubeconfig is written.
api_url="$(await_line "$api_pid" "$work/api.out" "$work/api.err" 'test apiserver listening on ')"
[ -s "$kubeconfig" ] || { echo "hub-rss: the sandbox wrote no kubeconfig" >&2; exit 1; }

# The hub in front of it; its proxy and management servers on free loopback ports.
"$hub_bin" --kubeconfig "$kubeconfig" --node-name edge-1 \
    --bind-address 127.0.0.1 --serve-port 0 --bind-proxy-address 127.0.0.1 --proxy-port 0 \
    --disk-cache-path "$work/cache" >"$work/hub.out" 2>"$work/hub.err" &
hub_pid=$!
proxy="$(await_line "$hub_pid" "$work/hub.out" "$work/hub.err" 'yurthub: proxy on ')"
admin="$(await_line "$hub_pid" "$work/hub.out" "$work/hub.err" 'yurthub: management on ')"
store="$(await_line "$hub_pid" "$work/hub.out" "$work/hub.err" 'yurthub: cache store ')"
echo "hub-rss: apiserver $api_url (pid $api_pid), hub proxy $proxy, management $admin (pid $hub_pid)" >&2

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$hub_pid/status"; }
# VmRSS split into anonymous memory (heap, stacks), file pages (the binary's code and data)
# and the peak (VmHWM), for the record.
rss_detail() {
    awk '/^(RssAnon|RssFile|RssShmem|VmHWM):/ {printf "%s %s KiB  ", $1, $2} END {print ""}' \
        "/proc/$hub_pid/status"
}
mb() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

sleep 2 # let startup (first health rounds, yurt-hub-cfg list and watch) settle
kill -0 "$hub_pid" 2>/dev/null || { echo "hub-rss: the hub exited" >&2; cat "$work/hub.err" >&2; exit 1; }
idle="$(rss_kib)"
idle_detail="$(rss_detail)"

python3 - "$proxy" "$admin" "$n" <<'PY'
import http.client, json, sys, time, urllib.parse

proxy, admin, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
ua = {"User-Agent": "kubelet/v1.36.0 (linux/amd64)", "Accept": "application/json"}

def conn(url):
    u = urllib.parse.urlsplit(url)
    assert u.hostname in ("127.0.0.1", "localhost", "::1"), url
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
    text = r.read()
    if r.status != 201:
        sys.exit(f"hub-rss: create rss-{i}: HTTP {r.status}: {text[:300]!r}")
c.request("GET", path, headers=ua)
r = c.getresponse()
text = r.read()
if r.status != 200:
    sys.exit(f"hub-rss: list: HTTP {r.status}: {text[:300]!r}")
items = len(json.loads(text)["items"])
if items < n:
    sys.exit(f"hub-rss: list: {items} items, expected {n}")

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
        sys.exit(f"hub-rss: only {cached} objects cached for kubelet after 120s")
    time.sleep(0.2)
print(f"hub-rss: {n} ConfigMaps created, listed and cached ({cached} kubelet objects)",
      file=sys.stderr)
PY

kill -0 "$hub_pid" 2>/dev/null || { echo "hub-rss: the hub exited" >&2; cat "$work/hub.err" >&2; exit 1; }
cached="$(rss_kib)"
cached_detail="$(rss_detail)"
store_bytes="$(stat -c %s "$store")"

echo "yurthub VmRSS idle:                        ${idle} KiB ($(mb "$idle") MB)"
echo "  ${idle_detail}"
echo "yurthub VmRSS with ${n} ConfigMaps cached: ${cached} KiB ($(mb "$cached") MB)"
echo "  ${cached_detail}"
echo "cache store $(basename "$store"):                ${store_bytes} bytes ($(mb "$((store_bytes / 1024))") MB)"
