//! `kubeportal clusters import --kubeconfig FILE`: each cluster of a
//! kubeconfig, with the credentials of the first context that uses it, under
//! a valid registry name.
//!
//! Kubeconfigs are read as kubectl reads them (`kube::config::Kubeconfig`):
//! relative file references resolve against the kubeconfig's directory, and
//! the documents of a multi-document file, like several files, are merged
//! with the first definition of a name winning (later ones are reported as
//! skipped). Credentials kubeportal cannot hold (exec plugins,
//! auth-providers, basic authentication, impersonation) leave the cluster
//! out, reported: it is never imported with another credential or none.
//!
//! Nothing here prints or returns a secret: errors name fields and files.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use kube::config::{AuthInfo, Kubeconfig, KubeconfigError};
use secrecy::{ExposeSecret, SecretString};

use super::{
    name_key, validate_cluster_name, AuthProvider, ClusterInput, ClusterInputExt, ClusterSpec,
    FieldError,
};

/// Which kubeconfig name a cluster is registered under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NameFrom {
    /// The first context that uses the cluster (what `kubectl --context`
    /// takes); a cluster no context uses keeps its cluster name.
    #[default]
    Context,
    /// The cluster's own name in the kubeconfig.
    Cluster,
}

impl NameFrom {
    pub fn as_str(self) -> &'static str {
        match self {
            NameFrom::Context => "context",
            NameFrom::Cluster => "cluster",
        }
    }
}

/// Why a kubeconfig, or one of its clusters, cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("expected OLD=NEW")]
    RenameNotOldNew,
    #[error("OLD (the kubeconfig name) is empty")]
    RenameOldEmpty,
    #[error("NEW {0}")]
    RenameNewInvalid(String),
    #[error("--rename {0}=…: {0} is renamed twice")]
    RenamedTwice(String),
    #[error("--rename {old}=…: no cluster is known as {old} with --name-from {name_from} (the names are: {known})")]
    RenameUnmatched {
        old: String,
        name_from: &'static str,
        known: String,
    },
    #[error("cannot read {path}: {cause}")]
    Read { path: String, cause: String },
    #[error("{path} is not a kubeconfig: {cause}")]
    NotAKubeconfig { path: String, cause: String },
    #[error("{path}: {cause}")]
    Merge { path: String, cause: String },
    #[error("the name has no letters or digits to make a cluster name of: name it with --rename OLD=NEW")]
    NoNameLeft,
    #[error("user {user} gets its credential from the exec plugin {command}, which kubeportal cannot run; {instead}", instead = INSTEAD)]
    ExecPlugin { user: String, command: String },
    #[error("user {user} gets its credential from auth-provider {provider}, which kubeportal cannot use; {instead}", instead = INSTEAD)]
    AuthProvider { user: String, provider: String },
    #[error("user {0} uses basic authentication (username and password), which kubeportal does not support; {instead}", instead = INSTEAD)]
    BasicAuthentication(String),
    #[error("user {0} impersonates (as, as-groups), which kubeportal would not do with the imported credential; {instead}", instead = INSTEAD)]
    Impersonates(String),
    #[error("user {0} has `token-file`, a key kubectl ignores: a token file is `tokenFile`")]
    TokenFileMisspelled(String),
    #[error("the cluster has no server")]
    NoServer,
    #[error("it has both a certificate authority and insecure-skip-tls-verify, which kubectl refuses; keep one")]
    CaWithInsecure,
    #[error("{0} is not a kubeconfig: its UTF-16 text ends in the middle of a character")]
    TruncatedUtf16(String),
    #[error("its context names user {0}, which the kubeconfig does not define")]
    UnknownUser(String),
    #[error("{0}")]
    Invalid(FieldError),
    #[error(
        "{others} would also be named {name} (cluster names are compared case-insensitively): give one of them another name with --rename{besides}",
        besides = besides.as_ref().map(|error| format!("; besides, {error}")).unwrap_or_default()
    )]
    Collision {
        others: String,
        name: String,
        besides: Option<Box<ImportError>>,
    },
}

/// How to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub name_from: NameFrom,
    /// Explicit names: the kubeconfig name (as `name_from` picks it) and the
    /// registry name to use instead.
    pub renames: Vec<(String, String)>,
}

