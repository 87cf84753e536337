//! Text from outside, made safe to show and to put in a header: control
//! characters and bidirectional/format overrides removed. A support
//! address receives anything; an admin's terminal and a customer's mail
//! client must not interpret what an attacker wrote.

/// Bidi embeddings/overrides/isolates and the invisible marks that reorder
/// or hide text ("invoice\u{202E}fdp.exe" shows as "invoiceexe.pdf").
pub fn is_format(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{FEFF}')
}

/// One line: controls (newlines included) become spaces, runs of
/// whitespace collapse, overrides go.
pub fn clean_line(s: &str) -> String {
    let s: String = s.chars().filter(|c| !is_format(*c)).map(|c| if c.is_control() { ' ' } else { c }).collect();
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Several lines: `\n` and `\t` stay, `\r` and every other control
/// character (ESC, so no terminal escape sequence survives) and the
/// overrides go.
pub fn clean_text(s: &str) -> String {
    s.chars().filter(|c| !is_format(*c) && (!c.is_control() || *c == '\n' || *c == '\t')).collect()
}

/// At most `n` characters, with an ellipsis when cut.
pub fn truncate_chars(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_overrides_never_survive() {
        assert_eq!(clean_line("a\r\nBcc: x\u{1b}[31m b"), "a Bcc: x [31m b");
        assert_eq!(clean_line("invoice\u{202E}fdp.exe"), "invoicefdp.exe");
        assert_eq!(clean_text("line 1\r\nline\t2\u{1b}]0;pwned\u{7}\n"), "line 1\nline\t2]0;pwned\n");
        assert_eq!(truncate_chars("héllo", 2), "hé…");
        assert_eq!(truncate_chars("hé", 2), "hé");
    }
}
