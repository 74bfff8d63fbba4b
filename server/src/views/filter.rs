//! Filtering list and watch responses object by object, as they stream.
//!
//! A list (`items`: a `PodList`, a `PartialObjectMetadataList`, any `…List`)
//! or a `Table` (`rows`, each with its `object`) is cut into its top-level
//! members; the array is cut into its elements, and each is kept or dropped
//! by the [`Judge`]. Only one element is held at a time, so a 100 MB list
//! costs the memory of its largest object. The list's `remainingItemCount`
//! is dropped (it counts objects the caller may not see); `continue` is kept,
//! so paging still works (a page may come back short).
//!
//! A watch is a stream of events. Each is judged by the object it carries
//! (a `Table` event by its row's object); the filter remembers which objects
//! it has shown, so an object that leaves the view (a label changed) is sent
//! as `DELETED` and one that enters it as `ADDED`, as the API server does
//! for a label-selected watch.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::scan::{self, object_prefix, whitespace, Member, Prefix, ScanError, ValueScan};

/// The metadata of one object, as much as a view judges, borrowed from the
/// response where it can be.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ObjectMeta<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow)]
    pub namespace: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub uid: Option<Cow<'a, str>>,
    #[serde(rename = "resourceVersion", borrow)]
    pub resource_version: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub labels: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
}

impl<'a> ObjectMeta<'a> {
    /// Reads `metadata` (an object's `metadata` value) whose members were
    /// found as written (`members`, relative to it): its strings are
    /// borrowed where they hold no escape, and only they are parsed. `None`
    /// when it is not metadata as a JSON parser would read it (a field of
    /// the wrong type, or named twice).
    pub fn read(metadata: &'a [u8], members: Option<&[Member<'a>]>) -> Option<Self> {
        let Some(members) = members else {
            return serde_json::from_slice(metadata).ok();
        };
        let mut read = ObjectMeta::default();
        let mut seen = [false; 5];
        for member in members {
            let value = &metadata[member.value.clone()];
            let field = match member.key {
                b"name" => 0,
                b"namespace" => 1,
                b"uid" => 2,
                b"resourceVersion" => 3,
                b"labels" => 4,
                _ => continue,
            };
            if std::mem::replace(&mut seen[field], true) {
                return None;
            }
            match field {
                0 => read.name = json_string(value)?,
                1 => read.namespace = nullable(value, json_string)?,
                2 => read.uid = nullable(value, json_string)?,
                3 => read.resource_version = nullable(value, json_string)?,
                _ => read.labels = nullable(value, json_labels)?,
            }
        }
        Some(read)
    }
}

/// `None` for JSON `null`, else what `read` reads (failing as it fails).
fn nullable<'a, T>(value: &'a [u8], read: impl FnOnce(&'a [u8]) -> Option<T>) -> Option<Option<T>> {
    if value == b"null" {
        Some(None)
    } else {
        read(value).map(Some)
    }
}

/// A JSON string value: borrowed when it holds no escape (and no control
/// byte, which JSON forbids), else parsed.
fn json_string(value: &[u8]) -> Option<Cow<'_, str>> {
    match value {
        [b'"', inner @ .., b'"'] if !inner.iter().any(|&byte| byte == b'\\' || byte < 0x20) => {
            std::str::from_utf8(inner).ok().map(Cow::Borrowed)
        }
        _ => serde_json::from_slice::<String>(value).ok().map(Cow::Owned),
    }
}

/// A JSON object of strings (labels); a key named twice makes it unreadable.
fn json_labels(value: &[u8]) -> Option<BTreeMap<Cow<'_, str>, Cow<'_, str>>> {
    let Some(members) = scan::flat_members(value) else {
        return serde_json::from_slice(value).ok();
    };
    let mut labels = BTreeMap::new();
    for member in members {
        let key = json_string(&value[member.start..member.key.len() + member.start + 2])?;
        let label = json_string(&value[member.value.clone()])?;
        if labels.insert(key, label).is_some() {
            return None;
        }
    }
    Some(labels)
}

/// Decides whether an object is shown.
pub trait Judge: Send + 'static {
    fn visible(&self, object: &ObjectMeta<'_>) -> bool;
}

#[derive(Deserialize)]
pub(super) struct Object<'a> {
    #[serde(borrow)]
    pub(super) metadata: Option<ObjectMeta<'a>>,
}

#[derive(Deserialize)]
struct Row<'a> {
    #[serde(borrow)]
    object: Option<Object<'a>>,
}

/// Why a response could not be filtered; the stream is cut short.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error("the response is not a JSON object")]
    NotAnObject,
    #[error("a key of the response is not a JSON string")]
    Key,
    #[error("the list metadata is not a JSON object")]
    Metadata,
    #[error("a watch event is not a JSON object with a type")]
    Event,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    FirstKey,
    NextKey,
    Key,
    Colon,
    Value,
    FirstElement,
    Element,
    AfterElement,
    End,
}

/// One piece of a list response, as [`ListSplitter`] cuts it.
#[derive(Debug)]
pub enum Piece<'a> {
    /// A top-level member other than the list's array: its key and value.
    Member(&'a str, &'a [u8]),
    /// The list's array (`items`, or a `Table`'s `rows`) begins.
    ArrayOpen(&'a str),
    /// One element of the array; with its members when the splitter reads
    /// them ([`ListSplitter::reading_members`]) and the element is an
    /// object whose members can be read as written.
    Element(&'a [u8], Option<Vec<Member<'a>>>),
    /// The array ends.
    ArrayClose,
    /// The list ends.
    Close,
}

/// Cuts a list (or `Table`) response that arrives in pieces into its
/// top-level members and the elements of its array, holding no more than
/// one of them at a time.
pub struct ListSplitter {
    /// The start of a piece that has not arrived whole.
    buffer: Vec<u8>,
    cutter: Cutter,
}

/// Where the splitter is in the response.
struct Cutter {
    start: usize,
    state: State,
    scan: ValueScan,
    key: String,
    /// Elements' members are found as they are cut.
    read_members: bool,
}

impl Default for ListSplitter {
    fn default() -> Self {
        Self {
            buffer: Vec::new(),
            cutter: Cutter {
                start: 0,
                state: State::Open,
                scan: ValueScan::default(),
                key: String::new(),
                read_members: false,
            },
        }
    }
}

impl ListSplitter {
    /// A splitter that hands each object element with its members, found
    /// in the same pass that finds its end (when the element arrived whole
    /// in one feed, as most do).
    pub fn reading_members() -> Self {
        let mut splitter = Self::default();
        splitter.cutter.read_members = true;
        splitter
    }