/// One cluster of the kubeconfig: the registry entry it becomes, or why not.
pub struct PlannedCluster {
    /// The kubeconfig name it is known by (context or cluster, per `NameFrom`).
    pub source: String,
    /// The registry name, when one could be made.
    pub name: Option<String>,
    pub outcome: Result<ClusterSpec, ImportError>,
    /// What the user should know about an imported cluster: how its name
    /// was made, which context's credentials it takes, what is ignored.
    pub notes: Vec<String>,
}

/// What an import would do.
pub struct ImportPlan {
    pub clusters: Vec<PlannedCluster>,
    /// Entries not imported on purpose, one line each: further contexts of
    /// a cluster, contexts without a cluster, later definitions of a name.
    pub skipped: Vec<String>,
}

/// Parses `OLD=NEW` of `--rename`; NEW must be a valid cluster name (OLD,
/// a kubeconfig name, may hold `=`, so the last `=` separates them).
pub fn parse_rename(text: &str) -> Result<(String, String), ImportError> {
    let (old, new) = text.rsplit_once('=').ok_or(ImportError::RenameNotOldNew)?;
    if old.is_empty() {
        return Err(ImportError::RenameOldEmpty);
    }
    validate_cluster_name(new).map_err(|error| ImportError::RenameNewInvalid(error.message))?;
    Ok((old.to_owned(), new.to_owned()))
}

/// Reads the kubeconfigs (merged in order, as `KUBECONFIG=a:b` is) and
/// works out what each of their clusters becomes. Fails, before anything is
/// registered, when a file cannot be read or a rename matches no cluster.
pub fn plan_import(files: &[PathBuf], options: &ImportOptions) -> Result<ImportPlan, ImportError> {
    let kubeconfig = load(files)?;
    let scan = scan(files);
    let mut skipped = scan.skipped;

    let contexts = first_of_each_name(&kubeconfig.contexts, |context| &context.name);
    let users: HashMap<&str, Option<&AuthInfo>> =
        first_of_each_name(&kubeconfig.auth_infos, |user| &user.name)
            .into_iter()
            .map(|user| (user.name.as_str(), user.auth_info.as_ref()))
            .collect();
    let clusters = first_of_each_name(&kubeconfig.clusters, |cluster| &cluster.name);
    let cluster_names: HashSet<&str> = clusters
        .iter()
        .map(|cluster| cluster.name.as_str())
        .collect();
    for context in &contexts {
        match &context.context {
            None => skipped.push(format!(
                "context {}: skipped: it names no cluster",
                context.name
            )),
            Some(body) if !cluster_names.contains(body.cluster.as_str()) => skipped.push(format!(
                "context {}: skipped: its cluster {} is not defined in the kubeconfig",
                context.name, body.cluster
            )),
            Some(_) => {}
        }
    }

    let mut renames: HashMap<&str, &str> = HashMap::new();
    for (old, new) in &options.renames {
        if renames.insert(old, new).is_some() {
            return Err(ImportError::RenamedTwice(old.clone()));
        }
    }
    let mut renamed = HashSet::new();

    let mut planned = Vec::new();
    for cluster in clusters {
        let mut using = contexts.iter().filter(|context| {
            context
                .context
                .as_ref()
                .is_some_and(|body| body.cluster == cluster.name)
        });
        let context = using.next();
        for other in using {
            skipped.push(format!(
                "context {}: skipped: its cluster {} is taken with the first context that uses it, {}",
                other.name,
                cluster.name,
                context.map_or("", |first| first.name.as_str())
            ));
        }
        let mut notes = Vec::new();
        let source = match (options.name_from, context) {
            (NameFrom::Context, Some(context)) => {
                if context.name != cluster.name {
                    notes.push(format!("cluster {}", cluster.name));
                }
                context.name.clone()
            }
            (NameFrom::Context, None) => {
                notes.push("no context uses it: named after the cluster".into());
                cluster.name.clone()
            }
            (NameFrom::Cluster, context) => {
                if let Some(context) = context.filter(|context| context.name != cluster.name) {
                    notes.push(format!("credentials of context {}", context.name));
                }
                cluster.name.clone()
            }
        };
        let name = match renames.get(source.as_str()) {
            Some(new) => {
                renamed.insert(source.clone());
                notes.push("named with --rename".into());
                Ok((*new).to_owned())
            }
            None => registry_name(&source).map(|(name, how)| {
                if let Some(how) = how {
                    notes.push(format!("name made valid: {how}"));
                }
                name
            }),
        };
        let outcome = name.as_ref().map_err(Clone::clone).and_then(|name| {
            let body = cluster.cluster.clone().unwrap_or_default();
            let user = context.and_then(|context| context.context.as_ref()?.user.as_deref());
            to_spec(
                name,
                &body,
                user,
                &users,
                &scan.token_file_misspelled,
                &mut notes,
            )
        });
        planned.push(PlannedCluster {
            source,
            name: name.ok(),
            outcome,
            notes,
        });
    }

    if let Some((old, _)) = options
        .renames
        .iter()
        .find(|(old, _)| !renamed.contains(old))
    {
        let mut known: Vec<&str> = planned
            .iter()
            .map(|cluster| cluster.source.as_str())
            .collect();
        known.sort_unstable();
        return Err(ImportError::RenameUnmatched {
            old: old.clone(),
            name_from: options.name_from.as_str(),
            known: known.join(", "),
        });
    }

    report_collisions(&mut planned);
    Ok(ImportPlan {
        clusters: planned,
        skipped,
    })
}

