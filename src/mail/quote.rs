//! Reduces an e-mail reply to the text its author actually wrote.
//!
//! Mail clients append the message being answered in a handful of recognisable
//! shapes: `>`-prefixed lines under an attribution ("On … wrote:"), Outlook's
//! "-----Original Message-----" marker or its From/Sent/To/Subject header block
//! (often after a line of underscores), each in the user's UI language. The
//! input may also be the `html2text` rendering of an HTML-only body, where
//! blockquotes become `> ` lines and links become `[text][n]` references with
//! `[n]: url` footnotes at the very end.
//!
//! The matching is deliberately conservative: a line is only treated as the
//! start of a quote when it carries enough evidence (a date or time or address
//! in an attribution, several header fields in a header block), because
//! losing a customer's words is worse than showing a stray quote.
//!
//! Policy beyond quotes: a trailing RFC 3676 signature ("-- " and at most
//! `MAX_SIGNATURE_LINES` lines below it) and a trailing mobile boilerplate
//! line ("Sent from my iPhone", "Get Outlook for Android", localized) are
//! dropped, since neither is something the author wrote for this ticket;
//! signatures without a delimiter ("Best, Jane") are kept. Forwarded
//! messages are kept verbatim because their content is new to the ticket.
//! Runs of blank lines collapse to one and trailing whitespace is trimmed.

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;

/// Attributions longer than this are prose, not client boilerplate; it also
/// keeps the regexes away from pathological lines.
const MAX_ATTRIBUTION_LEN: usize = 300;

/// Gmail wraps long attributions once in text/plain and html2text wraps them
/// at 80 columns, so a name and address can push one onto three lines.
const MAX_ATTRIBUTION_LINES: usize = 3;

/// Long To/Cc values wrap, so header fields may be spread over a few lines.
const HEADER_LOOKAHEAD: usize = 8;

/// A "-- " further up than this is a separator the author typed, not the
/// start of a signature.
const MAX_SIGNATURE_LINES: usize = 12;

/// Attributions that open with the date ("On …", "Am …", "Le …"); they
/// also match ordinary sentences, so a date, time or address must appear too.
static DATED_ATTRIBUTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)^(?:
            on\s.+\swrote
          | le\s.+\sa\s+[ée]crit
          | el\s.+\sescribi[óo]
          | il\s.+\sha\s+scritto
          | em\s.+\sescreveu
          | am\s.+\sschrieb\s.+
          | op\s.+\sschreef\s.+
          | den\s.+\sskrev\s.+
        )\s*:$",
    )
    .expect("dated attribution regex compiles")
});

/// Attributions that open with the sender's name or a bare weekday; only an
/// address in the line sets them apart from prose such as
/// "Ihr Kollege schrieb am 15.01. Folgendes:".
static ADDRESSED_ATTRIBUTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)^(?:
            .+\swrote
          | .+\sa\s+[ée]crit
          | .+\sescribi[óo]
          | .+\sha\s+scritto
          | .+\sescreveu
          | .+\sschrieb\s+am\s.+
          | .+\sschreef\s+op\s.+
          | .+\sskrev\s.+
          | .+\snapisał(?:\(a\)|a)?
          | .+\snapsal(?:\(a\)|a)?
          | .+\sнаписал(?:\(а\)|а)?
          | .+\skirjoitti
          | .+\syazdı
        )\s*:$",
    )
    .expect("addressed attribution regex compiles")
});

/// Without a date the attribution regexes also match ordinary sentences, so
/// this is what tells "On 15 Jan 2024, at 10:30, Ann wrote:" from
/// "On reflection, Ann wrote:".
static DATE_OR_TIME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\d{1,2}[:.h]\d{2}|\b(?:19|20)\d{2}\b").expect("date regex compiles"));

static ADDRESS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\S@\S").expect("address regex compiles"));

static ATTRIBUTION_LEAD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)^(?:on|le|el|il|em|am|op|den)\s.*\d").expect("lead regex compiles"));

/// Only trusted when a quote follows directly, where a wrong guess costs one
/// line of context rather than the rest of the message.
static WEAK_ATTRIBUTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:wrote|schrieb|a\s+[ée]crit|escribi[óo]|ha\s+scritto|escreveu|schreef|skrev)\b[^:]{0,120}:$")
        .expect("weak attribution regex compiles")
});