    /// Takes the next bytes of the response and hands each complete piece
    /// to `sink`. Pieces that arrive whole are cut from `chunk` itself;
    /// only a piece's beginning waits in the buffer for its rest, which is
    /// found in `chunk` before the rest of `chunk` is cut where it lies.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        sink: &mut dyn FnMut(Piece<'_>) -> Result<(), FilterError>,
    ) -> Result<(), FilterError> {
        let mut from = 0;
        if !self.buffer.is_empty() && self.cutter.scan.is_idle() {
            // What an error left: cut again with the chunk after it.
            self.buffer.extend_from_slice(chunk);
            let result = self.cutter.advance(&self.buffer, sink);
            self.buffer
                .drain(..self.cutter.start.min(self.buffer.len()));
            self.cutter.start = 0;
            return result;
        }
        if !self.buffer.is_empty() {
            // The buffer holds the beginning of one value (its scan is under
            // way, from the buffer's first byte): the chunk completes it, or
            // all of the chunk is more of it.
            let held = self.buffer.len();
            let Some(length) = self.cutter.scan.advance_at(chunk, held)? else {
                self.buffer.extend_from_slice(chunk);
                return held_at_most(&self.buffer);
            };
            from = length - held;
            self.buffer.extend_from_slice(&chunk[..from]);
            self.cutter.scan = ValueScan::default();
            let whole = 0..self.buffer.len();
            let took = self.cutter.took(&self.buffer, whole, sink);
            self.buffer.clear();
            took?;
        }
        self.cutter.start = from;
        let result = self.cutter.advance(chunk, sink);
        self.buffer
            .extend_from_slice(&chunk[self.cutter.start.min(chunk.len())..]);
        self.cutter.start = 0;
        result.and_then(|()| held_at_most(&self.buffer))
    }

    /// The response has ended: it must have ended whole.
    pub fn finish(&self) -> Result<(), FilterError> {
        let rest = &self.buffer[..];
        if self.cutter.state == State::End && whitespace(rest) == rest.len() {
            Ok(())
        } else {
            Err(ScanError::Truncated.into())
        }
    }
}

impl Cutter {
    fn advance(
        &mut self,
        buffer: &[u8],
        sink: &mut dyn FnMut(Piece<'_>) -> Result<(), FilterError>,
    ) -> Result<(), FilterError> {
        loop {
            if self.scan.is_idle() {
                self.start += whitespace(&buffer[self.start..]);
            }
            let Some(&next) = buffer.get(self.start) else {
                return Ok(());
            };
            match self.state {
                State::Open => {
                    if next != b'{' {
                        return Err(FilterError::NotAnObject);
                    }
                    self.start += 1;
                    self.state = State::FirstKey;
                }
                State::FirstKey | State::NextKey => match next {
                    b'}' => {
                        self.start += 1;
                        self.state = State::End;
                        sink(Piece::Close)?;
                    }
                    b',' if self.state == State::NextKey => {
                        self.start += 1;
                        self.state = State::Key;
                    }
                    b'"' if self.state == State::FirstKey => self.state = State::Key,
                    other => return Err(ScanError::Unexpected(char::from(other)).into()),
                },
                State::Key => {
                    let Some(key) = self.scan_value(buffer)? else {
                        return Ok(());
                    };
                    self.took(buffer, key, sink)?;
                }
                State::Colon => {
                    if next != b':' {
                        return Err(ScanError::Unexpected(char::from(next)).into());
                    }
                    self.start += 1;
                    self.state = State::Value;
                }
                State::Value => {
                    if next == b'[' && matches!(self.key.as_str(), "items" | "rows") {
                        self.start += 1;
                        self.state = State::FirstElement;
                        sink(Piece::ArrayOpen(&self.key))?;
                        continue;
                    }
                    let Some(value) = self.scan_value(buffer)? else {
                        return Ok(());
                    };
                    self.took(buffer, value, sink)?;
                }
                State::FirstElement if next == b']' => {
                    self.start += 1;
                    self.state = State::NextKey;
                    sink(Piece::ArrayClose)?;
                }
                State::FirstElement | State::Element => {
                    if self.read_members && self.scan.is_idle() {
                        let rest = &buffer[self.start..];
                        if let Prefix::Object { length, members } = object_prefix(rest) {
                            self.start += length;
                            self.state = State::AfterElement;
                            sink(Piece::Element(&rest[..length], Some(members)))?;
                            continue;
                        }
                    }
                    let Some(element) = self.scan_value(buffer)? else {
                        return Ok(());
                    };
                    self.took(buffer, element, sink)?;
                }
                State::AfterElement => {
                    self.start += 1;
                    match next {
                        b',' => self.state = State::Element,
                        b']' => {
                            self.state = State::NextKey;
                            sink(Piece::ArrayClose)?;
                        }
                        other => return Err(ScanError::Unexpected(char::from(other)).into()),
                    }
                }
                State::End => return Err(ScanError::Unexpected(char::from(next)).into()),
            }
        }
    }

    /// Takes the value scanned whole at `value` in `buffer` (a key, a
    /// member's value or an element, as the state says) and moves past it.
    fn took(
        &mut self,
        buffer: &[u8],
        value: std::ops::Range<usize>,
        sink: &mut dyn FnMut(Piece<'_>) -> Result<(), FilterError>,
    ) -> Result<(), FilterError> {
        match self.state {
            State::Key => {
                self.key = serde_json::from_slice(&buffer[value]).map_err(|_| FilterError::Key)?;
                self.state = State::Colon;
            }
            State::Value => {
                self.state = State::NextKey;
                sink(Piece::Member(&self.key, &buffer[value]))?;
            }
            State::FirstElement | State::Element => {
                self.state = State::AfterElement;
                sink(Piece::Element(&buffer[value], None))?;
            }
            other => unreachable!("no value is scanned in state {other:?}"),
        }
        Ok(())
    }

    /// Scans the value at the front; once complete, consumes it and returns
    /// where it is in the buffer.
    fn scan_value(&mut self, buffer: &[u8]) -> Result<Option<std::ops::Range<usize>>, FilterError> {
        let Some(length) = self.scan.advance(&buffer[self.start..])? else {
            return Ok(None);
        };
        self.scan = ValueScan::default();
        let value = self.start..self.start + length;
        self.start += length;
        Ok(Some(value))
    }
}

/// Replaces a list's `continue` token with one the caller may read.
pub type SealContinue = Box<dyn Fn(&str) -> String + Send>;

/// Filters one list (or `Table`) response.
pub struct ListFilter<J> {
    judge: J,
    seal_continue: Option<SealContinue>,
    /// `includeObject=None` was asked for and `Metadata` fetched to judge
    /// the rows: the rows' objects are removed before they are sent.
    strip_row_objects: bool,
    splitter: ListSplitter,
    /// The key of the array being filtered.
    array: String,
    members: usize,
    kept: usize,
}

impl<J: Judge> ListFilter<J> {
    pub fn new(judge: J, strip_row_objects: bool) -> Self {
        Self {
            judge,
            seal_continue: None,
            strip_row_objects,
            splitter: ListSplitter::reading_members(),
            array: String::new(),
            members: 0,
            kept: 0,
        }
    }

    /// Seals the list's `continue` token with `seal`.
    pub fn sealing_continue(mut self, seal: Option<SealContinue>) -> Self {
        self.seal_continue = seal;
        self
    }

    /// Takes the next bytes of the response and appends what may be sent.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), FilterError> {
        let Self {
            judge,
            seal_continue,
            strip_row_objects,
            splitter,
            array,
            members,
            kept,
        } = self;
        // The opening brace is written with the first member.
        fn member_key(members: &mut usize, key: &str, out: &mut Vec<u8>) {
            out.push(if *members == 0 { b'{' } else { b',' });
            *members += 1;
            serde_json::to_writer(&mut *out, key).expect("a string serializes");
            out.push(b':');
        }
        splitter.feed(chunk, &mut |piece| {
            match piece {
                Piece::Member(key, value) => {
                    member_key(members, key, out);
                    if key == "metadata" {
                        list_metadata(value, seal_continue.as_deref(), out)?;
                    } else {
                        out.extend_from_slice(value);
                    }
                }
                Piece::ArrayOpen(key) => {
                    member_key(members, key, out);
                    out.push(b'[');
                    array.clear();
                    array.push_str(key);
                    *kept = 0;
                }
                Piece::Element(element, found) => {
                    let shown = if array == "rows" {
                        keep_row(judge, element, *strip_row_objects)
                    } else {
                        keep_object(judge, element, found.as_deref())
                            .then_some(Cow::Borrowed(element))
                    };
                    if let Some(shown) = shown {
                        if *kept > 0 {
                            out.push(b',');
                        }
                        out.extend_from_slice(&shown);
                        *kept += 1;
                    }
                }
                Piece::ArrayClose => out.push(b']'),
                Piece::Close => {
                    if *members == 0 {
                        out.push(b'{');
                    }
                    out.push(b'}');
                }
            }
            Ok(())
        })
    }

    /// The response has ended: it must have ended whole.
    pub fn finish(&mut self) -> Result<(), FilterError> {
        self.splitter.finish()
    }
}

/// The list's metadata without `remainingItemCount`, its `continue` sealed.
fn list_metadata(
    value: &[u8],
    seal_continue: Option<&(dyn Fn(&str) -> String + Send)>,
    out: &mut Vec<u8>,
) -> Result<(), FilterError> {
    let mut metadata: serde_json::Map<String, Value> =
        serde_json::from_slice(value).map_err(|_| FilterError::Metadata)?;
    metadata.remove("remainingItemCount");
    if let (Some(seal), Some(Value::String(token))) = (seal_continue, metadata.get("continue")) {
        if !token.is_empty() {
            let sealed = seal(token);
            metadata.insert("continue".into(), Value::from(sealed));
        }
    }
    serde_json::to_writer(out, &metadata).map_err(|_| FilterError::Metadata)
}

/// Whether an object (a list item) is shown; one without metadata (or
/// with more than one) is not. Only the metadata is parsed, when the
/// object's members were found without parsing their values (`found`, or
/// found here); when they cannot be (a key is escaped) the whole object is
/// read as any JSON parser reads it.
fn keep_object(judge: &impl Judge, element: &[u8], found: Option<&[Member<'_>]>) -> bool {
    let read;
    let found = match found {
        Some(found) => found,
        None => match scan::members(element) {
            Some(members) => {
                read = members;
                &read[..]
            }
            None => {
                return serde_json::from_slice::<Object>(element)
                    .ok()
                    .and_then(|object| object.metadata)
                    .is_some_and(|metadata| judge.visible(&metadata))
            }
        },
    };
    scan::only(found, b"metadata").is_some_and(|index| {
        let member = &found[index];
        ObjectMeta::read(&element[member.value.clone()], member.inner.as_deref())
            .is_some_and(|metadata| judge.visible(&metadata))
    })
}

/// A `Table` row, if its object is shown (a row without an object is not).
fn keep_row<'a>(
    judge: &impl Judge,
    element: &'a [u8],
    strip_object: bool,
) -> Option<Cow<'a, [u8]>> {
    let row: Row = serde_json::from_slice(element).ok()?;
    let metadata = row.object.and_then(|object| object.metadata)?;
    if !judge.visible(&metadata) {
        return None;
    }
    if !strip_object {
        return Some(Cow::Borrowed(element));
    }
    let mut row: serde_json::Map<String, Value> = serde_json::from_slice(element).ok()?;
    row.remove("object");
    serde_json::to_vec(&row).ok().map(Cow::Owned)
}