/// Leaves out every cluster whose registry name another one also gets.
fn report_collisions(planned: &mut [PlannedCluster]) {
    let mut by_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (index, cluster) in planned.iter().enumerate() {
        if let Some(name) = &cluster.name {
            by_key
                .entry(name_key(name).into_owned())
                .or_default()
                .push(index);
        }
    }
    for indexes in by_key.values().filter(|indexes| indexes.len() > 1) {
        let sources: Vec<String> = indexes
            .iter()
            .map(|&index| planned[index].source.clone())
            .collect();
        for &index in indexes {
            let cluster = &mut planned[index];
            let others: Vec<&str> = sources
                .iter()
                .filter(|source| **source != cluster.source)
                .map(String::as_str)
                .collect();
            cluster.outcome = Err(ImportError::Collision {
                others: others.join(" and "),
                name: cluster.name.clone().unwrap_or_default(),
                besides: cluster.outcome.as_ref().err().cloned().map(Box::new),
            });
        }
    }
}

/// Reads and merges the kubeconfigs; relative paths in each become
/// absolute against its directory.
fn load(files: &[PathBuf]) -> Result<Kubeconfig, ImportError> {
    let mut merged = Kubeconfig::default();
    for file in files {
        let path = || file.display().to_string();
        refuse_truncated_utf16(file)?;
        let next = Kubeconfig::read_from(file).map_err(|error| match error {
            KubeconfigError::ReadConfig(cause, _) => ImportError::Read {
                path: path(),
                cause: cause.to_string(),
            },
            other => ImportError::NotAKubeconfig {
                path: path(),
                cause: without_values(&other.to_string()),
            },
        })?;
        merged = merged.merge(next).map_err(|error| ImportError::Merge {
            path: path(),
            cause: error.to_string(),
        })?;
    }
    Ok(merged)
}

/// The YAML parser's messages quote the offending value (`` invalid type:
/// integer `987654321` ``, `"…"`); in a kubeconfig that may be a password,
/// a token or a key, so every quoted part is left out.
fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut closing = None;
    for character in message.chars() {
        match closing {
            Some(end) if character == end => {
                out.push('…');
                out.push(end);
                closing = None;
            }
            Some(_) => {}
            None if matches!(character, '"' | '`') => {
                out.push(character);
                closing = Some(character);
            }
            None => out.push(character),
        }
    }
    if closing.is_some() {
        out.push('…');
    }
    out
}

/// A UTF-16 file (byte order mark first) whose text is cut mid-character:
/// the kubeconfig reader cannot take it (and would panic on it).
fn refuse_truncated_utf16(file: &Path) -> Result<(), ImportError> {
    let Ok(bytes) = std::fs::read(file) else {
        // The reader reports what cannot be read.
        return Ok(());
    };
    let utf16 = bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]);
    if utf16 && bytes.len() % 2 == 1 {
        return Err(ImportError::TruncatedUtf16(file.display().to_string()));
    }
    Ok(())
}

/// The first entry of each name, in order (later ones are ignored, as by
/// kubectl, and reported by [`scan`]).
fn first_of_each_name<T>(entries: &[T], name: impl Fn(&T) -> &String) -> Vec<&T> {
    let mut seen = HashSet::new();
    entries
        .iter()
        .filter(|entry| seen.insert(name(*entry).as_str()))
        .collect()
}

