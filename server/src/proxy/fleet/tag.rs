//! Tagging an object or a `Table` row with its cluster: the
//! `kubeportal.io/cluster` annotation, and a row's leading `Cluster` cell.
//!
//! A list item is tagged in its bytes, as the cluster wrote them: the
//! annotation is spliced into `metadata.annotations` without parsing the
//! object, so a fleet list costs little more than copying its bytes. An
//! item the splice cannot place exactly (no `metadata` object, a key
//! written twice or with an escape, the annotation already there) takes
//! the slow path: parsed, tagged and written again.

use std::ops::Range;

use serde::Deserialize as _;
use serde_json::{json, Value};

use super::CLUSTER_ANNOTATION;
use crate::views;
use crate::views::scan::{at_most_one, members, only, whitespace, Member};

/// A leading column of a `Table`, naming each row's cluster.
pub(super) fn cluster_column() -> Value {
    json!({"name": "Cluster", "type": "string", "format": "", "priority": 0,
           "description": "The cluster the object is in (kubeportal's fleet view)."})
}

/// Sets the cluster annotation of a parsed object.
pub(super) fn annotate(object: &mut Value, cluster: &str) {
    if !object.is_object() {
        return;
    }
    let metadata = object
        .as_object_mut()
        .expect("checked")
        .entry("metadata")
        .or_insert_with(|| json!({}));
    if !metadata.is_object() {
        *metadata = json!({});
    }
    if let Some(metadata) = metadata.as_object_mut() {
        let annotations = metadata.entry("annotations").or_insert_with(|| json!({}));
        if !annotations.is_object() {
            *annotations = json!({});
        }
        annotations[CLUSTER_ANNOTATION] = Value::from(cluster);
    }
}

/// Gives a parsed `Table` row its cluster: the first cell, and the
/// annotation of its object.
pub(super) fn tag_row(row: &mut Value, cluster: &str) {
    if let Some(cells) = row.get_mut("cells").and_then(Value::as_array_mut) {
        cells.insert(0, Value::from(cluster));
    }
    if let Some(object) = row.get_mut("object") {
        annotate(object, cluster);
    }
}

/// One cluster's tags, written once as JSON.
pub(super) struct Tagger {
    cluster: String,
    /// `"kubeportal.io/cluster":"<cluster>"`
    annotation: Vec<u8>,
    /// `"<cluster>"`
    cell: Vec<u8>,
}

/// What became of one list element.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Tagged {
    Written,
    /// The caller's view leaves it out.
    Hidden,
    /// It cannot be read (nested past the parser's limit): left out.
    Unreadable,
}

impl Tagger {
    pub(super) fn new(cluster: &str) -> Self {
        let cell = serde_json::to_vec(cluster).expect("a string serializes");
        let mut annotation = serde_json::to_vec(CLUSTER_ANNOTATION).expect("a string serializes");
        annotation.push(b':');
        annotation.extend_from_slice(&cell);
        Self {
            cluster: cluster.to_owned(),
            annotation,
            cell,
        }
    }

    /// Writes one element of a list (`rows` when `row`, else `items`) to
    /// `out`, tagged with the cluster, unless `judge` hides it; a row's
    /// object is removed when `strip_object`.
    /// `found` are the element's members, when the splitter read them.
    pub(super) fn element(
        &self,
        element: &[u8],
        found: Option<Vec<Member<'_>>>,
        row: bool,
        judge: Option<&views::ObjectJudge>,
        strip_object: bool,
        out: &mut Vec<u8>,
    ) -> Tagged {
        let spliced = if row {
            self.splice_row(element, found, judge, strip_object, out)
        } else {
            self.splice_item(element, found, judge, out)
        };
        match spliced {
            Some(tagged) => tagged,
            None => self.parsed(element, row, judge, strip_object, out),
        }
    }

    /// The fast path for an item; `None` when it must be parsed.
    fn splice_item(
        &self,
        item: &[u8],
        found: Option<Vec<Member<'_>>>,
        judge: Option<&views::ObjectJudge>,
        out: &mut Vec<u8>,
    ) -> Option<Tagged> {
        let placed = self.place_annotation(item, found)?;
        if let Some(judge) = judge {
            if !visible(judge, &item[placed.metadata.clone()], &placed.inside) {
                return Some(Tagged::Hidden);
            }
        }
        apply(item, &mut [placed.edit], out);
        Some(Tagged::Written)
    }

