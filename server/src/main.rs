//! The `kubeportal` binary: `serve` (default), `migrate`, `openapi`,
//! `clusters import --kubeconfig FILE`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kubeportal::config::Config;

/// mimalloc: a proxy allocates and frees small buffers for every request,
/// which glibc's allocator spends a fifth of the request's CPU on. Built
/// without transparent huge pages (`no_thp`): with them, memory that holds
/// many small long-lived buffers (one set per open watch) rounds up to 2 MiB
/// pages, and ten thousand watches took 60% more resident memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "kubeportal",
    version,
    about = "Kubernetes backend for developer portals"
)]
struct Cli {
    /// YAML configuration file.
    #[arg(long, global = true, env = "KUBEPORTAL_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (overrides server.listen).
    #[arg(long, global = true)]
    listen: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print the OpenAPI document.
    Openapi,
    /// Manage the registry from the command line.
    Clusters {
        #[command(subcommand)]
        command: ClustersCommand,
    },
}

#[derive(Subcommand)]
enum ClustersCommand {
    /// Register (or update) every cluster of a kubeconfig, with its credentials.
    Import {
        #[arg(long)]
        kubeconfig: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Openapi) = cli.command {
        print!("{}", kubeportal::openapi::document_json());
        return Ok(());
    }
    let mut config = Config::load(cli.config.as_deref()).context("invalid configuration")?;
    if let Some(listen) = cli.listen {
        config.server.listen = listen;
        config.listen_addr().context("--listen")?;
    }
    let traces = kubeportal::telemetry::traces::init(&config).map_err(anyhow::Error::msg)?;
    let outcome = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            kubeportal::store::connect(&config.database_url(), config.database.max_connections)
                .await
                .context("migration failed")?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Openapi => unreachable!("handled above"),
        Command::Clusters {
            command: ClustersCommand::Import { kubeconfig },
        } => import(config, &kubeconfig).await,
    };
    if let Some(provider) = traces {
        // Export what is still buffered before exiting.
        let _ = provider.shutdown();
    }
    outcome
}

async fn serve(config: Config) -> anyhow::Result<()> {
    raise_open_file_limit();
    let addr = config.listen_addr()?;
    let guest = config.guest_enabled();
    let state = kubeportal::app::build_state(config).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(%addr, guest, "kubeportal listening");
    kubeportal::app::serve_configured(listener, state, kubeportal::app::shutdown_signal()).await?;
    Ok(())
}

/// Raises the soft open-file limit to the hard limit, as Go programs do, and
/// logs it: every watch, followed log or exec session holds two sockets (the
/// caller's and its own connection to the cluster), and the usual soft
/// default of 1,024 would refuse the 500th.
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let before = getrlimit(Resource::Nofile);
    let below_hard = match (before.current, before.maximum) {
        (Some(soft), Some(hard)) => soft < hard,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if below_hard {
        let raised = rustix::process::Rlimit {
            current: before.maximum,
            maximum: before.maximum,
        };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(%error, "cannot raise the open-file limit to the hard limit");
        }
    }
    let after = getrlimit(Resource::Nofile);
    let show = |value: Option<u64>| value.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    tracing::info!(
        soft = %show(after.current),
        hard = %show(after.maximum),
        was = %show(before.current),
        "open-file limit (each open stream holds two files)"
    );
}

async fn import(config: Config, kubeconfig: &std::path::Path) -> anyhow::Result<()> {
    let clusters =
        kubeportal::clusters::clusters_from_kubeconfig(kubeconfig).map_err(anyhow::Error::msg)?;
    let state = kubeportal::app::build_state(config).await?;
    let mut failed = 0;
    for cluster in clusters {
        let outcome = match cluster.input {
            Ok(input) => match input.validate_new() {
                Ok(spec) => state
                    .registry
                    .upsert(&spec)
                    .await
                    .map(|outcome| format!("{outcome:?}").to_lowercase())
                    .map_err(|error| error.to_string()),
                Err(error) => Err(error.to_string()),
            },
            Err(error) => Err(error),
        };
        match outcome {
            Ok(what) => println!("{}: {what}", cluster.name),
            Err(error) => {
                failed += 1;
                println!("{}: not imported: {error}", cluster.name);
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} cluster(s) not imported");
    }
    Ok(())
}
