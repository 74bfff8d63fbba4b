//! The resource types the double serves, and the discovery documents describing them.
//!
//! Built in: core/v1 `namespaces` (cluster-scoped), `nodes` (cluster-scoped), `pods`,
//! `services`, `configmaps`, `secrets`, `limitranges`, `resourcequotas`, `events`,
//! `serviceaccounts`, `persistentvolumeclaims`; apps/v1 `deployments`, `replicasets`,
//! `statefulsets`, `daemonsets`; batch/v1 `jobs`, `cronjobs`; autoscaling/v2
//! `horizontalpodautoscalers`; coordination.k8s.io/v1 `leases`; networking.k8s.io/v1
//! `ingresses`; and, when enabled,
//! metrics.k8s.io/v1beta1 `pods` (read-only `PodMetrics`). Custom resources are added
//! at run time.

use std::sync::{Arc, RwLock};

use serde_json::{json, Value};

/// Where a resource's objects come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// Kept in the store: full CRUD, list and watch.
    Stored,
    /// `PodMetrics` computed from the stored pods: get and list only.
    PodMetrics,
}

/// One resource type, as discovery describes it.
#[derive(Clone, Debug)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: String,
    /// API version within the group, e.g. `v1`.
    pub version: String,
    /// Plural resource name, the path segment, e.g. `deployments`.
    pub plural: String,
    /// Kind of its objects, e.g. `Deployment`.
    pub kind: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Short names kubectl accepts, e.g. `deploy`.
    pub short_names: Vec<String>,
    /// Categories, e.g. `all`.
    pub categories: Vec<String>,
    /// Whether it was registered as a custom resource.
    pub custom: bool,
    /// Where its objects come from.
    pub backing: Backing,
}

const STORED_VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl ResourceType {
    fn builtin(
        group: &str,
        version: &str,
        plural: &str,
        kind: &str,
        namespaced: bool,
        short_names: &[&str],
        in_category_all: bool,
    ) -> Self {
        ResourceType {
            group: group.to_owned(),
            version: version.to_owned(),
            plural: plural.to_owned(),
            kind: kind.to_owned(),
            namespaced,
            short_names: short_names.iter().map(|name| (*name).to_owned()).collect(),
            categories: if in_category_all {
                vec!["all".to_owned()]
            } else {
                Vec::new()
            },
            custom: false,
            backing: Backing::Stored,
        }
    }

    /// A custom resource, as registered by a CRD.
    pub fn custom(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        ResourceType {
            custom: true,
            ..ResourceType::builtin(group, version, plural, kind, namespaced, &[], false)
        }
    }

    /// `v1` for the core group, else `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kind of a list of these objects, e.g. `DeploymentList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The name Kubernetes uses in messages: `configmaps`, `deployments.apps`.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Whether `selector` (`plural` or `plural.group`) designates this resource.
    pub fn is_designated_by(&self, selector: &str) -> bool {
        selector == self.plural || selector == self.qualified_plural()
    }

    fn verbs(&self) -> Vec<&'static str> {
        match (self.backing, self.plural.as_str(), self.group.as_str()) {
            (Backing::PodMetrics, _, _) => vec!["get", "list"],
            (Backing::Stored, "namespaces", "") => {
                vec![
                    "create", "delete", "get", "list", "patch", "update", "watch",
                ]
            }
            (Backing::Stored, _, _) => STORED_VERBS.to_vec(),
        }
    }

    /// This resource and its subresources, as `APIResourceList` entries.
    fn discovery_entries(&self) -> Vec<Value> {
        let mut main = json!({
            "name": self.plural,
            "singularName": self.kind.to_lowercase(),
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": self.verbs(),
        });
        if !self.short_names.is_empty() {
            main["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            main["categories"] = json!(self.categories);
        }
        let mut entries = vec![main];
        if self.backing == Backing::Stored {
            entries.push(self.subresource_entry("status", &self.kind, &["get", "patch", "update"]));
        }
        if self.backing == Backing::Stored && self.group.is_empty() && self.plural == "pods" {
            entries.push(self.subresource_entry("log", "Pod", &["get"]));
            entries.push(self.subresource_entry("exec", "PodExecOptions", &["create", "get"]));
            entries.push(self.subresource_entry("attach", "PodAttachOptions", &["create", "get"]));
        }
        entries
    }

    fn subresource_entry(&self, subresource: &str, kind: &str, verbs: &[&str]) -> Value {
        json!({
            "name": format!("{}/{}", self.plural, subresource),
            "singularName": "",
            "namespaced": self.namespaced,
            "kind": kind,
            "verbs": verbs,
        })
    }
}

