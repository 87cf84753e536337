//! Bytes of unknown or doubtful charset → text.
//!
//! mail-parser's `full_encoding` only decodes charsets that are declared;
//! undeclared 8-bit text comes out as lossy UTF-8 (U+FFFD) and undeclared
//! ISO-2022-JP keeps its escape sequences. This module decides the charset:
//! the declared one when the bytes fit it, else Mozilla's chardetng guess,
//! and says so in a note when it had to guess.

use std::borrow::Cow;

use chardetng::{EncodingDetector, Iso2022JpDetection, Utf8Detection};
use encoding_rs::{Encoding, ISO_2022_JP, REPLACEMENT, UTF_8, UTF_16BE, UTF_16LE, WINDOWS_1252};

/// Text decoded from bytes, with what had to be guessed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub text: String,
    /// Set when the charset was guessed or the declared one was overruled.
    pub note: Option<String>,
    /// Some bytes did not decode and became U+FFFD.
    pub problem: bool,
}

/// The encoding a charset label names, if encoding_rs knows it. The
/// "replacement" encoding (ISO-2022-KR, HZ...) would turn the whole text
/// into one U+FFFD, so those labels count as unknown.
pub fn for_label(label: &str) -> Option<&'static Encoding> {
    let label = label.trim().trim_matches('"').trim();
    let enc = Encoding::for_label_no_replacement(label.as_bytes())
        .or_else(|| Encoding::for_label_no_replacement(label.replace('_', "-").as_bytes()))
        .or_else(|| match label.to_ascii_lowercase().as_str() {
            "utf8" => Some(UTF_8),
            "cp932" | "ms932" => Some(encoding_rs::SHIFT_JIS),
            "cp949" | "ks_c_5601" | "ks_c_5601-1989" => Some(encoding_rs::EUC_KR),
            "cp950" => Some(encoding_rs::BIG5),
            _ => None,
        })?;
    (enc != REPLACEMENT).then_some(enc)
}

/// Decodes a body part. `declared` is the part's charset parameter, `hint`
/// a charset the mail names elsewhere (an HTML `<meta>`), `tld` the sender
/// domain's top-level label, which sharpens the guess.
pub fn decode_body(
    bytes: &[u8],
    declared: Option<&str>,
    hint: Option<&'static Encoding>,
    tld: Option<&str>,
) -> Decoded {
    let declared = declared.map(str::trim).filter(|d| !d.is_empty());
    let known = declared.and_then(for_label);
    if let Some(enc) = known.filter(|e| *e == UTF_16LE || *e == UTF_16BE) {
        return decode_with(bytes, enc, None);
    }
    // UTF-7 is all ASCII, so this must come before the ASCII shortcut.
    if let Some(text) = declared.filter(|_| known.is_none()).and_then(|label| mail_parser_decode(label, bytes)) {
        return Decoded { problem: text.contains('\u{FFFD}'), text, note: None };
    }
    let iso2022 = looks_iso_2022_jp(bytes);
    if bytes.is_ascii() && !iso2022 {
        return Decoded { text: ascii_to_string(bytes), note: None, problem: false };
    }
    match (declared, known) {
        (_, Some(enc)) if enc == ISO_2022_JP => decode_with(bytes, enc, None),
        (Some(label), Some(_)) if iso2022 => decode_with(
            bytes,
            ISO_2022_JP,
            Some(format!("declared charset {label} does not fit the text; read as ISO-2022-JP")),
        ),
        (Some(label), Some(enc)) if enc == UTF_8 => match std::str::from_utf8(bytes) {
            Ok(s) => Decoded { text: s.to_owned(), note: None, problem: false },
            Err(_) => {
                let guess = detect(bytes, tld, false);
                decode_with(
                    bytes,
                    guess,
                    Some(format!("declared charset {label} does not fit the text; read as {}", guess.name())),
                )
            }
        },
        (Some(label), Some(enc)) => {
            // Valid multi-byte UTF-8 under a single-byte label is the classic
            // mislabel; real Latin-1 text almost never forms such sequences.
            if enc.is_single_byte() && std::str::from_utf8(bytes).is_ok() {
                let note = format!("declared charset {label} does not fit the text; read as UTF-8");
                return decode_with(bytes, UTF_8, Some(note));
            }
            let first = decode_with(bytes, enc, None);
            if !first.problem || !many_errors(&first.text, bytes) {
                return first;
            }
            let guess = detect(bytes, tld, true);
            if guess != enc {
                let second = decode_with(bytes, guess, None);
                if !second.problem {
                    let note = format!("declared charset {label} does not fit the text; read as {}", guess.name());
                    return Decoded { note: Some(note), ..second };
                }
            }
            first
        }
        (Some(label), None) => {
            let guess = if iso2022 { ISO_2022_JP } else { hint.unwrap_or_else(|| detect(bytes, tld, true)) };
            let note = format!("unknown charset {}; read as {}", short(label), guess.name());
            decode_with(bytes, guess, Some(note))
        }
        (None, _) => {
            if iso2022 {
                return decode_with(bytes, ISO_2022_JP, Some("charset guessed as ISO-2022-JP (none declared)".into()));
            }
            if let Ok(s) = std::str::from_utf8(bytes) {
                return Decoded { text: s.to_owned(), note: None, problem: false };
            }
            if let Some(enc) = hint.filter(|e| *e != UTF_8) {
                let d = decode_with(bytes, enc, None);
                if !d.problem {
                    return d;
                }
            }
            let guess = detect(bytes, tld, false);
            decode_with(bytes, guess, Some(format!("charset guessed as {} (none declared)", guess.name())))
        }
    }
}

