//! Step one of loading: TOML text to raw structs, with a parse error turned into one violation.
//!
//! toml reports where a problem is as a byte span. The violation's path is recovered from the
//! text around it: the table headers above the span (counting `[[array]]` entries) and the key
//! the span starts at, so that `colour = 1` under the second `[[zone.members]]` is reported at
//! `zone.members[1].colour`. Where that is not possible the path is the table, or `(file)`.

use std::collections::BTreeMap;

use crate::raw::RawConfig;
use crate::violation::Violation;

/// Parses the text; a syntax error, unknown field or wrong type becomes one violation.
pub(crate) fn parse_raw(text: &str) -> Result<RawConfig, Violation> {
    parse_toml(text)
}

/// Parses TOML text into `T`; a failure as a violation with the TOML path and line of the
/// offending value.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, Violation> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().trim_end().replace('\n', "; ");
        match e.span() {
            Some(span) => {
                let (line, column) = line_column(text, span.start);
                Violation::error(
                    path_at(text, span.start),
                    format!("{message} (line {line}, column {column})"),
                )
            }
            None => Violation::error("(file)", message),
        }
    })
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The TOML path of the table the offset lies in, plus the key it points at, if any.
fn path_at(text: &str, offset: usize) -> String {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let mut table = String::new();
    // How many entries of each array of tables were opened so far, by header path.
    let mut entries: BTreeMap<String, usize> = BTreeMap::new();
    for line in text.get(..line_start).unwrap_or_default().lines() {
        if let Some(header) = header(line) {
            table = header.resolve(&mut entries);
        }
    }
    let current_line = text
        .get(line_start..)
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default();
    if let Some(header) = header(current_line) {
        // The error is about a table itself (e.g. a missing field): name that table.
        return header.resolve(&mut entries);
    }
    if current_line.trim_start().starts_with('[') {
        // A malformed header belongs to no table yet.
        return "(file)".to_owned();
    }
    let key = bare_key_before_equals(current_line);
    match (table.is_empty(), key) {
        (true, Some(key)) => key.to_owned(),
        (false, Some(key)) => format!("{table}.{key}"),
        (true, None) => "(file)".to_owned(),
        (false, None) => table,
    }
}

/// A `[table]` or `[[array]]` header line.
struct Header<'a> {
    name: &'a str,
    array: bool,
}

fn header(line: &str) -> Option<Header<'_>> {
    let line = line.split('#').next().unwrap_or_default().trim();
    if let Some(name) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
        return Some(Header {
            name: name.trim(),
            array: true,
        });
    }
    let name = line.strip_prefix('[').and_then(|l| l.strip_suffix(']'))?;
    Some(Header {
        name: name.trim(),
        array: false,
    })
}

impl Header<'_> {
    /// The path with array indices, e.g. `outside.agreement` → `outside[1].agreement`; counts
    /// a new entry for an array header.
    fn resolve(&self, entries: &mut BTreeMap<String, usize>) -> String {
        if self.array {
            *entries.entry(self.name.to_owned()).or_default() += 1;
        }
        let mut path = String::new();
        let mut prefix = String::new();
        for part in self.name.split('.').map(str::trim) {
            if !prefix.is_empty() {
                prefix.push('.');
                path.push('.');
            }
            prefix.push_str(part);
            path.push_str(part);
            if let Some(n) = entries.get(&prefix) {
                path.push_str(&format!("[{}]", n.saturating_sub(1)));
            }
        }
        path
    }
}

/// `key` in `key = value`, for a bare key.
fn bare_key_before_equals(line: &str) -> Option<&str> {
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
    bare.then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_counts_array_entries_and_nests_tables_under_them() {
        let text = "version = 1\n[[outside]]\nid = \"a\"\n[outside.agreement]\nx = 1\n\
                    [[outside]]\nid = \"b\"\n[outside.agreement]\ncolour = 2\n";
        let offset = text.find("colour").expect("colour is in the text");
        assert_eq!(path_at(text, offset), "outside[1].agreement.colour");
        assert_eq!(line_column(text, offset), (9, 1));
    }

    #[test]
    fn a_top_level_key_is_its_own_path() {
        assert_eq!(path_at("version = \"one\"\n", 10), "version");
    }

    #[test]
    fn a_wrong_type_is_reported_at_its_key_with_line_and_column() {
        let v = parse_raw("version = \"1\"\n").expect_err("a string version");
        assert_eq!(v.path, "version");
        assert!(
            v.message.contains("expected i64 (line 1, column 11)"),
            "{v}"
        );
    }

    #[test]
    fn a_missing_field_names_the_array_entry_it_is_missing_from() {
        let text = "[zone]\nid = \"x/y\"\n[[zone.members]]\nname = \"a\"\n\
                    [[zone.members]]\nname = \"b\"\n";
        let offset = text.rfind("[[zone.members]]").expect("second entry");
        assert_eq!(path_at(text, offset), "zone.members[1]");
    }

    #[test]
    fn a_malformed_header_is_reported_in_one_line_for_the_file() {
        let v = parse_raw("version = 1\n[listen\n").expect_err("unclosed header");
        assert_eq!(v.path, "(file)");
        assert!(!v.message.contains('\n'), "{v}");
    }
}