/// A filtered get's answer (JSON), judged as it will be sent: the object
/// itself, or a `Table` of it (every row's object must be visible, and
/// there must be one). `None` if the caller may not see it; otherwise the
/// bytes to send, each row's object removed when the caller asked for none.
/// What is judged is what is sent: never an earlier read of the object.
pub fn judged_object(body: &[u8], judge: &impl Judge, strip_row_objects: bool) -> Option<Vec<u8>> {
    let head: ObjectHead<'_> = serde_json::from_slice(body).ok()?;
    if head.items.is_some() {
        return None;
    }
    if head.kind.as_deref() != Some("Table") {
        let metadata = head.metadata?;
        return judge.visible(&metadata).then(|| body.to_vec());
    }
    let rows = head.rows.as_deref().filter(|rows| !rows.is_empty())?;
    let all_visible = rows.iter().all(|row| {
        row.object
            .and_then(|object| serde_json::from_str::<RowObject<'_>>(object.get()).ok())
            .and_then(|object| object.metadata)
            .is_some_and(|metadata| judge.visible(&metadata))
    });
    if !all_visible {
        return None;
    }
    if !strip_row_objects {
        return Some(body.to_vec());
    }
    // Read as a parser that keeps the last of a repeated member reads it;
    // the strict read above refused any repeated member it judged by.
    let mut table: serde_json::Map<String, Value> = serde_json::from_slice(body).ok()?;
    for row in table.get_mut("rows")?.as_array_mut()? {
        row.as_object_mut()?.remove("object");
    }
    serde_json::to_vec(&table).ok()
}

/// A watch event, its object left unparsed (it may be nested deeper than a
/// parsed value may be).
#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(rename = "type")]
    kind: String,
    #[serde(borrow)]
    object: Option<&'a RawValue>,
}

/// What a watch event's object shows of itself; every other field is
/// skipped unparsed.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectHead<'a> {
    kind: Option<String>,
    api_version: Option<String>,
    #[serde(borrow)]
    metadata: Option<ObjectMeta<'a>>,
    #[serde(borrow)]
    rows: Option<Vec<RawRow<'a>>>,
    #[serde(borrow)]
    column_definitions: Option<&'a RawValue>,
    /// A list's: never part of one object, so an object holding it is not
    /// judged by its own metadata alone, and is not sent.
    #[serde(borrow)]
    items: Option<&'a RawValue>,
}

