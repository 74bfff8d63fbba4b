//! What every scenario shares: the objects seeded into the double, the
//! kubeportal configuration (a static portal token, a policy with a few
//! rules), and clients for both.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::processes::DoubleProcess;

/// The cluster name kubeportal knows the double by.
pub const CLUSTER: &str = "bench";
/// The cluster name kubeportal knows the plain-HTTP double by (the proxy
/// benchmark's second upstream).
pub const PLAIN_CLUSTER: &str = "bench-plain";
/// The static portal token the benchmark client presents to kubeportal.
pub const PORTAL_TOKEN: &str = "bench-portal-token";
/// Namespace of the small pod and of the ~1 MiB pod list.
pub const NAMESPACE: &str = "bench";
/// The small pod every GET scenario reads.
pub const POD: &str = "p";
/// Namespace of the pod whose generated log streams through kubeportal.
pub const LOG_NAMESPACE: &str = "bench-logs";
pub const LOG_POD: &str = "log-pod";
/// An empty namespace to watch (a watch of a full one would first replay it).
pub const WATCH_NAMESPACE: &str = "bench-watch";
/// The size the pod list is filled to.
pub const LIST_BYTES: usize = 1 << 20;

/// The portal's request headers in the header form.
pub fn portal_headers() -> Vec<(String, String)> {
    portal_headers_for(CLUSTER)
}

/// The portal's request headers in the header form, for `cluster`.
pub fn portal_headers_for(cluster: &str) -> Vec<(String, String)> {
    vec![
        ("Authorization".into(), format!("Bearer {PORTAL_TOKEN}")),
        ("Backstage-Kubernetes-Cluster".into(), cluster.into()),
    ]
}

/// kubeportal's configuration for `clusters`: guest off, one static token,
/// and a policy whose allowing rule comes after two that do not match.
pub fn portal_config(clusters: Vec<Value>) -> Value {
    json!({
        "auth": {
            "guest": false,
            "staticTokens": [{
                "token": PORTAL_TOKEN,
                "subject": "user:default/bench",
                "groups": ["group:default/bench", "group:default/developers"],
            }],
        },
        "permissions": {
            "rules": [
                {
                    "permission": "kubernetes.proxy",
                    "subjects": ["*"],
                    "clusters": ["prod-*"],
                    "actions": ["exec"],
                    "decision": "deny",
                    "description": "no exec in production",
                },
                {
                    "permission": "kubernetes.proxy",
                    "subjects": ["group:default/developers"],
                    "methods": ["DELETE"],
                    "paths": ["/api/v1/namespaces/*"],
                    "decision": "deny",
                    "description": "developers never delete namespaces",
                },
                {
                    "permission": "kubernetes.proxy",
                    "subjects": ["group:default/bench"],
                    "clusters": ["bench*"],
                    "verbs": ["get", "list", "watch"],
                    "decision": "allow",
                    "description": "read-only proxy for the bench group",
                },
                {
                    "permission": "kubernetes.resources.read",
                    "subjects": ["group:default/bench"],
                    "decision": "allow",
                },
                {
                    "permission": "kubernetes.clusters.read",
                    "subjects": ["*"],
                    "decision": "allow",
                },
            ],
        },
        "kubernetes": {
            "clusters": clusters,
        },
    })
}

/// The registry entry for a double (service-account token, its CA).
pub fn cluster_entry(name: &str, url: &str, ca_pem: &str, token: &str) -> Value {
    json!({
        "name": name,
        "url": url,
        "authProvider": "serviceAccount",
        "serviceAccountToken": token,
        "caData": ca_pem,
    })
}

/// The registry entry for a double serving plain HTTP (no CA).
pub fn plain_cluster_entry(name: &str, url: &str, token: &str) -> Value {
    json!({
        "name": name,
        "url": url,
        "authProvider": "serviceAccount",
        "serviceAccountToken": token,
    })
}

/// A client that trusts the double's CA.
pub fn double_client(ca_pem: &str) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes())?)
        .timeout(Duration::from_secs(60))
        .build()?)
}