static ORIGINAL_MESSAGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^-{2,}\s*(?:original message|ursprüngliche nachricht|originalnachricht|message d['’]origine|mensaje original|oorspronkelijk bericht|origineel bericht|messaggio originale|mensagem original|originalmeddelande|oprindelig meddelelse|opprinnelig melding|alkuperäinen viesti|wiadomość oryginalna|původní zpráva|исходное сообщение|eredeti üzenet|orijinal ileti)\s*-{2,}$",
    )
    .expect("original message regex compiles")
});

static FORWARD_MARKER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^(?:-{2,}\s*(?:forwarded message|weitergeleitete nachricht|message transféré|mensaje reenviado|doorgestuurd bericht|messaggio inoltrato|mensagem encaminhada|vidarebefordrat meddelande)\s*-{2,}|begin forwarded message\s*:|anfang der weitergeleiteten nachricht\s*:|début du message réexpédié\s*:|inicio del mensaje reenviado\s*:)$",
    )
    .expect("forward marker regex compiles")
});

static FROM_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\*{0,2}(?:from|von|de|van|da|från|fra|od|от|lähettäjä|kimden|feladó|odesílatel|από|差出人|发件人|寄件者)\*{0,2}\s*:",
    )
    .expect("from field regex compiles")
});

static OTHER_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\*{0,2}(?:sent|date|to|cc|bcc|subject|reply-to|gesendet|datum|an|betreff|envoyé|envoyée|à|a|objet|enviado|enviada|enviado em|enviada em|fecha|para|asunto|verzonden|aan|onderwerp|inviato|data|oggetto|assunto|skickat|till|ämne|kopia|sendt|til|emne|kopi|wysłano|do|dw|temat|отправлено|кому|тема|дата|копия|lähetetty|vastaanottaja|aihe|gönderildi|kime|konu|tarih|elküldve|címzett|tárgy|odesláno|komu|předmět|送信日時|宛先|件名|发送时间|收件人|主题)\*{0,2}\s*:",
    )
    .expect("header field regex compiles")
});

/// Some webmailers flatten the reply header into one line
/// ("Date: … From: … To: … Subject: …").
static INLINE_FROM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:^|\s)\*{0,2}(?:from|von|de|van|da|från|fra|od)\*{0,2}\s*:\s")
        .expect("inline from regex compiles")
});

static INLINE_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\s\*{0,2}(?:subject|betreff|objet|asunto|onderwerp|oggetto|assunto|ämne|emne|temat)\*{0,2}\s*:\s")
        .expect("inline subject regex compiles")
});

static INLINE_TO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\s\*{0,2}(?:to|an|à|a|para|aan|till|til|do)\*{0,2}\s*:\s").expect("inline to regex compiles")
});

static SUBJECT_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\*{0,2}(?:subject|betreff|objet|asunto|onderwerp|oggetto|assunto|ämne|emne|temat|тема|aihe|konu|tárgy|předmět|件名|主题)\*{0,2}\s*:\*{0,2}\s*(.*)$",
    )
    .expect("subject field regex compiles")
});

static FORWARD_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^(?:fw|fwd|wg|tr|rv|enc|doorst|vb|vs|i|pd)\s*:").expect("forward subject regex compiles")
});

/// Any "Word: value" line; used after an underscore separator, where the
/// separator itself already says "Outlook", so unknown languages are fine.
static GENERIC_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\*{0,2}\p{L}[\p{L}\p{M} \-]{0,24}\*{0,2}\s*:\s*\S").expect("generic field regex compiles")
});

/// Devices and apps that mobile clients name in their default signature;
/// listing them keeps "Sent from my office on Friday." a sentence.
const SENDING_DEVICE: &str = r"(?:iphone|ipad|ipod|apple\swatch|android|samsung|galaxy|blackberry|huawei|honor|xiaomi|redmi|oneplus|pixel|sony|nokia|motorola|fairphone|mobile|phone|smartphone|tablet|handy|mobiltelefon|téléphone|portable|appareil|móvil|celular|dispositivo|telemóvel|telefoon|mobiel|cellulare|mobil|smarttelefon|outlook|mail|yahoo|aol|gmail|proton\s?mail|bluemail|spark|fairemail|k-9|gmx|web\.de|courrier|correo|e-?mail|posta)";

