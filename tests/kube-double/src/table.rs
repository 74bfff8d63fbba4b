//! Server-side printing: the `Table` and `PartialObjectMetadata` forms of objects
//! and lists, as k8s.io/apiserver's `handlers/response.go` (`asTable`,
//! `asPartialObjectMetadata`, `asPartialObjectMetadataList`) produces them.
//!
//! Columns and cells follow kube-apiserver's printers: pods, namespaces and nodes
//! get those of `pkg/printers/internalversion/printers.go` (the apiserver prints
//! with `Wide: true`, so the `priority: 1` columns kubectl shows only with
//! `-o wide` are there too); custom resources get the CustomResourceDefinition
//! default (`Name`, and an `Age` of type `date`); every other type gets
//! `rest.DefaultTableConvertor`'s `Name` and `Created At`.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::negotiation::MetaVersion;
use crate::resources::ResourceType;
use crate::status::ApiError;

const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const CREATION_TIMESTAMP_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// The `includeObject` query parameter of a Table request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    /// Absent or empty means `Metadata`; anything unknown is the apiserver's 400.
    pub(crate) fn parse(value: Option<&str>) -> Result<Self, ApiError> {
        match value.unwrap_or_default() {
            "" | "Metadata" => Ok(IncludeObject::Metadata),
            "None" => Ok(IncludeObject::None),
            "Object" => Ok(IncludeObject::Object),
            other => Err(ApiError::bad_request(format!(
                "Unable to convert to Table as requested: includeObject: Unsupported value: \"{other}\": supported values: \"Metadata\", \"None\", \"Object\""
            ))),
        }
    }
}

/// How to build a Table: its version, what each row carries, and whether the
/// column definitions are included (a watch sends them with its first event only).
#[derive(Clone, Copy, Debug)]
pub(crate) struct TableOptions {
    pub(crate) version: MetaVersion,
    pub(crate) include: IncludeObject,
    pub(crate) no_headers: bool,
}

/// Which printer a resource gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Printer {
    Pod,
    Namespace,
    Node,
    CustomResource,
    Default,
}

impl Printer {
    fn of(resource: &ResourceType) -> Printer {
        if resource.custom {
            return Printer::CustomResource;
        }
        match (resource.group.as_str(), resource.plural.as_str()) {
            ("", "pods") => Printer::Pod,
            ("", "namespaces") => Printer::Namespace,
            ("", "nodes") => Printer::Node,
            _ => Printer::Default,
        }
    }