/// A realistic running pod of about 2 KB as the API server returns it.
pub fn pod(name: &str, namespace: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "shop-api",
                "app.kubernetes.io/version": "1.4.2",
                "backstage.io/kubernetes-id": "shop-api",
                "pod-template-hash": "7d9f8b6c5",
            },
            "annotations": {
                "kubectl.kubernetes.io/default-container": "api",
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "9090",
            },
            "ownerReferences": [{
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "shop-api-7d9f8b6c5",
                "uid": "0b5c1f7e-8d2a-4f3b-9c61-2e7a4d9b1f08",
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": {
            "containers": [{
                "name": "api",
                "image": "ghcr.io/example/shop-api:1.4.2",
                "ports": [
                    {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                    {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
                ],
                "resources": {
                    "requests": {"cpu": "250m", "memory": "256Mi"},
                    "limits": {"cpu": "1", "memory": "512Mi"},
                },
                "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
                "terminationMessagePath": "/dev/termination-log",
                "imagePullPolicy": "IfNotPresent",
            }],
            "volumes": [{"name": "kube-api-access", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}}]}}],
            "serviceAccountName": "shop-api",
            "nodeName": "worker-3",
            "restartPolicy": "Always",
            "dnsPolicy": "ClusterFirst",
            "terminationGracePeriodSeconds": 30,
        },
        "status": {
            "phase": "Running",
            "hostIP": "10.0.0.13",
            "podIP": "10.244.3.17",
            "startTime": "2026-01-01T00:00:00Z",
            "qosClass": "Burstable",
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:05Z"},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-01-01T00:00:05Z"},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
            ],
            "containerStatuses": [{
                "name": "api",
                "ready": true,
                "started": true,
                "restartCount": 0,
                "image": "ghcr.io/example/shop-api:1.4.2",
                "state": {"running": {"startedAt": "2026-01-01T00:00:03Z"}},
            }],
        },
    })
}

/// What was seeded, measured as the double serves it.
#[derive(Debug, Clone, Copy)]
pub struct Seeded {
    pub pod_bytes: usize,
    pub list_bytes: usize,
    pub list_items: usize,
}

/// Seeds the double over its HTTP API: the small pod, enough pods to make
/// the namespace's list about 1 MiB, the log pod and the empty watch
/// namespace.
pub async fn seed(double: &DoubleProcess) -> Result<Seeded> {
    let client = double_client(&std::fs::read_to_string(&double.ca_file)?)?;
    let create = |path: String, body: Value| {
        let request = client
            .post(format!("{}{path}", double.url))
            .bearer_auth(&double.token)
            .json(&body)
            .send();
        async move {
            let response = request.await.with_context(|| format!("POST {path}"))?;
            if !response.status().is_success() {
                bail!("POST {path}: {}", response.status());
            }
            Ok(())
        }
    };
    for namespace in [NAMESPACE, LOG_NAMESPACE, WATCH_NAMESPACE] {
        create(
            "/api/v1/namespaces".into(),
            json!({"metadata": {"name": namespace}}),
        )
        .await?;
    }
    let pods = format!("/api/v1/namespaces/{NAMESPACE}/pods");
    create(pods.clone(), pod(POD, NAMESPACE)).await?;
    create(
        format!("/api/v1/namespaces/{LOG_NAMESPACE}/pods"),
        pod(LOG_POD, LOG_NAMESPACE),
    )
    .await?;
    let get = |path: String| {
        let request = client
            .get(format!("{}{path}", double.url))
            .bearer_auth(&double.token)
            .send();
        async move {
            let response = request.await?.error_for_status()?;
            Ok::<_, anyhow::Error>(response.bytes().await?.len())
        }
    };
    let pod_bytes = get(format!("{pods}/{POD}")).await?;
    let list_items = LIST_BYTES.div_ceil(pod_bytes);
    let fillers: Vec<_> = (1..list_items)
        .map(|index| {
            create(
                pods.clone(),
                pod(&format!("shop-api-{index:05}"), NAMESPACE),
            )
        })
        .collect();
    futures::future::try_join_all(fillers).await?;
    let list_bytes = get(pods).await?;
    Ok(Seeded {
        pod_bytes,
        list_bytes,
        list_items,
    })
}