/// The registry of served resource types.
pub(crate) struct Resources {
    types: RwLock<Vec<Arc<ResourceType>>>,
}

impl Resources {
    pub(crate) fn new(metrics_api: bool) -> Self {
        let builtin = |group, version, plural, kind, namespaced, short_names, all| {
            Arc::new(ResourceType::builtin(
                group,
                version,
                plural,
                kind,
                namespaced,
                short_names,
                all,
            ))
        };
        let mut types = vec![
            builtin("", "v1", "namespaces", "Namespace", false, &["ns"], false),
            builtin("", "v1", "nodes", "Node", false, &["no"], false),
            builtin("", "v1", "pods", "Pod", true, &["po"], true),
            builtin("", "v1", "services", "Service", true, &["svc"], true),
            builtin("", "v1", "configmaps", "ConfigMap", true, &["cm"], false),
            builtin("", "v1", "secrets", "Secret", true, &[], false),
            builtin(
                "",
                "v1",
                "limitranges",
                "LimitRange",
                true,
                &["limits"],
                false,
            ),
            builtin(
                "",
                "v1",
                "resourcequotas",
                "ResourceQuota",
                true,
                &["quota"],
                false,
            ),
            builtin("", "v1", "events", "Event", true, &["ev"], false),
            builtin(
                "",
                "v1",
                "serviceaccounts",
                "ServiceAccount",
                true,
                &["sa"],
                false,
            ),
            builtin(
                "",
                "v1",
                "persistentvolumeclaims",
                "PersistentVolumeClaim",
                true,
                &["pvc"],
                false,
            ),
            builtin(
                "apps",
                "v1",
                "deployments",
                "Deployment",
                true,
                &["deploy"],
                true,
            ),
            builtin(
                "apps",
                "v1",
                "replicasets",
                "ReplicaSet",
                true,
                &["rs"],
                true,
            ),
            builtin(
                "apps",
                "v1",
                "statefulsets",
                "StatefulSet",
                true,
                &["sts"],
                true,
            ),
            builtin("apps", "v1", "daemonsets", "DaemonSet", true, &["ds"], true),
            builtin("batch", "v1", "jobs", "Job", true, &[], true),
            builtin("batch", "v1", "cronjobs", "CronJob", true, &["cj"], true),
            builtin(
                "autoscaling",
                "v2",
                "horizontalpodautoscalers",
                "HorizontalPodAutoscaler",
                true,
                &["hpa"],
                true,
            ),
            builtin(
                "coordination.k8s.io",
                "v1",
                "leases",
                "Lease",
                true,
                &[],
                false,
            ),
            builtin(
                "networking.k8s.io",
                "v1",
                "ingresses",
                "Ingress",
                true,
                &["ing"],
                false,
            ),
        ];
        if metrics_api {
            types.push(Arc::new(ResourceType {
                backing: Backing::PodMetrics,
                ..ResourceType::builtin(
                    "metrics.k8s.io",
                    "v1beta1",
                    "pods",
                    "PodMetrics",
                    true,
                    &[],
                    false,
                )
            }));
        }
        Resources {
            types: RwLock::new(types),
        }
    }

    /// Adds a resource type, replacing one with the same group and plural.
    pub(crate) fn register(&self, resource: ResourceType) {
        let mut types = self.types.write().expect("resource registry poisoned");
        types.retain(|known| !(known.group == resource.group && known.plural == resource.plural));
        types.push(Arc::new(resource));
    }

