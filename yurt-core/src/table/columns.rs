//! The column definitions and cell functions per resource.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// One column: its definition and how a cell is computed from an object.
#[derive(Clone, Copy)]
pub struct Column {
    /// The column's name as the apiserver spells it (kubectl upper-cases it).
    pub name: &'static str,
    /// `string`, `integer` or `date`.
    pub kind: &'static str,
    /// `name` for the Name column, else empty.
    pub format: &'static str,
    /// 0: always shown; 1: shown with `-o wide`.
    pub priority: u8,
    /// The column's description.
    pub description: &'static str,
    /// The cell of an object, at a time.
    pub cell: fn(&Value, SystemTime) -> Value,
}

impl std::fmt::Debug for Column {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Column").field("name", &self.name).finish()
    }
}

const fn col(
    name: &'static str,
    kind: &'static str,
    priority: u8,
    description: &'static str,
    cell: fn(&Value, SystemTime) -> Value,
) -> Column {
    Column {
        name,
        kind,
        format: "",
        priority,
        description,
        cell,
    }
}

const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    priority: 0,
    description: "Name must be unique within a namespace.",
    cell: |o, _| json!(s(o, "/metadata/name")),
};
const AGE: Column = col(
    "Age",
    "string",
    0,
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
    |o, now| json!(age(o.pointer("/metadata/creationTimestamp"), now)),
);