/// What the typed model does not show: names defined more than once, and
/// users whose token file is spelled `token-file` (kubectl's key is
/// `tokenFile`; it ignores the other spelling, and so does the model).
#[derive(Default)]
struct Scan {
    skipped: Vec<String>,
    token_file_misspelled: HashSet<String>,
}

fn scan(files: &[PathBuf]) -> Scan {
    let mut result = Scan::default();
    let mut first: HashMap<(&'static str, String), String> = HashMap::new();
    for file in files {
        // The typed read succeeded; a file this cannot read is only not scanned.
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let documents: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(text.trim_start_matches('\u{feff}')).unwrap_or_default();
        for (index, document) in documents.iter().enumerate() {
            let place = if documents.len() > 1 {
                format!("{} (document {})", file.display(), index + 1)
            } else {
                file.display().to_string()
            };
            for (kind, list) in [
                ("cluster", "clusters"),
                ("user", "users"),
                ("context", "contexts"),
            ] {
                let entries = document.get(list).and_then(serde_json::Value::as_array);
                for entry in entries.into_iter().flatten() {
                    let Some(name) = entry.get("name").and_then(serde_json::Value::as_str) else {
                        continue;
                    };
                    match first.entry((kind, name.to_owned())) {
                        std::collections::hash_map::Entry::Occupied(earlier) => {
                            result.skipped.push(format!(
                                "{kind} {name} in {place}: skipped: {kind} {name} is defined earlier, in {}, and the first definition is used, as kubectl does",
                                earlier.get()
                            ))
                        }
                        std::collections::hash_map::Entry::Vacant(slot) => {
                            slot.insert(place.clone());
                            if kind == "user"
                                && entry
                                    .get("user")
                                    .and_then(|user| user.get("token-file"))
                                    .is_some()
                            {
                                result.token_file_misspelled.insert(name.to_owned());
                            }
                        }
                    }
                }
            }
        }
    }
    result
}

/// A valid registry name for a kubeconfig name, and how it was made when
/// it is not the name itself. Deterministic: the same name always gives
/// the same result.
///
/// - an EKS ARN (`arn:aws:eks:REGION:ACCOUNT:cluster/NAME`) gives NAME;
/// - a GKE name (`gke_PROJECT_LOCATION_NAME`) is valid as it is; longer
///   than 63 characters, it gives NAME;
/// - otherwise every run of characters other than letters, digits, `-`,
///   `_` and `.` becomes one `-`, leading and trailing `-`, `_` and `.` are
///   removed, and the result is cut to 63 characters.
pub fn registry_name(name: &str) -> Result<(String, Option<String>), ImportError> {
    if validate_cluster_name(name).is_ok() {
        return Ok((name.to_owned(), None));
    }
    let mut how = Vec::new();
    let base = if let Some(eks) = eks_cluster_name(name) {
        how.push("the EKS cluster name after `cluster/` in the ARN");
        eks
    } else if let Some(gke) = gke_cluster_name(name).filter(|_| name.len() > 63) {
        how.push("the GKE cluster name, as gke_PROJECT_LOCATION_NAME is longer than 63 characters");
        gke
    } else {
        name
    };
    let mut made = String::with_capacity(base.len());
    for character in base.chars() {
        if character.is_ascii_alphanumeric() || matches!(character, '-' | '_' | '.') {
            made.push(character);
        } else if !made.ends_with('-') {
            made.push('-');
        }
    }
    if made != base {
        how.push("characters other than letters, digits, '-', '_' and '.' replaced with '-'");
    }
    let is_edge = |character: char| !character.is_ascii_alphanumeric();
    let trimmed = made.trim_matches(is_edge);
    if trimmed.len() != made.len() {
        how.push("leading and trailing '-', '_' and '.' removed");
    }
    let mut made = trimmed.to_owned();
    if made.len() > 63 {
        made.truncate(63);
        made = made.trim_end_matches(is_edge).to_owned();
        how.push("cut to 63 characters");
    }
    if made.is_empty() {
        return Err(ImportError::NoNameLeft);
    }
    debug_assert!(validate_cluster_name(&made).is_ok());
    Ok((made, Some(how.join(", "))))
}

/// NAME of `arn:PARTITION:eks:REGION:ACCOUNT:cluster/NAME`.
fn eks_cluster_name(name: &str) -> Option<&str> {
    let parts: Vec<&str> = name.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", _, "eks", _, _, resource] => resource
            .strip_prefix("cluster/")
            .filter(|cluster| !cluster.is_empty()),
        _ => None,
    }
}

