//! `request-info`: show how yurt-rs understands a Kubernetes API request line.
//!
//! Prints, as JSON, what the hub's first layer resolves from a request: the verb, the
//! group/version/resource, namespace, name, subresource, typed list/watch options, the parsed
//! label and field selectors, the component (from the User-Agent), and the Kubernetes `Status`
//! the hub would answer if the request is malformed.
//!
//! ```text
//! cargo run --example request-info -- GET '/api/v1/namespaces/default/pods?watch=1&labelSelector=app%3Dweb' \
//!     --user-agent 'kubelet/v1.36.0 (linux/amd64)'
//! ```

use clap::Parser;
use yurt::core::{Component, FieldSelector, LabelSelector, RequestInfo, Status};

/// What `request-info --help` opens with (`-h` shows this paragraph only).
const ABOUT: &str = "request-info: resolves one Kubernetes API request line the way the yurt-rs \
hub does (verb, resource, namespace, name, selectors, component) and prints it as JSON.";

/// The rest of the opening of `request-info --help`.
const LONG_ABOUT: &str = "request-info: resolves one Kubernetes API request line the way the \
yurt-rs hub does (verb, resource, namespace, name, selectors, component) and prints it as JSON.

Talks to: nothing; it is not a daemon and opens no port. A malformed request prints the \
Kubernetes Status the hub would answer and exits 1.";

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(version, about = ABOUT, long_about = LONG_ABOUT)]
struct Args {
    /// HTTP method (GET, POST, PUT, PATCH, DELETE, ...).
    method: String,
    /// Request target: path and optional `?query`, as sent to the apiserver.
    target: String,
    /// The client's User-Agent header.
    #[arg(long, default_value = "")]
    user_agent: String,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let (path, query) = match args.target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (args.target.as_str(), None),
    };
    let component = Component::from_user_agent(Some(&args.user_agent));
    let out = match RequestInfo::parse(&args.method, path, query).map_err(Status::from) {
        Ok(info) => {
            let labels = info
                .options
                .label_selector
                .as_deref()
                .map(LabelSelector::parse);
            let fields = info
                .options
                .field_selector
                .as_deref()
                .map(FieldSelector::parse);
            let shown = |r: Option<Result<String, _>>| match r {
                None => serde_json::Value::Null,
                Some(Ok(s)) => s.into(),
                Some(Err(e)) => Status::from(e).to_json_value(),
            };
            serde_json::json!({
                "component": component,
                "requestInfo": info,
                "labelSelector": shown(labels.map(|r| r.map(|s| s.to_string()))),
                "fieldSelector": shown(fields.map(|r| r.map(|s| s.to_string()))),
            })
        }
        Err(status) => serde_json::json!({ "component": component, "status": status }),
    };
    let failed = out.get("status").is_some();
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