    fn columns(self) -> Vec<Value> {
        let column = |name: &str, kind: &str, format: &str, priority: u8, description: &str| json!({"name": name, "type": kind, "format": format, "description": description, "priority": priority});
        let name = column("Name", "string", "name", 0, NAME_DESCRIPTION);
        let age = column("Age", "string", "", 0, CREATION_TIMESTAMP_DESCRIPTION);
        match self {
            Printer::Pod => vec![
                name,
                column("Ready", "string", "", 0, "The aggregate readiness state of this pod for accepting traffic."),
                column("Status", "string", "", 0, "The aggregate status of the containers in this pod."),
                column("Restarts", "string", "", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
                age,
                column("IP", "string", "", 1, "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
                column("Node", "string", "", 1, "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod. This field should not be used to express a desire for the pod to be scheduled on a specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename"),
                column("Nominated Node", "string", "", 1, "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled."),
                column("Readiness Gates", "string", "", 1, "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates"),
            ],
            Printer::Namespace => vec![
                name,
                column("Status", "string", "", 0, "The status of the namespace"),
                age,
            ],
            Printer::Node => vec![
                name,
                column("Status", "string", "", 0, "The status of the node"),
                column("Roles", "string", "", 0, "The roles of the node"),
                age,
                column("Version", "string", "", 0, "Kubelet Version reported by the node."),
                column("Internal-IP", "string", "", 1, "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change during the lifetime of a Node. However, there are some exceptions where this may not be possible, such as Pods that inherit a Node's address in its own status or consumers of the downward API (status.hostIP)."),
                column("External-IP", "string", "", 1, "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change during the lifetime of a Node. However, there are some exceptions where this may not be possible, such as Pods that inherit a Node's address in its own status or consumers of the downward API (status.hostIP)."),
                column("OS-Image", "string", "", 1, "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
                column("Kernel-Version", "string", "", 1, "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
                column("Container-Runtime", "string", "", 1, "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
            ],
            Printer::CustomResource => vec![
                name,
                column("Age", "date", "", 0, CREATION_TIMESTAMP_DESCRIPTION),
            ],
            Printer::Default => vec![
                name,
                column("Created At", "date", "", 0, CREATION_TIMESTAMP_DESCRIPTION),
            ],
        }
    }

    /// The cells of an object's row, and the row's conditions, if any.
    fn cells(self, object: &Value, now: DateTime<Utc>) -> (Vec<Value>, Option<Value>) {
        let name = json!(text(object, "/metadata/name"));
        let age = json!(age(object, now));
        match self {
            Printer::Pod => pod_cells(object, now),
            Printer::Namespace => {
                let phase = object
                    .pointer("/status/phase")
                    .and_then(Value::as_str)
                    .filter(|phase| !phase.is_empty())
                    .unwrap_or("Active");
                (vec![name, json!(phase), age], None)
            }
            Printer::Node => (node_cells(object, now), None),
            Printer::CustomResource => (vec![name, age], None),
            Printer::Default => {
                let created = timestamp(object.pointer("/metadata/creationTimestamp"))
                    .map(|stamp| stamp.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_owned());
                (vec![name, json!(created)], None)
            }
        }
    }

    /// Whether a list with no rows has `"rows": []` (the printers and the CRD
    /// convertor make their slice) or `"rows": null` (the default convertor
    /// only appends).
    fn empty_rows(self) -> Value {
        match self {
            Printer::Default => Value::Null,
            _ => json!([]),
        }
    }
}

/// A `Table` of `objects` with the given list metadata (`resourceVersion`,
/// `continue`, `remainingItemCount`; for one object, its resourceVersion).
pub(crate) fn table(
    resource: &ResourceType,
    objects: &[&Value],
    metadata: Value,
    options: TableOptions,
) -> Value {
    let printer = Printer::of(resource);
    let now = Utc::now();
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let (cells, conditions) = printer.cells(object, now);
            let mut row = json!({"cells": cells, "object": row_object(object, options)});
            if let Some(conditions) = conditions {
                row["conditions"] = conditions;
            }
            row
        })
        .collect();
    let rows = if rows.is_empty() {
        printer.empty_rows()
    } else {
        Value::Array(rows)
    };
    let columns = if options.no_headers {
        Value::Null
    } else {
        Value::Array(printer.columns())
    };
    json!({
        "kind": "Table",
        "apiVersion": options.version.api_version(),
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

fn row_object(object: &Value, options: TableOptions) -> Value {
    match options.include {
        IncludeObject::None => Value::Null,
        IncludeObject::Metadata => partial_object_metadata(object, options.version),
        IncludeObject::Object => object.clone(),
    }
}

/// An object's `PartialObjectMetadata`: its whole metadata and nothing else.
pub(crate) fn partial_object_metadata(object: &Value, version: MetaVersion) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": version.api_version(),
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// A `PartialObjectMetadataList`; without items, `items` is null, as the
/// apiserver's `asPartialObjectMetadataList` leaves it.
pub(crate) fn partial_object_metadata_list(
    objects: &[&Value],
    metadata: Value,
    version: MetaVersion,
) -> Value {
    let items = if objects.is_empty() {
        Value::Null
    } else {
        objects
            .iter()
            .map(|object| partial_object_metadata(object, version))
            .collect()
    };
    json!({
        "kind": "PartialObjectMetadataList",
        "apiVersion": version.api_version(),
        "metadata": metadata,
        "items": items,
    })
}

/// The Go type name the apiserver's 406 messages print for an object or a list
/// of a resource (its internal type).
pub(crate) fn go_type_name(resource: &ResourceType, list: bool) -> String {
    if resource.custom {
        return if list {
            "*unstructured.UnstructuredList".to_owned()
        } else {
            "*unstructured.Unstructured".to_owned()
        };
    }
    let package = match resource.group.split('.').next().unwrap_or_default() {
        "" => "core",
        package => package,
    };
    let suffix = if list { "List" } else { "" };
    format!("*{package}.{}{suffix}", resource.kind)
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn timestamp(value: Option<&Value>) -> Option<DateTime<Utc>> {
    value
        .and_then(Value::as_str)
        .and_then(|stamp| DateTime::parse_from_rfc3339(stamp).ok())
        .map(|stamp| stamp.with_timezone(&Utc))
}

/// `translateTimestampSince` of the object's creationTimestamp.
fn age(object: &Value, now: DateTime<Utc>) -> String {
    since(
        timestamp(object.pointer("/metadata/creationTimestamp")),
        now,
    )
}

fn since(stamp: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match stamp {
        Some(stamp) => human_duration(now - stamp),
        None => "<unknown>".to_owned(),
    }
}

/// apimachinery's `duration.HumanDuration`.
pub(crate) fn human_duration(elapsed: chrono::TimeDelta) -> String {
    let seconds = elapsed.num_seconds();
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let rest = seconds % 60;
        return if rest == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{rest}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let rest = minutes % 60;
        return if rest == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{rest}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let rest = hours % 24;
        return if rest == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{rest}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{days}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn items<'a>(object: &'a Value, pointer: &str) -> &'a [Value] {
    object
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The cells of `printPod`: name, ready/total, status, restarts, age, then the
/// wide ones (IP, node, nominated node, readiness gates).
fn pod_cells(pod: &Value, now: DateTime<Utc>) -> (Vec<Value>, Option<Value>) {
    let init_specs = items(pod, "/spec/initContainers");
    let restartable = |name: &str| {
        init_specs
            .iter()
            .any(|spec| spec["name"] == name && spec["restartPolicy"] == "Always")
    };
    let mut total = items(pod, "/spec/containers").len();
    total += init_specs
        .iter()
        .filter(|spec| spec["restartPolicy"] == "Always")
        .count();
    let mut ready = 0;
    let mut restarts = 0;
    let mut restartable_restarts = 0;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let mut last_restartable_restart: Option<DateTime<Utc>> = None;
    let phase = text(pod, "/status/phase");
    let mut reason = match text(pod, "/status/reason") {
        "" => phase.to_owned(),
        reason => reason.to_owned(),
    };
    let conditions = items(pod, "/status/conditions");
    if conditions.iter().any(|condition| {
        condition["type"] == "PodScheduled" && condition["reason"] == "SchedulingGated"
    }) {
        reason = "SchedulingGated".to_owned();
    }
    let row_conditions = match phase {
        "Succeeded" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}]),
        ),
        "Failed" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]),
        ),
        _ => None,
    };
    let later = |current: Option<DateTime<Utc>>, candidate: Option<DateTime<Utc>>| match (
        current, candidate,
    ) {
        (Some(current), Some(candidate)) if candidate > current => Some(candidate),
        (None, candidate) => candidate,
        (current, _) => current,
    };
    let terminated_at = |status: &Value| {
        status
            .pointer("/lastTerminationState/terminated")
            .map(|terminated| timestamp(terminated.get("finishedAt")))
            .unwrap_or_default()
    };