/// The columns the apiserver prints for `resource` of `group`; Name and Age for the rest.
pub fn columns_for(group: &str, resource: &str) -> Vec<Column> {
    match (group, resource) {
        ("", "pods") => vec![
            NAME,
            col(
                "Ready",
                "string",
                0,
                "The aggregate readiness state of this pod for accepting traffic.",
                pod_ready,
            ),
            col(
                "Status",
                "string",
                0,
                "The aggregate status of the containers in this pod.",
                pod_status,
            ),
            col(
                "Restarts",
                "integer",
                0,
                "The number of times the containers in this pod have been restarted.",
                pod_restarts,
            ),
            AGE,
            col(
                "IP",
                "string",
                1,
                "IP address allocated to the pod.",
                |o, _| json!(or_none(s(o, "/status/podIP"))),
            ),
            col(
                "Node",
                "string",
                1,
                "Name of the node the pod is assigned to.",
                |o, _| json!(or_none(s(o, "/spec/nodeName"))),
            ),
            col(
                "Nominated Node",
                "string",
                1,
                "Name of the node where the pod is nominated to run.",
                |o, _| json!(or_none(s(o, "/status/nominatedNodeName"))),
            ),
            col(
                "Readiness Gates",
                "string",
                1,
                "Readiness gates of the pod.",
                pod_gates,
            ),
        ],
        ("", "nodes") => vec![
            NAME,
            col("Status", "string", 0, "The status of the node", node_status),
            col("Roles", "string", 0, "The roles of the node", node_roles),
            AGE,
            col(
                "Version",
                "string",
                0,
                "Kubelet Version reported by the node.",
                |o, _| json!(s(o, "/status/nodeInfo/kubeletVersion")),
            ),
            col(
                "Internal-IP",
                "string",
                1,
                "List of internal IPs in the node.",
                |o, _| json!(node_address(o, "InternalIP")),
            ),
            col(
                "External-IP",
                "string",
                1,
                "List of external IPs in the node.",
                |o, _| json!(node_address(o, "ExternalIP")),
            ),
            col(
                "OS-Image",
                "string",
                1,
                "OS image reported by the node.",
                |o, _| json!(or_unknown(s(o, "/status/nodeInfo/osImage"))),
            ),
            col(
                "Kernel-Version",
                "string",
                1,
                "Kernel version reported by the node.",
                |o, _| json!(or_unknown(s(o, "/status/nodeInfo/kernelVersion"))),
            ),
            col(
                "Container-Runtime",
                "string",
                1,
                "Container runtime version reported by the node.",
                |o, _| json!(or_unknown(s(o, "/status/nodeInfo/containerRuntimeVersion"))),
            ),
        ],
        ("", "services") => vec![
            NAME,
            col("Type", "string", 0, "The type of the service.", |o, _| {
                json!(or(s(o, "/spec/type"), "ClusterIP"))
            }),
            col(
                "Cluster-IP",
                "string",
                0,
                "The cluster ip of the service.",
                |o, _| json!(or_none(s(o, "/spec/clusterIP"))),
            ),
            col(
                "External-IP",
                "string",
                0,
                "The external ip of the service.",
                service_external,
            ),
            col(
                "Port(s)",
                "string",
                0,
                "The ports of the service.",
                service_ports,
            ),
            AGE,
            col(
                "Selector",
                "string",
                1,
                "The label selector of the service.",
                |o, _| json!(selector(o.pointer("/spec/selector"))),
            ),
        ],
        ("", "endpoints") => vec![
            NAME,
            col(
                "Endpoints",
                "string",
                0,
                "Endpoints of the service.",
                endpoints,
            ),
            AGE,
        ],
        ("", "configmaps") => vec![
            NAME,
            col(
                "Data",
                "integer",
                0,
                "The number of entries in the data and binaryData.",
                |o, _| json!(count(o, "/data") + count(o, "/binaryData")),
            ),
            AGE,
        ],
        ("", "secrets") => vec![
            NAME,
            col("Type", "string", 0, "The type of the secret.", |o, _| {
                json!(s(o, "/type"))
            }),
            col(
                "Data",
                "integer",
                0,
                "The number of entries in the data.",
                |o, _| json!(count(o, "/data")),
            ),
            AGE,
        ],
        ("", "events") | ("events.k8s.io", "events") => vec![
            col(
                "Last Seen",
                "string",
                0,
                "Time when last this event was observed.",
                event_last_seen,
            ),
            col(
                "Type",
                "string",
                0,
                "Type of this event (Normal, Warning).",
                |o, _| json!(s(o, "/type")),
            ),
            col(
                "Reason",
                "string",
                0,
                "Reason is why the action was taken.",
                |o, _| json!(s(o, "/reason")),
            ),
            col(
                "Object",
                "string",
                0,
                "The object that this event is about.",
                event_object,
            ),
            col(
                "Subobject",
                "string",
                1,
                "The subobject that this event is about.",
                |o, _| json!(s(o, "/involvedObject/fieldPath")),
            ),
            col(
                "Source",
                "string",
                1,
                "The component reporting this event.",
                event_source,
            ),
            col(
                "Message",
                "string",
                0,
                "A human-readable description of the status of this operation.",
                |o, _| json!(s(o, "/message").trim()),
            ),
            col(
                "First Seen",
                "string",
                1,
                "Time when this event was first observed.",
                |o, now| json!(age(o.pointer("/firstTimestamp"), now)),
            ),
            col(
                "Count",
                "string",
                1,
                "The number of times this event has occurred.",
                |o, _| json!(o.pointer("/count").and_then(Value::as_i64).unwrap_or(1)),
            ),
            col("Name", "string", 1, "The name of the event.", |o, _| {
                json!(s(o, "/metadata/name"))
            }),
        ],
        ("coordination.k8s.io", "leases") => vec![
            NAME,
            col("Holder", "string", 0, "The holder of the lease.", |o, _| {
                json!(or_none(s(o, "/spec/holderIdentity")))
            }),
            AGE,
        ],
        _ => vec![NAME, AGE],
    }
}

fn s<'a>(o: &'a Value, pointer: &str) -> &'a str {
    o.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn or<'a>(v: &'a str, default: &'a str) -> &'a str {
    if v.is_empty() { default } else { v }
}

fn or_none(v: &str) -> &str {
    or(v, "<none>")
}

fn or_unknown(v: &str) -> &str {
    or(v, "<unknown>")
}

fn count(o: &Value, pointer: &str) -> usize {
    o.pointer(pointer)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len())
}