static MOBILE_SIGNATURE: LazyLock<Regex> = LazyLock::new(|| {
    let pattern = r"(?i)^(?:
        sent\s(?:from|with|via)\s(?:my\s|the\s)?DEVICE\b.{0,40}
      | (?:get|download)\soutlook\sfor\s(?:ios|android)
      | von\smeinem\sDEVICE\b.{0,40}\sgesendet
      | gesendet\s(?:von|mit)\s(?:meinem\s)?DEVICE\b.{0,40}
      | outlook\sfür\s(?:ios|android)\s(?:beziehen|herunterladen)
      | envoyé\s(?:de|depuis)\s(?:mon\s|ma\s|l'|le\s|la\s)?DEVICE\b.{0,40}
      | (?:obtenir|télécharger)\soutlook\spour\s(?:ios|android)
      | enviado\s(?:desde|do|da)\s(?:mi\s|meu\s|minha\s|o\s)?DEVICE\b.{0,40}
      | (?:obtener|descargar|obter|baixar)\s(?:o\s)?outlook\spara\s(?:ios|android)
      | (?:verstuurd|verzonden)\s(?:vanaf|vanuit|met)\s(?:mijn\s)?DEVICE\b.{0,40}
      | inviato\sda\s(?:il\smio\s)?DEVICE\b.{0,40}
      | scarica\soutlook\sper\s(?:ios|android)
      | skickat\sfrån\s(?:min\s)?DEVICE\b.{0,40}
      | sendt\sfra\s(?:min\s)?DEVICE\b.{0,40}
    )\.?$";
    Regex::new(&format!("(?x){}", pattern.replace("DEVICE", SENDING_DEVICE))).expect("mobile signature regex compiles")
});

static LINK_NOISE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"<(?:https?|mailto):[^>]*>|\[\d+\]|[\[\]]").expect("link noise regex compiles"));

static LINK_REFERENCE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[(\d+)\]").expect("link reference regex compiles"));

static FOOTNOTE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\[(\d+)\]: \S").expect("footnote regex compiles"));

/// Returns only the newly written text of a reply body, trimmed and with LF
/// line endings. Falls back to the whole (trimmed) body when nothing would be
/// left, so a reply that is all quote still produces a visible thread entry.
pub fn strip_quoted(body: &str) -> String {
    let normalized = body.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = normalized.split('\n').collect();
    let (content, footnotes) = split_footnotes(&lines);
    let mut kept = collect_new_lines(content);
    tidy_tail(&mut kept);
    let text = render(&kept, footnotes);
    let text = text.trim();
    if text.is_empty() { normalized.trim().to_string() } else { text.to_string() }
}

fn collect_new_lines<'a>(lines: &[&'a str]) -> Vec<&'a str> {
    let mut kept = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if FORWARD_MARKER.is_match(line.trim()) {
            kept.extend_from_slice(&lines[i..]);
            break;
        }
        if is_quote(line) {
            i += 1;
            continue;
        }
        if starts_reply_header(lines, i) {
            if is_forwarded(lines, i) {
                kept.extend_from_slice(&lines[i..]);
            }
            break;
        }
        if let Some((span, strong)) = attribution_at(lines, i) {
            match next_non_blank(lines, i + span) {
                Some(next) if is_quote(lines[next]) => {
                    i = next;
                    continue;
                }
                None if strong => break,
                Some(_) if strong && !inside_paragraph(lines, i, i + span) => break,
                _ => {}
            }
        }
        kept.push(line);
        i += 1;
    }
    kept
}

fn is_quote(line: &str) -> bool {
    line.trim_start().starts_with('>')
}

fn is_blank(line: &str) -> bool {
    line.trim().is_empty()
}

fn next_non_blank(lines: &[&str], from: usize) -> Option<usize> {
    (from..lines.len()).find(|&j| !is_blank(lines[j]))
}

fn inside_paragraph(lines: &[&str], start: usize, end: usize) -> bool {
    let before = start > 0 && !is_blank(lines[start - 1]);
    let after = lines.get(end).is_some_and(|l| !is_blank(l));
    before && after
}