/// A `Table` row, as received and as sent.
#[derive(Deserialize, Serialize)]
struct RawRow<'a> {
    #[serde(borrow)]
    cells: Option<&'a RawValue>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    conditions: Option<&'a RawValue>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    object: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RowObject<'a> {
    #[serde(borrow)]
    metadata: Option<ObjectMeta<'a>>,
}

/// A `Table` event's object, as sent.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TableOut<'a> {
    kind: &'static str,
    api_version: &'a str,
    metadata: Value,
    column_definitions: Option<&'a RawValue>,
    rows: Vec<RawRow<'a>>,
}

/// What a watch has shown of one object: enough to tell the client it is
/// gone without showing anything newer.
struct Shown {
    /// The object's identity at the last event sent.
    identity: Value,
    /// The `Table` cells last sent, for a `Table` watch.
    cells: Option<Box<RawValue>>,
}

/// Filters one watch response.
pub struct WatchFilter<J> {
    judge: J,
    strip_row_objects: bool,
    buffer: Vec<u8>,
    start: usize,
    scan: ValueScan,
    /// The objects this watch has shown and not yet deleted.
    shown: HashMap<String, Shown>,
    /// Column definitions of a `Table` event that was not sent, for the
    /// next event sent (clients print the columns of the first one).
    columns: Option<Box<RawValue>>,
}

impl<J: Judge> WatchFilter<J> {
    pub fn new(judge: J, strip_row_objects: bool) -> Self {
        Self {
            judge,
            strip_row_objects,
            buffer: Vec::new(),
            start: 0,
            scan: ValueScan::default(),
            shown: HashMap::new(),
            columns: None,
        }
    }

    /// Takes the next bytes of the stream and appends the events to send,
    /// one per line.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), FilterError> {
        self.buffer.extend_from_slice(chunk);
        let result = self.advance(out);
        self.buffer.drain(..self.start);
        self.start = 0;
        result.and_then(|()| held_at_most(&self.buffer))
    }

    fn advance(&mut self, out: &mut Vec<u8>) -> Result<(), FilterError> {
        loop {
            if self.scan.is_idle() {
                self.start += whitespace(&self.buffer[self.start..]);
            }
            if self.start == self.buffer.len() {
                return Ok(());
            }
            let Some(length) = self.scan.advance(&self.buffer[self.start..])? else {
                return Ok(());
            };
            self.scan = ValueScan::default();
            let event = self.start..self.start + length;
            self.start += length;
            let bytes = &self.buffer[event];
            // An event that cannot be read is not shown (its object is not
            // one the caller can be shown to see); the watch goes on.
            let Ok(raw) = serde_json::from_slice::<RawEvent>(bytes) else {
                continue;
            };
            let sent = judge_event(
                &self.judge,
                &mut self.shown,
                &mut self.columns,
                self.strip_row_objects,
                &raw,
            );
            match sent {
                // The event as the API server writes one: its type and its
                // object, nothing else the cluster sent beside them.
                Sent::Unchanged => match raw.object {
                    Some(object) => {
                        out.extend_from_slice(b"{\"type\":\"");
                        out.extend_from_slice(raw.kind.as_bytes());
                        out.extend_from_slice(b"\",\"object\":");
                        one_line(object.get().as_bytes(), out);
                        out.push(b'}');
                    }
                    None => continue,
                },
                Sent::Rewritten(rewritten) => one_line(&rewritten, out),
                Sent::Not => continue,
            }
            out.push(b'\n');
        }
    }
}

/// Appends one event as one line. An event was read as one JSON value, in
/// which a line break can only be whitespace between tokens (JSON strings
/// hold none unescaped): each becomes a space, so that a reader that cuts
/// the stream at line breaks (the fleet view, many watch clients) reads the
/// very event that was judged, never pieces of it as events of their own.
fn one_line(event: &[u8], out: &mut Vec<u8>) {
    if event.iter().any(|byte| matches!(byte, b'\n' | b'\r')) {
        out.extend(event.iter().map(|&byte| match byte {
            b'\n' | b'\r' => b' ',
            byte => byte,
        }));
    } else {
        out.extend_from_slice(event);
    }
}

/// Fails once the part of one value still arriving is over
/// [`MAX_VALUE`](super::scan::MAX_VALUE).
fn held_at_most(held: &[u8]) -> Result<(), FilterError> {
    if held.len() > super::scan::MAX_VALUE {
        Err(ScanError::TooLarge.into())
    } else {
        Ok(())
    }
}

enum Sent {
    Unchanged,
    Rewritten(Vec<u8>),
    Not,
}

fn judge_event<J: Judge>(
    judge: &J,
    shown: &mut HashMap<String, Shown>,
    columns: &mut Option<Box<RawValue>>,
    strip_row_objects: bool,
    raw: &RawEvent<'_>,
) -> Sent {
    let kind = raw.kind.as_str();
    match kind {
        "ADDED" | "MODIFIED" | "DELETED" => {}
        "BOOKMARK" => return raw.object.map_or(Sent::Not, bookmark),
        "ERROR" => return raw.object.map_or(Sent::Not, error_status),
        // No type the API server sends: nothing a client reads.
        _ => return Sent::Not,
    }
    let Some(object) = raw.object else {
        return Sent::Not;
    };
    let Ok(head) = serde_json::from_str::<ObjectHead>(object.get()) else {
        return Sent::Not;
    };
    if head.items.is_some() {
        return Sent::Not;
    }
    let table = head.kind.as_deref() == Some("Table");
    let metadata = if table {
        match head.rows.as_deref() {
            Some([row]) => row
                .object
                .and_then(|object| serde_json::from_str::<RowObject>(object.get()).ok())
                .and_then(|object| object.metadata),
            _ => None,
        }
    } else {
        head.metadata.clone()
    };
    let Some(metadata) = metadata else {
        return Sent::Not;
    };
    let visible = judge.visible(&metadata);
    let key = match &metadata.uid {
        Some(uid) => uid.to_string(),
        None => format!(
            "{}/{}",
            metadata.namespace.as_deref().unwrap_or_default(),
            metadata.name
        ),
    };
    let was_shown = shown.contains_key(&key);
    let sent_as = match (kind, visible, was_shown) {
        ("ADDED", true, _) | ("MODIFIED", true, false) => "ADDED",
        ("MODIFIED", true, true) => "MODIFIED",
        ("DELETED", true, _) => "DELETED",
        // It left the view: gone, as far as this watch goes, shown as it
        // was last sent (never its new state).
        ("MODIFIED" | "DELETED", false, true) => {
            let last = shown.remove(&key).expect("checked");
            return Sent::Rewritten(departure(&head, table, last));
        }
        _ => {
            if table && columns.is_none() {
                *columns = nonempty(head.column_definitions);
            }
            return Sent::Not;
        }
    };
    let row_cells = head
        .rows
        .as_deref()
        .and_then(|rows| rows.first())
        .and_then(|row| row.cells)
        .map(RawValue::to_owned);
    if sent_as == "DELETED" {
        shown.remove(&key);
    } else {
        shown.insert(
            key,
            Shown {
                identity: identity(&metadata),
                cells: row_cells,
            },
        );
    }
    let inject_columns = table && nonempty(head.column_definitions).is_none() && columns.is_some();
    let strip = table && strip_row_objects;
    if sent_as == kind && !inject_columns && !strip {
        if table && nonempty(head.column_definitions).is_some() {
            *columns = None;
        }
        return Sent::Unchanged;
    }
    let object_bytes: Vec<u8> = if table && (inject_columns || strip) {
        let column_definitions = if inject_columns {
            columns.take()
        } else {
            *columns = None;
            head.column_definitions.map(RawValue::to_owned)
        };
        let rows = head
            .rows
            .unwrap_or_default()
            .into_iter()
            .map(|row| RawRow {
                object: if strip { None } else { row.object },
                ..row
            })
            .collect();
        let out = TableOut {
            kind: "Table",
            api_version: head.api_version.as_deref().unwrap_or("meta.k8s.io/v1"),
            metadata: table_metadata(object),
            column_definitions: column_definitions.as_deref(),
            rows,
        };
        match serde_json::to_vec(&out) {
            Ok(bytes) => bytes,
            Err(_) => return Sent::Not,
        }
    } else {
        object.get().as_bytes().to_vec()
    };
    Sent::Rewritten(event_bytes(sent_as, &object_bytes))
}