/// NAME of `gke_PROJECT_LOCATION_NAME`.
fn gke_cluster_name(name: &str) -> Option<&str> {
    let parts: Vec<&str> = name.splitn(4, '_').collect();
    match parts.as_slice() {
        ["gke", project, location, cluster]
            if !project.is_empty() && !location.is_empty() && !cluster.is_empty() =>
        {
            Some(cluster)
        }
        _ => None,
    }
}

fn read_file(path: &str) -> Result<String, ImportError> {
    std::fs::read_to_string(Path::new(path)).map_err(|error| ImportError::Read {
        path: path.to_owned(),
        cause: error.to_string(),
    })
}

/// `data` (base64, as kubeconfigs hold it) or the PEM text of `file`.
fn data_or_file(data: Option<&str>, file: Option<&str>) -> Result<Option<String>, ImportError> {
    match (data.filter(|data| !data.trim().is_empty()), file) {
        (Some(data), _) => Ok(Some(data.to_owned())),
        (None, Some(file)) if !file.is_empty() => read_file(file).map(Some),
        (None, _) => Ok(None),
    }
}

/// What to tell a user whose credential kubeportal cannot hold.
const INSTEAD: &str = "put a service-account token or client certificate for the cluster in the kubeconfig, or register it through the API (authProvider oidc, google or client)";

/// The credential a kubeconfig user gives kubeportal, or why it cannot.
struct Credential {
    provider: AuthProvider,
    token: Option<SecretString>,
    client_cert_data: Option<String>,
    client_key_data: Option<SecretString>,
}

fn credential(
    name: &str,
    user: &AuthInfo,
    token_file_misspelled: bool,
) -> Result<Credential, ImportError> {
    if let Some(exec) = &user.exec {
        let command = exec
            .command
            .as_deref()
            .map(|command| {
                Path::new(command)
                    .file_name()
                    .map_or(command.into(), |file| file.to_string_lossy())
            })
            .unwrap_or_default();
        return Err(ImportError::ExecPlugin {
            user: name.to_owned(),
            command: command.into_owned(),
        });
    }
    if let Some(provider) = &user.auth_provider {
        return Err(ImportError::AuthProvider {
            user: name.to_owned(),
            provider: provider.name.clone(),
        });
    }
    if user.username.is_some() || user.password.is_some() {
        return Err(ImportError::BasicAuthentication(name.to_owned()));
    }
    if user.impersonate.is_some() || user.impersonate_groups.is_some() {
        return Err(ImportError::Impersonates(name.to_owned()));
    }
    let token = match (
        user.token
            .as_ref()
            .filter(|token| !token.expose_secret().is_empty()),
        user.token_file.as_deref().filter(|file| !file.is_empty()),
    ) {
        // client-go sends the file's token when both are given.
        (_, Some(file)) => Some(SecretString::from(read_file(file)?.trim().to_owned())),
        (Some(token), None) => Some(token.clone()),
        (None, None) if token_file_misspelled => {
            return Err(ImportError::TokenFileMisspelled(name.to_owned()))
        }
        (None, None) => None,
    };
    let client_cert_data = data_or_file(
        user.client_certificate_data.as_deref(),
        user.client_certificate.as_deref(),
    )?;
    let client_key_data = data_or_file(
        user.client_key_data.as_ref().map(|key| key.expose_secret()),
        user.client_key.as_deref(),
    )?
    .map(SecretString::from);
    let provider = if token.is_some() {
        AuthProvider::ServiceAccount
    } else if client_cert_data.is_some() || client_key_data.is_some() {
        AuthProvider::ClientCert
    } else {
        AuthProvider::Client
    };
    Ok(Credential {
        provider,
        token,
        client_cert_data,
        client_key_data,
    })
}