/// The charset to read raw 8-bit header fields in: `hint` (usually the
/// body's declared charset, which old clients also used for headers) when
/// every field decodes cleanly with it, else a guess over all of them.
pub fn header_encoding(fields: &[&[u8]], hint: Option<&'static Encoding>, tld: Option<&str>) -> &'static Encoding {
    if let Some(enc) = hint.filter(|e| *e != UTF_8 && e.is_ascii_compatible())
        && fields.iter().all(|f| enc.decode_without_bom_handling_and_without_replacement(f).is_some())
    {
        return enc;
    }
    let mut det = EncodingDetector::new(Iso2022JpDetection::Deny);
    for f in fields {
        det.feed(f, false);
        det.feed(b" ", false);
    }
    det.feed(b"", true);
    det.guess(tld_label(tld).as_deref().map(str::as_bytes), Utf8Detection::Deny)
}

/// Whether a header block holds raw 8-bit text that is not UTF-8, or raw
/// ISO-2022-JP, so that [`transcode_header_block`] must run first.
pub fn header_block_needs_decoding(block: &[u8]) -> bool {
    std::str::from_utf8(block).is_err() || looks_iso_2022_jp_anywhere(block)
}

/// Rewrites a header block as UTF-8, one field (with its folded lines) at a
/// time: UTF-8 fields stay, ISO-2022-JP fields are decoded as such, and the
/// other 8-bit fields are decoded with one charset chosen for all of them
/// (see [`header_encoding`]). Returns the block and that charset.
pub fn transcode_header_block(
    block: &[u8],
    hint: Option<&'static Encoding>,
    tld: Option<&str>,
) -> (Vec<u8>, &'static Encoding) {
    let fields: Vec<&[u8]> = super::mime::fields(block).into_iter().map(|r| &block[r]).collect();
    let bad: Vec<&[u8]> = fields.iter().copied().filter(|f| std::str::from_utf8(f).is_err()).collect();
    let enc = if bad.is_empty() { ISO_2022_JP } else { header_encoding(&bad, hint, tld) };
    let mut out = Vec::with_capacity(block.len() + block.len() / 2);
    for f in fields {
        if looks_iso_2022_jp(f) {
            out.extend_from_slice(ISO_2022_JP.decode_without_bom_handling(f).0.as_bytes());
        } else if std::str::from_utf8(f).is_ok() {
            out.extend_from_slice(f);
        } else {
            out.extend_from_slice(enc.decode_without_bom_handling(f).0.as_bytes());
        }
    }
    (out, enc)
}

fn looks_iso_2022_jp_anywhere(bytes: &[u8]) -> bool {
    memchr::memchr_iter(0x1B, bytes)
        .any(|i| matches!(bytes.get(i + 1..i + 3), Some([b'$', b'B' | b'@']) | Some([b'$', b'('])))
}

/// ISO-2022-JP is 7-bit: it hides behind escape sequences that switch to
/// JIS X 0208 (`ESC $ B`, `ESC $ @`) and back (`ESC ( B`, `ESC ( J`).
pub fn looks_iso_2022_jp(bytes: &[u8]) -> bool {
    memchr::memchr_iter(0x1B, bytes).any(|i| {
        matches!(bytes.get(i + 1..i + 3), Some([b'$', b'B' | b'@']) | Some([b'$', b'(']) | Some([b'(', b'J' | b'I']))
    }) && !bytes.iter().any(|b| *b >= 0x80)
}

/// Decodes with `enc` and reports malformed input.
pub fn decode_with(bytes: &[u8], enc: &'static Encoding, note: Option<String>) -> Decoded {
    let (text, problem) = if enc == UTF_16LE || enc == UTF_16BE {
        let (t, _, bad) = enc.decode(bytes);
        (t, bad)
    } else {
        enc.decode_without_bom_handling(bytes)
    };
    Decoded { text: text.into_owned(), note, problem }
}

/// A guess over the whole of `bytes` (chardetng is linear and streams).
fn detect(bytes: &[u8], tld: Option<&str>, allow_utf8: bool) -> &'static Encoding {
    let mut det = EncodingDetector::new(Iso2022JpDetection::Allow);
    det.feed(bytes, true);
    let utf8 = if allow_utf8 { Utf8Detection::Allow } else { Utf8Detection::Deny };
    let guess = det.guess(tld_label(tld).as_deref().map(str::as_bytes), utf8);
    if guess == REPLACEMENT { WINDOWS_1252 } else { guess }
}