/// Returns how many lines the attribution at `i` spans and whether it is
/// strong enough to cut at even without a `>` quote below it.
fn attribution_at(lines: &[&str], i: usize) -> Option<(usize, bool)> {
    let first = lines[i].trim();
    if first.is_empty() || first.len() > MAX_ATTRIBUTION_LEN {
        return None;
    }
    let mut joined = first.trim_start_matches(['-', '*', ' ']).to_string();
    for span in 1..=MAX_ATTRIBUTION_LINES {
        if span > 1 {
            let next = lines.get(i + span - 1)?.trim();
            if next.is_empty() || next.starts_with('>') || !ATTRIBUTION_LEAD.is_match(&joined) {
                return None;
            }
            joined.push(' ');
            joined.push_str(next);
            if joined.len() > MAX_ATTRIBUTION_LEN {
                return None;
            }
        }
        if !joined.ends_with(':') {
            continue;
        }
        let addressed = ADDRESS.is_match(&joined);
        let dated = DATE_OR_TIME.is_match(&joined);
        if (DATED_ATTRIBUTION.is_match(&joined) && (dated || addressed))
            || (addressed && ADDRESSED_ATTRIBUTION.is_match(&joined))
        {
            return Some((span, true));
        }
        // Covers verbless forms such as mail.ru's "… от Name <a@b>:" and
        // Gmail's Russian and Japanese attributions.
        if span == 1 && (WEAK_ATTRIBUTION.is_match(&joined) || (addressed && dated)) {
            return Some((1, false));
        }
    }
    None
}

fn starts_reply_header(lines: &[&str], i: usize) -> bool {
    let line = lines[i].trim();
    ORIGINAL_MESSAGE.is_match(line)
        || (is_underscore_rule(line) && generic_fields_follow(lines, i + 1))
        || is_header_block(lines, i)
        || is_flattened_header(line)
}

fn is_flattened_header(line: &str) -> bool {
    (FROM_FIELD.is_match(line) || OTHER_FIELD.is_match(line))
        && INLINE_FROM.is_match(line)
        && INLINE_TO.is_match(line)
        && INLINE_SUBJECT.is_match(line)
        && (DATE_OR_TIME.is_match(line) || ADDRESS.is_match(line))
}

fn is_underscore_rule(line: &str) -> bool {
    line.len() >= 20 && line.bytes().all(|b| b == b'_')
}

/// Outlook starts with From, older Hotmail and some webmailers with Date or
/// Subject, so any order counts as long as a sender field is among them.
fn is_header_block(lines: &[&str], i: usize) -> bool {
    let first = lines[i].trim_start();
    let mut has_from = FROM_FIELD.is_match(first);
    if !has_from && !OTHER_FIELD.is_match(first) {
        return false;
    }
    let end = (i + 1 + HEADER_LOOKAHEAD).min(lines.len());
    let mut fields = 1;
    for line in &lines[i + 1..end] {
        let line = line.trim_start();
        if FROM_FIELD.is_match(line) {
            has_from = true;
            fields += 1;
        } else if OTHER_FIELD.is_match(line) {
            fields += 1;
        }
    }
    has_from && fields >= 3
}

fn generic_fields_follow(lines: &[&str], from: usize) -> bool {
    let fields = lines[from.min(lines.len())..]
        .iter()
        .filter(|l| !is_blank(l))
        .take(5)
        .filter(|l| GENERIC_FIELD.is_match(l.trim_start()))
        .count();
    fields >= 2
}

/// A forward pasted into a ticket is content the agent has not seen yet, so
/// it is kept; Outlook marks forwards only through the subject prefix.
fn is_forwarded(lines: &[&str], i: usize) -> bool {
    let end = (i + 2 + HEADER_LOOKAHEAD).min(lines.len());
    lines[i..end]
        .iter()
        .filter_map(|l| SUBJECT_FIELD.captures(l.trim_start()))
        .next()
        .is_some_and(|c| FORWARD_SUBJECT.is_match(c.get(1).map_or("", |m| m.as_str().trim())))
}

fn split_footnotes<'a, 'b>(lines: &'b [&'a str]) -> (&'b [&'a str], Vec<&'a str>) {
    let mut end = lines.len();
    while end > 0 && is_blank(lines[end - 1]) {
        end -= 1;
    }
    let mut start = end;
    while start > 0 && FOOTNOTE.is_match(lines[start - 1].trim_end()) {
        start -= 1;
    }
    if start == end || (start > 0 && !is_blank(lines[start - 1])) {
        return (lines, Vec::new());
    }
    (&lines[..start], lines[start..end].to_vec())
}

fn tidy_tail(kept: &mut Vec<&str>) {
    let leading_blanks = kept.iter().take_while(|l| is_blank(l)).count();
    kept.drain(..leading_blanks);
    loop {
        let before = kept.len();
        while kept.last().is_some_and(|l| is_blank(l) || is_separator(l)) {
            kept.pop();
        }
        strip_mobile_signature(kept);
        strip_delimited_signature(kept);
        if kept.len() == before {
            break;
        }
    }
}

