#!/usr/bin/env bash
# Memory of the yurthub example while it replays a large offline journal.
#
# Builds the yurt-testkit `sandbox` example and the `yurthub` example (PROFILE=release by
# default; PROFILE=debug reuses a test build). Starts the test apiserver as its own process
# (TLS, free loopback port, admin kubeconfig in a temporary directory) and the hub in front of
# it (heartbeat every second). As kubelet, through the hub: creates ConfigMap `journal-rss`,
# reads it (so it is cached), then freezes the apiserver (SIGSTOP) and waits until the hub's
# /metrics says the server is unhealthy. Sends N (default 150) offline merge patches of SIZE
# bytes (default 2.5 MiB) to the ConfigMap, each accepted into the journal or refused (507) by
# its cap; wakes the apiserver (SIGCONT) and waits (bounded) until the hub has replayed every
# accepted patch (yurt_resync_replayed_total counts them). The hub's VmRSS is sampled every
# 50 ms throughout; VmHWM (the kernel's peak) is read before the offline writes, before the
# reconnect and after the replay. Prints those, the peak VmRSS seen during the replay, the
# journal file's size, then SIGTERMs both processes.
#
# Extra hub flags go in HUB_ARGS, e.g. HUB_ARGS='--max-offline-journal-bytes 1073741824' to
# accept all 150 patches (the default cap, 64 MiB, refuses most of them).
#
# Usage: [PROFILE=debug] [HUB_BIN=path] [HUB_ARGS=...] scripts/journal_rss.sh [N] [SIZE]
# (needs cargo, python3, Linux /proc)
set -euo pipefail

n="${1:-150}"
size="${2:-2621440}"
profile="${PROFILE:-release}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
flag=()
[ "$profile" = release ] && flag=(--release)
cargo build "${flag[@]}" -p yurt-testkit --example sandbox >&2
bin_dir="${CARGO_TARGET_DIR:-$root/target}/$profile/examples"
api_bin="$bin_dir/sandbox"
if [ -z "${HUB_BIN:-}" ]; then
    cargo build "${flag[@]}" --example yurthub >&2
    HUB_BIN="$bin_dir/yurthub"
fi

work="$(mktemp -d)"
api_pid=""
hub_pid=""
sampler_pid=""

# SIGTERM a process we started (SIGCONT first, it may be stopped), wait bounded, then SIGKILL.
stop() {
    local pid="$1" i
    [ -n "$pid" ] || return 0
    kill -CONT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "journal-rss: pid $pid ignored SIGTERM for 10s, killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    stop "$sampler_pid"
    stop "$hub_pid"
    stop "$api_pid"
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Wait (bounded, 60 s) until a process prints a line starting with a prefix; print the rest.
await_line() {
    local pid="$1" out="$2" err="$3" prefix="$4" value="" i
    for i in $(seq 600); do
        value="$(sed -n "s|^$prefix||p" "$out" | head -n1)"
        [ -n "$value" ] && { echo "$value"; return 0; }
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "journal-rss: pid $pid exited before printing '$prefix'" >&2
            cat "$err" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "journal-rss: pid $pid printed no '$prefix' within 60s" >&2
    cat "$err" >&2
    return 1
}

kubeconfig="$work/kubeconfig"
"$api_bin" --port 0 --tls --kubeconfig-out "$kubeconfig" \
    >"$work/api.out" 2>"$work/api.err" &
api_pid=$!
api_url="$(await_line "$api_pid" "$work/api.out" "$work/api.err" 'test apiserver listening on ')"

# shellcheck disable=SC2086
"$HUB_BIN" --kubeconfig "$kubeconfig" --node-name edge-1 \
    --bind-address 127.0.0.1 --serve-port 0 --bind-proxy-address 127.0.0.1 --proxy-port 0 \
    --heartbeat-interval-seconds 1 --heartbeat-timeout-seconds 1 \
    --disk-cache-path "$work/cache" ${HUB_ARGS:-} >"$work/hub.out" 2>"$work/hub.err" &
hub_pid=$!
proxy="$(await_line "$hub_pid" "$work/hub.out" "$work/hub.err" 'yurthub: proxy on ')"
proxy="${proxy%% *}"
admin="$(await_line "$hub_pid" "$work/hub.out" "$work/hub.err" 'yurthub: management on ')"
admin="${admin%% *}"
store="$(await_line "$hub_pid" "$work/hub.out" "$work/hub.err" 'yurthub: cache store ')"
echo "journal-rss: apiserver $api_url (pid $api_pid), hub $proxy / $admin (pid $hub_pid)" >&2

# VmRSS every 50 ms, one KiB figure a line, until killed.
( while kill -0 "$hub_pid" 2>/dev/null; do
      awk '/^VmRSS:/ {print $2}' "/proc/$hub_pid/status" 2>/dev/null || true
      sleep 0.05
  done >"$work/rss.log" ) &
sampler_pid=$!

status_kib() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$hub_pid/status"; }
mb() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
peak_since() { tail -n +"$1" "$work/rss.log" | sort -n | tail -n1; }
lines() { wc -l <"$work/rss.log"; }

sleep 2 # first health rounds, yurt-hub-cfg list and watch
idle_rss="$(status_kib VmRSS)"
idle_hwm="$(status_kib VmHWM)"

# Phase 1 (python): cache the ConfigMap. Phase markers are files the shell waits on.
python3 - "$proxy" "$admin" "$n" "$size" "$work" "$api_pid" <<'PY' &
import http.client, json, os, signal, sys, time, urllib.parse

proxy, admin, n, size, work, api_pid = sys.argv[1:7]
n, size, api_pid = int(n), int(size), int(api_pid)
ua = {"User-Agent": "kubelet/v1.36.0 (linux/amd64)", "Accept": "application/json"}
path = "/api/v1/namespaces/default/configmaps"

def conn(url, timeout=60):
    u = urllib.parse.urlsplit(url)
    assert u.hostname in ("127.0.0.1", "localhost", "::1"), url
    return http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)

