//! The layers of the server crate, and the check that imports between its
//! modules run only downwards.
//!
//! Every file under `src/` belongs to its top-level module (`clusters/routes.rs`
//! to `clusters`). A module may use the modules of the layers below its own;
//! modules of one layer do not use each other, except in the composition root,
//! which is one unit. The paths a file names (`use crate::…`, `crate::…`,
//! `$crate::…`, outside comments and string literals) are its imports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The layers, lowest first, and the modules on each.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "foundation",
        &["error", "kubernetes", "secrets", "certificates"],
    ),
    ("request context", &["context", "extract"]),
    ("identity and telemetry", &["identity", "telemetry"]),
    ("permissions", &["permissions"]),
    (
        "domains owning their store contracts",
        &["clusters", "audit"],
    ),
    ("stores and cluster connections", &["store", "upstream"]),
    ("tenant views", &["views"]),
    ("features", &["objects", "proxy"]),
    (
        "composition root",
        &["config", "state", "health", "openapi", "app", "lib", "main"],
    ),
];

/// The layer whose modules may use each other.
const COMPOSITION_ROOT: &str = "composition root";

/// Files that are not part of the structure they check.
const UNCHECKED: &[&str] = &["layers_test.rs"];

fn layer_of(module: &str) -> Option<(usize, &'static str)> {
    LAYERS
        .iter()
        .enumerate()
        .find(|(_, (_, modules))| modules.contains(&module))
        .map(|(index, (name, _))| (index, *name))
}

/// The top-level module a file under `src/` belongs to.
fn module_of(relative: &Path) -> String {
    let first = relative
        .components()
        .next()
        .map(|component| component.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    first.strip_suffix(".rs").unwrap_or(&first).to_owned()
}

/// The source with comments and the contents of string and character
/// literals blanked (line breaks kept, so line numbers stay right).
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut code = String::with_capacity(source.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                code.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    code.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    code.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    code.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && matches!(next, Some('#' | '"'))
            && !is_ident(chars.get(i.wrapping_sub(1)))
        {
            // A raw string: r"…", r#"…"#, …
            let hashes = chars[i + 1..].iter().take_while(|&&c| c == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                code.push(c);
                i += 1;
                continue;
            }
            let end: Vec<char> = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let open = i + 2 + hashes;
            code.extend(std::iter::repeat_n(' ', open - i));
            i = open;
            while i < chars.len() && !chars[i..].starts_with(&end) {
                code.push(blank(chars[i]));
                i += 1;
            }
            code.extend(std::iter::repeat_n(' ', end.len()));
            i += end.len();
        } else if c == '"' {
            code.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                let skip = if chars[i] == '\\' { 2 } else { 1 };
                for _ in 0..skip {
                    if let Some(&c) = chars.get(i) {
                        code.push(blank(c));
                    }
                    i += 1;
                }
            }
            code.push(' ');
            i += 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{…}'), or else a lifetime.
            let literal_end = if next == Some('\\') {
                chars[(i + 3).min(chars.len())..]
                    .iter()
                    .position(|&c| c == '\'')
                    .map(|at| i + 3 + at)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match literal_end {
                Some(end) => {
                    code.extend(std::iter::repeat_n(' ', end + 1 - i));
                    i = end + 1;
                }
                None => {
                    code.push(c);
                    i += 1;
                }
            }
        } else {
            code.push(c);
            i += 1;
        }
    }
    code
}

fn is_ident(c: Option<&char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || *c == '_')
}

