//! Clusters declared in the configuration: `kubernetes.clusters` and
//! Backstage's `kubernetes.clusterLocatorMethods`, and the checks they pass
//! before any is registered.

use std::collections::HashMap;

use serde::Deserialize;

use super::{ClusterInput, ClusterInputExt, FieldError};

/// An entry of Backstage's `kubernetes.clusterLocatorMethods`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterLocatorMethod {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub clusters: Vec<ClusterInput>,
}

/// What is wrong with the declared clusters, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum DeclaredClusterError {
    #[error("kubernetes.clusterLocatorMethods[{index}].type: `{kind}` is not supported; register such clusters over the admin API or with `kubeportal clusters import`")]
    UnsupportedLocator { index: usize, kind: String },
    #[error("{key}.{reason}")]
    Invalid { key: String, reason: FieldError },
    #[error("{key}.name: `{name}` is already declared by {first} (`{first_name}`); cluster names are compared without case")]
    Duplicate {
        key: String,
        name: String,
        first: String,
        first_name: String,
    },
}

/// The declared clusters, with the key each came from.
pub fn declared_clusters<'a>(
    clusters: &'a [ClusterInput],
    locators: &'a [ClusterLocatorMethod],
) -> Vec<(String, &'a ClusterInput)> {
    let own = clusters
        .iter()
        .enumerate()
        .map(|(index, cluster)| (format!("kubernetes.clusters[{index}]"), cluster));
    let located =
        locators
            .iter()
            .enumerate()
            .flat_map(|(method_index, method)| {
                method
                    .clusters
                    .iter()
                    .enumerate()
                    .map(move |(index, cluster)| {
                        (
                    format!("kubernetes.clusterLocatorMethods[{method_index}].clusters[{index}]"),
                    cluster,
                )
                    })
            });
    own.chain(located).collect()
}

/// Checks the locator types, every declared cluster as the registry would,
/// and that no name is declared twice.
pub fn validate_declared_clusters(
    clusters: &[ClusterInput],
    locators: &[ClusterLocatorMethod],
) -> Result<(), DeclaredClusterError> {
    for (index, method) in locators.iter().enumerate() {
        if method.kind != "config" {
            return Err(DeclaredClusterError::UnsupportedLocator {
                index,
                kind: method.kind.clone(),
            });
        }
    }
    let declared = declared_clusters(clusters, locators);
    for (key, cluster) in &declared {
        cluster
            .validate_new()
            .map_err(|reason| DeclaredClusterError::Invalid {
                key: key.clone(),
                reason,
            })?;
    }
    // Names are unique in any case, as in the registry: a second entry
    // must never silently replace the first one's URL and credentials.
    let mut seen: HashMap<String, &str> = HashMap::new();
    for (key, cluster) in &declared {
        if let Some(first) = seen.insert(cluster.name.to_ascii_lowercase(), key.as_str()) {
            let first_name = declared
                .iter()
                .find(|(other, _)| other == first)
                .map_or("", |(_, cluster)| cluster.name.as_str());
            return Err(DeclaredClusterError::Duplicate {
                key: key.clone(),
                name: cluster.name.clone(),
                first: first.to_owned(),
                first_name: first_name.to_owned(),
            });
        }
    }
    Ok(())
}