def call(c, method, p, body=None, ct="application/json"):
    h = dict(ua)
    if body is not None:
        h["Content-Type"] = ct
    c.request(method, p, body, h)
    r = c.getresponse()
    return r.status, r.read()

def metrics():
    a = conn(admin)
    a.request("GET", "/metrics")
    return a.getresponse().read().decode()

def metric(text, name):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total

def wait(what, cond, limit):
    deadline = time.time() + limit
    while not cond():
        if time.time() > deadline:
            sys.exit(f"journal-rss: {what} not within {limit}s")
        time.sleep(0.1)

c = conn(proxy)
st, text = call(c, "POST", path, json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
    "metadata": {"name": "journal-rss", "namespace": "default"}, "data": {"n": "0"}}))
if st != 201:
    sys.exit(f"journal-rss: create: HTTP {st}: {text[:300]!r}")
st, text = call(c, "GET", path + "/journal-rss")
if st != 200:
    sys.exit(f"journal-rss: get: HTTP {st}")
time.sleep(1)  # the tee stores the object after the client has it

os.kill(api_pid, signal.SIGSTOP)
wait("the hub to see the apiserver unhealthy",
     lambda: 'yurt_cache_health_server_healthy{' in (m := metrics()) and
             metric(m, "yurt_cache_health_server_healthy") == 0, 60)
open(os.path.join(work, "offline"), "w").close()
wait("the shell to sample", lambda: os.path.exists(os.path.join(work, "go")), 60)

c = conn(proxy)
accepted = refused = 0
for i in range(n):
    blob = (f"{i:06d}" * (size // 6 + 1))[:size]
    body = json.dumps({"data": {"n": str(i + 1), "blob": blob}})
    st, text = call(c, "PATCH", path + "/journal-rss", body, "application/merge-patch+json")
    if st == 200:
        accepted += 1
    elif st in (507, 429):
        refused += 1
        if refused == 1:
            print(f"journal-rss: first refusal at patch {i + 1}: HTTP {st}: "
                  f"{json.loads(text).get('message', '')}", file=sys.stderr)
    else:
        sys.exit(f"journal-rss: offline patch {i}: HTTP {st}: {text[:300]!r}")
with open(os.path.join(work, "counts"), "w") as f:
    f.write(f"{accepted} {refused}\n")
open(os.path.join(work, "written"), "w").close()
wait("the shell to sample", lambda: os.path.exists(os.path.join(work, "reconnect")), 60)

before = metric(metrics(), "yurt_resync_replayed_total")
os.kill(api_pid, signal.SIGCONT)
start = time.time()
wait("the replay", lambda: metric(metrics(), "yurt_resync_replayed_total") - before >= accepted, 900)
with open(os.path.join(work, "replay_secs"), "w") as f:
    f.write(f"{time.time() - start:.1f}\n")
open(os.path.join(work, "replayed"), "w").close()
PY
py_pid=$!

await_file() {
    local f="$1" limit="$2" i
    for i in $(seq $((limit * 10))); do
        [ -e "$work/$f" ] && return 0
        kill -0 "$py_pid" 2>/dev/null || { wait "$py_pid"; echo "journal-rss: driver ended early" >&2; exit 1; }
        sleep 0.1
    done
    echo "journal-rss: no '$f' within ${limit}s" >&2
    exit 1
}

await_file offline 90
offline_rss="$(status_kib VmRSS)"
offline_hwm="$(status_kib VmHWM)"
touch "$work/go"
await_file written 900
written_rss="$(status_kib VmRSS)"
written_hwm="$(status_kib VmHWM)"
journal_bytes="$(stat -c %s "$store")"
mark="$(lines)"
touch "$work/reconnect"
await_file replayed 960
wait "$py_pid"
sleep 1
replay_peak="$(peak_since "$mark")"
after_rss="$(status_kib VmRSS)"
after_hwm="$(status_kib VmHWM)"
read -r accepted refused <"$work/counts"

echo "offline patches: $n of $size bytes: $accepted accepted, $refused refused"
echo "cache store file after the offline writes: $journal_bytes bytes ($(mb "$((journal_bytes / 1024))") MB)"
echo "yurthub VmRSS idle:                  ${idle_rss} KiB ($(mb "$idle_rss") MB), VmHWM ${idle_hwm} KiB"
echo "yurthub VmRSS offline, before writes: ${offline_rss} KiB ($(mb "$offline_rss") MB), VmHWM ${offline_hwm} KiB"
echo "yurthub VmRSS after the writes:      ${written_rss} KiB ($(mb "$written_rss") MB), VmHWM ${written_hwm} KiB ($(mb "$written_hwm") MB)"
echo "yurthub VmRSS peak during replay:    ${replay_peak} KiB ($(mb "$replay_peak") MB) (50 ms samples)"
echo "yurthub VmRSS after the replay:      ${after_rss} KiB ($(mb "$after_rss") MB), VmHWM ${after_hwm} KiB ($(mb "$after_hwm") MB)"
echo "replay took $(cat "$work/replay_secs") s"
