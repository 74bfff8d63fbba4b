//! The settings object queries read: `kubernetes.objects`,
//! `kubernetes.customResources` and `catalog`, and the checks they pass.

use serde::Deserialize;

/// `kubernetes.objects:` in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectQueryConfig {
    /// How long one cluster may take before its unfinished lists become errors.
    #[serde(default = "default_cluster_deadline_ms")]
    pub cluster_timeout_ms: u64,
    /// How long identical queries share one result (0 turns caching off).
    #[serde(default = "default_object_cache_ms")]
    pub cache_ttl_ms: u64,
    /// Lists in flight at once against one cluster.
    #[serde(default = "default_concurrency_per_cluster")]
    pub concurrency_per_cluster: usize,
}

impl Default for ObjectQueryConfig {
    fn default() -> Self {
        Self {
            cluster_timeout_ms: default_cluster_deadline_ms(),
            cache_ttl_ms: default_object_cache_ms(),
            concurrency_per_cluster: default_concurrency_per_cluster(),
        }
    }
}

fn default_cluster_deadline_ms() -> u64 {
    10_000
}

fn default_object_cache_ms() -> u64 {
    5_000
}

fn default_concurrency_per_cluster() -> usize {
    4
}

/// The Backstage catalog that entity refs are looked up in.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogConfig {
    /// Base URL of the Backstage backend, e.g. `http://backstage:7007`.
    pub base_url: Option<String>,
}

/// A custom resource type to include in object queries (part of the
/// object-query wire format too).
pub use kubeportal_api::objects::CustomResourceConfig;

/// A custom resource declaration that names no listable type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CustomResourceError {
    #[error("group: not an API group name")]
    Group,
    #[error("apiVersion: not an API version")]
    ApiVersion,
    #[error("plural: not a resource name")]
    Plural,
}

/// Checks a custom resource declaration.
pub fn validate_custom_resource(
    resource: &CustomResourceConfig,
) -> Result<(), CustomResourceError> {
    let part_ok = |text: &str| {
        !text.is_empty()
            && text.len() <= 253
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
    };
    if !resource.group.is_empty() && !part_ok(&resource.group) {
        return Err(CustomResourceError::Group);
    }
    let version = resource.api_version.rsplit('/').next().unwrap_or_default();
    if !part_ok(version) {
        return Err(CustomResourceError::ApiVersion);
    }
    if !part_ok(&resource.plural) || resource.plural.contains('.') {
        return Err(CustomResourceError::Plural);
    }
    Ok(())
}

/// What is wrong with the object query settings, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ObjectsConfigError {
    #[error("kubernetes.objects.concurrencyPerCluster: must be at least 1")]
    NoConcurrency,
    #[error("catalog.baseUrl: {0}")]
    CatalogUrl(url::ParseError),
    #[error("kubernetes.customResources[{index}]: {reason}")]
    CustomResource {
        index: usize,
        reason: CustomResourceError,
    },
}

impl ObjectQueryConfig {
    pub fn validate(&self) -> Result<(), ObjectsConfigError> {
        if self.concurrency_per_cluster == 0 {
            return Err(ObjectsConfigError::NoConcurrency);
        }
        Ok(())
    }
}

impl CatalogConfig {
    pub fn validate(&self) -> Result<(), ObjectsConfigError> {
        if let Some(url) = &self.base_url {
            url::Url::parse(url).map_err(ObjectsConfigError::CatalogUrl)?;
        }
        Ok(())
    }
}

/// Checks `kubernetes.customResources`.
pub fn validate_custom_resources(
    resources: &[CustomResourceConfig],
) -> Result<(), ObjectsConfigError> {
    for (index, resource) in resources.iter().enumerate() {
        validate_custom_resource(resource)
            .map_err(|reason| ObjectsConfigError::CustomResource { index, reason })?;
    }
    Ok(())
}
