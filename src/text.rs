//! Plain text: what a ceremony file may contain in names, ids, descriptions and labels, and how
//! anything read from a transcript is made safe to print on a terminal or in the line protocol.
//!
//! A transcript is written by whoever holds the audit key; an auditor's terminal must not
//! obey it. Control characters (C0, DEL, C1) and the Unicode bidirectional formatting
//! characters could move the cursor, erase a warning line, forge a prompt line or reorder what
//! is shown, so [`escape`] prints each as a visible `\u{…}` escape, and [`forbidden_char`]
//! finds the first one so that input validation can refuse it.

use std::borrow::Cow;

/// True for characters that are never allowed in plain text: C0 controls (including TAB, CR
/// and LF), DEL, C1 controls, and the bidirectional formatting characters (LRE, RLE, PDF,
/// LRO, RLO, LRI, RLI, FSI, PDI, LRM, RLM, ALM).
pub fn is_forbidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
        )
}

/// The first forbidden character of `s` and its character position, if any.
pub fn forbidden_char(s: &str) -> Option<(usize, char)> {
    s.chars().enumerate().find(|(_, c)| is_forbidden(*c))
}

/// `s` with every forbidden character (and the backslash, so that the escape is unambiguous)
/// written as a visible escape: `\u{1b}`, `\\`. Text without them is returned as is.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c == '\\' || is_forbidden(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if is_forbidden(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
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
    fn plain_text_is_unchanged() {
        assert!(matches!(escape("Alice Ünal"), Cow::Borrowed("Alice Ünal")));
    }

    #[test]
    fn controls_and_bidi_are_escaped() {
        assert_eq!(escape("a\x1b[2Kb"), "a\\u{1b}[2Kb");
        assert_eq!(escape("x\r\ny"), "x\\u{d}\\u{a}y");
        assert_eq!(escape("\u{202E}evil"), "\\u{202e}evil");
        assert_eq!(escape("\u{9b}"), "\\u{9b}");
        assert_eq!(escape("a\\u{1b}"), "a\\\\u{1b}");
        assert_eq!(escape("\x7f"), "\\u{7f}");
    }

    #[test]
    fn forbidden_char_names_the_first() {
        assert_eq!(forbidden_char("ok"), None);
        assert_eq!(forbidden_char("o\tk\n"), Some((1, '\t')));
        assert_eq!(forbidden_char("Al\u{2067}ice"), Some((2, '\u{2067}')));
    }
}