fn list<'a>(o: &'a Value, pointer: &str) -> &'a [Value] {
    o.pointer(pointer)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Seconds since the Unix epoch of an RFC 3339 UTC time (`2006-01-02T15:04:05Z`, fractions
/// and offsets `+hh:mm` accepted); `None` if it is not one.
pub(crate) fn parse_time(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = t.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &t[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6
            && matches!(rest.as_bytes()[0], b'+' | b'-')
            && rest.as_bytes()[3] == b':' =>
        {
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    // Days from the civil date (proleptic Gregorian).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

/// The apiserver's (and kubectl's) human duration of the time since `t`: `<unknown>` without
/// a time, `<invalid>` for a time in the future.
pub(crate) fn age(t: Option<&Value>, now: SystemTime) -> String {
    let Some(then) = t.and_then(Value::as_str).and_then(parse_time) else {
        return "<unknown>".to_owned();
    };
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    human_duration(now - then)
}

/// kube's `duration.HumanDuration` of a number of seconds.
pub(crate) fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        let d = hours / 24;
        return if h == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{h}h")
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let d = (hours / 24) % 365;
        let y = hours / 24 / 365;
        return if d == 0 {
            format!("{y}y")
        } else {
            format!("{y}y{d}d")
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn pod_ready(o: &Value, _: SystemTime) -> Value {
    let total = list(o, "/spec/containers").len();
    let ready = list(o, "/status/containerStatuses")
        .iter()
        .filter(|c| c["ready"] == true)
        .count();
    json!(format!("{ready}/{total}"))
}

fn pod_restarts(o: &Value, _: SystemTime) -> Value {
    let n: i64 = list(o, "/status/containerStatuses")
        .iter()
        .filter_map(|c| c["restartCount"].as_i64())
        .sum();
    json!(n)
}

fn pod_status(o: &Value, _: SystemTime) -> Value {
    if o.pointer("/metadata/deletionTimestamp").is_some() {
        return json!("Terminating");
    }
    let mut reason = or(s(o, "/status/reason"), s(o, "/status/phase")).to_owned();
    for c in list(o, "/status/initContainerStatuses") {
        if let Some(r) = c.pointer("/state/waiting/reason").and_then(Value::as_str)
            && !r.is_empty()
            && r != "PodInitializing"
        {
            return json!(format!("Init:{r}"));
        }
    }
    for c in list(o, "/status/containerStatuses").iter().rev() {
        if let Some(r) = c.pointer("/state/waiting/reason").and_then(Value::as_str)
            && !r.is_empty()
        {
            reason = r.to_owned();
        } else if let Some(r) = c
            .pointer("/state/terminated/reason")
            .and_then(Value::as_str)
            && !r.is_empty()
        {
            reason = r.to_owned();
        }
    }
    json!(or(&reason, "Unknown"))
}

fn pod_gates(o: &Value, _: SystemTime) -> Value {
    let gates = list(o, "/spec/readinessGates");
    if gates.is_empty() {
        return json!("<none>");
    }
    let conditions = list(o, "/status/conditions");
    let ready = gates
        .iter()
        .filter(|g| {
            conditions
                .iter()
                .any(|c| c["type"] == g["conditionType"] && c["status"] == "True")
        })
        .count();
    json!(format!("{ready}/{}", gates.len()))
}

fn node_status(o: &Value, _: SystemTime) -> Value {
    let ready = list(o, "/status/conditions")
        .iter()
        .find(|c| c["type"] == "Ready")
        .map(|c| match c["status"].as_str() {
            Some("True") => "Ready",
            _ => "NotReady",
        })
        .unwrap_or("Unknown");
    let mut out = ready.to_owned();
    if o.pointer("/spec/unschedulable") == Some(&Value::Bool(true)) {
        out.push_str(",SchedulingDisabled");
    }
    json!(out)
}

fn node_roles(o: &Value, _: SystemTime) -> Value {
    let mut roles: Vec<String> = o
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                (!role.is_empty()).then(|| role.to_owned())
            } else if k == "kubernetes.io/role" {
                v.as_str().filter(|r| !r.is_empty()).map(str::to_owned)
            } else {
                None
            }
        })
        .collect();
    roles.sort();
    roles.dedup();
    json!(if roles.is_empty() {
        "<none>".to_owned()
    } else {
        roles.join(",")
    })
}

fn node_address(o: &Value, kind: &str) -> String {
    list(o, "/status/addresses")
        .iter()
        .find(|a| a["type"] == kind)
        .and_then(|a| a["address"].as_str())
        .unwrap_or("<none>")
        .to_owned()
}

fn service_external(o: &Value, _: SystemTime) -> Value {
    let ty = or(s(o, "/spec/type"), "ClusterIP");
    let mut ips: Vec<String> = list(o, "/spec/externalIPs")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    match ty {
        "ExternalName" => return json!(s(o, "/spec/externalName")),
        "LoadBalancer" => {
            for ing in list(o, "/status/loadBalancer/ingress") {
                for k in ["ip", "hostname"] {
                    if let Some(v) = ing[k].as_str() {
                        ips.push(v.to_owned());
                    }
                }
            }
            if ips.is_empty() {
                return json!("<pending>");
            }
        }
        _ => {}
    }
    json!(if ips.is_empty() {
        "<none>".to_owned()
    } else {
        ips.join(",")
    })
}

fn service_ports(o: &Value, _: SystemTime) -> Value {
    let ports: Vec<String> = list(o, "/spec/ports")
        .iter()
        .map(|p| {
            let port = p["port"].as_i64().unwrap_or(0);
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64() {
                Some(n) if n > 0 => format!("{port}:{n}/{proto}"),
                _ => format!("{port}/{proto}"),
            }
        })
        .collect();
    json!(if ports.is_empty() {
        "<none>".to_owned()
    } else {
        ports.join(",")
    })
}

fn selector(sel: Option<&Value>) -> String {
    let mut parts: Vec<String> = sel
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    parts.sort();
    if parts.is_empty() {
        "<none>".to_owned()
    } else {
        parts.join(",")
    }
}

fn endpoints(o: &Value, _: SystemTime) -> Value {
    let mut out = Vec::new();
    let mut total = 0usize;
    for subset in list(o, "/subsets") {
        let ports = list(subset, "/ports");
        for addr in list(subset, "/addresses") {
            let ip = addr["ip"].as_str().unwrap_or("");
            if ports.is_empty() {
                total += 1;
                out.push(ip.to_owned());
            }
            for p in ports {
                total += 1;
                out.push(format!("{ip}:{}", p["port"].as_i64().unwrap_or(0)));
            }
        }
    }
    if out.is_empty() {
        return json!("<none>");
    }
    let shown: Vec<String> = out.into_iter().take(3).collect();
    let more = total.saturating_sub(shown.len());
    json!(if more > 0 {
        format!("{} + {more} more...", shown.join(","))
    } else {
        shown.join(",")
    })
}

fn event_last_seen(o: &Value, now: SystemTime) -> Value {
    let t = [
        "/series/lastObservedTime",
        "/lastTimestamp",
        "/eventTime",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .find_map(|p| {
        o.pointer(p)
            .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
    });
    json!(age(t, now))
}

fn event_object(o: &Value, _: SystemTime) -> Value {
    let (kind, name) = match o.get("regarding") {
        Some(r) => (s(r, "/kind"), s(r, "/name")),
        None => (s(o, "/involvedObject/kind"), s(o, "/involvedObject/name")),
    };
    json!(format!("{}/{name}", kind.to_ascii_lowercase()))
}

fn event_source(o: &Value, _: SystemTime) -> Value {
    let component = or(s(o, "/source/component"), s(o, "/reportingController"));
    let host = s(o, "/source/host");
    json!(if host.is_empty() {
        component.to_owned()
    } else {
        format!("{component}, {host}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(
            parse_time("2023-11-14T22:13:20.123456Z"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_time("2023-11-15T00:13:20+02:00"), Some(1_700_000_000));
        assert_eq!(parse_time("2023-13-14T22:13:20Z"), None);
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(human_duration(59), "59s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(10 * 3600), "10h");
        assert_eq!(human_duration(3 * 86_400), "3d");
        assert_eq!(human_duration(30 * 86_400), "30d");
        assert_eq!(human_duration(3 * 365 * 86_400), "3y");
        assert_eq!(human_duration(-5), "<invalid>");
    }

    #[test]
    fn services_endpoints_and_events() {
        let now = UNIX_EPOCH;
        let svc = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.9",
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}], "selector": {"app": "x"}}});
        let cols = columns_for("", "services");
        let cells: Vec<Value> = cols.iter().map(|c| (c.cell)(&svc, now)).collect();
        assert_eq!(
            cells[1..5],
            [
                json!("NodePort"),
                json!("10.96.0.9"),
                json!("<none>"),
                json!("80:30080/TCP")
            ]
        );
        assert_eq!(cells[6], json!("app=x"));
        let ep = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
            "ports": [{"port": 80}, {"port": 443}]}]});
        assert_eq!(
            endpoints(&ep, now),
            json!("10.0.0.1:80,10.0.0.1:443,10.0.0.2:80 + 1 more...")
        );
        let ev = json!({"involvedObject": {"kind": "Pod", "name": "web"}, "source": {"component": "kubelet", "host": "edge-1"}});
        assert_eq!(event_object(&ev, now), json!("pod/web"));
        assert_eq!(event_source(&ev, now), json!("kubelet, edge-1"));
    }
}
