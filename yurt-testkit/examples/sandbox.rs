//! A standalone test apiserver to try the hub, the tunnel and the controllers against, without a
//! cluster. It serves until Ctrl-C and prints its URL and the path of a kubeconfig for it.
//!
//! ```text
//! cargo run -p yurt-testkit --example sandbox -- --port 6443 [--tls] [--kubeconfig-out FILE]
//! kubectl --kubeconfig FILE get nodepools
//! ```
//!
//! The OpenYurt CRDs (NodePool, YurtAppSet, ...) are installed unless `--no-crds` is given. At
//! start it prints one line for its listener, one for its kubeconfig and one saying where its
//! state lives (in memory); a port already in use is one line naming the port and exit code 1.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use yurt_testkit::TestApiServer;

/// What `sandbox --help` opens with (`-h` shows this paragraph only).
const ABOUT: &str = "sandbox: a standalone test kube-apiserver (yurt-testkit) to try yurthub, \
raven and the controllers against without a cluster; serves until Ctrl-C.";

/// The rest of the opening of `sandbox --help`.
const LONG_ABOUT: &str = "sandbox: a standalone test kube-apiserver (yurt-testkit) to try \
yurthub, raven and the controllers against without a cluster; serves until Ctrl-C.

Talks to: nothing; kubectl, kube-rs and the yurt-rs daemons talk to it (a kubeconfig for it is \
written at start).

Listens on: 127.0.0.1:6443 (--port; 0 picks a free one), HTTP, or HTTPS with a generated CA \
with --tls. State: in memory; the objects are gone when it stops.";

/// Help headings.
const SERVING: &str = "Serving";
const CONTENTS: &str = "Contents and output";

/// Command-line flags.
#[derive(Debug, Parser)]
#[command(about = ABOUT, long_about = LONG_ABOUT)]
struct Args {
    /// Port to listen on (127.0.0.1); 0 picks a free one.
    #[arg(long, default_value_t = 6443, help_heading = SERVING)]
    port: u16,
    /// Serve HTTPS with a generated CA and accept client certificates.
    #[arg(long, help_heading = SERVING)]
    tls: bool,
    /// Require authentication (anonymous requests get 401).
    #[arg(long, help_heading = SERVING)]
    require_auth: bool,
    /// Where to write the kubeconfig (default: a file in the system temp directory).
    #[arg(long, help_heading = CONTENTS)]
    kubeconfig_out: Option<PathBuf>,
    /// Do not install the OpenYurt CustomResourceDefinitions.
    #[arg(long, help_heading = CONTENTS)]
    no_crds: bool,
}

async fn run(args: Args) -> Result<(), String> {
    let mut builder = TestApiServer::builder().port(args.port);
    if args.tls {
        builder = builder.tls();
    }
    if args.require_auth {
        builder = builder.require_auth();
    }
    let server = builder.start().await.map_err(|e| match e {
        yurt_testkit::Error::Io(io) => format!(
            "cannot listen on 127.0.0.1:{}: {io}{}",
            args.port,
            if io.kind() == std::io::ErrorKind::AddrInUse {
                " (another sandbox? pick another --port, or 0 for a free one)"
            } else {
                ""
            }
        ),
        other => other.to_string(),
    })?;
    if !args.no_crds {
        for crd in yurt_core::crd::crds() {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let value = serde_json::to_value(&crd).map_err(|e| format!("CRD {name}: {e}"))?;
            server
                .create_object(value)
                .await
                .map_err(|st| format!("installing CRD {name}: {st}"))?;
        }
    }
    let path = args.kubeconfig_out.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("yurt-testkit-{}.kubeconfig", server.addr().port()))
    });
    std::fs::write(&path, server.kubeconfig())
        .map_err(|e| format!("cannot write the kubeconfig {}: {e}", path.display()))?;
    println!("test apiserver listening on {}", server.url());
    println!("kubeconfig: {}", path.display());
    println!("state: in memory (the objects are gone when the sandbox stops)");
    println!("try: kubectl --kubeconfig {} get nodepools", path.display());
    println!("press Ctrl-C to stop");
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| format!("signal handler: {e}"))?;
    println!("stopping");
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sandbox: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sandbox: {e}");
            ExitCode::FAILURE
        }
    }
}
