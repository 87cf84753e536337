//! Text from outside, made safe to show and to put in a header: control
//! characters and bidirectional/format overrides removed. A support
//! address receives anything; an admin's terminal and a customer's mail
//! client must not interpret what an attacker wrote.

/// Bidi embeddings/overrides/isolates and the invisible marks that reorder
/// or hide text ("invoice\u{202E}fdp.exe" shows as "invoiceexe.pdf").
pub fn is_format(c: char) -> bool {
    is_bidi_override(c) || matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{FEFF}')
}

/// Characters that show as nothing (or as a plain space) yet make two
/// strings differ: zero-width spaces and joiners, soft hyphens, fillers,
/// variation selectors, tag characters, and every [`is_format`] one.
pub fn is_invisible(c: char) -> bool {
    is_format(c)
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202F}'
                | '\u{205F}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFF8}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

/// The embeddings, overrides and isolates: these reverse runs of text.
fn is_bidi_override(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// One line for names, titles and headers: control characters (NUL, ESC,
/// line breaks...) become spaces, bidi controls and BOMs go, runs of white
/// space collapse to one space, and the ends are trimmed.
pub fn clean_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars() {
        if is_format(c) {
            continue;
        }
        if c.is_control() || c.is_whitespace() {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        out.push(c);
    }
    out
}

/// Multi-line text for bodies: line breaks become `\n` (a lone `\r` too),
/// `\n` and `\t` stay, every other C0/C1 control goes (an ESC sequence loses
/// its ESC and so its effect), and so do the bidi embeddings, overrides and
/// isolates. The bidi marks (U+200E, U+200F, U+061C) stay: right-to-left
/// text needs them and they cannot reverse a run.
pub fn clean_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push('\n');
                }
            }
            '\n' | '\t' => out.push(c),
            c if is_bidi_override(c) => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
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
        assert_eq!(clean_text("a\rb\u{202E}c\u{200F}"), "a\nbc\u{200F}", "marks stay, overrides go");
        assert_eq!(truncate_chars("héllo", 2), "hé…");
        assert_eq!(truncate_chars("hé", 2), "hé");
    }
}
