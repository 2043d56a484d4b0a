//! Owns the TOML form of the database: reading a file or one entry (a
//! command) with the line and key path of every problem, and writing a
//! database back (every key explicit, so a written file reads back to
//! the same entries).
//!
//! ```toml
//! [[entry]]
//! name = "echo-pes"
//! action = "allow"
//! namespace = "psk"
//! identity = "pe-echo-*"
//! roles = ["pe", "pu"]
//! pools = ["echo"]
//! addresses = ["own"]
//! ```

use std::fmt::Write as _;
use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::entry::{Entry, Located, LocatedList, RawEntry};
use super::error::{line_column, ApdError, KeyPath, Problem};

fn syntax(text: &str, error: toml::de::Error) -> ApdError {
    let (line, column) = line_column(text, error.span().map_or(0, |s| s.start));
    ApdError::Syntax {
        line,
        column,
        error,
    }
}

fn invalid(text: &str, at: Range<usize>, key: KeyPath, problem: Problem) -> ApdError {
    ApdError::Invalid {
        line: Some(line_column(text, at.start).0),
        key,
        problem: Box::new(problem),
    }
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "string",
        DeValue::Integer(_) => "integer",
        DeValue::Float(_) => "float",
        DeValue::Boolean(_) => "boolean",
        DeValue::Datetime(_) => "date-time",
        DeValue::Array(_) => "list",
        DeValue::Table(_) => "table",
    }
}

/// The entries of a database file, in order, names not yet checked for
/// uniqueness (with where each name is).
pub(crate) fn read_entries(text: &str) -> Result<Vec<(Entry, Range<usize>)>, ApdError> {
    let doc = DeTable::parse(text).map_err(|e| syntax(text, e))?;
    let mut out = Vec::new();
    for (key, value) in doc.get_ref().iter() {
        if key.get_ref().as_ref() != "entry" {
            return Err(invalid(
                text,
                key.span(),
                KeyPath::default().key(key.get_ref()),
                Problem::UnknownKey,
            ));
        }
        let DeValue::Array(tables) = value.get_ref() else {
            return Err(invalid(
                text,
                value.span(),
                KeyPath::default().key("entry"),
                Problem::Type {
                    expected: "a list of tables ([[entry]])",
                    found: type_name(value.get_ref()),
                },
            ));
        };
        for (i, t) in tables.iter().enumerate() {
            out.push(read_entry(text, t, Some(i))?);
        }
    }
    Ok(out)
}

/// One entry given as a TOML table (`name = "..."` and so on): a command.
pub(crate) fn read_one(text: &str) -> Result<Entry, ApdError> {
    let doc = DeTable::parse(text).map_err(|e| syntax(text, e))?;
    let span = doc.span();
    let value = Spanned::new(span, DeValue::Table(doc.into_inner()));
    read_entry(text, &value, None).map(|(e, _)| e)
}

fn read_entry(
    text: &str,
    value: &Spanned<DeValue<'_>>,
    entry: Option<usize>,
) -> Result<(Entry, Range<usize>), ApdError> {
    let path = || KeyPath::entry(entry);
    let DeValue::Table(table) = value.get_ref() else {
        return Err(invalid(
            text,
            value.span(),
            path(),
            Problem::Type {
                expected: "a table",
                found: type_name(value.get_ref()),
            },
        ));
    };
    let string = |key: &str, v: &'_ Spanned<DeValue<'_>>| -> Result<(), ApdError> {
        match v.get_ref() {
            DeValue::String(_) => Ok(()),
            other => Err(invalid(
                text,
                v.span(),
                path().key(key),
                Problem::Type {
                    expected: "a string",
                    found: type_name(other),
                },
            )),
        }
    };
    // The table's own span starts at its first key; its header is the
    // line before (what a missing key is reported at).
    let mut raw = RawEntry {
        at: Some(header(text, value.span())),
        ..RawEntry::default()
    };
    for (k, v) in table.iter() {
        let key = k.get_ref().as_ref();
        match key {
            "name" | "action" | "namespace" | "identity" | "comment" => {
                string(key, v)?;
                let l = located(v);
                match key {
                    "name" => raw.name = l,
                    "action" => raw.action = l,
                    "namespace" => raw.namespace = l,
                    "identity" => raw.identity = l,
                    _ => raw.comment = l,
                }
            }
            "roles" => raw.roles = Some(list(text, v, path().key(key))?),
            "pools" => raw.pools = Some(list(text, v, path().key(key))?),
            "addresses" => raw.addresses = Some(list(text, v, path().key(key))?),
            _ => {
                return Err(invalid(
                    text,
                    k.span(),
                    path().key(key),
                    Problem::UnknownKey,
                ))
            }
        }
    }
    let entry = raw.validate(entry, Some(text))?;
    let name_at = raw
        .name
        .as_ref()
        .and_then(|n| n.at.clone())
        .unwrap_or_else(|| value.span());
    Ok((entry, name_at))
}