    pub(crate) fn find(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<Arc<ResourceType>> {
        let types = self.types.read().expect("resource registry poisoned");
        types
            .iter()
            .find(|known| {
                known.group == group && known.version == version && known.plural == plural
            })
            .cloned()
    }

    /// The core `namespaces` resource.
    pub(crate) fn namespaces(&self) -> Arc<ResourceType> {
        self.find("", "v1", "namespaces")
            .expect("namespaces are built in")
    }

    /// The core `pods` resource.
    pub(crate) fn pods(&self) -> Arc<ResourceType> {
        self.find("", "v1", "pods").expect("pods are built in")
    }

    /// Every resource type of a group version.
    pub(crate) fn of_group_version(&self, group: &str, version: &str) -> Vec<Arc<ResourceType>> {
        let types = self.types.read().expect("resource registry poisoned");
        types
            .iter()
            .filter(|known| known.group == group && known.version == version)
            .cloned()
            .collect()
    }

    /// The named groups and their versions, in registration order.
    fn groups(&self) -> Vec<(String, Vec<String>)> {
        let types = self.types.read().expect("resource registry poisoned");
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for known in types.iter().filter(|known| !known.group.is_empty()) {
            match groups.iter_mut().find(|(group, _)| *group == known.group) {
                Some((_, versions)) if !versions.contains(&known.version) => {
                    versions.push(known.version.clone())
                }
                Some(_) => {}
                None => groups.push((known.group.clone(), vec![known.version.clone()])),
            }
        }
        groups
    }

    /// `GET /api`.
    pub(crate) fn api_versions(&self, server_address: &str) -> Value {
        json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
            ],
        })
    }

    /// `GET /apis`.
    pub(crate) fn api_group_list(&self) -> Value {
        let groups: Vec<Value> = self
            .groups()
            .iter()
            .map(|(group, versions)| api_group(group, versions))
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    /// `GET /apis/<group>`, if the group exists.
    pub(crate) fn api_group(&self, group: &str) -> Option<Value> {
        let groups = self.groups();
        let (name, versions) = groups.iter().find(|(name, _)| name == group)?;
        let mut document = api_group(name, versions);
        document["kind"] = json!("APIGroup");
        document["apiVersion"] = json!("v1");
        Some(document)
    }

    /// `GET /api/v1` or `GET /apis/<group>/<version>`, if that group version exists.
    pub(crate) fn api_resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let types = self.of_group_version(group, version);
        if types.is_empty() {
            return None;
        }
        let group_version = if group.is_empty() {
            version.to_owned()
        } else {
            format!("{group}/{version}")
        };
        let resources: Vec<Value> = types
            .iter()
            .flat_map(|resource| resource.discovery_entries())
            .collect();
        Some(json!({
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        }))
    }

    /// Every group version served, as `(group, version)`, core first.
    pub(crate) fn group_versions(&self) -> Vec<(String, String)> {
        let mut all = vec![(String::new(), "v1".to_owned())];
        for (group, versions) in self.groups() {
            all.extend(versions.into_iter().map(|version| (group.clone(), version)));
        }
        all
    }
}

fn api_group(group: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|version| json!({"groupVersion": format!("{group}/{version}"), "version": version}))
        .collect();
    json!({
        "name": group,
        "versions": versions,
        "preferredVersion": versions[0],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_names_short_names_kubectl_needs() {
        let resources = Resources::new(false);
        let core = resources.api_resource_list("", "v1").unwrap();
        let names: Vec<&str> = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|entry| entry["shortNames"].as_array().into_iter().flatten())
            .map(|name| name.as_str().unwrap())
            .collect();
        for short_name in ["ns", "cm", "po", "svc"] {
            assert!(names.contains(&short_name), "{short_name} missing");
        }
        let apps = resources.api_resource_list("apps", "v1").unwrap();
        assert_eq!(apps["resources"][0]["shortNames"][0], "deploy");
    }

    #[test]
    fn metrics_group_exists_only_when_enabled() {
        let without = Resources::new(false);
        assert!(without.api_group("metrics.k8s.io").is_none());
        let with = Resources::new(true);
        assert_eq!(
            with.api_group("metrics.k8s.io").unwrap()["preferredVersion"]["groupVersion"],
            "metrics.k8s.io/v1beta1"
        );
    }

    #[test]
    fn custom_resources_join_discovery_and_replace_older_registrations() {
        let resources = Resources::new(false);
        resources.register(ResourceType::custom(
            "example.com",
            "v1",
            "widgets",
            "Widget",
            true,
        ));
        resources.register(ResourceType::custom(
            "example.com",
            "v1",
            "widgets",
            "Widget",
            false,
        ));
        let list = resources.api_resource_list("example.com", "v1").unwrap();
        assert_eq!(list["resources"][0]["namespaced"], false);
        let groups = resources.api_group_list();
        assert!(groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|group| group["name"] == "example.com"));
    }

    #[test]
    fn a_bare_plural_designates_every_group() {
        let metrics = ResourceType {
            backing: Backing::PodMetrics,
            ..ResourceType::custom("metrics.k8s.io", "v1beta1", "pods", "PodMetrics", true)
        };
        assert!(metrics.is_designated_by("pods"));
        assert!(metrics.is_designated_by("pods.metrics.k8s.io"));
        assert!(!metrics.is_designated_by("pods.apps"));
    }
}