fn to_spec(
    name: &str,
    cluster: &kube::config::Cluster,
    user: Option<&str>,
    users: &HashMap<&str, Option<&AuthInfo>>,
    token_file_misspelled: &HashSet<String>,
    notes: &mut Vec<String>,
) -> Result<ClusterSpec, ImportError> {
    let url = cluster
        .server
        .clone()
        .filter(|server| !server.is_empty())
        .ok_or(ImportError::NoServer)?;
    let has_ca = cluster
        .certificate_authority_data
        .as_deref()
        .is_some_and(|data| !data.trim().is_empty())
        || cluster
            .certificate_authority
            .as_deref()
            .is_some_and(|file| !file.is_empty());
    if has_ca && cluster.insecure_skip_tls_verify == Some(true) {
        return Err(ImportError::CaWithInsecure);
    }
    let no_credential = AuthInfo::default();
    let credential = match user.filter(|user| !user.is_empty()) {
        None => credential("", &no_credential, false)?,
        Some(user) => match users.get(user) {
            None => return Err(ImportError::UnknownUser(user.to_owned())),
            // A user entry without `user:` holds no credential, like no user.
            Some(info) => credential(
                user,
                info.unwrap_or(&no_credential),
                token_file_misspelled.contains(user),
            )?,
        },
    };
    if credential.provider == AuthProvider::Client {
        notes
            .push("the kubeconfig holds no credential for it: callers send their own token".into());
    }
    if cluster.proxy_url.is_some() {
        notes.push("proxy-url ignored: kubeportal connects to the server directly".into());
    }
    if cluster.tls_server_name.is_some() {
        notes.push(
            "tls-server-name ignored: kubeportal verifies the server's certificate against the url's host"
                .into(),
        );
    }
    let input = ClusterInput {
        name: name.to_owned(),
        title: None,
        url,
        auth_provider: credential.provider,
        ca_data: data_or_file(
            cluster.certificate_authority_data.as_deref(),
            cluster.certificate_authority.as_deref(),
        )?,
        skip_tls_verify: cluster.insecure_skip_tls_verify.unwrap_or(false),
        service_account_token: credential.token,
        client_cert_data: credential.client_cert_data,
        client_key_data: credential.client_key_data,
        dashboard_url: None,
        dashboard_app: None,
        dashboard_parameters: None,
        oidc_token_provider: None,
        skip_metrics_lookup: false,
        labels: BTreeMap::new(),
    };
    input.validate_new().map_err(ImportError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn plan_of(dir: &Path, text: &str, options: &ImportOptions) -> Result<ImportPlan, ImportError> {
        let path = dir.join("config");
        std::fs::write(&path, text).unwrap();
        plan_import(&[path], options)
    }

    fn by_source(plan: &ImportPlan) -> BTreeMap<&str, &PlannedCluster> {
        plan.clusters
            .iter()
            .map(|cluster| (cluster.source.as_str(), cluster))
            .collect()
    }

    fn error_of(plan: &ImportPlan, source: &str) -> String {
        match &by_source(plan)[source].outcome {
            Err(error) => error.to_string(),
            Ok(spec) => panic!("{source} was imported as {}", spec.name),
        }
    }

    #[test]
    fn names_are_made_valid_deterministically() {
        for (kubeconfig_name, expected) in [
            ("kind-dev", "kind-dev"),
            (
                "arn:aws:eks:eu-west-1:111122223333:cluster/shop-prod",
                "shop-prod",
            ),
            (
                "arn:aws-cn:eks:cn-north-1:111122223333:cluster/Shop_Prod",
                "Shop_Prod",
            ),
            (
                "gke_my-project_europe-west1-b_shop-prod",
                "gke_my-project_europe-west1-b_shop-prod",
            ),
            (
                "gke_a-rather-long-project-name-1234_europe-west1-b_a-long-cluster-name",
                "a-long-cluster-name",
            ),
            (
                "gke_example.com:project_us-east1_shop",
                "gke_example.com-project_us-east1_shop",
            ),
            (
                "default/api-ocp-example-com:6443/kube:admin",
                "default-api-ocp-example-com-6443-kube-admin",
            ),
            ("bad name", "bad-name"),
            ("  @team / prod  ", "team-prod"),
            ("café", "caf"),
        ] {
            let (name, _) = registry_name(kubeconfig_name).unwrap();
            assert_eq!(name, expected, "{kubeconfig_name}");
            validate_cluster_name(&name).unwrap();
        }
        let (long, how) = registry_name(&format!("{}/x", "a".repeat(70))).unwrap();
        assert_eq!(long, "a".repeat(63));
        assert!(how.unwrap().contains("cut to 63"));
        assert!(registry_name("é/ü").is_err());
        assert_eq!(registry_name("kind-dev").unwrap().1, None);
    }

    #[test]
    fn a_token_file_wins_over_a_token_as_in_client_go() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-the-file\n").unwrap();
        let user = AuthInfo {
            token: Some(SecretString::from("inline".to_owned())),
            token_file: Some(file.to_str().unwrap().to_owned()),
            ..AuthInfo::default()
        };
        let credential = credential("u", &user, false).unwrap();
        assert_eq!(credential.token.unwrap().expose_secret(), "from-the-file");
    }

    #[test]
    fn parse_errors_keep_their_place_and_lose_their_values() {
        assert_eq!(
            without_values(
                "invalid type: integer `987654321`, expected a string at line 5 column 40"
            ),
            "invalid type: integer `…`, expected a string at line 5 column 40"
        );
        assert_eq!(
            without_values("bad \"secret\" and `open"),
            "bad \"…\" and `…"
        );
    }

    #[test]
    fn clusters_take_the_credentials_of_their_first_context() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "file-token\n").unwrap();
        let plan = plan_of(
            dir.path(),
            r#"
apiVersion: v1
kind: Config
clusters:
  - name: dev
    cluster: { server: "https://dev:6443", insecure-skip-tls-verify: true }
  - name: prod
    cluster: { server: "https://prod:6443", proxy-url: "http://user:pw@proxy:3128" }
  - name: orphan
    cluster: { server: "https://orphan:6443" }
  - name: legacy
    cluster: { server: "https://legacy:6443" }
users:
  - name: dev-user
    user: { token: inline-token }
  - name: prod-user
    user: { tokenFile: token }
  - name: legacy-user
    user: { token-file: token }
contexts:
  - name: dev
    context: { cluster: dev, user: dev-user }
  - name: prod-admin
    context: { cluster: prod, user: prod-user }
  - name: prod-readonly
    context: { cluster: prod, user: dev-user }
  - name: legacy
    context: { cluster: legacy, user: legacy-user }
  - name: gone
    context: { cluster: deleted-cluster, user: dev-user }
current-context: dev
"#,
            &ImportOptions::default(),
        )
        .unwrap();
        let clusters = by_source(&plan);
        let dev = clusters["dev"].outcome.as_ref().unwrap();
        assert_eq!(dev.auth_provider, AuthProvider::ServiceAccount);
        assert!(dev.skip_tls_verify);
        let prod = clusters["prod-admin"].outcome.as_ref().unwrap();
        assert_eq!(prod.name, "prod-admin");
        assert_eq!(
            prod.service_account_token.as_ref().unwrap().expose_secret(),
            "file-token"
        );
        assert!(clusters["prod-admin"]
            .notes
            .iter()
            .any(|note| note.starts_with("proxy-url ignored")));
        let orphan = clusters["orphan"].outcome.as_ref().unwrap();
        assert_eq!(orphan.auth_provider, AuthProvider::Client);
        assert!(error_of(&plan, "legacy").contains("tokenFile"));
        let skipped = plan.skipped.join("\n");
        assert!(
            skipped.contains("context prod-readonly: skipped"),
            "{skipped}"
        );
        assert!(skipped.contains("context gone: skipped"), "{skipped}");
        assert!(!skipped.contains("pw@"), "{skipped}");

        let by_cluster = plan_of(
            dir.path(),
            &std::fs::read_to_string(dir.path().join("config")).unwrap(),
            &ImportOptions {
                name_from: NameFrom::Cluster,
                renames: vec![],
            },
        )
        .unwrap();
        assert_eq!(
            by_source(&by_cluster)["prod"]
                .outcome
                .as_ref()
                .unwrap()
                .name,
            "prod"
        );
    }

    #[test]
    fn documents_merge_and_the_first_definition_wins() {
        let dir = tempfile::tempdir().unwrap();
        let plan = plan_of(
            dir.path(),
            r#"
apiVersion: v1
kind: Config
clusters:
  - { name: one, cluster: { server: "https://one:6443" } }
users:
  - { name: me, user: { token: first } }
contexts:
  - { name: one, context: { cluster: one, user: me } }
---
apiVersion: v1
kind: Config
clusters:
  - { name: one, cluster: { server: "https://elsewhere:6443" } }
  - { name: two, cluster: { server: "https://two:6443" } }
users:
  - { name: me, user: { token: second } }
contexts:
  - { name: two, context: { cluster: two, user: me } }
"#,
            &ImportOptions::default(),
        )
        .unwrap();
        let clusters = by_source(&plan);
        let one = clusters["one"].outcome.as_ref().unwrap();
        assert_eq!(one.url, "https://one:6443");
        let two = clusters["two"].outcome.as_ref().unwrap();
        assert_eq!(
            two.service_account_token.as_ref().unwrap().expose_secret(),
            "first"
        );
        let skipped = plan.skipped.join("\n");
        assert!(skipped.contains("cluster one in "), "{skipped}");
        assert!(skipped.contains("(document 2)"), "{skipped}");
        assert!(skipped.contains("user me in "), "{skipped}");
    }

    #[test]
    fn credentials_kubeportal_cannot_hold_are_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let plan = plan_of(
            dir.path(),
            r#"
clusters:
  - { name: eks, cluster: { server: "https://eks:443" } }
  - { name: gke, cluster: { server: "https://gke:443" } }
  - { name: basic, cluster: { server: "https://basic:443" } }
  - { name: as, cluster: { server: "https://as:443" } }
  - { name: lost, cluster: { server: "https://lost:443" } }
users:
  - name: eks
    user:
      token: also-here
      exec:
        apiVersion: client.authentication.k8s.io/v1beta1
        command: /usr/local/bin/aws
        args: [eks, get-token, --cluster-name, shop]
        env: [{ name: AWS_SECRET, value: exec-secret }]
  - name: gke
    user: { auth-provider: { name: oidc, config: { id-token: oidc-secret } } }
  - name: basic
    user: { username: admin, password: basic-secret }
  - name: as
    user: { token: t, as: someone }
contexts:
  - { name: eks, context: { cluster: eks, user: eks } }
  - { name: gke, context: { cluster: gke, user: gke } }
  - { name: basic, context: { cluster: basic, user: basic } }
  - { name: as, context: { cluster: as, user: as } }
  - { name: lost, context: { cluster: lost, user: nobody } }
"#,
            &ImportOptions::default(),
        )
        .unwrap();
        for (source, reason) in [
            ("eks", "exec plugin aws"),
            ("gke", "auth-provider oidc"),
            ("basic", "basic authentication"),
            ("as", "impersonates"),
            ("lost", "user nobody"),
        ] {
            let error = error_of(&plan, source);
            assert!(error.contains(reason), "{source}: {error}");
            for secret in ["exec-secret", "oidc-secret", "basic-secret", "also-here"] {
                assert!(!error.contains(secret), "{error}");
            }
        }
    }

    #[test]
    fn names_that_collide_are_reported_until_renamed() {
        let dir = tempfile::tempdir().unwrap();
        let text = r#"
clusters:
  - { name: "shop prod", cluster: { server: "https://a:443" } }
  - { name: "Shop/Prod", cluster: { server: "https://b:443" } }
  - { name: other, cluster: { server: "https://c:443" } }
"#;
        let plan = plan_of(dir.path(), text, &ImportOptions::default()).unwrap();
        assert!(error_of(&plan, "shop prod").contains("Shop/Prod would also be named"));
        assert!(error_of(&plan, "Shop/Prod").contains("shop prod would also be named"));
        assert!(by_source(&plan)["other"].outcome.is_ok());

        let renamed = plan_of(
            dir.path(),
            text,
            &ImportOptions {
                name_from: NameFrom::Context,
                renames: vec![parse_rename("Shop/Prod=shop-prod-2").unwrap()],
            },
        )
        .unwrap();
        let clusters = by_source(&renamed);
        assert_eq!(
            clusters["shop prod"].outcome.as_ref().unwrap().name,
            "shop-prod"
        );
        assert_eq!(
            clusters["Shop/Prod"].outcome.as_ref().unwrap().name,
            "shop-prod-2"
        );

        let unknown = plan_of(
            dir.path(),
            text,
            &ImportOptions {
                name_from: NameFrom::Context,
                renames: vec![parse_rename("nope=x").unwrap()],
            },
        );
        assert!(unknown
            .err()
            .unwrap()
            .to_string()
            .contains("no cluster is known as nope"));
        assert!(parse_rename("a=b c").is_err());
        assert!(parse_rename("novalue").is_err());
        assert_eq!(
            parse_rename("a=b=c").unwrap(),
            ("a=b".to_owned(), "c".to_owned())
        );
    }
}
