//! Backstage's client pod status: each pod's CPU and memory usage (from
//! `metrics.k8s.io` PodMetrics) against the requests and limits summed from
//! its spec, per pod and per container, as Backstage's backend computes them
//! with `@kubernetes/client-node`'s `topPods`: CPU in cores, memory in bytes,
//! zero where the spec declares nothing or the pod has no metrics yet.

use serde_json::{json, Value};

/// A Kubernetes quantity (`250m`, `1.5`, `128Mi`, `1G`, `2e3`) as a plain number.
pub fn quantity(text: &str) -> f64 {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let Ok(number) = number.parse::<f64>() else {
        return 0.0;
    };
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent if exponent.starts_with(['e', 'E']) => match exponent[1..].parse::<i32>() {
            Ok(power) => 10f64.powi(power),
            Err(_) => return 0.0,
        },
        _ => return 0.0,
    };
    number * factor
}

fn field(object: &Value, pointer: &str) -> f64 {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(quantity)
        .unwrap_or(0.0)
}

/// Usage against declared totals, as Backstage's `ClientCurrentResourceUsage`.
fn usage(current: f64, request: f64, limit: f64, resource: &str) -> Value {
    let number = |value: f64| -> Value {
        if resource == "memory" {
            json!(value.round() as u64)
        } else {
            // Nanocores are the finest unit metrics-server reports.
            json!((value * 1e9).round() / 1e9)
        }
    };
    json!({
        "currentUsage": number(current),
        "requestTotal": number(request),
        "limitTotal": number(limit),
    })
}

fn declared(container: Option<&Value>, resource: &str) -> (f64, f64) {
    match container {
        Some(container) => (
            field(container, &format!("/resources/requests/{resource}")),
            field(container, &format!("/resources/limits/{resource}")),
        ),
        None => (0.0, 0.0),
    }
}

/// One `ClientPodStatus` per pod, with the pod's metrics where there are some.
pub fn client_pod_statuses(pods: &[Value], pod_metrics: &[Value]) -> Vec<Value> {
    pods.iter()
        .map(|pod| {
            let name = &pod["metadata"]["name"];
            let namespace = &pod["metadata"]["namespace"];
            let metric = pod_metrics.iter().find(|metric| {
                &metric["metadata"]["name"] == name
                    && (namespace.is_null() || &metric["metadata"]["namespace"] == namespace)
            });
            let spec_containers: &[Value] = pod["spec"]["containers"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            let totals = |resource: &str| {
                spec_containers
                    .iter()
                    .map(|container| declared(Some(container), resource))
                    .fold((0.0, 0.0), |sum, each| (sum.0 + each.0, sum.1 + each.1))
            };
            let mut current = (0.0, 0.0);
            let containers: Vec<Value> = metric
                .and_then(|metric| metric["containers"].as_array())
                .into_iter()
                .flatten()
                .map(|container| {
                    let cpu = field(container, "/usage/cpu");
                    let memory = field(container, "/usage/memory");
                    current = (current.0 + cpu, current.1 + memory);
                    let spec = spec_containers
                        .iter()
                        .find(|spec| spec["name"] == container["name"]);
                    let (cpu_request, cpu_limit) = declared(spec, "cpu");
                    let (memory_request, memory_limit) = declared(spec, "memory");
                    json!({
                        "container": container["name"],
                        "cpuUsage": usage(cpu, cpu_request, cpu_limit, "cpu"),
                        "memoryUsage": usage(memory, memory_request, memory_limit, "memory"),
                    })
                })
                .collect();
            let (cpu_request, cpu_limit) = totals("cpu");
            let (memory_request, memory_limit) = totals("memory");
            json!({
                "pod": pod,
                "cpu": usage(current.0, cpu_request, cpu_limit, "cpu"),
                "memory": usage(current.1, memory_request, memory_limit, "memory"),
                "containers": containers,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_as_cores_and_bytes() {
        assert_eq!(quantity("250m"), 0.25);
        assert_eq!(quantity("2"), 2.0);
        assert_eq!(quantity("128Mi"), 134_217_728.0);
        assert_eq!(quantity("1G"), 1e9);
        assert_eq!(quantity("1500000n"), 0.0015);
        assert_eq!(quantity("1e3"), 1000.0);
        assert_eq!(quantity("nonsense"), 0.0);
    }

    #[test]
    fn usage_is_summed_against_the_spec() {
        let pod = json!({"metadata": {"name": "p", "namespace": "n"}, "spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}}},
            {"name": "b", "resources": {"requests": {"cpu": "50m"}}},
        ]}});
        let metric = json!({"metadata": {"name": "p", "namespace": "n"}, "containers": [
            {"name": "a", "usage": {"cpu": "5m", "memory": "32Mi"}},
            {"name": "b", "usage": {"cpu": "5m", "memory": "32Mi"}},
        ]});
        let status = &client_pod_statuses(&[pod], &[metric])[0];
        assert_eq!(status["pod"]["metadata"]["name"], "p");
        assert_eq!(
            status["cpu"],
            json!({"currentUsage": 0.01, "requestTotal": 0.15, "limitTotal": 1.0})
        );
        assert_eq!(
            status["memory"],
            json!({"currentUsage": 67108864, "requestTotal": 67108864, "limitTotal": 134217728})
        );
        assert_eq!(status["containers"][1]["container"], "b");
        assert_eq!(
            status["containers"][1]["memoryUsage"],
            json!({"currentUsage": 33554432, "requestTotal": 0, "limitTotal": 0})
        );
    }
}