    let mut initializing = false;
    let init_statuses = items(pod, "/status/initContainerStatuses");
    for (index, status) in init_statuses.iter().enumerate() {
        let count = status["restartCount"].as_i64().unwrap_or_default();
        restarts += count;
        last_restart = later(last_restart, terminated_at(status));
        let name = status["name"].as_str().unwrap_or_default();
        if restartable(name) {
            restartable_restarts += count;
            last_restartable_restart = later(last_restartable_restart, terminated_at(status));
        }
        let terminated = status.pointer("/state/terminated");
        let waiting_reason = status
            .pointer("/state/waiting/reason")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if terminated
            .is_some_and(|terminated| terminated["exitCode"].as_i64().unwrap_or_default() == 0)
        {
            continue;
        }
        if restartable(name) && status["started"] == true {
            if status["ready"] == true {
                ready += 1;
            }
            continue;
        }
        if let Some(terminated) = terminated {
            reason = match terminated["reason"].as_str().unwrap_or_default() {
                "" => match terminated["signal"].as_i64().unwrap_or_default() {
                    0 => format!(
                        "Init:ExitCode:{}",
                        terminated["exitCode"].as_i64().unwrap_or_default()
                    ),
                    signal => format!("Init:Signal:{signal}"),
                },
                terminated_reason => format!("Init:{terminated_reason}"),
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{index}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    let initialized = conditions
        .iter()
        .any(|condition| condition["type"] == "Initialized" && condition["status"] == "True");
    if !initializing || initialized {
        restarts = restartable_restarts;
        last_restart = last_restartable_restart;
        let mut has_running = false;
        for status in items(pod, "/status/containerStatuses").iter().rev() {
            restarts += status["restartCount"].as_i64().unwrap_or_default();
            last_restart = later(last_restart, terminated_at(status));
            let waiting_reason = status
                .pointer("/state/waiting/reason")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let terminated = status.pointer("/state/terminated");
            let terminated_reason = terminated
                .and_then(|terminated| terminated["reason"].as_str())
                .unwrap_or_default();
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_owned();
            } else if let (Some(_), false) = (terminated, terminated_reason.is_empty()) {
                reason = terminated_reason.to_owned();
            } else if let Some(terminated) = terminated {
                reason = match terminated["signal"].as_i64().unwrap_or_default() {
                    0 => format!(
                        "ExitCode:{}",
                        terminated["exitCode"].as_i64().unwrap_or_default()
                    ),
                    signal => format!("Signal:{signal}"),
                };
            } else if status["ready"] == true && status.pointer("/state/running").is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = conditions
                .iter()
                .any(|condition| condition["type"] == "Ready" && condition["status"] == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.to_owned();
        }
    }

    let deleting = pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|stamp| !stamp.is_null());
    if deleting && text(pod, "/status/reason") == "NodeLost" {
        reason = "Unknown".to_owned();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_owned();
    }

    let restarts_text = match last_restart {
        Some(stamp) if restarts != 0 => format!("{restarts} ({} ago)", human_duration(now - stamp)),
        _ => restarts.to_string(),
    };
    let or_none = |value: &str| {
        if value.is_empty() {
            "<none>".to_owned()
        } else {
            value.to_owned()
        }
    };
    let pod_ip = items(pod, "/status/podIPs")
        .first()
        .and_then(|ip| ip["ip"].as_str())
        .unwrap_or_default();
    let gates = items(pod, "/spec/readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_owned()
    } else {
        let true_conditions = gates
            .iter()
            .filter(|gate| {
                conditions
                    .iter()
                    .find(|condition| condition["type"] == gate["conditionType"])
                    .is_some_and(|condition| condition["status"] == "True")
            })
            .count();
        format!("{true_conditions}/{}", gates.len())
    };
    let cells = vec![
        json!(text(pod, "/metadata/name")),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_text),
        json!(age(pod, now)),
        json!(or_none(pod_ip)),
        json!(or_none(text(pod, "/spec/nodeName"))),
        json!(or_none(text(pod, "/status/nominatedNodeName"))),
        json!(readiness_gates),
    ];
    (cells, row_conditions)
}

/// The cells of `printNode`: name, status, roles, age, version, then the wide
/// ones (internal IP, external IP, OS image, kernel, container runtime).
fn node_cells(node: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut status: Vec<String> = items(node, "/status/conditions")
        .iter()
        .rev()
        .find(|condition| condition["type"] == "Ready")
        .map(|condition| {
            if condition["status"] == "True" {
                "Ready".to_owned()
            } else {
                "NotReady".to_owned()
            }
        })
        .into_iter()
        .collect();
    if status.is_empty() {
        status.push("Unknown".to_owned());
    }
    if node.pointer("/spec/unschedulable") == Some(&Value::Bool(true)) {
        status.push("SchedulingDisabled".to_owned());
    }
    let mut roles: Vec<&str> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| {
            if let Some(role) = key.strip_prefix("node-role.kubernetes.io/") {
                (!role.is_empty()).then_some(role)
            } else if key == "kubernetes.io/role" {
                value.as_str().filter(|role| !role.is_empty())
            } else {
                None
            }
        })
        .collect();
    roles.sort_unstable();
    roles.dedup();
    let roles = if roles.is_empty() {
        "<none>".to_owned()
    } else {
        roles.join(",")
    };
    let address = |kind: &str| {
        items(node, "/status/addresses")
            .iter()
            .find(|address| address["type"] == kind)
            .and_then(|address| address["address"].as_str())
            .unwrap_or("<none>")
            .to_owned()
    };
    let info = |field: &str| match text(node, &format!("/status/nodeInfo/{field}")) {
        "" => "<unknown>".to_owned(),
        value => value.to_owned(),
    };
    vec![
        json!(text(node, "/metadata/name")),
        json!(status.join(",")),
        json!(roles),
        json!(age(node, now)),
        json!(text(node, "/status/nodeInfo/kubeletVersion")),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> chrono::TimeDelta {
        chrono::TimeDelta::seconds(seconds)
    }

    #[test]
    fn human_durations_match_apimachinery() {
        assert_eq!(human_duration(at(-5)), "<invalid>");
        assert_eq!(human_duration(at(-1)), "0s");
        assert_eq!(human_duration(at(59)), "59s");
        assert_eq!(human_duration(at(119)), "119s");
        assert_eq!(human_duration(at(150)), "2m30s");
        assert_eq!(human_duration(at(600)), "10m");
        assert_eq!(human_duration(at(3 * 3600 + 60)), "3h1m");
        assert_eq!(human_duration(at(9 * 3600)), "9h");
        assert_eq!(human_duration(at(50 * 3600)), "2d2h");
        assert_eq!(human_duration(at(30 * 86400)), "30d");
        assert_eq!(human_duration(at(800 * 86400)), "2y70d");
        assert_eq!(human_duration(at(3000 * 86400)), "8y");
    }

    fn pod(status: Value) -> Value {
        json!({
            "metadata": {"name": "api-1", "namespace": "shop", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "app"}, {"name": "sidecar"}], "nodeName": "node-a"},
            "status": status,
        })
    }

    #[test]
    fn pod_cells_come_from_the_container_statuses() {
        let now = Utc::now();
        let running = pod(json!({
            "phase": "Running",
            "podIPs": [{"ip": "10.0.0.7"}],
            "containerStatuses": [
                {"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}},
                {"name": "sidecar", "ready": true, "restartCount": 2, "state": {"running": {}},
                 "lastTerminationState": {"terminated": {"finishedAt": (now - chrono::TimeDelta::seconds(30)).to_rfc3339()}}},
            ],
        }));
        let (cells, conditions) = pod_cells(&running, now);
        assert_eq!(cells[1], "2/2");
        assert_eq!(cells[2], "Running");
        assert_eq!(cells[3], "2 (30s ago)");
        assert_eq!(cells[5], "10.0.0.7");
        assert_eq!(cells[6], "node-a");
        assert_eq!(cells[7], "<none>");
        assert!(conditions.is_none());

        let waiting = pod(json!({
            "phase": "Pending",
            "containerStatuses": [{"name": "app", "ready": false, "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}],
        }));
        let (cells, _) = pod_cells(&waiting, now);
        assert_eq!(cells[1], "0/2");
        assert_eq!(cells[2], "CrashLoopBackOff");
        assert_eq!(cells[3], "4");

        let bare = pod(json!({}));
        let (cells, _) = pod_cells(&bare, now);
        assert_eq!(cells[1], "0/2");
        assert_eq!(cells[2], "");
        assert_eq!(cells[3], "0");
        assert_eq!(cells[5], "<none>");

        let (_, conditions) = pod_cells(&pod(json!({"phase": "Succeeded"})), now);
        assert_eq!(conditions.unwrap()[0]["reason"], "Succeeded");
    }

    #[test]
    fn pending_init_containers_show_in_the_status() {
        let mut initializing = pod(json!({
            "phase": "Pending",
            "initContainerStatuses": [{"name": "setup", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}],
        }));
        initializing["spec"]["initContainers"] = json!([{"name": "setup"}]);
        let (cells, _) = pod_cells(&initializing, Utc::now());
        assert_eq!(cells[2], "Init:0/1");
    }

    #[test]
    fn node_cells_read_conditions_roles_and_info() {
        let node = json!({
            "metadata": {"name": "node-a", "creationTimestamp": "2020-01-01T00:00:00Z",
                         "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "worker"}},
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian"},
            },
        });
        let cells = node_cells(&node, Utc::now());
        assert_eq!(cells[1], "Ready,SchedulingDisabled");
        assert_eq!(cells[2], "control-plane,worker");
        assert_eq!(cells[4], "v1.32.0");
        assert_eq!(cells[5], "10.0.0.1");
        assert_eq!(cells[6], "<none>");
        assert_eq!(cells[7], "Debian");
        assert_eq!(cells[8], "<unknown>");
        let bare = json!({"metadata": {"name": "node-b"}});
        let cells = node_cells(&bare, Utc::now());
        assert_eq!(cells[1], "Unknown");
        assert_eq!(cells[2], "<none>");
        assert_eq!(cells[3], "<unknown>");
    }

    #[test]
    fn every_row_has_a_cell_per_column() {
        for printer in [
            Printer::Pod,
            Printer::Namespace,
            Printer::Node,
            Printer::CustomResource,
            Printer::Default,
        ] {
            let (cells, _) = printer.cells(&json!({"metadata": {"name": "x"}}), Utc::now());
            assert_eq!(cells.len(), printer.columns().len(), "{printer:?}");
        }
    }

    #[test]
    fn go_type_names_follow_the_internal_packages() {
        let deployments = ResourceType::custom("apps", "v1", "deployments", "Deployment", true);
        let deployments = ResourceType {
            custom: false,
            ..deployments
        };
        assert_eq!(go_type_name(&deployments, true), "*apps.DeploymentList");
        let pods = ResourceType {
            custom: false,
            ..ResourceType::custom("", "v1", "pods", "Pod", true)
        };
        assert_eq!(go_type_name(&pods, false), "*core.Pod");
    }
}
