//! The `kubeportal` binary: `serve` (default), `migrate`, `openapi`,
//! `clusters import --kubeconfig FILE [--name-from context|cluster] [--rename OLD=NEW]`.

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
    ///
    /// Each cluster is imported once, with the credentials of the first
    /// context that uses it (token, tokenFile, client certificate and key,
    /// CA, insecure-skip-tls-verify), under the name of that context: the
    /// name `kubectl --context` takes. A cluster no context uses keeps its
    /// cluster name. Relative file paths resolve against the kubeconfig's
    /// directory; the documents of a multi-document file, and several
    /// --kubeconfig files, are merged as kubectl merges KUBECONFIG=a:b (the
    /// first definition of a name wins; later ones are reported as skipped).
    ///
    /// A name that is not a valid cluster name (1 to 63 letters, digits,
    /// '-', '_' or '.', starting and ending with a letter or digit) is made
    /// into one: an EKS ARN gives the cluster name after `cluster/`, a GKE
    /// gke_PROJECT_LOCATION_NAME longer than 63 characters gives NAME, and
    /// otherwise each run of other characters becomes '-', leading and
    /// trailing '-', '_' and '.' go, and the name is cut to 63 characters.
    /// Clusters that would get the same name (compared case-insensitively)
    /// are all left out and reported; --rename tells them apart.
    ///
    /// Users whose credential comes from an exec plugin (aws eks get-token,
    /// gke-gcloud-auth-plugin, kubelogin) or an auth-provider, or who use
    /// basic authentication or impersonation, cannot be imported: their
    /// clusters are reported and nothing is registered for them. A cluster
    /// whose context has no user is registered with authProvider client
    /// (callers send their own token).
    ///
    /// Prints one line per cluster (KUBECONFIG-NAME -> NAME: created,
    /// updated or unchanged, or why it was not imported) and one per
    /// context or definition skipped; secrets are never printed.
    ///
    /// Exit status: 0 when every cluster of the kubeconfig was imported
    /// (skipped contexts and definitions do not count); 1 when any cluster
    /// was not (the others are still imported), or when a kubeconfig cannot
    /// be read or a --rename names no cluster (then nothing is imported);
    /// 2 for invalid arguments.
    #[command(verbatim_doc_comment)]
    Import {
        /// Kubeconfig file; repeat to merge several, in order.
        #[arg(long, required = true, value_name = "FILE")]
        kubeconfig: Vec<PathBuf>,
        /// Which kubeconfig name a cluster is registered under.
        #[arg(long, value_enum, value_name = "SOURCE", default_value_t = NameFrom::Context)]
        name_from: NameFrom,
        /// Register the cluster known as OLD (its context or cluster name,
        /// per --name-from, as printed left of `->`) as NEW. Repeatable.
        #[arg(long, value_name = "OLD=NEW", value_parser = kubeportal::clusters::parse_rename)]
        rename: Vec<(String, String)>,
    },
}

/// `--name-from`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum NameFrom {
    /// The first context that uses the cluster (a cluster no context uses keeps its cluster name).
    Context,
    /// The cluster's own name in the kubeconfig.
    Cluster,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Openapi) = cli.command {
        use std::io::Write as _;
        // A reader that stops early (`| head`) is not an error.
        let written = std::io::stdout().write_all(kubeportal::openapi::document_json().as_bytes());
        return match written {
            Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
            _ => Ok(()),
        };
    }
    let mut config = Config::load(cli.config.as_deref()).context("invalid configuration")?;
    if let Some(listen) = cli.listen {
        config.server.listen = listen;
        config.listen_addr().context("--listen")?;
    }
    let traces = kubeportal::telemetry::traces::init(&config.logging, &config.telemetry)
        .map_err(anyhow::Error::msg)?;
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
            command:
                ClustersCommand::Import {
                    kubeconfig,
                    name_from,
                    rename,
                },
        } => {
            let options = kubeportal::clusters::ImportOptions {
                name_from: match name_from {
                    NameFrom::Context => kubeportal::clusters::NameFrom::Context,
                    NameFrom::Cluster => kubeportal::clusters::NameFrom::Cluster,
                },
                renames: rename,
            };
            import(config, &kubeconfig, &options).await
        }
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

async fn import(
    config: Config,
    kubeconfigs: &[PathBuf],
    options: &kubeportal::clusters::ImportOptions,
) -> anyhow::Result<()> {
    let plan =
        kubeportal::clusters::plan_import(kubeconfigs, options).map_err(anyhow::Error::msg)?;
    let state = kubeportal::app::build_state(config).await?;
    let total = plan.clusters.len();
    let mut failed = 0;
    for cluster in plan.clusters {
        let target = match &cluster.name {
            Some(name) => format!("{} -> {name}", cluster.source),
            None => cluster.source.clone(),
        };
        let outcome = match &cluster.outcome {
            Ok(spec) => state
                .registry
                .upsert(spec)
                .await
                .map(|outcome| (outcome, spec.auth_provider))
                .map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        };
        match outcome {
            Ok((outcome, provider)) => {
                let mut notes = vec![format!("authProvider {}", provider.as_str())];
                notes.extend(cluster.notes);
                println!(
                    "{target}: {} ({})",
                    format!("{outcome:?}").to_lowercase(),
                    notes.join("; ")
                );
            }
            Err(error) => {
                failed += 1;
                println!("{target}: not imported: {error}");
            }
        }
    }
    for line in plan.skipped {
        println!("{line}");
    }
    if total == 0 {
        // A file that is YAML but no kubeconfig (a kubeportal configuration,
        // say) reads as an empty kubeconfig: nothing was asked for that
        // could be done.
        anyhow::bail!("the kubeconfig defines no cluster: is it a kubeconfig?");
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {total} cluster(s) not imported");
    }
    Ok(())
}