fn located<'a>(v: &'a Spanned<DeValue<'_>>) -> Option<Located<'a>> {
    match v.get_ref() {
        DeValue::String(s) => Some(Located {
            text: s.as_ref(),
            at: Some(v.span()),
        }),
        _ => None,
    }
}

fn list<'a>(
    text: &str,
    v: &'a Spanned<DeValue<'_>>,
    path: KeyPath,
) -> Result<LocatedList<'a>, ApdError> {
    let DeValue::Array(items) = v.get_ref() else {
        return Err(invalid(
            text,
            v.span(),
            path,
            Problem::Type {
                expected: "a list of strings",
                found: type_name(v.get_ref()),
            },
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match located(item) {
            Some(l) => out.push(l),
            None => {
                return Err(invalid(
                    text,
                    item.span(),
                    path.item(i),
                    Problem::Type {
                        expected: "a string",
                        found: type_name(item.get_ref()),
                    },
                ))
            }
        }
    }
    Ok(LocatedList {
        items: out,
        at: Some(v.span()),
    })
}

/// Where the `[[entry]]` header of a table that starts at `span` is: the
/// last `[[` before it, if any.
fn header(text: &str, span: Range<usize>) -> Range<usize> {
    let before = text.get(..span.start).unwrap_or("");
    match before.rfind("[[") {
        Some(h) if !before[h..].contains('=') => h..span.end,
        _ => span,
    }
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn quote_list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<String> = items.map(quote).collect();
    format!("[{}]", v.join(", "))
}

/// The header of a written database.
pub(crate) const HEADER: &str = "\
# rserpool authorised peer database (docs/security.md). Entries in order;
# the first whose identity and scope match a request decides, and a
# request no entry matches is denied. Keys: name, action (allow|deny),
# namespace (psk|cert|dns|ip|anonymous|authenticated|any), identity,
# roles (pe|pu|registrar|admin), pools, addresses (own|any|CIDR), comment.
";

/// The TOML text of `entries`.
pub(crate) fn write(entries: &[Entry]) -> String {
    let mut out = String::from(HEADER);
    for e in entries {
        let spec = e.to_spec();
        out.push_str("\n[[entry]]\n");
        let _ = writeln!(out, "name = {}", quote(&spec.name));
        let _ = writeln!(out, "action = {}", quote(&spec.action));
        let _ = writeln!(out, "namespace = {}", quote(&spec.namespace));
        if let Some(i) = &spec.identity {
            let _ = writeln!(out, "identity = {}", quote(i));
        }
        let _ = writeln!(
            out,
            "roles = {}",
            quote_list(spec.roles.iter().map(String::as_str))
        );
        for (key, list) in [("pools", &spec.pools), ("addresses", &spec.addresses)] {
            if let Some(l) = list {
                let _ = writeln!(out, "{key} = {}", quote_list(l.iter().map(String::as_str)));
            }
        }
        if let Some(c) = &spec.comment {
            let _ = writeln!(out, "comment = {}", quote(c));
        }
    }
    out
}