/// More than a stray broken byte: at least 4 replacement characters, or one
/// for every 20 non-ASCII bytes.
fn many_errors(text: &str, bytes: &[u8]) -> bool {
    let bad = text.chars().filter(|c| *c == '\u{FFFD}').count();
    let non_ascii = bytes.iter().filter(|b| **b >= 0x80).count().max(1);
    bad >= 4 || bad * 20 >= non_ascii
}

/// Charsets encoding_rs does not have (UTF-7, IBM code pages) but
/// mail-parser does. Not the ones encoding_rs maps to "replacement"
/// (ISO-2022-KR, HZ...): mail-parser turns those into a lone U+FFFD.
fn mail_parser_decode(label: &str, bytes: &[u8]) -> Option<String> {
    if Encoding::for_label(label.trim().as_bytes()).is_some() {
        return None;
    }
    let decoder = mail_parser::decoders::charsets::map::charset_decoder(label.trim().as_bytes())?;
    Some(decoder(bytes))
}

/// chardetng panics on labels with dots, upper case or non-ASCII.
fn tld_label(tld: Option<&str>) -> Option<String> {
    let t = tld?.trim().trim_end_matches('.').rsplit('.').next()?.to_ascii_lowercase();
    (!t.is_empty() && t.len() <= 63 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')).then_some(t)
}

fn ascii_to_string(bytes: &[u8]) -> String {
    match String::from_utf8_lossy(bytes) {
        Cow::Borrowed(s) => s.to_owned(),
        Cow::Owned(s) => s,
    }
}

/// Labels come from the sender; keep notes short.
fn short(label: &str) -> String {
    let clean: String = label.chars().filter(|c| c.is_ascii_graphic()).take(40).collect();
    if clean.is_empty() { "(unreadable)".into() } else { clean }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacement_labels_are_unknown_and_aliases_work() {
        assert_eq!(for_label("ISO-2022-KR"), None);
        assert_eq!(for_label("\"utf8\""), Some(UTF_8));
        assert_eq!(for_label("ks_c_5601-1987"), Some(encoding_rs::EUC_KR));
        assert_eq!(for_label("Windows_1251"), Some(encoding_rs::WINDOWS_1251));
        assert_eq!(for_label("klingon-8"), None);
    }

    #[test]
    fn undeclared_iso_2022_jp_is_recognised() {
        let (bytes, _, _) = ISO_2022_JP.encode("お問い合わせありがとうございます");
        assert!(looks_iso_2022_jp(&bytes));
        let d = decode_body(&bytes, None, None, None);
        assert_eq!(d.text, "お問い合わせありがとうございます");
        assert!(d.note.unwrap().contains("ISO-2022-JP"));
        let d = decode_body(&bytes, Some("us-ascii"), None, None);
        assert_eq!(d.text, "お問い合わせありがとうございます");
    }

    #[test]
    fn lying_labels_are_overruled() {
        let d = decode_body("Grüße aus Köln".as_bytes(), Some("iso-8859-1"), None, None);
        assert_eq!(d.text, "Grüße aus Köln");
        assert!(d.note.is_some());
        let (latin, _, _) = WINDOWS_1252.encode("café crème brûlée à la française");
        let d = decode_body(&latin, Some("utf-8"), None, None);
        assert_eq!(d.text, "café crème brûlée à la française");
        assert!(!d.problem);
        let d = decode_body(b"plain", Some("utf-8"), None, None);
        assert_eq!((d.text.as_str(), d.note), ("plain", None));
    }

    #[test]
    fn labels_only_mail_parser_knows() {
        let d = decode_body(b"caf+AOk- cr+AOg-me", Some("utf-7"), None, None);
        assert_eq!(d.text, "café crème");
        let (euc_kr, _, _) = encoding_rs::EUC_KR.encode("안녕하세요 주문한 상품이 아직 도착하지 않았습니다");
        let d = decode_body(&euc_kr, Some("iso-2022-kr"), None, None);
        assert_eq!(d.text, "안녕하세요 주문한 상품이 아직 도착하지 않았습니다");
        assert!(d.note.unwrap().starts_with("unknown charset iso-2022-kr"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, ..Default::default() })]

        #[test]
        fn any_bytes_and_label_decode(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            label in proptest::sample::select(vec![
                "", "utf-8", "us-ascii", "iso-8859-1", "shift_jis", "iso-2022-jp", "utf-16", "utf-7",
                "iso-2022-kr", "gb18030", "koi8-r", "x-unknown", "ibm850",
            ]),
            tld in proptest::sample::select(vec!["jp", "ru", "", "CZ", "x.y"]),
        ) {
            let declared = (!label.is_empty()).then_some(label);
            let d = decode_body(&bytes, declared, None, Some(tld));
            if std::str::from_utf8(&bytes).is_ok() && !looks_iso_2022_jp(&bytes) && matches!(label, "" | "utf-8") {
                proptest::prop_assert_eq!(d.text.as_bytes(), &bytes[..]);
            }
            let (block, _) = transcode_header_block(&bytes, None, Some(tld));
            proptest::prop_assert!(std::str::from_utf8(&block).is_ok());
        }
    }

    #[test]
    fn tld_labels_never_panic_the_detector() {
        for tld in ["RU", "xn--p1ai", "a.b.", "ü", "", "."] {
            let _ = detect(b"\xcf\xf0\xe8\xe2\xe5\xf2", Some(tld), false);
        }
    }
}
