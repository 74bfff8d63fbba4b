//! The demo data set: the `shop-api` service of a Backstage catalog, as kubeportal's
//! demo shows it: a deployment, two pods with resource requests and limits, a
//! service, and the events a cluster would have recorded for them (scheduling,
//! image pull, start, a failed readiness probe, the deployment's scaling).

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
                "spec": {"nodeName": "node-1", "containers": [{
                    "name": "api", "image": "ghcr.io/example/shop-api:1.4.2", "ports": [{"containerPort": 8080}],
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}
                }]},
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
    seed_events(&double);
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

/// Events as the scheduler, the kubelet and the deployment controller record
/// them (`involvedObject` names the object; `kubectl describe` and the field
/// selector `involvedObject.name=` find them).
fn seed_events(double: &KubeDouble) {
    let now = chrono::Utc::now();
    let at = |seconds_ago: i64| {
        (now - chrono::Duration::seconds(seconds_ago))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let event = |name: String,
                 involved: serde_json::Value,
                 (kind, reason, message): (&str, &str, String),
                 source: &str,
                 count: u32,
                 (first, last): (i64, i64)| {
        json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "involvedObject": involved,
            "type": kind,
            "reason": reason,
            "message": message,
            "source": {"component": source},
            "count": count,
            "firstTimestamp": at(first),
            "lastTimestamp": at(last),
        })
    };
    double.put_object(
        "v1",
        "events",
        event(
            "shop-api.scaled".into(),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "namespace": NAMESPACE, "name": "shop-api"}),
            ("Normal", "ScalingReplicaSet", "Scaled up replica set shop-api-7d9f8b6c5 to 2".into()),
            "deployment-controller",
            1,
            (900, 900),
        ),
    );
    for (index, pod) in PODS.iter().enumerate() {
        let involved = json!({"apiVersion": "v1", "kind": "Pod", "namespace": NAMESPACE, "name": pod, "fieldPath": "spec.containers{api}"});
        let image = "ghcr.io/example/shop-api:1.4.2";
        let happened: [(&str, &str, String, &str); 4] = [
            (
                "Normal",
                "Scheduled",
                format!("Successfully assigned {NAMESPACE}/{pod} to node-1"),
                "default-scheduler",
            ),
            (
                "Normal",
                "Pulled",
                format!("Container image \"{image}\" already present on machine"),
                "kubelet",
            ),
            (
                "Normal",
                "Created",
                "Created container: api".into(),
                "kubelet",
            ),
            (
                "Normal",
                "Started",
                "Started container api".into(),
                "kubelet",
            ),
        ];
        for (step, (kind, reason, message, source)) in happened.into_iter().enumerate() {
            let ago = 890 - step as i64;
            double.put_object(
                "v1",
                "events",
                event(
                    format!("{pod}.{}", reason.to_lowercase()),
                    involved.clone(),
                    (kind, reason, message),
                    source,
                    1,
                    (ago, ago),
                ),
            );
        }
        if index == 0 {
            double.put_object(
                "v1",
                "events",
                event(
                    format!("{pod}.unhealthy"),
                    involved,
                    (
                        "Warning",
                        "Unhealthy",
                        "Readiness probe failed: HTTP probe failed with statuscode: 503".into(),
                    ),
                    "kubelet",
                    3,
                    (880, 860),
                ),
            );
        }
    }
}
