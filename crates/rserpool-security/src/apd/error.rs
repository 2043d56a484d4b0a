//! Owns the database's errors: [`ApdError`] (what went wrong, where: the
//! line and the key path), [`KeyPath`] and [`Problem`] (what is wrong
//! with one value). An error always means that nothing changed.

use std::fmt;
use std::path::PathBuf;

use super::net::NetError;
use super::pattern::{PatternError, UnknownNamespace};
use super::scope::{PoolError, Role, UnknownRole};
use super::EntrySelector;
use crate::SecurityError;

/// Where in a file or command a value is: `entry[2].roles[1]` (entries and
/// list items count from 0, like positions in the database).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPath {
    /// The entry (`None`: the top level, or a command's one entry).
    pub entry: Option<usize>,
    /// The key in it (`None`: the entry as a whole).
    pub key: Option<String>,
    /// The item of a list value.
    pub item: Option<usize>,
}

impl KeyPath {
    pub(crate) fn entry(entry: Option<usize>) -> KeyPath {
        KeyPath {
            entry,
            ..KeyPath::default()
        }
    }

    pub(crate) fn key(mut self, key: &str) -> KeyPath {
        self.key = Some(key.to_owned());
        self
    }

    pub(crate) fn item(mut self, item: usize) -> KeyPath {
        self.item = Some(item);
        self
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut any = false;
        if let Some(e) = self.entry {
            write!(f, "entry[{e}]")?;
            any = true;
        }
        if let Some(k) = &self.key {
            if any {
                f.write_str(".")?;
            }
            f.write_str(k)?;
            any = true;
        }
        if let Some(i) = self.item {
            write!(f, "[{i}]")?;
            any = true;
        }
        if !any {
            f.write_str("the file")?;
        }
        Ok(())
    }
}

/// What is wrong with one value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// A key that must be there is not.
    #[error("missing (required)")]
    Missing,
    /// A key the format does not have.
    #[error("unknown key (an entry has name, action, namespace, identity, roles, pools, addresses, comment; the file has [[entry]] tables)")]
    UnknownKey,
    /// A value of the wrong type.
    #[error("is a {found}, expected {expected}")]
    Type {
        /// What it must be.
        expected: &'static str,
        /// What it is.
        found: &'static str,
    },
    /// A name that is empty, too long or has other characters than
    /// letters, digits, `.`, `_`, `-`.
    #[error("{0:?} is no entry name (1 to 200 letters, digits, '.', '_', '-', not only digits)")]
    Name(String),
    /// Two entries with one name.
    #[error("the name {name:?} is already that of entry {first}")]
    DuplicateName {
        /// The name.
        name: String,
        /// The position of the entry that has it.
        first: usize,
    },
    /// An action other than allow or deny.
    #[error("unknown action {0:?} (allow or deny)")]
    Action(String),
    /// An unknown namespace.
    #[error(transparent)]
    Namespace(#[from] UnknownNamespace),
    /// An identity pattern that does not parse for its namespace.
    #[error(transparent)]
    Pattern(#[from] PatternError),
    /// An unknown role.
    #[error(transparent)]
    Role(#[from] UnknownRole),
    /// A role listed twice.
    #[error("role {0} is listed twice")]
    DuplicateRole(Role),
    /// A pool pattern that does not parse.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// An address item that does not parse.
    #[error(transparent)]
    Address(#[from] NetError),
    /// An empty list where one item at least is needed.
    #[error("is empty; give one item at least")]
    EmptyList,
}

/// Why a database, an entry or a change was refused. Nothing changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApdError {
    /// The text is no TOML.
    #[error("line {line}, column {column}: {}", error.message().trim_end())]
    Syntax {
        /// Its line (from 1).
        line: usize,
        /// Its column (from 1, in characters).
        column: usize,
        /// The parser's error.
        #[source]
        error: toml::de::Error,
    },
    /// A value is wrong.
    #[error("{}{key}: {problem}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
    Invalid {
        /// Its line (from 1), when it comes from a text.
        line: Option<usize>,
        /// Where it is.
        key: KeyPath,
        /// What is wrong.
        problem: Box<Problem>,
    },
    /// A change names an entry the database does not have.
    #[error("no entry {0}")]
    NoSuchEntry(EntrySelector),
    /// A change names a position past the end.
    #[error("position {position} is out of range: the database has {len} entries (positions 0 to {len} for insert, to {} otherwise)", len.saturating_sub(1))]
    Position {
        /// The position asked for.
        position: usize,
        /// The number of entries.
        len: usize,
    },
    /// More entries than a database may hold ([`super::MAX_ENTRIES`]).
    #[error("{entries} entries: a database holds at most {max}")]
    TooManyEntries {
        /// The entries asked for.
        entries: usize,
        /// The most it may hold.
        max: usize,
    },
    /// The file is not UTF-8 text.
    #[error("line {line}: is not UTF-8 text")]
    Encoding {
        /// The line of the first byte that is not.
        line: usize,
    },
    /// The database file could not be read.
    #[error(transparent)]
    Read(#[from] SecurityError),
    /// An error in a file.
    #[error("{}: {error}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong in it.
        error: Box<ApdError>,
    },
}

impl ApdError {
    /// The line (from 1) the error is on, if it is in a text.
    pub fn line(&self) -> Option<usize> {
        match self {
            ApdError::Syntax { line, .. } | ApdError::Encoding { line } => Some(*line),
            ApdError::Invalid { line, .. } => *line,
            ApdError::File { error, .. } => error.line(),
            _ => None,
        }
    }

    /// The key path of a wrong value.
    pub fn key(&self) -> Option<&KeyPath> {
        match self {
            ApdError::Invalid { key, .. } => Some(key),
            ApdError::File { error, .. } => error.key(),
            _ => None,
        }
    }

    /// What is wrong with the value, for a wrong value.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            ApdError::Invalid { problem, .. } => Some(&**problem),
            ApdError::File { error, .. } => error.problem(),
            _ => None,
        }
    }
}

/// The line and column (from 1; columns in characters) of byte `offset`
/// of `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit_once('\n')
        .map_or(before, |(_, l)| l)
        .chars()
        .count()
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_and_lines() {
        let k = KeyPath::entry(Some(2)).key("roles").item(1);
        assert_eq!(k.to_string(), "entry[2].roles[1]");
        assert_eq!(KeyPath::entry(None).key("roles").to_string(), "roles");
        assert_eq!(KeyPath::entry(Some(0)).to_string(), "entry[0]");
        assert_eq!(KeyPath::default().to_string(), "the file");
        assert_eq!(line_column("ab\ncd\né", 6), (3, 1));
        assert_eq!(line_column("ab\ncd\né", 7), (3, 1));
        assert_eq!(line_column("ab\ncd\né", 8), (3, 2));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("ab", 0), (1, 1));
        let e = ApdError::Invalid {
            line: Some(7),
            key: k,
            problem: Box::new(Problem::Missing),
        };
        assert_eq!(
            e.to_string(),
            "line 7: entry[2].roles[1]: missing (required)"
        );
        assert_eq!(e.line(), Some(7));
    }
}