    /// The fast path for a `Table` row; `None` when it must be parsed.
    fn splice_row(
        &self,
        row: &[u8],
        found: Option<Vec<Member<'_>>>,
        judge: Option<&views::ObjectJudge>,
        strip_object: bool,
        out: &mut Vec<u8>,
    ) -> Option<Tagged> {
        let found = match found {
            Some(found) => found,
            None => members(row)?,
        };
        let cells = found[only(&found, b"cells")?].value.clone();
        let object = at_most_one(&found, b"object")?;
        let mut edits = Vec::with_capacity(2);
        if row.get(cells.start) != Some(&b'[') {
            return None;
        }
        let first = cells.start + 1 + whitespace(&row[cells.start + 1..]);
        let mut cell = self.cell.clone();
        if row.get(first) != Some(&b']') {
            cell.push(b',');
        }
        edits.push((cells.start + 1..cells.start + 1, cell));
        match object {
            Some(index) => {
                let value = found[index].value.clone();
                let placed = self.place_annotation(&row[value.clone()], None)?;
                if let Some(judge) = judge {
                    let metadata =
                        placed.metadata.start + value.start..placed.metadata.end + value.start;
                    if !visible(judge, &row[metadata], &placed.inside) {
                        return Some(Tagged::Hidden);
                    }
                }
                if strip_object {
                    edits.push((member_extent(&found, index), Vec::new()));
                } else {
                    let (range, text) = placed.edit;
                    edits.push((range.start + value.start..range.end + value.start, text));
                }
            }
            // Without its object, a row cannot be judged.
            None if judge.is_some() => return Some(Tagged::Hidden),
            None => {}
        }
        apply(row, &mut edits, out);
        Some(Tagged::Written)
    }

    /// Where the annotation goes in `object`: into `metadata.annotations`,
    /// or a new `annotations` member first in `metadata`.
    fn place_annotation<'a>(
        &self,
        object: &'a [u8],
        found: Option<Vec<Member<'a>>>,
    ) -> Option<Placed<'a>> {
        let mut found = match found {
            Some(found) => found,
            None => members(object)?,
        };
        let index = only(&found, b"metadata")?;
        let metadata = found[index].value.clone();
        if object.get(metadata.start) != Some(&b'{') {
            return None;
        }
        // Read with the object, or now.
        let mut inside = match found[index].inner.take() {
            Some(inside) => inside,
            None => members(&object[metadata.clone()])?,
        };
        let edit = match at_most_one(&inside, b"annotations")? {
            Some(index) => {
                let annotations = inside[index].value.clone();
                let annotations =
                    metadata.start + annotations.start..metadata.start + annotations.end;
                if object.get(annotations.start) != Some(&b'{') {
                    return None;
                }
                let present = match inside[index].inner.take() {
                    Some(present) => present,
                    None => members(&object[annotations.clone()])?,
                };
                if present
                    .iter()
                    .any(|member| member.key == CLUSTER_ANNOTATION.as_bytes())
                {
                    return None;
                }
                let mut text = self.annotation.clone();
                if !present.is_empty() {
                    text.push(b',');
                }
                (annotations.start + 1..annotations.start + 1, text)
            }
            None => {
                let mut text = b"\"annotations\":{".to_vec();
                text.extend_from_slice(&self.annotation);
                text.push(b'}');
                if !inside.is_empty() {
                    text.push(b',');
                }
                (metadata.start + 1..metadata.start + 1, text)
            }
        };
        Some(Placed {
            metadata,
            inside,
            edit,
        })
    }

    /// The slow path: parse, judge, tag, write.
    fn parsed(
        &self,
        element: &[u8],
        row: bool,
        judge: Option<&views::ObjectJudge>,
        strip_object: bool,
        out: &mut Vec<u8>,
    ) -> Tagged {
        let Ok(mut entry) = serde_json::from_slice::<Value>(element) else {
            return Tagged::Unreadable;
        };
        if let Some(judge) = judge {
            use views::Judge as _;
            let metadata = if row {
                entry.pointer("/object/metadata")
            } else {
                entry.get("metadata")
            }
            .and_then(|metadata| views::ObjectMeta::deserialize(metadata).ok());
            if !metadata.is_some_and(|metadata| judge.visible(&metadata)) {
                return Tagged::Hidden;
            }
        }
        if row {
            if strip_object {
                if let Some(row) = entry.as_object_mut() {
                    row.remove("object");
                }
            }
            tag_row(&mut entry, &self.cluster);
        } else {
            annotate(&mut entry, &self.cluster);
        }
        serde_json::to_writer(&mut *out, &entry).expect("a value serializes");
        Tagged::Written
    }
}

/// Where an object's metadata lies, and the edit that annotates it.
struct Placed<'a> {
    metadata: Range<usize>,
    /// The metadata's members (relative to it).
    inside: Vec<Member<'a>>,
    edit: (Range<usize>, Vec<u8>),
}