fn is_separator(line: &str) -> bool {
    let line = line.trim();
    line.chars().count() >= 3 && line.chars().all(|c| matches!(c, '_' | '-' | '=' | '─' | '—' | '━' | '~' | '*'))
}

fn strip_mobile_signature(kept: &mut Vec<&str>) {
    let Some(last) = kept.iter().rposition(|l| !is_blank(l)) else {
        return;
    };
    let cleaned = LINK_NOISE.replace_all(kept[last].trim(), "");
    let cleaned = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    if MOBILE_SIGNATURE.is_match(&cleaned) && kept[..last].iter().any(|l| !is_blank(l)) {
        kept.truncate(last);
    }
}

/// Cuts at the RFC 3676 "-- " delimiter (html2text renders it as "--").
/// Scans from the end so a body full of "--" lines stays linear.
fn strip_delimited_signature(kept: &mut Vec<&str>) {
    let mut non_blank_after = 0;
    let mut delimiter = None;
    for (d, line) in kept.iter().enumerate().rev() {
        if line.trim() == "--" {
            delimiter = Some(d);
        }
        if !is_blank(line) {
            non_blank_after += 1;
        }
        if non_blank_after > MAX_SIGNATURE_LINES {
            break;
        }
    }
    if let Some(d) = delimiter
        && kept[..d].iter().any(|l| !is_blank(l))
    {
        kept.truncate(d);
    }
}

