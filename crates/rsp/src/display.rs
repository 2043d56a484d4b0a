//! Text for people: plurals, and text that came from the network (pool
//! handles, identities, reasons) made safe to print on a terminal.

use std::borrow::Cow;

/// `n thing` or `n things`.
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `s` with its control characters escaped (`\u{1b}` for ESC, `\n`...):
/// a pool handle or an identity chosen by a registrant must not move the
/// cursor, clear the screen or set the window title of the operator who
/// lists it.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_and_printable_text() {
        assert_eq!(plural(1, "pool", "pools"), "1 pool");
        assert_eq!(plural(0, "pool", "pools"), "0 pools");
        assert_eq!(printable("echo"), "echo");
        assert_eq!(printable("evil\u{1b}[2J\u{7}"), "evil\\u{1b}[2J\\u{7}");
        assert_eq!(printable("a\nb"), "a\\nb");
    }
}