fn visible(judge: &views::ObjectJudge, metadata: &[u8], inside: &[Member<'_>]) -> bool {
    use views::Judge as _;
    views::ObjectMeta::read(metadata, Some(inside)).is_some_and(|metadata| judge.visible(&metadata))
}

/// The bytes a member takes in its object, with one separating comma.
fn member_extent(found: &[Member<'_>], index: usize) -> Range<usize> {
    if index > 0 {
        found[index - 1].value.end..found[index].value.end
    } else if let Some(next) = found.get(1) {
        found[0].start..next.start
    } else {
        found[0].start..found[0].value.end
    }
}

/// Writes `source` with each range replaced by its text; the ranges do not
/// overlap.
fn apply(source: &[u8], edits: &mut [(Range<usize>, Vec<u8>)], out: &mut Vec<u8>) {
    edits.sort_by_key(|(range, _)| range.start);
    let mut at = 0;
    for (range, text) in edits.iter() {
        out.extend_from_slice(&source[at..range.start]);
        out.extend_from_slice(text);
        at = range.end;
    }
    out.extend_from_slice(&source[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tagged(element: &str, row: bool, strip_object: bool) -> (Tagged, Value, bool) {
        let tagger = Tagger::new("prod-1");
        let mut fast = Vec::new();
        let spliced = if row {
            tagger.splice_row(element.as_bytes(), None, None, strip_object, &mut fast)
        } else {
            tagger.splice_item(element.as_bytes(), None, None, &mut fast)
        };
        // The members a splitter found make no difference.
        let mut given = Vec::new();
        let found = members(element.as_bytes());
        let with_members = if row {
            tagger.splice_row(element.as_bytes(), found, None, strip_object, &mut given)
        } else {
            tagger.splice_item(element.as_bytes(), found, None, &mut given)
        };
        assert_eq!(with_members, spliced, "{element}");
        assert_eq!(given, fast, "{element}");
        let mut slow = Vec::new();
        let outcome = tagger.parsed(element.as_bytes(), row, None, strip_object, &mut slow);
        let expected: Value = serde_json::from_slice(&slow).unwrap_or_default();
        if spliced.is_some() {
            let fast: Value = serde_json::from_slice(&fast)
                .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&fast)));
            assert_eq!(fast, expected, "{element}");
        }
        (outcome, expected, spliced.is_some())
    }

    #[test]
    fn a_spliced_item_reads_as_the_parsed_one() {
        for (item, fast) in [
            (
                r#"{"kind":"Pod","metadata":{"name":"a","annotations":{"x":"1"}},"spec":{}}"#,
                true,
            ),
            (r#"{"metadata":{"name":"a","annotations":{}}}"#, true),
            (r#"{"metadata":{"name":"a"}}"#, true),
            (r#"{"metadata":{}}"#, true),
            (r#" { "metadata" : { "annotations" : { } } } "#, true),
            (
                r#"{"metadata":{"name":"}{\"a"},"status":{"m":"metadata"}}"#,
                true,
            ),
            // The slow path: nothing to splice into, or no single reading.
            (r#"{"kind":"Pod"}"#, false),
            (r#"{"metadata":null}"#, false),
            (r#"{"metadata":{"annotations":null}}"#, false),
            (
                r#"{"metadata":{"name":"a"},"metadata":{"name":"b"}}"#,
                false,
            ),
            (
                r#"{"metadata":{"annotations":{},"annotations":{"x":"1"}}}"#,
                false,
            ),
            (
                r#"{"met\u0061data":{"name":"b"},"metadata":{"name":"a"}}"#,
                false,
            ),
            (
                r#"{"metadata":{"annotations":{"kubeportal.io/cluster":"other"}}}"#,
                false,
            ),
        ] {
            let (outcome, value, spliced) = tagged(item, false, false);
            assert_eq!(outcome, Tagged::Written, "{item}");
            assert_eq!(spliced, fast, "{item}");
            assert_eq!(
                value["metadata"]["annotations"][CLUSTER_ANNOTATION], "prod-1",
                "{item}"
            );
        }
    }

    #[test]
    fn a_spliced_row_reads_as_the_parsed_one() {
        for (row, fast) in [
            (
                r#"{"cells":["a",1],"object":{"metadata":{"name":"a"}}}"#,
                true,
            ),
            (r#"{"object":{"metadata":{"name":"a"}},"cells":[]}"#, true),
            (r#"{"cells":["a"]}"#, true),
            (r#"{"cells":["a"],"cells":["b"]}"#, false),
            (r#"{"cells":"a"}"#, false),
        ] {
            for strip in [false, true] {
                let (outcome, value, spliced) = tagged(row, true, strip);
                assert_eq!(outcome, Tagged::Written, "{row}");
                assert_eq!(spliced, fast, "{row}");
                if fast {
                    assert_eq!(value["cells"][0], "prod-1", "{row}");
                    assert_eq!(
                        value.get("object").is_some(),
                        !strip && row.contains("object")
                    );
                }
            }
        }
        let (outcome, _, _) = tagged(r#"{"cells":["#, true, false);
        assert_eq!(outcome, Tagged::Unreadable);
    }

    #[test]
    fn a_removed_member_takes_one_comma() {
        let source = br#"{"a":1,"b":2,"c":3}"#;
        let found = members(source).unwrap();
        for (index, expected) in [
            (0, r#"{"b":2,"c":3}"#),
            (1, r#"{"a":1,"c":3}"#),
            (2, r#"{"a":1,"b":2}"#),
        ] {
            let mut out = Vec::new();
            apply(
                source,
                &mut [(member_extent(&found, index), Vec::new())],
                &mut out,
            );
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
        let single = br#"{ "a":1 }"#;
        let mut out = Vec::new();
        apply(
            single,
            &mut [(member_extent(&members(single).unwrap(), 0), Vec::new())],
            &mut out,
        );
        assert_eq!(String::from_utf8(out).unwrap(), "{  }");
    }
}
