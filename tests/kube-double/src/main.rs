//! `kube-double`: runs the Kubernetes API test double as a process, for the demo and
//! for trying clients by hand. Prints the URL on stdout and serves until SIGINT or
//! SIGTERM.

mod demo;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use kube_double::{KubeDouble, Options};

/// A Kubernetes API test double (see the kube_double crate documentation for what
/// it emulates and what it does not).
#[derive(Debug, Parser)]
#[command(name = "kube-double", version)]
struct Arguments {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Serve plain HTTP instead of HTTPS.
    #[arg(long)]
    no_tls: bool,
    /// A bearer token to accept (repeatable); default "double-token".
    #[arg(long = "token")]
    tokens: Vec<String>,
    /// Write the server CA certificate (PEM) to this file.
    #[arg(long)]
    ca_out: Option<PathBuf>,
    /// Log every request (method, URI, HTTP version, kind of credential) on stderr.
    #[arg(long)]
    verbose: bool,
    /// Seed namespace `shop` with a deployment, two pods and a service labelled
    /// backstage.io/kubernetes-id=shop-api, and log a line per pod every second.
    #[arg(long)]
    seed_demo: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let arguments = Arguments::parse();
    if arguments.verbose {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_env_filter("kube_double=debug")
            .init();
    }
    let mut options = Options {
        listen: arguments.listen,
        tls: !arguments.no_tls,
        ..Options::default()
    };
    if !arguments.tokens.is_empty() {
        options.tokens = arguments.tokens;
    }
    let double = Arc::new(KubeDouble::start(options).await?);
    if let Some(path) = &arguments.ca_out {
        std::fs::write(path, double.ca_pem())?;
    }
    let demo = arguments.seed_demo.then(|| demo::seed(double.clone()));
    println!("{}", double.url());
    wait_for_signal().await?;
    if let Some(demo) = demo {
        demo.abort();
    }
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        interrupted = tokio::signal::ctrl_c() => interrupted?,
        _ = terminate.recv() => {}
    }
    Ok(())
}
