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
    /// Serve `metrics.k8s.io/v1beta1` pod metrics (fixed usage per container).
    #[arg(long)]
    metrics_api: bool,
    /// Give a pod's log this many bytes of generated lines, produced as they are
    /// streamed (repeatable; for memory benchmarks): `NAMESPACE/POD=BYTES`.
    #[arg(long = "generated-log", value_name = "NAMESPACE/POD=BYTES", value_parser = parse_generated_log)]
    generated_logs: Vec<GeneratedLog>,
}

/// A `--generated-log` value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GeneratedLog {
    namespace: String,
    pod: String,
    bytes: u64,
}

fn parse_generated_log(value: &str) -> Result<GeneratedLog, String> {
    let usage = || format!("{value:?}: expected NAMESPACE/POD=BYTES");
    let (pod_ref, bytes) = value.split_once('=').ok_or_else(usage)?;
    let (namespace, pod) = pod_ref.split_once('/').ok_or_else(usage)?;
    if namespace.is_empty() || pod.is_empty() || pod.contains('/') {
        return Err(usage());
    }
    let bytes = bytes
        .parse()
        .map_err(|_| format!("{value:?}: BYTES must be a whole number of bytes"))?;
    Ok(GeneratedLog {
        namespace: namespace.to_owned(),
        pod: pod.to_owned(),
        bytes,
    })
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
        metrics_api: arguments.metrics_api,
        ..Options::default()
    };
    if !arguments.tokens.is_empty() {
        options.tokens = arguments.tokens;
    }
    let double = Arc::new(KubeDouble::start(options).await?);
    if let Some(path) = &arguments.ca_out {
        std::fs::write(path, double.ca_pem())?;
    }
    for log in &arguments.generated_logs {
        double.set_generated_log(&log.namespace, &log.pod, log.bytes);
    }
    let demo = arguments.seed_demo.then(|| demo::seed(double.clone()));
    // Listen for the stop signals before announcing the URL: whoever reads the
    // URL may stop the double at once.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    println!("{}", double.url());
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    if let Some(demo) = demo {
        demo.abort();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_log_values() {
        assert_eq!(
            parse_generated_log("bench/log-pod=1073741824"),
            Ok(GeneratedLog {
                namespace: "bench".into(),
                pod: "log-pod".into(),
                bytes: 1 << 30,
            })
        );
        for bad in ["bench/log-pod", "log-pod=10", "/p=1", "a/b/c=1", "a/b=lots"] {
            assert!(parse_generated_log(bad).is_err(), "{bad}");
        }
    }
}
