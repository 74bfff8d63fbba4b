//! The demo data set: the `shop-api` service of a Backstage catalog, as kubeportal's
//! demo shows it.

use std::sync::Arc;
use std::time::Duration;

use kube_double::KubeDouble;
use serde_json::json;
use tokio::task::JoinHandle;

const NAMESPACE: &str = "shop";
const PODS: [&str; 2] = ["shop-api-7d9f8b6c5-abcde", "shop-api-7d9f8b6c5-fghij"];

/// Seeds the objects and starts logging a line per pod every second; the returned
/// task is the logger.
pub(crate) fn seed(double: Arc<KubeDouble>) -> JoinHandle<()> {
    let labels = json!({"app": "shop-api", "backstage.io/kubernetes-id": "shop-api"});
    double.put_object("v1", "namespaces", json!({"metadata": {"name": NAMESPACE}}));
    double.put_object(
        "apps/v1",
        "deployments",
        json!({
            "metadata": {"name": "shop-api", "namespace": NAMESPACE, "labels": labels},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "shop-api"}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "api", "image": "ghcr.io/example/shop-api:1.4.2"}]}
                }
            },
            "status": {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2, "updatedReplicas": 2}
        }),
    );
    for pod in PODS {
        double.put_object(
            "v1",
            "pods",
            json!({
                "metadata": {"name": pod, "namespace": NAMESPACE, "labels": labels},
                "spec": {"containers": [{"name": "api", "image": "ghcr.io/example/shop-api:1.4.2", "ports": [{"containerPort": 8080}]}]},
                "status": {
                    "phase": "Running",
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "containerStatuses": [{"name": "api", "ready": true, "restartCount": 0, "image": "ghcr.io/example/shop-api:1.4.2", "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]
                }
            }),
        );
    }
    double.put_object(
        "v1",
        "services",
        json!({
            "metadata": {"name": "shop-api", "namespace": NAMESPACE, "labels": labels},
            "spec": {"selector": {"app": "shop-api"}, "ports": [{"port": 80, "targetPort": 8080}], "type": "ClusterIP", "clusterIP": "10.96.12.34"}
        }),
    );
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        for request in 0u64.. {
            ticker.tick().await;
            for (index, pod) in PODS.iter().enumerate() {
                let line = format!(
                    "{} INFO GET /products/{} 200 {}ms",
                    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    request % 40,
                    3 + (request + index as u64) % 17
                );
                double.append_log(NAMESPACE, pod, &line);
            }
        }
    })
}
