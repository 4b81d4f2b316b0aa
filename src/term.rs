//! What the host itself prints: guest-chosen text made safe to show
//! ([`sanitize`], public), and denial lines on stderr that a closed pipe
//! cannot turn into a panic.
//!
//! A guest picks the names it looks up, the URLs it requests, the symbols in
//! its backtraces and its exit messages. Any of those may end up in a line
//! wasmcell prints, so they go through [`sanitize`] first: without it a guest
//! could colour or clear the user's terminal, or start a new line that reads
//! like one of wasmcell's own (`wasmcell: ...`). The guest's own stdout and
//! stderr bytes are not touched: they are its output, passed through as is.

use std::borrow::Cow;
use std::io::Write as _;

/// `text` with every character that could steer a terminal or start a new
/// line written as an escape instead, in `str::escape_debug` style (`\n`,
/// `\u{1b}`): C0 and C1 controls and DEL, the line and paragraph separators,
/// and the Unicode bidirectional overrides and isolates that reorder what
/// follows them. Everything else, backslashes included, is kept, so ordinary
/// text reads as it was written.
///
/// Use it on any guest-chosen text you print: a [`Denial`](crate::Denial)'s
/// `target`, an [`Outcome`](crate::Outcome)'s `trap`, a load error that
/// quotes a module's imports.
///
/// # Example
///
/// ```
/// let target = "evil\n\u{1b}[2Jwasmcell: all good";
/// assert_eq!(wasmcell::sanitize(target), r"evil\n\u{1b}[2Jwasmcell: all good");
/// ```
pub fn sanitize(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Characters [`sanitize`] escapes.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' // arabic letter mark
                | '\u{200e}'..='\u{200f}' // left-to-right and right-to-left marks
                | '\u{2028}'..='\u{2029}' // line and paragraph separators
                | '\u{202a}'..='\u{202e}' // embeddings and overrides
                | '\u{2066}'..='\u{2069}' // isolates
        )
}

/// `text` cut to at most `max` bytes on a character boundary, with a marker
/// saying how many bytes were left off (`…[+1234 bytes]`), so a shortened
/// value can never be mistaken for the whole one. The marker comes on top of
/// `max`.
pub(crate) fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…[+{} bytes]", &text[..end], text.len() - end))
}

/// Writes one line to stderr. A closed or failing stderr loses the line
/// instead of panicking as `eprintln!` would: wasmcell's own messages must
/// never decide how a run ends.
pub(crate) fn eprint_line(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_escapes_what_steers_a_terminal() {
        let cases = [
            ("plain text, ünïcode and a \\ stay", "plain text, ünïcode and a \\ stay"),
            ("\u{1b}[31mred", "\\u{1b}[31mred"),
            ("bell\u{7}", "bell\\u{7}"),
            ("x\nwasmcell: forged", "x\\nwasmcell: forged"),
            ("a\rb\tc", "a\\rb\\tc"),
            ("c1\u{9b}31m", "c1\\u{9b}31m"),
            ("del\u{7f}", "del\\u{7f}"),
            ("evil\u{202e}txt.exe", "evil\\u{202e}txt.exe"),
            ("iso\u{2066}x\u{2069}", "iso\\u{2066}x\\u{2069}"),
            ("line\u{2028}sep", "line\\u{2028}sep"),
        ];
        for (input, expected) in cases {
            assert_eq!(sanitize(input), expected, "{input:?}");
        }
        assert!(matches!(sanitize("clean"), Cow::Borrowed(_)));
    }

    #[test]
    fn truncate_marks_what_it_cut_on_a_char_boundary() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("abcdef", 4), "abcd…[+2 bytes]");
        // `é` is two bytes: the cut moves back to the boundary before it.
        assert_eq!(truncate("abcé", 4), "abc…[+2 bytes]");
        assert_eq!(truncate("", 0), "");
    }
}