fn render(kept: &[&str], footnotes: Vec<&str>) -> String {
    let mut out = String::new();
    let mut pending_blank = false;
    for line in kept {
        let line = line.trim_end();
        if line.is_empty() {
            pending_blank = !out.is_empty();
            continue;
        }
        if pending_blank {
            out.push_str("\n\n");
        } else if !out.is_empty() {
            out.push('\n');
        }
        pending_blank = false;
        out.push_str(line);
    }
    let cited: HashSet<&str> =
        LINK_REFERENCE.captures_iter(&out).filter_map(|c| c.get(1).map(|m| m.as_str())).collect();
    let referenced: Vec<&str> = footnotes
        .into_iter()
        .map(str::trim_end)
        .filter(|f| FOOTNOTE.captures(f).and_then(|c| c.get(1)).is_some_and(|n| cited.contains(n.as_str())))
        .collect();
    if !out.is_empty() && !referenced.is_empty() {
        out.push_str("\n\n");
        out.push_str(&referenced.join("\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::strip_quoted;

    #[test]
    fn gmail_top_post() {
        let body = "Thanks, that fixed it.\r\n\r\nOn Mon, Jan 15, 2024 at 10:30 AM Acme Support <support@acme.example> wrote:\r\n\r\n> Hello Jane,\r\n> try clearing the cache.\r\n";
        assert_eq!(strip_quoted(body), "Thanks, that fixed it.");
    }

    #[test]
    fn gmail_wrapped_attribution() {
        let body = "Works now.\n\nOn Mon, Jan 15, 2024 at 10:30 AM Acme Customer Support Team <\nsupport-team@acme-helpdesk.example> wrote:\n\n> Hello\n";
        assert_eq!(strip_quoted(body), "Works now.");
    }

    #[test]
    fn wrapped_attribution_without_quote_below() {
        let body = "Works now.\n\nOn Mon, Jan 15, 2024 at 10:30 AM Acme Support\n<support@acme.example> wrote:\n\nHello Jane, unprefixed quote.\n";
        assert_eq!(strip_quoted(body), "Works now.");
    }

    #[test]
    fn bottom_post_with_signature() {
        let body = "On 1/15/24 10:30 AM, Acme Support wrote:\n> Hello Jane,\n>\n> Please try clearing the cache.\n\nThat worked, thanks!\n\n-- \nJane Doe\nExample Corp\n";
        assert_eq!(strip_quoted(body), "That worked, thanks!");
    }

    #[test]
    fn interleaved() {
        let body = "Hi,\n\nOn Mon, Jan 15, 2024 at 10:30 AM Support <s@acme.example> wrote:\n> 1. Which browser?\n\nFirefox 121.\n\n> 2. All exports?\n> Or only some?\n\nOnly large ones.\n";
        assert_eq!(strip_quoted(body), "Hi,\n\nFirefox 121.\n\nOnly large ones.");
    }

    #[test]
    fn outlook_original_message() {
        let body = "Here is the log.\r\n\r\n-----Original Message-----\r\nFrom: Acme Support [mailto:support@acme.example]\r\nSent: Monday, January 15, 2024 10:30 AM\r\nTo: Mark\r\nSubject: RE: log\r\n\r\nPlease send the log.\r\n";
        assert_eq!(strip_quoted(body), "Here is the log.");
    }

    #[test]
    fn outlook_header_block_without_blank_line() {
        let body = "Thanks, I will try that tomorrow.\nFrom: Acme Support <support@acme.example>\nSent: Monday, January 15, 2024 10:30\nTo: Jane Doe <jane@example.com>\nSubject: Re: [#1042] Export fails\nHello Jane, please clear the cache.\n";
        assert_eq!(strip_quoted(body), "Thanks, I will try that tomorrow.");
    }

    #[test]
    fn localized_header_blocks() {
        for (from, sent, to, subject) in [
            ("Von", "Gesendet", "An", "Betreff"),
            ("De\u{a0}", "Envoyé\u{a0}", "À\u{a0}", "Objet\u{a0}"),
            ("De", "Enviado", "Para", "Asunto"),
            ("Van", "Verzonden", "Aan", "Onderwerp"),
            ("Da", "Inviato", "A", "Oggetto"),
        ] {
            let body = format!(
                "Neuer Text.\n\n________________________________\n{from}: Acme <s@acme.example>\n{sent}: 15.01.2024 10:30\n{to}: Kunde <k@example.com>\n{subject}: AW: Frage\n\nAlter Text.\n"
            );
            assert_eq!(strip_quoted(&body), "Neuer Text.", "{from}");
        }
    }

    #[test]
    fn underscore_separator_with_unknown_language_fields() {
        let body = "Teşekkürler.\n\n________________________________\nKimden: Acme <s@acme.example>\nGönderildi: 15 Ocak 2024\nKime: Ali\nKonu: Soru\n\nEski metin.\n";
        assert_eq!(strip_quoted(body), "Teşekkürler.");
    }

    #[test]
    fn header_block_starting_with_date() {
        let body = "Fine, thanks.\n\nDate: Thu, 26 Jun 2014 13:53:45 +0400\nSubject: Hello\nFrom: a@example.com\nTo: b@example.com\n\nHow are you?";
        assert_eq!(strip_quoted(body), "Fine, thanks.");
        let no_sender = "Schedule:\n\nDate: Thursday\nTo: all staff\nSubject: the new rota\n\nPlease read it.";
        assert_eq!(strip_quoted(no_sender), no_sender);
    }

    #[test]
    fn verbless_attribution_before_quote() {
        let body = "Fine, thanks.\n\nThu, 26 Jun 2014 14:00:51 +0400 от Alexander <a@example.com>:\n\n> How are you?";
        assert_eq!(strip_quoted(body), "Fine, thanks.");
        let japanese = "了解です。\n\n2024年1月15日(月) 10:30 Acme Support <s@acme.example>:\n\n> こんにちは";
        assert_eq!(strip_quoted(japanese), "了解です。");
    }

    #[test]
    fn flattened_header_line() {
        let body = "Thanks.\n\nDate: Tue, 2 Oct 2012 02:35:10 +0000 From: john@example.com To: Smith, Shelly Subject: Feedback\n\nOld text.";
        assert_eq!(strip_quoted(body), "Thanks.");
        let prose = "Thanks.\n\nFrom: my side it works. Subject: closed on 2024-01-15.";
        assert_eq!(strip_quoted(prose), prose);
    }

    #[test]
    fn underscore_line_alone_is_kept() {
        let body = "Text above.\n\n______________________________\nDisclaimer follows here.";
        assert_eq!(strip_quoted(body), body);
    }

    #[test]
    fn localized_attributions() {
        for attribution in [
            "Am 15.01.2024 um 10:30 schrieb Acme Support <s@acme.example>:",
            "Am Mo., 15. Jan. 2024 um 10:30 Uhr schrieb Acme Support <s@acme.example>:",
            "Acme Support <s@acme.example> schrieb am Mo., 15. Jan. 2024, 10:30:",
            "Le lun. 15 janv. 2024 à 10:30, Acme Support <s@acme.example> a écrit :",
            "Le lun. 15 janv. 2024 à 10:30, Acme Support <s@acme.example> a écrit\u{a0}:",
            "El lun, 15 ene 2024 a las 10:30, Acme Support (<s@acme.example>) escribió:",
            "Op ma 15 jan. 2024 om 10:30 schreef Acme Support <s@acme.example>:",
            "Il giorno lun 15 gen 2024 alle ore 10:30 Acme Support <s@acme.example> ha scritto:",
            "Em seg., 15 de jan. de 2024 às 10:30, Acme Support <s@acme.example> escreveu:",
            "Den mån 15 jan. 2024 kl 10:30 skrev Acme Support <s@acme.example>:",
            "pon., 15 sty 2024 o 10:30 Acme Support <s@acme.example> napisał(a):",
            "On 15 Jan 2024, at 10:30, Acme Support <s@acme.example> wrote:",
            "On 1/15/24 10:30 AM, Acme Support wrote:",
            "On Monday, January 15, 2024, 10:30:00 AM GMT+1, Acme Support <s@acme.example> wrote:",
        ] {
            let quoted = format!("Neue Antwort.\n\n{attribution}\n\n> alt\n");
            assert_eq!(strip_quoted(&quoted), "Neue Antwort.", "{attribution}");
            let unprefixed = format!("Neue Antwort.\n\n{attribution}\nalt\n");
            assert_eq!(strip_quoted(&unprefixed), "Neue Antwort.", "{attribution}");
        }
    }

    #[test]
    fn wrote_inside_a_paragraph_is_kept() {
        let body = "As I wrote: the export fails.\nOn Monday my colleague wrote: it is fine.\nOn 15 Jan 2024 at 10:30 you wrote:\nthat it works, but it does not.";
        assert_eq!(strip_quoted(body), body);
    }

    #[test]
    fn weak_attribution_dropped_only_before_quote() {
        let body = "As you wrote:\n> the export fails\nI cannot reproduce that.";
        assert_eq!(strip_quoted(body), "I cannot reproduce that.");
        let unquoted = "Hello.\n\nHere is what the vendor wrote:\n\nthe export fails";
        assert_eq!(strip_quoted(unquoted), unquoted);
    }

    #[test]
    fn mobile_signatures() {
        let iphone = "Ok, will do.\n\nSent from my iPhone\n\n> On Jan 15, 2024, at 10:30 AM, Acme <s@acme.example> wrote:\n> \n> Hi\n";
        assert_eq!(strip_quoted(iphone), "Ok, will do.");
        let android = "Sure.\n\nGet Outlook for Android<https://aka.ms/ghei36>\n________________________________\nFrom: Acme <s@acme.example>\nSent: Monday, January 15, 2024 10:30:12 AM\nTo: Jane <j@example.com>\nSubject: Re: x\n\nHi\n";
        assert_eq!(strip_quoted(android), "Sure.");
        let html = "Sure.\n\nGet [Outlook for Android][1]\n\n[1]: https://aka.ms/ghei36\n";
        assert_eq!(strip_quoted(html), "Sure.");
        let german = "Passt.\n\nVon meinem iPhone gesendet";
        assert_eq!(strip_quoted(german), "Passt.");
    }

    #[test]
    fn signature_only_reply_keeps_signature() {
        let body = "Sent from my iPhone\n\n> On Jan 15, 2024, at 10:30 AM, Acme <s@acme.example> wrote:\n> Hi\n";
        assert_eq!(strip_quoted(body), "Sent from my iPhone");
    }

    #[test]
    fn html2text_footnotes_follow_their_references() {
        let body = "See [the docs][1].\n\nOn Mon, Jan 15, 2024 at 10:30 AM Acme <[s@acme.example][2]> wrote:\n\n> [link][3]\n\n[1]: https://docs.example/\n[2]: mailto:s@acme.example\n[3]: https://old.example/\n";
        assert_eq!(strip_quoted(body), "See [the docs][1].\n\n[1]: https://docs.example/");
    }

    #[test]
    fn forwards_are_kept() {
        let gmail = "FYI, see below.\n\n---------- Forwarded message ---------\nFrom: Vendor <v@vendor.example>\nDate: Mon, Jan 15, 2024 at 10:30 AM\nSubject: Outage\nTo: <jane@example.com>\n\nThe service is down.";
        assert_eq!(strip_quoted(gmail), gmail);
        let outlook = "FYI.\n\n________________________________\nFrom: Vendor <v@vendor.example>\nSent: Monday, January 15, 2024 10:30 AM\nTo: Jane\nSubject: FW: Outage\n\nThe service is down.";
        assert_eq!(strip_quoted(outlook), outlook);
    }

    #[test]
    fn dash_dash_far_from_the_end_is_not_a_signature() {
        let body = format!("Intro\n--\n{}", vec!["line"; 20].join("\n"));
        assert_eq!(strip_quoted(&body), body);
    }

    #[test]
    fn whole_body_quoted_falls_back_to_original() {
        let body = "\r\n> only a quote\r\n> nothing else\r\n";
        assert_eq!(strip_quoted(body), "> only a quote\n> nothing else");
    }

    #[test]
    fn blank_runs_collapse_and_crlf_normalises() {
        let body = "Hello,\r\n\r\n\r\n\r\nthe invoice is INV-1.   \r\n\r\n> old\r\n\r\nBye\r";
        assert_eq!(strip_quoted(body), "Hello,\n\nthe invoice is INV-1.\n\nBye");
    }

    #[test]
    fn html2text_wrapped_attribution() {
        let body = "Thanks\nOn Mon, Jan 15, 2024 at 10:30 AM Acme Customer Support Team\n<[support-team@acme-helpdesk.example][1]> wrote:\n\n> Hello Jane, this is long\n> > nested [link][2]\n\n[1]: mailto:support-team@acme-helpdesk.example\n[2]: https://x.example/a\n";
        assert_eq!(strip_quoted(body), "Thanks");
    }

    #[test]
    fn addressless_name_first_attribution_is_prose() {
        let body = "Hallo,\n\nIhr Kollege schrieb am 15.01.2024 um 10:30 Folgendes:\n\nBitte den Cache leeren.\n\nDas hat nicht geholfen.";
        assert_eq!(strip_quoted(body), body);
    }

    #[test]
    fn ordinary_closing_sentences_are_not_mobile_signatures() {
        for last in ["Sent from my office on Friday.", "Sent via FedEx yesterday."] {
            let body = format!("The parcel is on its way.\n\n{last}");
            assert_eq!(strip_quoted(&body), body);
        }
    }

    #[test]
    fn pathological_inputs_stay_fast() {
        let dashes = format!("text\n{}", "--\n".repeat(40_000));
        assert_eq!(strip_quoted(&dashes), "text");
        let sigs = format!("text\n{}", "Sent from my iPhone\n\n".repeat(20_000));
        assert_eq!(strip_quoted(&sigs), "text");
        let notes = format!("{}\n\n{}", "see [1] ".repeat(10_000), "[1]: https://a.example\n".repeat(20_000));
        assert!(strip_quoted(&notes).ends_with("[1]: https://a.example"));
        let rules = "______________________________\n\n".repeat(20_000);
        assert!(strip_quoted(&rules).starts_with('_'));
        let blanks_then_sigs = format!("{}text\n{}", "\n".repeat(20_000), "Sent from my iPhone\n".repeat(20_000));
        assert_eq!(strip_quoted(&blanks_then_sigs), "text");
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        let long = "x".repeat(1_000_000);
        let long_colon = format!("On {}:", "1".repeat(100_000));
        let many_lines = "> q\n\nOn 1/1/24 10:30 a wrote:\n".repeat(10_000);
        let inputs: Vec<String> = vec![
            String::new(),
            " \r\n\t\r".into(),
            ">".into(),
            ">\n>\n> >\n>>>".into(),
            "\0\0\0".into(),
            "a\0b\n> \0\n\0".into(),
            long,
            long_colon,
            many_lines,
            "\u{feff}\u{fffd}\u{202e}ab\u{200b}\n\u{10ffff}".into(),
            "ä\r\r\n\r\nö".into(),
            "--\n--\n-- ".into(),
            "________________________________".into(),
            "From:\nSent:\nTo:".into(),
            "[1]: x\n[2]: y".into(),
            "On\nOn\nOn wrote:".into(),
            "\n\n\n:\n:".into(),
            String::from_utf8_lossy(&[0xff, 0xfe, b'>', 0xc3, b'\n', 0xe2, 0x82, b'\r']).into(),
        ];
        for input in &inputs {
            let out = strip_quoted(input);
            assert!(!out.contains('\r'));
            assert_eq!(out, out.trim());
            assert_eq!(out.is_empty(), input.trim().is_empty());
        }
    }
}
