//! The object store: every object the double holds, one global, monotonically
//! increasing resourceVersion, and the history of changes that watches replay.
//!
//! All writes go through one lock, and each change is published to watchers while
//! that lock is held, so a watcher that subscribes under the same lock sees every
//! change after its snapshot exactly once. The store knows nothing of HTTP.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Map, Value};
use tokio::sync::broadcast;

use crate::resources::ResourceType;
use crate::selectors::Selection;

/// How many changes are kept for watches that resume from a resourceVersion.
pub(crate) const HISTORY_LIMIT: usize = 10_000;

/// How many changes a watcher may fall behind before its watch is closed.
const WATCHER_BACKLOG: usize = 16_384;

/// Identifies a resource independently of its version.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ResourceKey {
    group: String,
    plural: String,
}

impl From<&ResourceType> for ResourceKey {
    fn from(resource: &ResourceType) -> Self {
        ResourceKey {
            group: resource.group.clone(),
            plural: resource.plural.clone(),
        }
    }
}

/// An object's place within its resource; cluster-scoped objects have an empty
/// namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ObjectKey {
    namespace: String,
    name: String,
}

/// What happened to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as watchers receive it.
#[derive(Debug)]
pub(crate) struct StoredEvent {
    pub(crate) resource: ResourceKey,
    pub(crate) event_type: EventType,
    /// The object after the change (for a deletion, its last state).
    pub(crate) object: Value,
    /// The object before a modification, so watchers can tell when it enters or
    /// leaves their selector.
    pub(crate) previous: Option<Value>,
    pub(crate) resource_version: u64,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("{} \"{name}\" not found", resource.qualified_plural())]
    NotFound {
        resource: Box<ResourceType>,
        name: String,
    },
    #[error("{} \"{name}\" already exists", resource.qualified_plural())]
    AlreadyExists {
        resource: Box<ResourceType>,
        name: String,
    },
    #[error("conflict on {} \"{name}\": {cause}", resource.qualified_plural())]
    Conflict {
        resource: Box<ResourceType>,
        name: String,
        cause: String,
    },
    #[error("{} \"{name}\" is invalid: {cause}", resource.kind)]
    Invalid {
        resource: Box<ResourceType>,
        name: String,
        cause: String,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Expired(String),
}

/// Which part of an object a write replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteScope {
    /// The whole object (status included: there is no spec/status separation).
    Object,
    /// Only `.status`, as the `status` subresource does.
    Status,
}

/// Preconditions of a delete (`DeleteOptions.preconditions`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Preconditions {
    pub(crate) uid: Option<String>,
    pub(crate) resource_version: Option<String>,
}

/// Where a watch starts: a snapshot of the current objects (sent as ADDED) or the
/// changes after a resourceVersion, then everything on `receiver`.
pub(crate) struct WatchStart {
    pub(crate) snapshot: Vec<Value>,
    pub(crate) replay: Vec<Arc<StoredEvent>>,
    pub(crate) receiver: broadcast::Receiver<Arc<StoredEvent>>,
    pub(crate) resource_version: u64,
}

struct StoreState {
    resource_version: u64,
    objects: HashMap<ResourceKey, BTreeMap<ObjectKey, Value>>,
    history: VecDeque<Arc<StoredEvent>>,
    /// The newest resourceVersion no longer in `history`: watches may resume from
    /// it or anything newer.
    history_floor: u64,
}

pub(crate) struct Store {
    namespaces: ResourceType,
    state: Mutex<StoreState>,
    events: broadcast::Sender<Arc<StoredEvent>>,
}

