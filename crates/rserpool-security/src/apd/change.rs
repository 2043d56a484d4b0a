//! Owns changes at run time: [`Change`] (add, insert, modify, move,
//! delete; listing is [`Apd::entries`]) and [`EntrySelector`] (an entry
//! by position or name). A change is checked in full on a copy and only
//! then replaces the database, so an invalid one changes nothing.
//!
//! After a change the registrar checks what it holds (connections,
//! registrations, peer associations) against the new database with the
//! same decision functions; each [`super::Decision`] names the entry that
//! now denies, for the report.

use std::fmt;
use std::str::FromStr;

use super::defaults::Origin;
use super::entry::Entry;
use super::error::ApdError;
use super::Apd;

/// An entry, by position (from 0) or by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EntrySelector {
    /// The entry at this position.
    Index(usize),
    /// The entry with this name.
    Name(String),
}

/// A number is a position, anything else a name (names are never only
/// digits).
impl FromStr for EntrySelector {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.parse::<usize>() {
            Ok(i) if s.bytes().all(|b| b.is_ascii_digit()) => EntrySelector::Index(i),
            _ => EntrySelector::Name(s.to_owned()),
        })
    }
}

impl fmt::Display for EntrySelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntrySelector::Index(i) => write!(f, "at position {i}"),
            EntrySelector::Name(n) => write!(f, "named {n:?}"),
        }
    }
}

impl From<usize> for EntrySelector {
    fn from(i: usize) -> Self {
        EntrySelector::Index(i)
    }
}

impl From<&str> for EntrySelector {
    fn from(n: &str) -> Self {
        EntrySelector::Name(n.to_owned())
    }
}

/// A change to the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Append an entry (after the last; mind a closing deny written in
    /// the file: an entry after it never decides).
    Add(Entry),
    /// Insert an entry at a position (0 to the number of entries): the
    /// entries from there on move one down.
    Insert {
        /// Where it goes.
        position: usize,
        /// The entry.
        entry: Entry,
    },
    /// Replace an entry in place (the new one may have another name).
    Modify {
        /// Which.
        entry: EntrySelector,
        /// What replaces it.
        with: Entry,
    },
    /// Move an entry: `to` is its position afterwards.
    Move {
        /// Which.
        entry: EntrySelector,
        /// Its new position (0 to the number of entries - 1).
        to: usize,
    },
    /// Delete an entry.
    Delete(EntrySelector),
}

impl Apd {
    /// The position of the entry `sel` names.
    pub fn position(&self, sel: &EntrySelector) -> Result<usize, ApdError> {
        match sel {
            EntrySelector::Index(i) if *i < self.entries.len() => Ok(*i),
            EntrySelector::Name(n) => self
                .find(n)
                .map(|(i, _)| i)
                .ok_or_else(|| ApdError::NoSuchEntry(sel.clone())),
            EntrySelector::Index(_) => Err(ApdError::NoSuchEntry(sel.clone())),
        }
    }

    /// Apply `change`: all or nothing. Returns the position of the entry
    /// it added, replaced or moved (for a delete: where it was).
    pub fn apply(&mut self, change: Change) -> Result<usize, ApdError> {
        let mut entries = self.entries.clone();
        let position = match change {
            Change::Add(e) => {
                entries.push(e);
                entries.len() - 1
            }
            Change::Insert { position, entry } => {
                if position > entries.len() {
                    return Err(ApdError::Position {
                        position,
                        len: entries.len(),
                    });
                }
                entries.insert(position, entry);
                position
            }
            Change::Modify { entry, with } => {
                let i = self.position(&entry)?;
                entries[i] = with;
                i
            }
            Change::Move { entry, to } => {
                let i = self.position(&entry)?;
                if to >= entries.len() {
                    return Err(ApdError::Position {
                        position: to,
                        len: entries.len(),
                    });
                }
                let e = entries.remove(i);
                entries.insert(to, e);
                to
            }
            Change::Delete(entry) => {
                let i = self.position(&entry)?;
                entries.remove(i);
                i
            }
        };
        *self = Apd::build(entries, Origin::Configured)?;
        Ok(position)
    }

    /// Append `entry` ([`Change::Add`]).
    pub fn add(&mut self, entry: Entry) -> Result<usize, ApdError> {
        self.apply(Change::Add(entry))
    }

    /// Insert `entry` at `position` ([`Change::Insert`]).
    pub fn insert(&mut self, position: usize, entry: Entry) -> Result<usize, ApdError> {
        self.apply(Change::Insert { position, entry })
    }

    /// Replace an entry ([`Change::Modify`]).
    pub fn modify(
        &mut self,
        entry: impl Into<EntrySelector>,
        with: Entry,
    ) -> Result<usize, ApdError> {
        self.apply(Change::Modify {
            entry: entry.into(),
            with,
        })
    }

    /// Move an entry to position `to` ([`Change::Move`]).
    pub fn move_entry(
        &mut self,
        entry: impl Into<EntrySelector>,
        to: usize,
    ) -> Result<usize, ApdError> {
        self.apply(Change::Move {
            entry: entry.into(),
            to,
        })
    }

    /// Delete an entry ([`Change::Delete`]).
    pub fn delete(&mut self, entry: impl Into<EntrySelector>) -> Result<usize, ApdError> {
        self.apply(Change::Delete(entry.into()))
    }

    /// Replace the whole database with the one in `text` (a reload): all
    /// or nothing.
    pub fn replace_from_toml(&mut self, text: &str) -> Result<(), ApdError> {
        *self = Apd::from_toml(text)?;
        Ok(())
    }
}

impl Entry {
    /// The entry in a TOML text of one table's keys (`name = "x"`,
    /// `action = "allow"`, ...): a command. Errors give the line and key.
    pub fn from_toml(text: &str) -> Result<Entry, ApdError> {
        super::file::read_one(text)
    }
}