fn leading_ident(text: &str) -> &str {
    let text = text.trim_start();
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The top-level modules a source names through `crate::`, each with the
/// line it is named on.
fn imports_of(source: &str) -> Vec<(usize, String)> {
    let code = code_only(source);
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        if is_ident(code[..at].chars().last().as_ref()) {
            continue;
        }
        let line = code[..at].matches('\n').count() + 1;
        let rest = code[at + "crate::".len()..].trim_start();
        let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut items = Vec::new();
            let mut start = 0;
            for (index, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        items.push(&group[start..index]);
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        items.push(&group[start..index]);
                        start = index + 1;
                    }
                    _ => {}
                }
            }
            items.into_iter().map(leading_ident).collect()
        } else {
            vec![leading_ident(rest)]
        };
        for name in names {
            if !name.is_empty() && name != "self" {
                found.push((line, name.to_owned()));
            }
        }
    }
    found
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
}

/// What runs against the layers, one readable line each.
fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut found = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for file in files {
        let relative = file.strip_prefix(src).expect("under src/");
        if UNCHECKED
            .iter()
            .any(|unchecked| relative == Path::new(unchecked))
        {
            continue;
        }
        let shown = Path::new("server/src").join(relative);
        let module = module_of(relative);
        seen.insert(module.clone());
        let Some((layer, layer_name)) = layer_of(&module) else {
            found.insert((
                shown.display().to_string(),
                0,
                format!("module `{module}` has no place in the layer table"),
            ));
            continue;
        };
        let source = std::fs::read_to_string(&file).expect("a readable source file");
        for (line, used) in imports_of(&source) {
            if used == module {
                continue;
            }
            let Some((used_layer, used_layer_name)) = layer_of(&used) else {
                found.insert((
                    shown.display().to_string(),
                    line,
                    format!("`{module}` uses `{used}`, which has no place in the layer table"),
                ));
                continue;
            };
            let allowed =
                used_layer < layer || (used_layer == layer && layer_name == COMPOSITION_ROOT);
            if !allowed {
                let direction = if used_layer == layer {
                    "beside"
                } else {
                    "above"
                };
                found.insert((
                    shown.display().to_string(),
                    line,
                    format!("`{module}` ({layer_name}) uses `{used}` ({used_layer_name}), a layer {direction} its own"),
                ));
            }
        }
    }
    for (_, modules) in LAYERS {
        for module in modules.iter().filter(|module| !seen.contains(**module)) {
            found.insert((
                "server/src/layers_test.rs".to_owned(),
                0,
                format!(
                    "the layer table names `{module}`, but no file under server/src belongs to it"
                ),
            ));
        }
    }
    found
        .into_iter()
        .map(|(file, line, what)| match line {
            0 => format!("{file}: {what}"),
            line => format!("{file}:{line}: {what}"),
        })
        .collect()
}

#[test]
fn imports_run_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src);
    assert!(
        found.is_empty(),
        "{} imports run against the layers (lowest first: {}):\n  {}",
        found.len(),
        LAYERS
            .iter()
            .map(|(name, modules)| format!("{name} [{}]", modules.join(", ")))
            .collect::<Vec<_>>()
            .join(" < "),
        found.join("\n  ")
    );
}

#[test]
fn crate_paths_are_read_as_the_compiler_reads_them() {
    let source = r#"
use crate::error::ApiError;
use crate::{clusters::{Registry, ClusterRecord}, identity::Caller, self};
// use crate::commented::Out;
/* crate::blocked::Out */
let text = "crate::quoted::Out";
let raw = r"crate::raw::Out";
let c = '"'; let lifetime: &'static str = ""; crate::telemetry::traces::init();
pub(crate) fn f() { $crate::store::columns!() }
let quote = '\''; let backslash = '\\'; crate::secrets::SecretBox::new();
"#;
    let found: Vec<(usize, String)> = imports_of(source);
    let expected: Vec<(usize, String)> = [
        (2, "error"),
        (3, "clusters"),
        (3, "identity"),
        (8, "telemetry"),
        (9, "store"),
        (10, "secrets"),
    ]
    .into_iter()
    .map(|(line, name)| (line, name.to_owned()))
    .collect();
    assert_eq!(found, expected);
    assert_eq!(module_of(Path::new("clusters/routes.rs")), "clusters");
    assert_eq!(module_of(Path::new("state.rs")), "state");
}