impl Store {
    /// An empty store; `namespaces` is the resource whose objects namespaced objects
    /// need.
    pub(crate) fn new(namespaces: &ResourceType) -> Self {
        Store {
            namespaces: namespaces.clone(),
            state: Mutex::new(StoreState {
                resource_version: 0,
                objects: HashMap::new(),
                history: VecDeque::new(),
                history_floor: 0,
            }),
            events: broadcast::channel(WATCHER_BACKLOG).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, StoreState> {
        self.state.lock().expect("store lock poisoned")
    }

    /// The store's current resourceVersion: any write changes it.
    pub(crate) fn resource_version(&self) -> u64 {
        self.lock().resource_version
    }

    /// Creates a namespace unless it exists.
    pub(crate) fn ensure_namespace(&self, namespace: &str) {
        let mut state = self.lock();
        self.ensure_namespace_locked(&mut state, namespace);
    }

    fn ensure_namespace_locked(&self, state: &mut StoreState, namespace: &str) {
        if state.namespace_exists(&self.namespaces, namespace) {
            return;
        }
        let mut object = json!({"metadata": {"name": namespace}});
        prepare(&self.namespaces, None, &mut object).expect("a namespace object is valid");
        initialize_new(&self.namespaces, &mut object);
        self.commit(state, &self.namespaces, EventType::Added, object, None);
    }

    pub(crate) fn get(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, StoreError> {
        let state = self.lock();
        state
            .object(resource, namespace, name)
            .cloned()
            .ok_or_else(|| not_found(resource, name))
    }

    /// The objects of a resource (in one namespace, or all) that match, sorted by
    /// namespace and name, and the current resourceVersion.
    pub(crate) fn list(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        selection: &Selection,
    ) -> (Vec<Value>, u64) {
        let state = self.lock();
        let items = state
            .objects_of(resource, namespace)
            .filter(|object| selection.matches(object))
            .cloned()
            .collect();
        (items, state.resource_version)
    }

    /// Like [`list`](Self::list), but hands the matching objects to `render`
    /// by reference while the store is locked, so a large list is serialized
    /// without copying every object first.
    pub(crate) fn list_with<R>(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        selection: &Selection,
        render: impl FnOnce(Vec<&Value>, u64) -> R,
    ) -> R {
        let state = self.lock();
        let items = state
            .objects_of(resource, namespace)
            .filter(|object| selection.matches(object))
            .collect();
        render(items, state.resource_version)
    }

    pub(crate) fn create(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        mut object: Value,
        dry_run: bool,
    ) -> Result<Value, StoreError> {
        prepare(resource, namespace, &mut object)?;
        let mut state = self.lock();
        self.create_locked(&mut state, resource, namespace, object, dry_run)
    }

    fn create_locked(
        &self,
        state: &mut StoreState,
        resource: &ResourceType,
        namespace: Option<&str>,
        mut object: Value,
        dry_run: bool,
    ) -> Result<Value, StoreError> {
        assign_generated_name(&mut object);
        let name = name_of(&object).to_owned();
        validate_name(resource, &name)?;
        if !resource_version_of(&object).is_empty() {
            return Err(StoreError::BadRequest(
                "resourceVersion should not be set on objects to be created".to_owned(),
            ));
        }
        if let Some(namespace) = namespace {
            if !state.namespace_exists(&self.namespaces, namespace) {
                return Err(not_found(&self.namespaces, namespace));
            }
        }
        if state.object(resource, namespace, &name).is_some() {
            return Err(StoreError::AlreadyExists {
                resource: Box::new(resource.clone()),
                name,
            });
        }
        initialize_new(resource, &mut object);
        if dry_run {
            return Ok(object);
        }
        Ok(self.commit(state, resource, EventType::Added, object, None))
    }

    /// Replaces an object (PUT), failing on a stale `metadata.resourceVersion`.
    pub(crate) fn update(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        mut object: Value,
        scope: WriteScope,
        dry_run: bool,
    ) -> Result<Value, StoreError> {
        prepare(resource, namespace, &mut object)?;
        match name_of(&object) {
            "" => object["metadata"]["name"] = json!(name),
            given if given != name => {
                return Err(StoreError::BadRequest(format!(
                    "the name of the object ({given}) does not match the name on the URL ({name})"
                )))
            }
            _ => {}
        }
        let mut state = self.lock();
        let current = state
            .object(resource, namespace, name)
            .cloned()
            .ok_or_else(|| not_found(resource, name))?;
        self.update_locked(&mut state, resource, current, object, scope, dry_run)
    }

    /// Patches an object: `apply` turns the current object (or `{}` when it is
    /// missing and `create_missing`) into the new one. Returns the result and
    /// whether it was created.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn patch(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        scope: WriteScope,
        create_missing: bool,
        dry_run: bool,
        apply: impl FnOnce(&Value) -> Result<Value, StoreError>,
    ) -> Result<(Value, bool), StoreError> {
        let mut state = self.lock();
        let Some(current) = state.object(resource, namespace, name).cloned() else {
            if !create_missing || scope == WriteScope::Status {
                return Err(not_found(resource, name));
            }
            let mut object = apply(&json!({}))?;
            prepare(resource, namespace, &mut object)?;
            if name_of(&object) != name {
                return Err(invalid(resource, name, "metadata.name: Invalid value: the name of the object does not match the name on the URL"));
            }
            let created = self.create_locked(&mut state, resource, namespace, object, dry_run)?;
            return Ok((created, true));
        };
        let mut patched = apply(&current)?;
        prepare(resource, namespace, &mut patched)?;
        if name_of(&patched) != name {
            return Err(invalid(
                resource,
                name,
                "metadata.name: Invalid value: field is immutable",
            ));
        }
        let updated = self.update_locked(&mut state, resource, current, patched, scope, dry_run)?;
        Ok((updated, false))
    }

    fn update_locked(
        &self,
        state: &mut StoreState,
        resource: &ResourceType,
        current: Value,
        mut object: Value,
        scope: WriteScope,
        dry_run: bool,
    ) -> Result<Value, StoreError> {
        let name = name_of(&current).to_owned();
        let current_version = resource_version_of(&current).to_owned();
        let given_version = resource_version_of(&object);
        if !given_version.is_empty() && given_version != current_version {
            return Err(StoreError::Conflict {
                resource: Box::new(resource.clone()),
                name,
                cause: "the object has been modified; please apply your changes to the latest version and try again".to_owned(),
            });
        }
        if scope == WriteScope::Status {
            let status = object.get("status").cloned().unwrap_or(Value::Null);
            object = current.clone();
            object["status"] = status;
        }
        for field in ["uid", "creationTimestamp", "resourceVersion"] {
            match current["metadata"].get(field) {
                Some(value) => object["metadata"][field] = value.clone(),
                None => {
                    if let Some(metadata) = object["metadata"].as_object_mut() {
                        metadata.remove(field);
                    }
                }
            }
        }
        let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
        let changed_beyond_metadata =
            without_metadata_and_status(&current) != without_metadata_and_status(&object);
        object["metadata"]["generation"] = json!(if changed_beyond_metadata {
            generation + 1
        } else {
            generation
        });
        if object == current || dry_run {
            return Ok(object);
        }
        Ok(self.commit(state, resource, EventType::Modified, object, Some(current)))
    }

    /// Deletes an object and returns its last state; deleting a namespace deletes
    /// everything in it.
    pub(crate) fn delete(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        preconditions: &Preconditions,
        dry_run: bool,
    ) -> Result<Value, StoreError> {
        let mut state = self.lock();
        let current = state
            .object(resource, namespace, name)
            .cloned()
            .ok_or_else(|| not_found(resource, name))?;
        let conflict = |cause: String| StoreError::Conflict {
            resource: Box::new(resource.clone()),
            name: name.to_owned(),
            cause,
        };
        if let Some(uid) = &preconditions.uid {
            let actual = current["metadata"]["uid"].as_str().unwrap_or_default();
            if uid != actual {
                return Err(conflict(format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                )));
            }
        }
        if let Some(version) = &preconditions.resource_version {
            let actual = resource_version_of(&current);
            if version != actual {
                return Err(conflict(format!(
                    "Precondition failed: ResourceVersion in precondition: {version}, ResourceVersion in object meta: {actual}"
                )));
            }
        }
        if dry_run {
            return Ok(current);
        }
        let deleted = self.delete_locked(&mut state, resource, current);
        if ResourceKey::from(resource) == ResourceKey::from(&self.namespaces) {
            self.delete_namespace_contents(&mut state, name);
        }
        Ok(deleted)
    }

    fn delete_locked(
        &self,
        state: &mut StoreState,
        resource: &ResourceType,
        current: Value,
    ) -> Value {
        self.commit(state, resource, EventType::Deleted, current, None)
    }

    fn delete_namespace_contents(&self, state: &mut StoreState, namespace: &str) {
        let keys: Vec<ResourceKey> = state.objects.keys().cloned().collect();
        for key in keys {
            let doomed: Vec<Value> = state.objects[&key]
                .iter()
                .filter(|(object_key, _)| object_key.namespace == namespace)
                .map(|(_, object)| object.clone())
                .collect();
            for object in doomed {
                self.commit_keyed(state, key.clone(), EventType::Deleted, object, None);
            }
        }
    }

    /// Deletes every matching object of a resource (in one namespace, or all).
    pub(crate) fn delete_collection(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        selection: &Selection,
        dry_run: bool,
    ) -> Vec<Value> {
        let mut state = self.lock();
        let doomed: Vec<Value> = state
            .objects_of(resource, namespace)
            .filter(|object| selection.matches(object))
            .cloned()
            .collect();
        if dry_run {
            return doomed;
        }
        doomed
            .into_iter()
            .map(|object| self.delete_locked(&mut state, resource, object))
            .collect()
    }

    /// Stores an object as given, creating or replacing it and its namespace.
    pub(crate) fn put(
        &self,
        resource: &ResourceType,
        mut object: Value,
    ) -> Result<Value, StoreError> {
        let namespace = resource.namespaced.then(|| {
            object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_owned()
        });
        prepare(resource, namespace.as_deref(), &mut object)?;
        let name = name_of(&object).to_owned();
        validate_name(resource, &name)?;
        let mut state = self.lock();
        if let Some(namespace) = &namespace {
            self.ensure_namespace_locked(&mut state, namespace);
        }
        let current = state.object(resource, namespace.as_deref(), &name).cloned();
        let metadata = object["metadata"].as_object_mut().expect("prepared");
        metadata.remove("resourceVersion");
        if let Some(current) = &current {
            for field in ["uid", "creationTimestamp"] {
                if !metadata.contains_key(field) {
                    metadata.insert(field.to_owned(), current["metadata"][field].clone());
                }
            }
        }
        fill_missing_metadata(metadata);
        let event_type = if current.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        Ok(self.commit(&mut state, resource, event_type, object, current))
    }

    /// Starts a watch: from a snapshot when `since` is `None`, else from the changes
    /// after `since` (which must still be in the history).
    pub(crate) fn watch(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        since: Option<u64>,
    ) -> Result<WatchStart, StoreError> {
        let state = self.lock();
        let receiver = self.events.subscribe();
        let key = ResourceKey::from(resource);
        let (snapshot, replay) = match since {
            None => (
                state.objects_of(resource, namespace).cloned().collect(),
                Vec::new(),
            ),
            Some(since) if since < state.history_floor => {
                return Err(StoreError::Expired(format!(
                    "too old resource version: {since} ({})",
                    state.history_floor + 1
                )))
            }
            Some(since) => (
                Vec::new(),
                state
                    .history
                    .iter()
                    .filter(|event| event.resource_version > since && event.resource == key)
                    .cloned()
                    .collect(),
            ),
        };
        Ok(WatchStart {
            snapshot,
            replay,
            receiver,
            resource_version: state.resource_version,
        })
    }

    fn commit(
        &self,
        state: &mut StoreState,
        resource: &ResourceType,
        event_type: EventType,
        object: Value,
        previous: Option<Value>,
    ) -> Value {
        self.commit_keyed(
            state,
            ResourceKey::from(resource),
            event_type,
            object,
            previous,
        )
    }

    /// Applies a change under the lock: a new resourceVersion, the map, the history
    /// and the watchers.
    fn commit_keyed(
        &self,
        state: &mut StoreState,
        resource: ResourceKey,
        event_type: EventType,
        mut object: Value,
        previous: Option<Value>,
    ) -> Value {
        state.resource_version += 1;
        let resource_version = state.resource_version;
        object["metadata"]["resourceVersion"] = json!(resource_version.to_string());
        let object_key = ObjectKey {
            namespace: object["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            name: name_of(&object).to_owned(),
        };
        let objects = state.objects.entry(resource.clone()).or_default();
        if event_type == EventType::Deleted {
            objects.remove(&object_key);
        } else {
            objects.insert(object_key, object.clone());
        }
        let event = Arc::new(StoredEvent {
            resource,
            event_type,
            object: object.clone(),
            previous,
            resource_version,
        });
        state.history.push_back(event.clone());
        if state.history.len() > HISTORY_LIMIT {
            if let Some(evicted) = state.history.pop_front() {
                state.history_floor = evicted.resource_version;
            }
        }
        // Nobody watching is not an error.
        let _ = self.events.send(event);
        object
    }
}

impl StoreState {
    fn object(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<&Value> {
        let key = ObjectKey {
            namespace: namespace.unwrap_or_default().to_owned(),
            name: name.to_owned(),
        };
        self.objects.get(&ResourceKey::from(resource))?.get(&key)
    }

    fn objects_of<'a>(
        &'a self,
        resource: &ResourceType,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects
            .get(&ResourceKey::from(resource))
            .into_iter()
            .flat_map(|objects| objects.iter())
            .filter(move |(key, _)| namespace.is_none_or(|namespace| key.namespace == namespace))
            .map(|(_, object)| object)
    }

    fn namespace_exists(&self, namespaces: &ResourceType, namespace: &str) -> bool {
        self.object(namespaces, None, namespace).is_some()
    }
}

fn not_found(resource: &ResourceType, name: &str) -> StoreError {
    StoreError::NotFound {
        resource: Box::new(resource.clone()),
        name: name.to_owned(),
    }
}

fn invalid(resource: &ResourceType, name: &str, cause: &str) -> StoreError {
    StoreError::Invalid {
        resource: Box::new(resource.clone()),
        name: name.to_owned(),
        cause: cause.to_owned(),
    }
}

pub(crate) fn name_of(object: &Value) -> &str {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn resource_version_of(object: &Value) -> &str {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Checks a request body against the resource and the namespace of the URL, and
/// sets its apiVersion, kind and namespace.
fn prepare(
    resource: &ResourceType,
    namespace: Option<&str>,
    object: &mut Value,
) -> Result<(), StoreError> {
    let Some(fields) = object.as_object_mut() else {
        return Err(StoreError::BadRequest(
            "the request body must be a JSON object".to_owned(),
        ));
    };
    if let Some(kind) = fields.get("kind").and_then(Value::as_str) {
        if kind != resource.kind {
            return Err(StoreError::BadRequest(format!(
                "the kind of the object ({kind}) does not match the resource ({})",
                resource.qualified_plural()
            )));
        }
    }
    fields.insert("apiVersion".to_owned(), json!(resource.api_version()));
    fields.insert("kind".to_owned(), json!(resource.kind));
    let metadata = fields
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(metadata) = metadata.as_object_mut() else {
        return Err(StoreError::BadRequest(
            "metadata must be an object".to_owned(),
        ));
    };
    match (resource.namespaced, namespace) {
        (true, Some(namespace)) => {
            let given = metadata
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !given.is_empty() && given != namespace {
                return Err(StoreError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request".to_owned(),
                ));
            }
            metadata.insert("namespace".to_owned(), json!(namespace));
        }
        (true, None) => {
            return Err(StoreError::BadRequest(format!(
                "{} are namespaced: the request must name a namespace",
                resource.qualified_plural()
            )))
        }
        (false, _) => {
            metadata.remove("namespace");
        }
    }
    Ok(())
}

fn assign_generated_name(object: &mut Value) {
    if !name_of(object).is_empty() {
        return;
    }
    if let Some(prefix) = object
        .pointer("/metadata/generateName")
        .and_then(Value::as_str)
        .filter(|prefix| !prefix.is_empty())
    {
        let suffix: String = uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .chars()
            .take(5)
            .collect();
        object["metadata"]["name"] = json!(format!("{prefix}{suffix}"));
    }
}

/// Names must be RFC 1123 subdomains, as for most Kubernetes types.
fn validate_name(resource: &ResourceType, name: &str) -> Result<(), StoreError> {
    if name.is_empty() {
        return Err(invalid(
            resource,
            name,
            "metadata.name: Required value: name or generateName is required",
        ));
    }
    let valid = name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(invalid(
            resource,
            name,
            &format!("metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
        ))
    }
}

/// Sets what the API server sets on creation.
fn initialize_new(resource: &ResourceType, object: &mut Value) {
    let metadata = object["metadata"].as_object_mut().expect("prepared");
    metadata.remove("uid");
    metadata.remove("creationTimestamp");
    metadata.remove("generation");
    fill_missing_metadata(metadata);
    if resource.group.is_empty() && resource.plural == "namespaces" {
        object["spec"]["finalizers"] = json!(["kubernetes"]);
        object["status"]["phase"] = json!("Active");
    }
}

fn fill_missing_metadata(metadata: &mut Map<String, Value>) {
    metadata
        .entry("uid")
        .or_insert_with(|| json!(uuid::Uuid::new_v4().to_string()));
    metadata
        .entry("creationTimestamp")
        .or_insert_with(|| json!(now()));
    metadata.entry("generation").or_insert_with(|| json!(1));
}

/// The current time as Kubernetes writes timestamps.
pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn without_metadata_and_status(object: &Value) -> Value {
    let mut content = object.clone();
    if let Some(fields) = content.as_object_mut() {
        fields.remove("metadata");
        fields.remove("status");
    }
    content
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Resources;

    fn fixture() -> (Store, Resources) {
        let resources = Resources::new(false);
        let store = Store::new(&resources.namespaces());
        store.ensure_namespace("default");
        (store, resources)
    }

    fn configmaps(resources: &Resources) -> Arc<ResourceType> {
        resources.find("", "v1", "configmaps").unwrap()
    }

    #[test]
    fn create_sets_server_fields_and_rejects_duplicates() {
        let (store, resources) = fixture();
        let configmaps = configmaps(&resources);
        let created = store
            .create(
                &configmaps,
                Some("default"),
                json!({"metadata": {"name": "a"}, "data": {"k": "v"}}),
                false,
            )
            .unwrap();
        assert_eq!(created["kind"], "ConfigMap");
        assert_eq!(created["apiVersion"], "v1");
        assert_eq!(created["metadata"]["namespace"], "default");
        assert_eq!(created["metadata"]["generation"], 1);
        assert!(created["metadata"]["uid"].as_str().unwrap().len() > 10);
        assert!(created["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap()
            .ends_with('Z'));
        let duplicate = store.create(
            &configmaps,
            Some("default"),
            json!({"metadata": {"name": "a"}}),
            false,
        );
        assert!(matches!(duplicate, Err(StoreError::AlreadyExists { .. })));
    }

    #[test]
    fn objects_need_an_existing_namespace() {
        let (store, resources) = fixture();
        let result = store.create(
            &configmaps(&resources),
            Some("nowhere"),
            json!({"metadata": {"name": "a"}}),
            false,
        );
        assert!(matches!(result, Err(StoreError::NotFound { name, .. }) if name == "nowhere"));
    }

    #[test]
    fn stale_updates_conflict_and_noop_updates_keep_the_version() {
        let (store, resources) = fixture();
        let configmaps = configmaps(&resources);
        let created = store
            .create(
                &configmaps,
                Some("default"),
                json!({"metadata": {"name": "a"}, "data": {"k": "1"}}),
                false,
            )
            .unwrap();
        let mut changed = created.clone();
        changed["data"]["k"] = json!("2");
        let updated = store
            .update(
                &configmaps,
                Some("default"),
                "a",
                changed.clone(),
                WriteScope::Object,
                false,
            )
            .unwrap();
        assert_ne!(
            updated["metadata"]["resourceVersion"],
            created["metadata"]["resourceVersion"]
        );
        assert_eq!(updated["metadata"]["generation"], 2);
        let stale = store.update(
            &configmaps,
            Some("default"),
            "a",
            changed,
            WriteScope::Object,
            false,
        );
        assert!(matches!(stale, Err(StoreError::Conflict { .. })));
        let again = store
            .update(
                &configmaps,
                Some("default"),
                "a",
                updated.clone(),
                WriteScope::Object,
                false,
            )
            .unwrap();
        assert_eq!(again, updated);
    }

    #[test]
    fn status_writes_touch_only_status() {
        let (store, resources) = fixture();
        let pods = resources.pods();
        store
            .create(
                &pods,
                Some("default"),
                json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}),
                false,
            )
            .unwrap();
        let body = json!({"metadata": {"name": "p"}, "spec": {"containers": []}, "status": {"phase": "Running"}});
        let updated = store
            .update(&pods, Some("default"), "p", body, WriteScope::Status, false)
            .unwrap();
        assert_eq!(updated["status"]["phase"], "Running");
        assert_eq!(updated["spec"]["containers"][0]["name"], "c");
        assert_eq!(updated["metadata"]["generation"], 1);
    }

    #[test]
    fn deleting_a_namespace_deletes_its_objects() {
        let (store, resources) = fixture();
        let configmaps = configmaps(&resources);
        store.ensure_namespace("shop");
        store
            .create(
                &configmaps,
                Some("shop"),
                json!({"metadata": {"name": "a"}}),
                false,
            )
            .unwrap();
        store
            .delete(
                &resources.namespaces(),
                None,
                "shop",
                &Preconditions::default(),
                false,
            )
            .unwrap();
        let (left, _) = store.list(&configmaps, None, &Selection::default());
        assert!(left.is_empty());
    }

    #[test]
    fn watches_resume_only_within_the_history() {
        let (store, resources) = fixture();
        let configmaps = configmaps(&resources);
        for index in 0..(HISTORY_LIMIT + 5) {
            store
                .put(
                    &configmaps,
                    json!({"metadata": {"name": "churn"}, "data": {"i": index.to_string()}}),
                )
                .unwrap();
        }
        assert!(matches!(
            store.watch(&configmaps, None, Some(1)),
            Err(StoreError::Expired(_))
        ));
        let (_, latest) = store.list(&configmaps, None, &Selection::default());
        let start = store.watch(&configmaps, None, Some(latest - 2)).unwrap();
        assert_eq!(start.replay.len(), 2);
    }

    #[test]
    fn generated_names_and_invalid_names() {
        let (store, resources) = fixture();
        let configmaps = configmaps(&resources);
        let created = store
            .create(
                &configmaps,
                Some("default"),
                json!({"metadata": {"generateName": "job-"}}),
                false,
            )
            .unwrap();
        assert!(name_of(&created).starts_with("job-"));
        assert_eq!(name_of(&created).len(), 9);
        let invalid = store.create(
            &configmaps,
            Some("default"),
            json!({"metadata": {"name": "Bad_Name"}}),
            false,
        );
        assert!(matches!(invalid, Err(StoreError::Invalid { .. })));
    }
}
