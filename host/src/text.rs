//! Plugin text made harmless for where it lands. Whatever a plugin writes
//! (a log line, a reason, a summary, its own name) is shown with every
//! control and invisible formatting character as a visible escape, so it
//! reaches a terminal or a log as text and never as a command, and one line
//! stays one line. Where it is stored it is cut to a bound, and the cut is
//! marked.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether a character must not reach a reader as it is: C0 and C1 control
/// characters and DEL (escape sequences, CR, 8-bit CSI), and the invisible
/// characters that reorder, join or hide text (bidi embeddings, overrides,
/// isolates and marks, zero-width characters, line and paragraph
/// separators, the byte-order mark, interlinear annotations).
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

/// `text` on one line, every unsafe character escaped (`\n`, `\r`, `\t`,
/// `\u{1b}`…). Text with none comes back borrowed.
pub(crate) fn one_line(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `n` with its thousands separated, `20,000,000,000`: a count a person
/// reads at a glance.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// Room kept for the cut mark, `…[N bytes cut]`.
const MARK_BYTES: usize = 40;

/// `text` in at most `max` bytes: cut at a character boundary, the cut
/// marked with how many bytes were left out. Bounds under the mark's own
/// size cut without a mark.
pub fn bounded(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let keep = floor_boundary(text, max.saturating_sub(MARK_BYTES));
    if max < MARK_BYTES {
        return Cow::Owned(text[..floor_boundary(text, max)].to_owned());
    }
    let mut out = text[..keep].to_owned();
    let _ = write!(out, "…[{} bytes cut]", text.len() - keep);
    Cow::Owned(out)
}

/// `text` bounded, then on one line: what a terminal, log or report shows.
pub fn shown(text: &str, max: usize) -> String {
    one_line(&bounded(text, max)).into_owned()
}

/// JSON text (as serde_json writes it) with the unsafe characters it leaves
/// raw (DEL, C1 controls, the invisible ones) written as `\u` escapes: the
/// same JSON value, safe to print. They can only occur inside strings.
pub(crate) fn json_safe(json: &str) -> Cow<'_, str> {
    if !json.chars().any(is_unsafe) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if is_unsafe(c) && c != '\n' {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The largest character boundary of `text` at or below `at`.
fn floor_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        for (n, shown) in [
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (20_000_000_000, "20,000,000,000"),
            (u64::MAX, "18,446,744,073,709,551,615"),
        ] {
            assert_eq!(thousands(n), shown);
        }
    }

    #[test]
    fn escapes_controls_and_invisible_reordering() {
        let hostile = "a\u{1b}]0;owned\u{7}b\rc\nd\u{9b}31me\u{202e}f\u{2066}g\u{200b}h\u{7f}";
        let shown = one_line(hostile);
        assert_eq!(
            shown,
            "a\\u{1b}]0;owned\\u{7}b\\rc\\nd\\u{9b}31me\\u{202e}f\\u{2066}g\\u{200b}h\\u{7f}"
        );
        assert!(!shown.chars().any(is_unsafe));
        assert!(matches!(one_line("plain ünïcödé 名前"), Cow::Borrowed(_)));
    }

    #[test]
    fn bounds_cut_at_a_boundary_and_say_so() {
        let long = "é".repeat(1000);
        let cut = bounded(&long, 101);
        assert!(cut.len() <= 101, "{}", cut.len());
        assert!(cut.ends_with("bytes cut]"), "{cut}");
        assert!(cut.starts_with("éé"));
        assert_eq!(bounded("short", 101), "short");
        assert_eq!(bounded("abcdef", 3), "abc");
    }

    #[test]
    fn json_stays_the_same_value() {
        let value = serde_json::json!({ "s": "x\u{9b}y\u{202e}z\u{1b}\n😀" });
        let raw = serde_json::to_string(&value).unwrap();
        let safe = json_safe(&raw);
        assert!(!safe.chars().any(is_unsafe), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, value);
    }
}
