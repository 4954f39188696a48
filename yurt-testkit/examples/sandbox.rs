//! A standalone test apiserver to try the hub, the tunnel and the controllers against, without a
//! cluster. It serves until Ctrl-C and prints its URL and the path of a kubeconfig for it.
//!
//! ```text
//! cargo run -p yurt-testkit --example sandbox -- --port 6443 [--tls] [--kubeconfig-out FILE]
//! kubectl --kubeconfig FILE get nodepools
//! ```
//!
//! The OpenYurt CRDs (NodePool, YurtAppSet, ...) are installed unless `--no-crds` is given.

use std::path::PathBuf;

use clap::Parser;
use yurt_testkit::TestApiServer;

/// Command-line flags.
#[derive(Debug, Parser)]
#[command(about = "Run the yurt-testkit test kube-apiserver until Ctrl-C")]
struct Args {
    /// Port to listen on (127.0.0.1); 0 picks a free one.
    #[arg(long, default_value_t = 6443)]
    port: u16,
    /// Serve HTTPS with a generated CA and accept client certificates.
    #[arg(long)]
    tls: bool,
    /// Require authentication (anonymous requests get 401).
    #[arg(long)]
    require_auth: bool,
    /// Where to write the kubeconfig (default: a file in the system temp directory).
    #[arg(long)]
    kubeconfig_out: Option<PathBuf>,
    /// Do not install the OpenYurt CustomResourceDefinitions.
    #[arg(long)]
    no_crds: bool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let mut builder = TestApiServer::builder().port(args.port);
    if args.tls {
        builder = builder.tls();
    }
    if args.require_auth {
        builder = builder.require_auth();
    }
    let server = builder.start().await?;
    if !args.no_crds {
        for crd in yurt_core::crd::crds() {
            let name = crd.metadata.name.clone().unwrap_or_default();
            server
                .create_object(serde_json::to_value(&crd)?)
                .await
                .map_err(|st| format!("installing CRD {name}: {st}"))?;
        }
    }
    let path = args.kubeconfig_out.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("yurt-testkit-{}.kubeconfig", server.addr().port()))
    });
    std::fs::write(&path, server.kubeconfig())?;
    println!("test apiserver listening on {}", server.url());
    println!("kubeconfig: {}", path.display());
    println!("try: kubectl --kubeconfig {} get nodepools", path.display());
    println!("press Ctrl-C to stop");
    tokio::signal::ctrl_c().await?;
    println!("stopping");
    Ok(())
}