/// A `BOOKMARK` as the API server makes one: the kind, and of its metadata
/// only the resourceVersion and the end-of-initial-events annotation,
/// whatever else the object carried.
fn bookmark(object: &RawValue) -> Sent {
    #[derive(Deserialize, Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Bookmark {
        #[serde(skip_serializing_if = "Option::is_none")]
        kind: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        api_version: Option<String>,
        metadata: BookmarkMeta,
    }
    #[derive(Deserialize, Serialize)]
    #[serde(rename_all = "camelCase")]
    struct BookmarkMeta {
        resource_version: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        annotations: BTreeMap<String, String>,
    }
    let Ok(mut bookmark) = serde_json::from_str::<Bookmark>(object.get()) else {
        return Sent::Not;
    };
    bookmark
        .metadata
        .annotations
        .retain(|key, _| key == "k8s.io/initial-events-end");
    match serde_json::to_vec(&bookmark) {
        Ok(object) => Sent::Rewritten(event_bytes("BOOKMARK", &object)),
        Err(_) => Sent::Not,
    }
}

/// An `ERROR` whose object is a `Status`, without its `details` (which name
/// an object, one the caller may not see); any other object is not sent.
fn error_status(object: &RawValue) -> Sent {
    #[derive(Deserialize, Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Status {
        kind: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        api_version: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<i64>,
    }
    let Ok(status) = serde_json::from_str::<Status>(object.get()) else {
        return Sent::Not;
    };
    if status.kind != "Status" {
        return Sent::Not;
    }
    match serde_json::to_vec(&status) {
        Ok(object) => Sent::Rewritten(event_bytes("ERROR", &object)),
        Err(_) => Sent::Not,
    }
}

/// `{"type":…,"object":…}`.
fn event_bytes(kind: &str, object: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(object.len() + 32);
    bytes.extend_from_slice(b"{\"type\":\"");
    bytes.extend_from_slice(kind.as_bytes());
    bytes.extend_from_slice(b"\",\"object\":");
    bytes.extend_from_slice(object);
    bytes.push(b'}');
    bytes
}

/// The identity of an object: what a client needs to drop it.
fn identity(metadata: &ObjectMeta<'_>) -> Value {
    let mut identity = serde_json::Map::new();
    identity.insert("name".into(), Value::from(metadata.name.as_ref()));
    if let Some(namespace) = &metadata.namespace {
        identity.insert("namespace".into(), Value::from(namespace.clone()));
    }
    if let Some(uid) = &metadata.uid {
        identity.insert("uid".into(), Value::from(uid.clone()));
    }
    if let Some(version) = &metadata.resource_version {
        identity.insert("resourceVersion".into(), Value::from(version.clone()));
    }
    Value::Object(identity)
}

/// The `DELETED` event for an object that left the view: its identity and
/// (in a `Table`) the cells last sent, nothing of its new state.
fn departure(head: &ObjectHead<'_>, table: bool, last: Shown) -> Vec<u8> {
    let object = if table {
        json!({
            "kind": "Table",
            "apiVersion": head.api_version.as_deref().unwrap_or("meta.k8s.io/v1"),
            "metadata": {},
            "columnDefinitions": null,
            "rows": [{
                "cells": last.cells.as_deref().map_or(json!([]), |cells| {
                    serde_json::from_str(cells.get()).unwrap_or(json!([]))
                }),
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": last.identity},
            }],
        })
    } else {
        json!({
            "kind": head.kind,
            "apiVersion": head.api_version,
            "metadata": last.identity,
        })
    };
    event_bytes(
        "DELETED",
        &serde_json::to_vec(&object).unwrap_or_else(|_| b"{}".to_vec()),
    )
}

/// A `Table`'s own metadata (small: a resourceVersion).
fn table_metadata(object: &RawValue) -> Value {
    #[derive(Deserialize)]
    struct Metadata {
        metadata: Option<Value>,
    }
    serde_json::from_str::<Metadata>(object.get())
        .ok()
        .and_then(|table| table.metadata)
        .unwrap_or_else(|| json!({}))
}

