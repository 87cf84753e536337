//! The subject token (`[Ticket #42]`) and clean titles.

use std::sync::LazyLock;

use regex::Regex;

/// Reply and forward prefixes in the languages our customers write in
/// (Re, AW, Fwd, WG, SV, VS, Antw, RIF, TR, Enc, RES, …), with optional
/// counters like `Re[2]:`.
static PREFIX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*(re|aw|antw|antwort|fwd?|wg|sv|vs|rif|r|tr|enc|res|rv|odp|ynt|vl)\s*(\[\d+\]|\(\d+\))?\s*[:：]\s*",
    )
    .unwrap()
});

fn token_regex(tag: &str) -> Regex {
    Regex::new(&format!(r"(?i)\[\s*{}\s*#\s*(\d{{1,18}})\s*\]", regex::escape(tag)))
        .expect("escaped tag is a valid regex")
}

/// Finds subject tokens for one configured tag.
#[derive(Debug, Clone)]
pub struct TokenMatcher {
    tag: String,
    re: Regex,
}

impl TokenMatcher {
    pub fn new(tag: &str) -> TokenMatcher {
        TokenMatcher { tag: tag.to_owned(), re: token_regex(tag) }
    }

    /// The ticket number named in the subject, wherever the token stands.
    pub fn find(&self, subject: &str) -> Option<u64> {
        self.re.captures(subject).and_then(|c| c[1].parse().ok())
    }

    pub fn token(&self, number: u64) -> String {
        format!("[{} #{number}]", self.tag)
    }

    /// Subject without reply prefixes and without our token.
    pub fn clean_title(&self, subject: &str) -> String {
        let without = self.re.replace_all(subject, " ");
        let mut s = without.trim().to_owned();
        loop {
            let next = PREFIX.replace(&s, "").trim().to_owned();
            if next == s {
                break;
            }
            s = next;
        }
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tokens_through_prefixes_spacing_and_case() {
        let m = TokenMatcher::new("Ticket");
        for s in [
            "[Ticket #42] Printer",
            "Re: [Ticket #42] Printer",
            "AW: RE: [ticket#42] x",
            "Fwd: foo [ TICKET # 42 ]",
            "WG:[Ticket #42]",
        ] {
            assert_eq!(m.find(s), Some(42), "{s}");
        }
        assert_eq!(m.find("Ticket #42"), None);
        assert_eq!(m.find("[Case #42]"), None);
        assert_eq!(TokenMatcher::new("Case").find("[Case #7]"), Some(7));
    }

    #[test]
    fn titles_lose_prefixes_and_token() {
        let m = TokenMatcher::new("Ticket");
        assert_eq!(m.clean_title("Re: AW: [Ticket #42] Printer on fire"), "Printer on fire");
        assert_eq!(m.clean_title("Fwd: Re[2]: Invoice"), "Invoice");
        assert_eq!(m.clean_title("Remote access"), "Remote access");
        assert_eq!(m.clean_title("Re:"), "");
    }
}