fn nonempty(columns: Option<&RawValue>) -> Option<Box<RawValue>> {
    columns
        .filter(|columns| {
            let text = columns.get().trim();
            text.starts_with('[') && text != "[]"
        })
        .map(RawValue::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Shows objects in namespaces starting `team-a-` and cluster-scoped
    /// objects labelled `pool=a`.
    struct TeamA;

    impl Judge for TeamA {
        fn visible(&self, object: &ObjectMeta<'_>) -> bool {
            match &object.namespace {
                Some(namespace) => namespace.starts_with("team-a-"),
                None => object
                    .labels
                    .as_ref()
                    .and_then(|labels| labels.get("pool"))
                    .is_some_and(|pool| pool == "a"),
            }
        }
    }

    fn pod(namespace: &str, name: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": namespace, "uid": format!("{namespace}/{name}")},
               "spec": {"containers": [{"name": "app", "image": "x \"]}\\"}]}})
    }

    /// Filters `input` fed in pieces of `piece` bytes.
    fn list(input: &str, piece: usize, strip: bool) -> Result<Value, FilterError> {
        let mut filter = ListFilter::new(TeamA, strip);
        let mut out = Vec::new();
        for chunk in input.as_bytes().chunks(piece) {
            filter.feed(chunk, &mut out)?;
        }
        filter.finish()?;
        Ok(serde_json::from_slice(&out).expect("the output is JSON"))
    }

    /// Metadata as a JSON parser reads it into owned strings.
    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(default)]
    struct Owned {
        name: String,
        namespace: Option<String>,
        uid: Option<String>,
        #[serde(rename = "resourceVersion")]
        resource_version: Option<String>,
        labels: Option<BTreeMap<String, String>>,
    }

    impl From<ObjectMeta<'_>> for Owned {
        fn from(meta: ObjectMeta<'_>) -> Self {
            let owned = |value: Option<Cow<'_, str>>| value.map(Cow::into_owned);
            Owned {
                name: meta.name.into_owned(),
                namespace: owned(meta.namespace),
                uid: owned(meta.uid),
                resource_version: owned(meta.resource_version),
                labels: meta.labels.map(|labels| {
                    labels
                        .into_iter()
                        .map(|(key, value)| (key.into_owned(), value.into_owned()))
                        .collect()
                }),
            }
        }
    }

    #[test]
    fn metadata_is_read_as_a_json_parser_reads_it() {
        for metadata in [
            r#"{"name":"a","namespace":"team-a-dev","uid":"u","resourceVersion":"7","labels":{"app":"web","tier":"x"}}"#,
            r#"{ "name" : "a" , "labels" : { "app" : "web" } , "annotations" : {"x": "{\"]"} }"#,
            r#"{"name":"caf\u00e9 \"quoted\"","namespace":"team-a-\u0064ev","labels":{"a\\b":"c\nd"}}"#,
            r#"{"name":"é ünïcode","namespace":null,"uid":null,"labels":null}"#,
            r#"{"managedFields":[{"manager":"kubectl"}],"name":"a"}"#,
            r#"{}"#,
            // Not metadata a parser accepts: hidden.
            r#"{"name":1}"#,
            r#"{"name":null}"#,
            r#"{"namespace":["team-a-dev"]}"#,
            r#"{"labels":{"app":1}}"#,
            r#"{"labels":["app"]}"#,
            r#"{"name":"raw	tab"}"#,
            r#"[]"#,
        ] {
            let object = format!(r#"{{"metadata":{metadata}}}"#);
            let found = scan::members(object.as_bytes())
                .and_then(|members| members.into_iter().next())
                .and_then(|member| member.inner);
            let read = ObjectMeta::read(metadata.as_bytes(), found.as_deref()).map(Owned::from);
            let parsed = serde_json::from_str::<Owned>(metadata).ok();
            assert_eq!(read, parsed, "{metadata}");
        }
        // Named twice: parsers disagree on which counts, so it is not read.
        for twice in [
            r#"{"namespace":"team-b-dev","namespace":"team-a-dev"}"#,
            r#"{"labels":{"pool":"b","pool":"a"}}"#,
        ] {
            let object = format!(r#"{{"metadata":{twice}}}"#);
            let found = scan::members(object.as_bytes())
                .and_then(|members| members.into_iter().next())
                .and_then(|member| member.inner);
            assert!(found.is_some(), "{twice}");
            assert!(
                ObjectMeta::read(twice.as_bytes(), found.as_deref()).is_none(),
                "{twice}"
            );
        }
    }

    #[test]
    fn items_are_judged_by_their_one_metadata_however_written() {
        let items = [
            // Escaped keys: read by the JSON parser, as the client reads them.
            r#"{"met\u0061data":{"name":"a1","namespace":"team-a-dev"}}"#,
            r#"{"metadata":{"n\u0061me":"a2","namespace":"team-a-dev"}}"#,
            r#"{"metadata":{"name":"a3","namesp\u0061ce":"team-a-dev"}}"#,
            r#"{"metadata":{"name":"a4","namespace":"team-a-\u0064ev"}}"#,
            // Two metadata, or two namespaces: never shown.
            r#"{"metadata":{"name":"b1","namespace":"team-b-dev"},"metadata":{"name":"b1","namespace":"team-a-dev"}}"#,
            r#"{"metadata":{"name":"b2","namespace":"team-b-dev","namespace":"team-a-dev"}}"#,
            r#"{"metadata":{"name":"b3","namesp\u0061ce":"team-b-dev","namespace":"team-a-dev"}}"#,
            // A metadata that is not an object, or none.
            r#"{"metadata":"team-a-dev"}"#,
            r#"{"spec":{"metadata":{"namespace":"team-a-dev"}}}"#,
            r#"{"metadata":{"labels":{"pool":"b","pool":"a"}}}"#,
            r#"{"metadata":{"labels":{"pool":"a"}}}"#,
        ];
        let text = format!(r#"{{"items":[{}]}}"#, items.join(","));
        for piece in [1, 13, text.len()] {
            let output = list(&text, piece, false).unwrap();
            let shown: Vec<Value> = output["items"].as_array().unwrap().clone();
            let expected: Vec<Value> = [0, 1, 2, 3, 10]
                .iter()
                .map(|&index| serde_json::from_str(items[index]).unwrap())
                .collect();
            assert_eq!(shown, expected, "pieces of {piece}");
        }
    }

    #[test]
    fn lists_keep_only_visible_items_whatever_the_chunking() {
        let input = json!({
            "kind": "PodList", "apiVersion": "v1",
            "metadata": {"resourceVersion": "7", "continue": "next", "remainingItemCount": 40},
            "items": [pod("team-b-dev", "b1"), pod("team-a-dev", "a1"), pod("team-b-dev", "b2"), pod("team-a-prod", "a2")],
        });
        let pretty = serde_json::to_string_pretty(&input).unwrap();
        for text in [input.to_string(), pretty] {
            for piece in [1, 7, 64, text.len()] {
                let output = list(&text, piece, false).unwrap();
                let names: Vec<&str> = output["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|item| item["metadata"]["name"].as_str().unwrap())
                    .collect();
                assert_eq!(names, ["a1", "a2"], "pieces of {piece}");
                assert_eq!(
                    output["items"][0],
                    pod("team-a-dev", "a1"),
                    "items pass unchanged"
                );
                assert_eq!(output["kind"], "PodList");
                assert_eq!(
                    output["metadata"],
                    json!({"resourceVersion": "7", "continue": "next"})
                );
            }
        }
        let empty = list(r#"{"kind":"PodList","items":[],"metadata":{}}"#, 3, false).unwrap();
        assert_eq!(empty["items"], json!([]));
        let none_left = list(
            &json!({"items": [pod("team-b-dev", "b1")]}).to_string(),
            5,
            false,
        )
        .unwrap();
        assert_eq!(none_left, json!({"items": []}));
    }

    /// The pieces a splitter cuts `text` into, fed `piece` bytes at a time.
    fn pieces(text: &str, piece: usize, read_members: bool) -> Vec<String> {
        let mut splitter = if read_members {
            ListSplitter::reading_members()
        } else {
            ListSplitter::default()
        };
        let mut cut = Vec::new();
        for chunk in text.as_bytes().chunks(piece) {
            splitter
                .feed(chunk, &mut |piece| {
                    cut.push(match piece {
                        Piece::Member(key, value) => {
                            format!("member {key} {}", String::from_utf8_lossy(value))
                        }
                        Piece::ArrayOpen(key) => format!("open {key}"),
                        Piece::Element(element, found) => {
                            // Members, when found, are where they are written.
                            for member in found.iter().flatten() {
                                assert_eq!(element[member.start], b'"');
                                assert!(member.value.end <= element.len());
                            }
                            format!("element {}", String::from_utf8_lossy(element))
                        }
                        Piece::ArrayClose => "close array".into(),
                        Piece::Close => "close".into(),
                    });
                    Ok(())
                })
                .unwrap();
        }
        splitter.finish().unwrap();
        cut
    }

    /// However the response arrives, it is cut into the same pieces, each
    /// as written.
    #[test]
    fn lists_are_cut_alike_whatever_the_chunking() {
        let input = json!({
            "kind": "PodList", "apiVersion": "v1",
            "metadata": {"resourceVersion": "7", "continue": "a\"b\\"},
            "items": [pod("team-b-dev", "b1"), 12, "x\"]y", [1, {"a": "}"}], pod("team-a-dev", "a \\\" 1"), {}],
            "after": {"k": [true, null]},
        });
        let pretty = serde_json::to_string_pretty(&input).unwrap();
        for text in [input.to_string(), pretty] {
            for read_members in [false, true] {
                let whole = pieces(&text, text.len(), read_members);
                assert_eq!(whole.len(), 13, "{whole:#?}");
                for piece in 1..text.len() {
                    assert_eq!(
                        pieces(&text, piece, read_members),
                        whole,
                        "pieces of {piece}"
                    );
                }
            }
        }
    }

    #[test]
    fn table_rows_are_judged_by_their_object() {
        let row = |namespace: &str, name: &str| {
            json!({"cells": [name, "Running"], "object": {"kind": "PartialObjectMetadata",
                   "metadata": {"name": name, "namespace": namespace}}})
        };
        let table = json!({
            "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": "9"},
            "columnDefinitions": [{"name": "Name", "type": "string"}],
            "rows": [row("team-a-dev", "a1"), row("team-b-dev", "b1"), {"cells": ["no object"]}],
        });
        let output = list(&table.to_string(), 11, false).unwrap();
        assert_eq!(output["rows"], json!([row("team-a-dev", "a1")]));
        assert_eq!(output["columnDefinitions"], table["columnDefinitions"]);
        let stripped = list(&table.to_string(), 11, true).unwrap();
        assert_eq!(stripped["rows"], json!([{"cells": ["a1", "Running"]}]));
    }

    #[test]
    fn broken_lists_are_cut_short() {
        assert!(list(
            r#"{"items":[{"metadata":{"name":"a","namespace":"team-a-x"}}"#,
            4,
            false
        )
        .is_err());
        assert!(list(r#"["not", "an", "object"]"#, 4, false).is_err());
        assert!(list(r#"{"items":[1 2]}"#, 4, false).is_err());
        assert!(list(r#"{"items":[]} {}"#, 4, false).is_err());
    }

    fn watch(events: &[Value], piece: usize) -> Vec<Value> {
        let mut filter = WatchFilter::new(TeamA, false);
        let text: String = events.iter().map(|event| format!("{event}\n")).collect();
        let mut out = Vec::new();
        for chunk in text.as_bytes().chunks(piece) {
            filter.feed(chunk, &mut out).unwrap();
        }
        serde_json::Deserializer::from_slice(&out)
            .into_iter::<Value>()
            .map(Result::unwrap)
            .collect()
    }

    /// Filters a watch's raw `text` fed in pieces of `piece` bytes.
    fn watch_text(text: &str, piece: usize) -> String {
        let mut filter = WatchFilter::new(TeamA, false);
        let mut out = Vec::new();
        for chunk in text.as_bytes().chunks(piece) {
            filter.feed(chunk, &mut out).unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn each_event_goes_out_as_one_line_whatever_whitespace_it_held() {
        // An event whose whitespace holds line breaks, one of them before
        // an event-shaped value: cut at line breaks, it would be two events.
        let hidden = r#"{"type":"ADDED","object":{"metadata":{"name":"b-smuggled","namespace":"team-b-dev"},"spec":{"secret":"s"}}}"#;
        let a1 = serde_json::to_string(&pod("team-a-dev", "a1")).unwrap();
        let text = format!(
            "{{\"type\":\"ADDED\",\"object\":{a1},\"x\":\r\n{hidden}\n}}\n{{\n \"type\": \"ADDED\",\n \"object\": {}\n}}\n",
            serde_json::to_string_pretty(&pod("team-a-dev", "a2")).unwrap()
        );
        for piece in [1, 7, 4096] {
            let sent = watch_text(&text, piece);
            let lines: Vec<Value> = sent
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect();
            let names: Vec<&str> = lines
                .iter()
                .map(|event| event["object"]["metadata"]["name"].as_str().unwrap())
                .collect();
            assert_eq!(names, ["a1", "a2"], "pieces of {piece}: {sent}");
            assert!(!sent.contains('\r'), "{sent}");
            // Nothing the cluster sent beside an event's type and object.
            assert!(!sent.contains("b-smuggled"), "{sent}");
            assert!(lines
                .iter()
                .all(|event| event.as_object().unwrap().len() == 2));
        }
    }

    #[test]
    fn bookmarks_and_errors_carry_nothing_of_any_object() {
        let event = |kind: &str, object: Value| json!({"type": kind, "object": object});
        let mut hidden = pod("team-b-dev", "b1");
        hidden["metadata"]["resourceVersion"] = json!("12");
        hidden["metadata"]["annotations"] =
            json!({"k8s.io/initial-events-end": "true", "secret": "s"});
        hidden["kind"] = json!("Pod");
        hidden["apiVersion"] = json!("v1");
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "too old resource version", "reason": "Expired", "code": 410,
            "details": {"name": "b1", "kind": "pods"}, "metadata": {}});
        let events = [
            event("BOOKMARK", hidden.clone()),
            event("ERROR", hidden.clone()),
            event("added", hidden.clone()),
            event("Bookmark", hidden.clone()),
            event("BOOKMARK", pod("team-b-dev", "b2")),
            event("ERROR", status),
        ];
        for piece in [1, 13, 4096] {
            let sent = watch(&events, piece);
            assert_eq!(
                sent,
                [
                    event(
                        "BOOKMARK",
                        json!({"kind": "Pod", "apiVersion": "v1", "metadata": {
                            "resourceVersion": "12",
                            "annotations": {"k8s.io/initial-events-end": "true"}}})
                    ),
                    event(
                        "ERROR",
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                            "message": "too old resource version", "reason": "Expired", "code": 410})
                    ),
                ],
                "pieces of {piece}"
            );
        }
    }

    #[test]
    fn watches_show_objects_entering_and_leaving_the_view() {
        let node =
            |pool: &str| json!({"metadata": {"name": "n1", "uid": "n1", "labels": {"pool": pool}}});
        let event = |kind: &str, object: Value| json!({"type": kind, "object": object});
        let events = [
            event("ADDED", pod("team-b-dev", "b1")),
            event("ADDED", pod("team-a-dev", "a1")),
            event("ADDED", node("b")),
            event("MODIFIED", node("a")),
            event("MODIFIED", node("a")),
            event("BOOKMARK", json!({"metadata": {"resourceVersion": "12"}})),
            event("MODIFIED", node("b")),
            event("MODIFIED", node("b")),
            event("DELETED", pod("team-b-dev", "b1")),
            event("DELETED", pod("team-a-dev", "a1")),
        ];
        for piece in [1, 13, 4096] {
            let sent = watch(&events, piece);
            let summary: Vec<(String, String)> = sent
                .iter()
                .map(|event| {
                    (
                        event["type"].as_str().unwrap().to_owned(),
                        event["object"]["metadata"]["name"]
                            .as_str()
                            .unwrap_or("-")
                            .to_owned(),
                    )
                })
                .collect();
            let expected = [
                ("ADDED", "a1"),
                ("ADDED", "n1"),
                ("MODIFIED", "n1"),
                ("BOOKMARK", "-"),
                ("DELETED", "n1"),
                ("DELETED", "a1"),
            ];
            assert_eq!(
                summary,
                expected.map(|(kind, name)| (kind.to_owned(), name.to_owned())),
                "pieces of {piece}"
            );
        }
    }

    #[test]
    fn table_watches_keep_their_column_definitions() {
        let table = |namespace: &str, name: &str, columns: bool| {
            json!({"type": "ADDED", "object": {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
                "columnDefinitions": if columns { json!([{"name": "Name"}]) } else { json!([]) },
                "rows": [{"cells": [name], "object": {"metadata": {"name": name, "namespace": namespace}}}]}})
        };
        let sent = watch(
            &[
                table("team-b-dev", "b1", true),
                table("team-a-dev", "a1", false),
                table("team-a-dev", "a2", false),
            ],
            9,
        );
        assert_eq!(sent.len(), 2);
        assert_eq!(
            sent[0]["object"]["columnDefinitions"],
            json!([{"name": "Name"}])
        );
        assert_eq!(sent[0]["object"]["rows"][0]["cells"], json!(["a1"]));
        assert_eq!(sent[1]["object"]["columnDefinitions"], json!([]));
    }

    #[test]
    fn deep_objects_neither_cut_nor_slip_through_a_watch() {
        let deep = |namespace: &str, name: &str| {
            let nested = format!("{}1{}", "[".repeat(300), "]".repeat(300));
            let object = format!(
                r#"{{"metadata":{{"name":"{name}","namespace":"{namespace}","uid":"{name}"}},"data":{nested}}}"#
            );
            serde_json::from_str::<Box<RawValue>>(&object)
                .map(|_| object)
                .unwrap_or_default()
        };
        let events = format!(
            "{{\"type\":\"ADDED\",\"object\":{}}}\n{{\"type\":\"ADDED\",\"object\":{}}}\n{{\"type\":\"ADDED\",\"object\":{}}}\n",
            deep("team-b-dev", "hidden-deep"),
            deep("team-a-dev", "shown-deep"),
            pod("team-a-dev", "after"),
        );
        let mut filter = WatchFilter::new(TeamA, false);
        let mut out = Vec::new();
        for chunk in events.as_bytes().chunks(97) {
            filter.feed(chunk, &mut out).unwrap();
        }
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("hidden-deep"));
        assert!(
            text.contains("shown-deep"),
            "a deep object is judged and sent whole"
        );
        assert!(
            text.contains("\"after\""),
            "the watch goes on after a deep object"
        );
    }

    /// A value that never ends is held only up to the limit, in lists and
    /// in watches, however it is cut.
    #[test]
    fn a_value_that_never_ends_is_refused_past_the_limit() {
        let endless = vec![b'a'; 64 * 1024];
        // Feeds `start`, then `endless` until refused, within the limit.
        let refusal = |feed: &mut dyn FnMut(&[u8]) -> Result<(), FilterError>, start: &[u8]| {
            feed(start).unwrap();
            let mut fed = 0;
            loop {
                match feed(&endless) {
                    Ok(()) => fed += endless.len(),
                    Err(error) => break error,
                }
                assert!(fed <= super::super::scan::MAX_VALUE + endless.len());
            }
        };
        for start in [
            &br#"{"items":[{"metadata":{"name":""#[..],
            br#"{"items":[""#,
        ] {
            let mut filter = ListFilter::new(TeamA, false);
            let mut out = Vec::new();
            let error = refusal(&mut |chunk| filter.feed(chunk, &mut out), start);
            assert!(
                matches!(error, FilterError::Scan(ScanError::TooLarge)),
                "{error}"
            );
        }
        let mut filter = WatchFilter::new(TeamA, false);
        let mut out = Vec::new();
        let start = br#"{"type":"ADDED","object":{"metadata":{"name":""#;
        let error = refusal(&mut |chunk| filter.feed(chunk, &mut out), start);
        assert!(
            matches!(error, FilterError::Scan(ScanError::TooLarge)),
            "{error}"
        );
        assert!(out.is_empty());
    }

    #[test]
    fn an_object_leaving_the_view_is_deleted_as_it_was_last_shown() {
        let node = |pool: &str, secret: &str| {
            json!({"kind": "Node", "apiVersion": "v1",
                   "metadata": {"name": "n1", "uid": "n1", "resourceVersion": "5", "labels": {"pool": pool}},
                   "spec": {"note": secret}})
        };
        let sent = watch(
            &[
                json!({"type": "ADDED", "object": node("a", "old")}),
                json!({"type": "MODIFIED", "object": node("b", "new-and-not-yours")}),
            ],
            16,
        );
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[1]["type"], "DELETED");
        assert_eq!(
            sent[1]["object"],
            json!({"kind": "Node", "apiVersion": "v1", "metadata": {"name": "n1", "uid": "n1", "resourceVersion": "5"}})
        );
        assert!(!sent[1].to_string().contains("new-and-not-yours"));
    }
}
