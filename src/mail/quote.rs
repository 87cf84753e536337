//! Reduces an e-mail reply to the text its author actually wrote.
//!
//! Mail clients append the message being answered in a handful of shapes:
//! `>`-prefixed lines under an attribution ("On … wrote:", in any of the UI
//! languages, sometimes wrapped over several lines, sometimes verbless,
//! sometimes decorated with dashes instead of a colon), an "Original
//! Message" marker, or a From/Sent/To/Subject header block above an
//! unprefixed copy. The input is plain text or an HTML body converted to
//! text (blockquotes as `> ` lines, links as `text <url>` or `[text][n]`).
//!
//! A line only starts a quote when it carries enough evidence (a date, time
//! or address in an attribution, several header fields), and cutting
//! without a `>` quote below needs more evidence than dropping `>` lines,
//! because losing a customer's words is worse than showing a stray quote.
//! For the same reason a `>` block with the author's text before and after
//! it and no attribution above it (pasted output, "> 5 users") is kept.
//!
//! Beyond quotes: a trailing RFC 3676 signature ("-- " and at most
//! `MAX_SIGNATURE_LINES` lines below it) and a mobile boilerplate line
//! ("Sent from my iPhone", "Get Outlook for Android", localized) are
//! dropped; such a device line with a whole unprefixed message below it
//! also ends the new text. Signatures without a delimiter are kept; forwarded
//! messages are kept verbatim. Runs of blank lines collapse to one and
//! trailing whitespace is trimmed.

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;

/// Attributions longer than this are prose, not client boilerplate; it also
/// keeps the regexes away from pathological lines.
const MAX_ATTRIBUTION_LEN: usize = 400;

/// Gmail wraps long attributions in text/plain and converters wrap names and
/// addresses, so the date, name and address can end up on separate lines.
const MAX_ATTRIBUTION_LINES: usize = 4;

/// Long To/Cc values wrap, so header fields may be spread over a few lines.
const HEADER_LOOKAHEAD: usize = 8;

/// A "-- " further up than this is a separator the author typed, not the
/// start of a signature.
const MAX_SIGNATURE_LINES: usize = 12;

/// Lines longer than this are never searched for an attribution embedded in
/// running text; attributions are short and the regexes stay cheap.
const MAX_INLINE_SCAN: usize = 1_000;

/// Quoting clients wrap at 72–78 columns; a quoted line whose next word
/// would have pushed it past this was wrapped by a client.
const WRAP_WIDTH: usize = 72;

/// A client re-wrapping one long quoted line produces at most a few
/// unprefixed continuation lines before the next `>` line.
const MAX_LOST_PREFIX_LINES: usize = 3;

/// Below a device line, old text is a whole message; a line or two is a
/// postscript the author added.
const MIN_OLD_MESSAGE_LINES: usize = 3;

/// Device lines are short; anything longer is a sentence.
const MAX_DEVICE_LINE: usize = 120;

/// "wrote" in the attribution languages of Gmail, Outlook, Apple Mail,
/// Thunderbird, Yahoo and the common webmailers.
const WROTE: &str = r"(?:\bwrote\b|\bwrites\b|\bschrieb\b|\bschreibt\b|\ba\s+[ée]crit\b|\bescribi[óo]\b|\bha\s+scritto\b|\bescreveu\b|\bschreef\b|\bgeschreven\b|\bskrev\b|\bkirjoitti\b|\bnapisał(?:\(a\)|a)?|\bnapisana\b|\bpisze\b|\bnapsal(?:\(a\)|a)?|\bнаписал(?:\(а\)|а)?|\bпишет\b|\byazdı\b|写道|寫道|님이\s*작성|작성|書きました|のメール|のメッセージ|쓴\s*글|\bquoting\b|\bzitat\s+von\b|\bcitation\s+de\b|\bcitando\b|\bírta\b|έγραψε|\bscrie\b|\bnapísal(?:\(a\)|a)?)";

/// The verbs without their word boundaries, as a prefilter. A Unicode `\b`
/// makes the regex crate leave its DFA for a backtracker on any line with a
/// non-ASCII character: ~70 µs a line, 2 s for a 2 MiB body, all of it on
/// the desk's writer thread. Nearly no line has a verb stem, and those skip
/// the exact check.
static VERB_STEM: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!(r"(?i){}", WROTE.replace(r"\b", ""))).expect("verb stem regex compiles"));

fn may_name_a_verb(s: &str) -> bool {
    VERB_STEM.is_match(s)
}

static ATTRIBUTION_VERB_TAIL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!(r"(?is){WROTE}.{{0,120}}$")).expect("verb tail regex compiles"));

static ATTRIBUTION_VERB: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!(r"(?i){WROTE}")).expect("verb regex compiles"));

/// Without a date the attribution verbs also match ordinary sentences, so
/// this is what tells "On 15 Jan 2024, at 10:30, Ann wrote:" from
/// "On reflection, Ann wrote:".
static DATE_OR_TIME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\d{1,2}[:.h]\d{2}|\b(?:19|20)\d{2}\b|(?:19|20)\d{2}\s*[年년]|\b\d{1,2}/\d{1,2}/\d{2}\b")
        .expect("date regex compiles")
});

static TIME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\d{1,2}[:.]\d{2}").expect("time regex compiles"));

static ADDRESS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\S@\S").expect("address regex compiles"));

/// Verbless attributions (Gmail in Russian and Japanese, Yandex, mail.ru,
/// date-first webmailers) end with the sender's bracketed address.
static BRACKETED_ADDRESS_AT_END: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:<[^<>\s]+@[^<>\s]+>|\([^()\s]+@[^()\s]+\)|\[[^\[\]\s]+@[^\[\]\s]+\])\s*[:：]$")
        .expect("bracketed address regex compiles")
});

/// An attribution that opens with a lead word or the date; name-first forms
/// need an address, since "Ihr Kollege schrieb am 15.01. Folgendes:" is prose.
static DATE_FIRST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^(?:(?:on|am|le|el|il|em|op|den|dne|w\s+dniu|в|在|于|in\s+a\s+message\s+dated|wiadomość\s+napisana\s+przez|quoting|zitat\s+von|citation\s+de|citando)\s|(?:\p{L}{1,12}\.?,?\s+)?\d)")
        .expect("date first regex compiles")
});

/// The opening of an attribution proper: a lead word, or the date after at
/// most an abbreviated weekday ("Mon,", "pon.,", "пн,"), which "Version 2."
/// is not.
static OPENS_ATTRIBUTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^(?:(?:on|am|le|el|il|em|op|den|dne|w\s+dniu|в|在|于)\s|(?:\p{L}{1,4}\.?,?\s+)?\d)")
        .expect("opens attribution regex compiles")
});

static LEAD_WORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^(?:on|am|le|el|il|em|op|den|dne|w\s+dniu|в|在|于)\s").expect("lead word regex compiles")
});

static VERB_AT_END: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!(r"(?i){WROTE}\s*$")).expect("verb at end regex compiles"));

static SENTENCE_BREAK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[.!?]\s+\p{Lu}").expect("sentence break regex compiles"));

/// Only trusted when a quote follows directly, where a wrong guess costs one
/// line of context rather than the rest of the message.
static COLON_END: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[:：]\s*$").expect("colon regex compiles"));

/// Zoho and some webmailers frame the attribution with dashes instead of
/// ending it with a colon ("---- On … wrote ----").
static DECORATION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*[-=_*]{2,}\s*(.*?)\s*[-=_*]{2,}\s*$").expect("decoration regex compiles"));

/// Where an attribution can start inside a line of running text.
static INLINE_START: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:[.!?。！？]\s*|\s)(?:on|am|le|el|il|em|op|den|dne|w\s+dniu)\s|[.!?]\s+\S|[。！？]\s*\S")
        .expect("inline start regex compiles")
});

static ORIGINAL_MESSAGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)^(?P<lead>[-=_*\s]*)(?:
            original\s+message|original|reply\s+message|replied\s+message|mail\s+original|message\s+original
          | ursprüngliche\s+nachricht|ursprüngliche\s+mail|originalnachricht|message\s+d['’]origine
          | mensaje\s+original|oorspronkelijk\s+bericht|origineel\s+bericht|messaggio\s+originale
          | mensagem\s+original|originalmeddelande|ursprungligt\s+meddelande|oprindelig\s+meddelelse
          | oprindelig\s+besked|opprinnelig\s+melding|original\s+melding|alkuperäinen\s+viesti
          | wiadomość\s+oryginalna|oryginalna\s+wiadomość|původní\s+zpráva|исходное\s+сообщение
          | оригинальное\s+сообщение|orijinal\s+ileti|orijinal\s+mesaj|özgün\s+ileti|元のメッセージ
          | 原始邮件|原始郵件|原始消息|원본\s*메시지|원래\s*메시지|eredeti\s+üzenet|αρχικό\s+μήνυμα
        )(?P<tail>[-=_*\s]*)$",
    )
    .expect("original message regex compiles")
});

static FORWARD_MARKER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^(?:[-=]{2,}\s*(?:forwarded\s+message|weitergeleitete\s+nachricht|message\s+transféré|mensaje\s+reenviado|doorgestuurd\s+bericht|messaggio\s+inoltrato|mensagem\s+encaminhada|vidarebefordrat\s+meddelande|videresendt\s+meddelelse|videresendt\s+melding|välitetty\s+viesti|przekazana\s+wiadomość|přeposlaná\s+zpráva|пересылаемое\s+сообщение|iletilen\s+ileti|転送されたメッセージ|转发的邮件|전달된\s*메시지)\s*[-=]{2,}|begin\s+forwarded\s+message\s*:|anfang\s+der\s+weitergeleiteten\s+(?:nachricht|e-mail)\s*:|début\s+du\s+message\s+réexpédié\s*:|inicio\s+del\s+mensaje\s+reenviado\s*:)$",
    )
    .expect("forward marker regex compiles")
});

const FROM_NAMES: &str = r"from|von|de|van|da|från|fra|od|от|отправитель|lähettäjä|kimden|gönderen|feladó|odesílatel|nadawca|afsender|avsender|差出人|发件人|發件人|寄件者|寄件人|보낸\s?사람";

const OTHER_NAMES: &str = r"sent|date|to|cc|bcc|subject|reply-to|gesendet|datum|an|betreff|envoyé|envoyée|envoyé\s+le|à|a|objet|sujet|pour|copie\s+à|enviado|enviada|enviado\s+em|enviada\s+em|enviado\s+el|fecha|para|asunto|verzonden|aan|onderwerp|inviato|data|oggetto|assunto|skickat|till|ämne|kopia|sendt|til|emne|kopi|dato|wysłano|wysłane|do|dw|temat|отправлено|кому|тема|дата|копия|lähetetty|vastaanottaja|aihe|kopio|päivämäärä|gönderildi|kime|konu|tarih|bilgi|elküldve|címzett|tárgy|odesláno|komu|předmět|kopie|送信日時|日付|宛先|件名|发送时间|發送時間|日期|时间|時間|收件人|收件者|主题|主題|主旨|抄送|副本|寄件日期|보낸\s?날짜|받는\s?사람|제목|참조";

static FROM_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r"(?i)^\*{{0,2}}(?:{FROM_NAMES})\*{{0,2}}\s*[:：]")).expect("from field regex compiles")
});

static OTHER_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(r"(?i)^\*{{0,2}}(?:{OTHER_NAMES})\*{{0,2}}\s*[:：]")).expect("header field regex compiles")
});

/// The second field of a two-field header block says when, so it is only
/// believed with a date or time in it.
static WHEN_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^\*{0,2}(?:sent|date|gesendet|datum|envoyé|envoyée|date|enviado|enviada|fecha|data|verzonden|inviato|skickat|sendt|dato|wysłano|отправлено|дата|lähetetty|päivämäärä|gönderildi|tarih|odesláno|送信日時|日付|发送时间|發送時間|日期|寄件日期|보낸\s?날짜)\*{0,2}\s*[:：]\s*\S")
        .expect("when field regex compiles")
});

/// Some webmailers flatten the reply header into one line
/// ("Date: … From: … To: … Subject: …").
static INLINE_FROM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:^|\s)\*{0,2}(?:from|von|de|van|da|från|fra|od)\*{0,2}\s*:\s")
        .expect("inline from regex compiles")
});

static INLINE_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\s\*{0,2}(?:subject|betreff|objet|sujet|asunto|onderwerp|oggetto|assunto|ämne|emne|temat)\*{0,2}\s*:\s",
    )
    .expect("inline subject regex compiles")
});

static INLINE_TO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\s\*{0,2}(?:to|an|à|a|para|aan|till|til|do|pour)\*{0,2}\s*:\s").expect("inline to regex compiles")
});

static SUBJECT_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\*{0,2}(?:subject|betreff|objet|sujet|asunto|onderwerp|oggetto|assunto|ämne|emne|temat|тема|aihe|konu|tárgy|předmět|件名|主题|主題|主旨|제목)\*{0,2}\s*[:：]\*{0,2}\s*(.*)$",
    )
    .expect("subject field regex compiles")
});

static FORWARD_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^(?:fw|fwd|wg|tr|rv|enc|doorst|vb|vs|i|pd|vl|fs|ilt|転送|转发|轉寄|전달)\s*[:：]")
        .expect("forward subject regex compiles")
});

/// Any "Word: value" line; used after an underscore separator, where the
/// separator itself already says "Outlook", so unknown languages are fine.
static GENERIC_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\*{0,2}\p{L}[\p{L}\p{M} \-]{0,24}\*{0,2}\s*[:：]\s*\S").expect("generic field regex compiles")
});

/// Devices and apps that mobile clients name in their default signature;
/// listing them keeps "Sent from my office on Friday." a sentence.
const SENDING_DEVICE: &str = r"(?:iphon(?:e|u|a|em)?|ipad|ipod|apple\s?watch|ios|android|samsung|galaxy|blackberry|huawei|honor|xiaomi|redmi|oneplus|pixel|sony|nokia|motorola|fairphone|oppo|mobile|phone|smartphone|tablet|handy|mobiltelefon|téléphone|portable|appareil|móvil|movil|celular|dispositivo|telemóvel|telefoon|mobiel|cellulare|mobil|smarttelefon|matkapuhelin|puhelin|telefon|smartfon|телефон|смартфон|outlook|mail|yahoo|aol|gmail|proton\s?mail|bluemail|spark|fairemail|k-9|gmx|web\.de|t-online|courrier|correo|posta|pošt|poczt|почт|e-?post|sähköpost|windows|airmail|newton|superhuman|canary|edison|spike|tutanota|mailbird|thunderbird|mailspring|zoho|yandex|icloud|hotmail|手机|手機|华为|華為|小米|邮件|郵件|邮箱|메일)";

static MOBILE_SIGNATURE: LazyLock<Regex> = LazyLock::new(|| {
    let pattern = r"(?i)^(?:
        sent\s(?:from|with|via|using|on)\s(?:my\s|the\s|an?\s)?(?:\S+\s){0,2}?DEVICE\b.{0,60}
      | (?:get|download)\s(?:the\s)?outlook\s(?:app\s)?for\s(?:ios|android)
      | (?:von|mit)\s(?:meinem\s|meiner\s|der\s|dem\s)?(?:\S+\s){0,2}?DEVICE\S*.{0,40}\sgesendet
      | gesendet\s(?:von|mit|via|aus)\s(?:meinem\s|meiner\s|der\s|dem\s)?(?:\S+\s){0,2}?DEVICE\b.{0,60}
      | outlook\sfür\s(?:ios|android)\s(?:beziehen|herunterladen)
      | envoy[ée]\s(?:de|depuis|avec|via|à\spartir\sd[e'’])\s?(?:mon\s|ma\s|l['’]\s?|le\s|la\s)?(?:\S+\s){0,2}?DEVICE\b.{0,60}
      | (?:obtenir|télécharger)\soutlook\spour\s(?:ios|android)
      | enviad[oa]\s(?:desde|do|da|de|con|com|via|a\spartir\sdo)\s(?:mi\s|meu\s|minha\s|o\s|el\s|la\s|a\s)?(?:\S+\s){0,2}?DEVICE\b.{0,60}
      | (?:obtener|descargar|obter|obtenha|baixar|baixe)\s(?:o\s)?outlook\spara\s(?:ios|android)
      | inviat[oa]\s(?:da|dal|dalla|con|tramite)\s(?:il\smio\s|mio\s|la\smia\s|il\s|la\s)?(?:\S+\s){0,2}?DEVICE\b.{0,60}
      | scarica\soutlook\sper\s(?:ios|android)
      | (?:verstuurd|verzonden)\s(?:vanaf|vanuit|met|via|van)\s(?:mijn\s|de\s|het\s)?(?:\S+\s){0,2}?DEVICE\S*.{0,60}
      | (?:download\s)?outlook\svoor\s(?:ios|android)(?:\sdownloaden|\sophalen)?
      | sendt\s(?:fra|med|via)\s(?:min\s|mitt\s|mi\s)?(?:\S+\s){0,2}?DEVICE\S*.{0,60}
      | (?:hent|få)\soutlook\s(?:til|for)\s(?:ios|android)
      | skicka(?:t|des)\s(?:från|med|via)\s(?:min\s|mitt\s)?(?:\S+\s){0,2}?DEVICE\S*.{0,60}
      | hämta\soutlook\sför\s(?:ios|android)
      | lähetetty\s(?:\S+\s){0,2}?DEVICE\S*.{0,60}
      | hanki\soutlook\S*(?:\s\S+){0,2}
      | wysłan[eoy]\s(?:z|ze|przez)\s(?:mojego\s|mojej\s|aplikacji\s)?(?:\S+\s){0,2}?DEVICE\S*.{0,60}
      | pobierz\s(?:aplikację\s)?outlook\sdla\s(?:systemu\s)?(?:ios|android)
      | odesláno\s(?:z|ze|pomocí)\s(?:mého\s|mé\s|aplikace\s)?(?:\S+\s){0,2}?DEVICE\S*.{0,60}
      | stáhn[ěe]te\ssi\soutlook\spro\s(?:ios|android)
      | отправлено\s(?:с|из|через)\s(?:моего\s|моей\s|мобильной\s|приложения\s)?(?:\S+\s){0,2}?DEVICE\S*.{0,60}
      | получить\soutlook\sдля\s(?:ios|android)
      | (?:\S+\s){0,3}?DEVICE\S*['’]\S*(?:dan|den|tan|ten)\s(?:\S+\s)?gönderildi
      | (?:ios|android)\siçin\soutlook['’]u\s(?:edinin|indirin)
      | .{0,30}?DEVICE.{0,20}?から送信
      | .{0,20}?outlook.{0,20}?を入手
      | (?:发自|發自)\s?(?:我的)?\s?.{0,20}?DEVICE.{0,20}
      | 从\s?(?:我的)?\s?.{0,20}?DEVICE.{0,20}?发送
      | (?:获取|獲取|取得)\s?.{0,10}?outlook.{0,10}
      | .{0,30}?DEVICE.{0,20}?에서\s?보냄
      | (?:ios|android)\s?용\s?outlook\s?받기
    )[.。]?$";
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
    strip_counted(body).0
}

/// `strip_quoted` plus the number of line visits it made, which tests use to
/// show that the work stays linear in the number of lines.
fn strip_counted(body: &str) -> (String, usize) {
    let normalized = body.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = normalized.split('\n').collect();
    let (content, footnotes) = split_footnotes(&lines);
    let mut scan = Scan::new(content);
    let mut kept = scan.collect_new_lines();
    tidy_tail(&mut kept);
    let text = render(&kept, footnotes);
    let text = text.trim();
    let out = if text.is_empty() { normalized.trim().to_string() } else { text.to_string() };
    (out, scan.work)
}

/// How much an attribution proves, which decides how much it may cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Evidence {
    /// Ends like an attribution; only believed with a `>` quote right below.
    Weak,
    /// A date-first or addressed attribution: cuts the rest of the message
    /// unless it sits inside a paragraph of running text.
    Strong,
    /// Verb, address and date (or a verbless date + time + bracketed
    /// address): cuts even inside a paragraph.
    Certain,
}

#[derive(Debug, Clone, Copy)]
struct Attribution {
    span: usize,
    evidence: Evidence,
}

struct Scan<'a, 'b> {
    lines: &'b [&'a str],
    attributions: Vec<Option<Attribution>>,
    /// `quote_from[i]`: some line at or after `i` is `>`-quoted.
    quote_from: Vec<bool>,
    /// `forward_from[i]`: a forward marker is at or after `i`.
    forward_from: Vec<bool>,
    /// `text_lines_from[i]`: non-blank lines at or after `i`.
    text_lines_from: Vec<usize>,
    work: usize,
}

impl<'a, 'b> Scan<'a, 'b> {
    fn new(lines: &'b [&'a str]) -> Self {
        let n = lines.len();
        let mut work = 0;
        let attributions: Vec<Option<Attribution>> = (0..n)
            .map(|i| {
                work += 1;
                if is_quote(lines[i]) { None } else { attribution_at(lines, i) }
            })
            .collect();
        let mut quote_from = vec![false; n + 1];
        let mut forward_from = vec![false; n + 1];
        let mut text_lines_from = vec![0; n + 1];
        for i in (0..n).rev() {
            work += 1;
            text_lines_from[i] = text_lines_from[i + 1] + usize::from(!is_blank(lines[i]));
            quote_from[i] = quote_from[i + 1] || is_quote(lines[i]);
            forward_from[i] = forward_from[i + 1] || FORWARD_MARKER.is_match(capped(lines[i].trim()));
        }
        Scan { lines, attributions, quote_from, forward_from, text_lines_from, work }
    }

    fn collect_new_lines(&mut self) -> Vec<&'a str> {
        let lines = self.lines;
        let mut kept: Vec<&'a str> = Vec::new();
        let mut seen_attribution = false;
        let mut dropped_device = None;
        let mut has_text = false;
        let mut i = 0;
        while i < lines.len() {
            self.work += 1;
            let line = lines[i];
            if self.forward_from[i] && FORWARD_MARKER.is_match(capped(line.trim())) {
                kept.extend_from_slice(&lines[i..]);
                break;
            }
            if is_quote(line) {
                let end = self.quote_block_end(i);
                if !seen_attribution && has_text && self.is_pasted(end) {
                    kept.extend_from_slice(&lines[i..end]);
                }
                i = end;
                continue;
            }
            if let Some(end) = lost_prefix_run(lines, i) {
                i = end;
                continue;
            }
            if starts_reply_header(lines, i) {
                if is_forwarded(lines, i) {
                    kept.extend_from_slice(&lines[i..]);
                }
                break;
            }
            let split = inline_attribution(line, Evidence::Certain).or_else(|| {
                // Without an address the attribution needs the quote below.
                let quoted_below = may_name_a_verb(capped(line))
                    && ATTRIBUTION_VERB.is_match(capped(line))
                    && self.next_non_blank(i + 1).is_some_and(|n| is_quote(lines[n]));
                if quoted_below { inline_attribution(line, Evidence::Strong) } else { None }
            });
            if let Some(split) = split {
                kept.push(&line[..split.start]);
                has_text = true;
                if split.rest_is_quote {
                    break;
                }
                match self.next_non_blank(i + 1) {
                    Some(next) if is_quote(lines[next]) => {
                        seen_attribution = true;
                        i = next;
                        continue;
                    }
                    _ => break,
                }
            }
            if let Some(a) = self.attributions[i] {
                seen_attribution = true;
                match self.next_non_blank(i + a.span) {
                    Some(next) if is_quote(lines[next]) => {
                        i = next;
                        continue;
                    }
                    None if a.evidence >= Evidence::Strong => break,
                    Some(_) if a.evidence == Evidence::Certain => break,
                    Some(_) if a.evidence == Evidence::Strong && !inside_paragraph(lines, i, i + a.span) => break,
                    _ => {}
                }
            }
            if is_device_line(line) {
                if self.quote_from[i + 1] {
                    dropped_device = Some(line);
                    i += 1;
                    continue;
                }
                if has_text && self.text_lines_from[i + 1] >= MIN_OLD_MESSAGE_LINES && !self.forward_from[i + 1] {
                    break;
                }
            }
            kept.push(line);
            has_text |= !is_blank(line);
            i += 1;
        }
        // A reply that is nothing but a device line and a quote still shows
        // who answered from where rather than falling back to the quote.
        if !has_text && let Some(device) = dropped_device {
            kept.push(device);
        }
        kept
    }

    fn next_non_blank(&mut self, from: usize) -> Option<usize> {
        let found = (from..self.lines.len()).find(|&j| !is_blank(self.lines[j]));
        self.work += found.unwrap_or(self.lines.len()).saturating_sub(from);
        found
    }

    fn quote_block_end(&mut self, i: usize) -> usize {
        let end = (i..self.lines.len()).find(|&j| !is_quote(self.lines[j])).unwrap_or(self.lines.len());
        self.work += end - i;
        end
    }

    /// Whether the `>` block `i..end`, with the author's text above it and no
    /// attribution anywhere before, is the author's own (pasted output,
    /// "> 5 users", a line of a log): it is when new text follows it. A
    /// selective quote without attribution is kept too; that costs a line
    /// of context, never the author's words.
    fn is_pasted(&mut self, end: usize) -> bool {
        let lines = self.lines;
        let Some(next) = self.next_non_blank(end) else {
            return false;
        };
        let follows = lines[next];
        !(is_quote(follows) || self.attributions[next].is_some() || is_device_line(follows) || follows.trim() == "--")
    }
}

/// Regexes only ever see the start of a line; attributions and header
/// fields are short, and this keeps hostile lines cheap.
fn capped(line: &str) -> &str {
    if line.len() <= MAX_INLINE_SCAN {
        return line;
    }
    let mut end = MAX_INLINE_SCAN;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

fn is_quote(line: &str) -> bool {
    line.trim_start().starts_with('>')
}

fn is_blank(line: &str) -> bool {
    line.trim().is_empty()
}

fn inside_paragraph(lines: &[&str], start: usize, end: usize) -> bool {
    let before = start > 0 && !is_blank(lines[start - 1]);
    let after = lines.get(end).is_some_and(|l| !is_blank(l));
    before && after
}

fn starts_block(lines: &[&str], i: usize) -> bool {
    i == 0 || is_blank(lines[i - 1]) || is_separator(lines[i - 1])
}

/// Returns how many lines the attribution at `i` spans and how much it
/// proves.
fn attribution_at(lines: &[&str], i: usize) -> Option<Attribution> {
    let first = lines[i].trim();
    if first.is_empty() || first.len() > MAX_ATTRIBUTION_LEN {
        return None;
    }
    let at_block_start = starts_block(lines, i);
    let mut joined = first.to_string();
    let mut tail = String::new();
    for span in 1..=MAX_ATTRIBUTION_LINES {
        if span > 1 {
            let next = lines.get(i + span - 1)?.trim();
            if next.is_empty() || next.starts_with('>') || joined.len() + next.len() > MAX_ATTRIBUTION_LEN {
                return None;
            }
            // A wrapped attribution carries its date or address from the
            // first line on and does not end a sentence there; a sentence
            // that merely precedes an attribution does.
            if span == 2 && (!(DATE_FIRST.is_match(first) || ADDRESS.is_match(first)) || ends_sentence(first)) {
                return None;
            }
            if !joined.ends_with(['<', '(', '[']) {
                joined.push(' ');
            }
            joined.push_str(next);
            if has_sentence_break(&joined) {
                return None;
            }
            if !tail.is_empty() {
                tail.push(' ');
            }
            tail.push_str(next);
            match attribution_evidence(&tail, true) {
                Some(Evidence::Certain) => return None,
                Some(Evidence::Strong) if LEAD_WORD.is_match(&tail) => return None,
                _ => {}
            }
        }
        if let Some(evidence) = attribution_evidence(&joined, at_block_start) {
            if span > 1 && evidence < Evidence::Strong {
                return None;
            }
            // "failed. Ann <a@b> wrote:" ends a sentence of the author's
            // first; only a quote right below makes it an attribution.
            let evidence = if has_sentence_break(&joined) { Evidence::Weak } else { evidence };
            return Some(Attribution { span, evidence });
        }
    }
    None
}

/// In an attribution the address belongs to whoever wrote: it stands before
/// the verb ("Ann <a@b> wrote", "Ann <a@b> 写道") or right after it behind a
/// name ("schrieb Ann Berg <a@b>"), never behind a preposition as in "I
/// wrote to a@b on Monday".
fn names_the_writer(core: &str) -> bool {
    if !may_name_a_verb(core) {
        return true;
    }
    let (Some(verb), Some(at)) = (ATTRIBUTION_VERB.find_iter(core).last(), ADDRESS.find(core)) else {
        return true;
    };
    if at.start() < verb.start() {
        return true;
    }
    let token_start = core[..at.start()].rfind(char::is_whitespace).map_or(0, |p| p + 1);
    let between = &core[verb.end()..token_start.max(verb.end())];
    between.split_whitespace().all(|w| !w.trim_start_matches(['"', '\'', '(']).starts_with(char::is_lowercase))
}

/// "Ann Berg <a@b> wrote", "a@b wrote": only a name stands before the
/// address, unlike "Please reply to Ann <a@b>, she wrote".
fn name_first(body: &str) -> bool {
    let Some(at) = ADDRESS.find(body) else {
        return false;
    };
    let token_start = body[..at.start()].rfind(char::is_whitespace).map_or(0, |p| p + 1);
    let before: Vec<&str> = body[..token_start].split_whitespace().collect();
    before.len() <= 6
        && before.iter().all(|w| !w.trim_start_matches(['"', '\'', '(', '<', '[']).starts_with(char::is_lowercase))
}

/// Sentence-final punctuation; a period after a short word is an
/// abbreviation ("15. jan.", "ma.") as dates in attributions have them.
fn ends_sentence(line: &str) -> bool {
    let line = line.trim_end();
    if line.ends_with(['!', '?', '。', '！', '？']) {
        return true;
    }
    let Some(stem) = line.strip_suffix('.') else {
        return false;
    };
    let word = stem.rsplit(|c: char| !c.is_alphanumeric()).next().unwrap_or("");
    word.chars().count() >= 4 && word.chars().all(char::is_alphabetic)
}

/// "… and it failed. Ann <a@b> wrote:": a sentence ends inside, so the
/// lines are prose followed by an attribution, not one wrapped attribution.
/// Abbreviated dates ("15. Jan.", "janv. 2024") do not count.
fn has_sentence_break(text: &str) -> bool {
    SENTENCE_BREAK.find_iter(text).take(16).any(|m| ends_sentence(&text[..m.start() + 1]))
}

/// Judges one (possibly joined) line as an attribution.
fn attribution_evidence(text: &str, at_block_start: bool) -> Option<Evidence> {
    let text = text.trim();
    let (body, framed) = match DECORATION.captures(text) {
        Some(c) => (c.get(1).map_or("", |m| m.as_str()), true),
        None => (text.trim_start_matches(['-', '*', ' ']), false),
    };
    let colon = COLON_END.is_match(body);
    if !colon && !framed {
        let complete = may_name_a_verb(body)
            && (VERB_AT_END.is_match(body)
                || (OPENS_ATTRIBUTION.is_match(body) && ATTRIBUTION_VERB_TAIL.is_match(body)))
            && ADDRESS.is_match(body)
            && DATE_OR_TIME.is_match(body);
        return complete.then_some(Evidence::Weak);
    }
    let core = body.trim_end().trim_end_matches([':', '：']).trim_end();
    let addressed = ADDRESS.is_match(body);
    let dated = DATE_OR_TIME.is_match(body);
    if may_name_a_verb(core) && ATTRIBUTION_VERB_TAIL.is_match(core) {
        if !names_the_writer(core) || !(DATE_FIRST.is_match(body) || name_first(body)) {
            return colon.then_some(Evidence::Weak);
        }
        if addressed && dated {
            return Some(Evidence::Certain);
        }
        if addressed || (dated && DATE_FIRST.is_match(body)) {
            return Some(Evidence::Strong);
        }
        return colon.then_some(Evidence::Weak);
    }
    if colon && addressed && dated {
        if at_block_start
            && body.len() <= 250
            && DATE_FIRST.is_match(body)
            && TIME.is_match(body)
            && BRACKETED_ADDRESS_AT_END.is_match(body)
        {
            return Some(Evidence::Certain);
        }
        return Some(Evidence::Weak);
    }
    None
}

/// An attribution that a client glued onto the end of the author's last line
/// ("Works now. On Mon, … <a@b> wrote:"), possibly followed by quoted text.
/// `needed` is the evidence the attribution must carry on its own.
struct InlineSplit {
    start: usize,
    rest_is_quote: bool,
}

fn inline_attribution(line: &str, needed: Evidence) -> Option<InlineSplit> {
    if line.len() > MAX_INLINE_SCAN || (needed == Evidence::Certain && !ADDRESS.is_match(line)) {
        return None;
    }
    if !may_name_a_verb(line) {
        return None;
    }
    let verb = ATTRIBUTION_VERB.find_iter(line).last()?;
    let after = &line[verb.end()..];
    let colon = after.char_indices().take(80).find(|&(_, c)| c == ':' || c == '：')?.0;
    let end = verb.end() + colon + after[colon..].chars().next().map_or(1, char::len_utf8);
    let rest = line[end..].trim();
    if OPENS_ATTRIBUTION.is_match(line) && attribution_evidence(&line[..end], false).is_some() {
        return None;
    }
    let mut by_lead = None;
    let mut by_sentence = None;
    for m in INLINE_START.find_iter(&line[..verb.start()]).take(16) {
        let Some(offset) = m.as_str().find(char::is_alphanumeric) else {
            continue;
        };
        let start = m.start() + offset;
        let prefix = line[..start].trim();
        if prefix.is_empty() || end - start > MAX_ATTRIBUTION_LEN {
            continue;
        }
        if attribution_evidence(&line[start..end], false).is_none_or(|e| e < needed) {
            continue;
        }
        if m.as_str().trim_start_matches(['.', '!', '?', '。', '！', '？']).trim_start().len() > 1 {
            by_lead = Some(start);
        } else if by_sentence.is_none() && ends_sentence(prefix) {
            by_sentence = Some(start);
        }
    }
    let start = by_lead.or(by_sentence)?;
    if needed < Evidence::Certain && !rest.is_empty() {
        return None;
    }
    Some(InlineSplit { start, rest_is_quote: !rest.is_empty() })
}

/// Unprefixed lines a client produced by re-wrapping a long quoted line
/// after quoting it: the `>` line above stops mid-sentence at the wrap
/// width and the continuation carries on in lower case.
fn lost_prefix_run(lines: &[&str], i: usize) -> Option<usize> {
    let above = lines.get(i.checked_sub(1)?)?.trim_end();
    if !is_quote(above) || above.len() > MAX_INLINE_SCAN {
        return None;
    }
    let text = above.trim_start_matches(['>', ' ', '\t']);
    if text.is_empty() || text.ends_with(['.', '!', '?', ':', ';', '。', '！', '？']) {
        return None;
    }
    let mut previous = above;
    let mut j = i;
    while j < lines.len() && j < i + MAX_LOST_PREFIX_LINES {
        let line = lines[j].trim_end();
        if is_blank(line) || is_quote(line) {
            break;
        }
        let first_word = line.split_whitespace().next().unwrap_or("");
        let wrapped = previous.chars().count() + 1 + first_word.chars().count() > WRAP_WIDTH;
        let lower = line.trim_start().chars().next().is_some_and(char::is_lowercase);
        if !wrapped || (j == i && !lower) || line.chars().count() > WRAP_WIDTH + 8 {
            break;
        }
        previous = line;
        j += 1;
    }
    if j == i {
        return None;
    }
    match lines.get(j) {
        Some(l) if is_quote(l) => Some(j),
        // Closing a quoted paragraph, the continuation ends its sentence.
        None => ends_quoted_sentence(lines[j - 1]).then_some(j),
        Some(l) if is_blank(l) => ends_quoted_sentence(lines[j - 1]).then_some(j),
        _ => None,
    }
}

fn ends_quoted_sentence(line: &str) -> bool {
    line.trim_end().ends_with(['.', '!', '?', ')', '。', '！', '？'])
}

fn starts_reply_header(lines: &[&str], i: usize) -> bool {
    let line = capped(lines[i].trim());
    is_original_marker(lines, i)
        || (is_underscore_rule(line) && generic_fields_follow(lines, i + 1))
        || is_header_block(lines, i)
        || is_flattened_header(line)
}

/// "-----Original Message-----" and its translations; without dashes the
/// phrase is an ordinary word unless header fields follow.
fn is_original_marker(lines: &[&str], i: usize) -> bool {
    let line = capped(lines[i].trim());
    let Some(c) = ORIGINAL_MESSAGE.captures(line) else {
        return false;
    };
    let dashes = |s: &str| s.chars().filter(|&ch| matches!(ch, '-' | '=' | '_' | '*')).count();
    let lead = c.name("lead").map_or(0, |m| dashes(m.as_str()));
    let tail = c.name("tail").map_or(0, |m| dashes(m.as_str()));
    if lead >= 2 && tail >= 2 {
        return true;
    }
    let end = (i + 4).min(lines.len());
    (lead >= 2 || tail >= 2 || !line.contains(' ') || line.len() < 30)
        && lines[i + 1..end].iter().any(|l| FROM_FIELD.is_match(capped(l.trim_start())))
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
/// Subject, so any order counts as long as a sender field is among them. Two
/// fields suffice when they are a sender with an address (or a name) and a
/// dated "Sent"/"Date" line right next to each other; From and To alone
/// describe mail flow as often as they head a quote.
fn is_header_block(lines: &[&str], i: usize) -> bool {
    let first = capped(lines[i].trim_start());
    let mut has_from = FROM_FIELD.is_match(first);
    if !has_from && !OTHER_FIELD.is_match(first) {
        return false;
    }
    let end = (i + 1 + HEADER_LOOKAHEAD).min(lines.len());
    let mut fields = 1;
    for line in &lines[i + 1..end] {
        let line = capped(line.trim_start());
        if FROM_FIELD.is_match(line) {
            has_from = true;
            fields += 1;
        } else if OTHER_FIELD.is_match(line) {
            fields += 1;
        }
    }
    if has_from && fields >= 3 {
        return true;
    }
    let Some(second) = lines.get(i + 1).map(|l| capped(l.trim_start())) else {
        return false;
    };
    let (from, other) = if FROM_FIELD.is_match(first) { (first, second) } else { (second, first) };
    if !FROM_FIELD.is_match(from) || !starts_block(lines, i) {
        return false;
    }
    WHEN_FIELD.is_match(other)
        && (ADDRESS.is_match(from) || (TIME.is_match(other) && DATE_OR_TIME.find_iter(other).count() >= 2))
}

fn generic_fields_follow(lines: &[&str], from: usize) -> bool {
    let fields = lines[from.min(lines.len())..]
        .iter()
        .filter(|l| !is_blank(l))
        .take(5)
        .filter(|l| GENERIC_FIELD.is_match(capped(l.trim_start())))
        .count();
    fields >= 2
}

/// A forward pasted into a ticket is content the agent has not seen yet, so
/// it is kept; Outlook marks forwards only through the subject prefix.
fn is_forwarded(lines: &[&str], i: usize) -> bool {
    let end = (i + 2 + HEADER_LOOKAHEAD).min(lines.len());
    lines[i..end]
        .iter()
        .filter_map(|l| SUBJECT_FIELD.captures(capped(l.trim_start())))
        .next()
        .is_some_and(|c| FORWARD_SUBJECT.is_match(c.get(1).map_or("", |m| m.as_str().trim())))
}

fn is_device_line(line: &str) -> bool {
    let line = line.trim();
    if line.is_empty() || line.len() > MAX_DEVICE_LINE * 2 {
        return false;
    }
    let cleaned = LINK_NOISE.replace_all(line, "");
    let cleaned = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    cleaned.chars().count() <= MAX_DEVICE_LINE && MOBILE_SIGNATURE.is_match(&cleaned)
}

fn split_footnotes<'a, 'b>(lines: &'b [&'a str]) -> (&'b [&'a str], Vec<&'a str>) {
    let mut end = lines.len();
    while end > 0 && is_blank(lines[end - 1]) {
        end -= 1;
    }
    let mut start = end;
    while start > 0 && FOOTNOTE.is_match(capped(lines[start - 1].trim_end())) {
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
    if is_device_line(kept[last]) && kept[..last].iter().any(|l| !is_blank(l)) {
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

/// What `parent` needs from the stripper to recognise the attribution or
/// header block above a quoted parent.
pub(crate) mod shapes {
    use super::*;

    /// How many lines the attribution starting at `i` spans, if one does.
    pub(crate) fn attribution_span(lines: &[&str], i: usize) -> Option<usize> {
        attribution_at(lines, i).map(|a| a.span)
    }

    pub(crate) fn is_header_field(line: &str) -> bool {
        let line = capped(line.trim_start());
        FROM_FIELD.is_match(line) || OTHER_FIELD.is_match(line)
    }

    pub(crate) fn is_from_field(line: &str) -> bool {
        FROM_FIELD.is_match(capped(line.trim_start()))
    }

    /// "-----Original Message-----", an Outlook underscore rule and the like.
    pub(crate) fn is_marker(line: &str) -> bool {
        let line = capped(line.trim());
        is_underscore_rule(line)
            || ORIGINAL_MESSAGE.captures(line).is_some_and(|c| {
                c.name("lead").is_some_and(|m| m.as_str().contains("--"))
                    || c.name("tail").is_some_and(|m| m.as_str().contains("--"))
            })
    }
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
        assert_eq!(strip_quoted(body), "Hello,\n\nthe invoice is INV-1.\n\n> old\n\nBye");
        let attributed = "Hello,\r\n\r\n\r\nOn 1/15/24 10:30 AM, Ann wrote:\r\n> old\r\n\r\nBye\r";
        assert_eq!(strip_quoted(attributed), "Hello,\n\nBye");
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

    mod properties {
        use proptest::prelude::*;

        use super::super::{strip_counted, strip_quoted};

        /// Lines of the shapes the stripper reacts to, mixed with prose and
        /// arbitrary text, so generated bodies hit every branch.
        fn line() -> impl Strategy<Value = String> {
            prop_oneof![
                4 => "[A-Za-z ,.!?']{0,70}",
                2 => "> [a-z ,.]{0,70}",
                1 => ">>> [a-z()]{0,20}",
                1 => "> [0-9]{1,3} users",
                1 => Just(String::new()),
                1 => "\\PC{0,40}",
                1 => prop::sample::select(vec![
                    "On Mon, Jan 15, 2024 at 4:02 PM Ann <ann@x.test> wrote:",
                    "On Mon, Jan 15, 2024 at 4:02 PM",
                    "Ann <ann@x.test> wrote:",
                    "Thanks. On Mon, Jan 15, 2024 at 4:02 PM Ann <ann@x.test> wrote: old",
                    "2024-01-15 16:02 GMT+01:00 Ann <ann@x.test>:",
                    "---- On Mon, 15 Jan 2024 Ann <ann@x.test> wrote ----",
                    "-----Original Message-----",
                    "-------- Oprindelig besked --------",
                    "________________________________",
                    "From: Ann <ann@x.test>",
                    "Sent: Monday, January 15, 2024 4:02 PM",
                    "De : Ann <ann@x.test>",
                    "Sujet : Re: x",
                    "Sent from my iPhone",
                    "Envoyé à partir de Outlook pour iOS",
                    "Begin forwarded message:",
                    "-- ",
                    "[1]: https://x.test/",
                    "see [1]",
                ])
                .prop_map(str::to_string),
            ]
        }

        fn body(max_lines: usize) -> impl Strategy<Value = String> {
            (prop::collection::vec(line(), 0..max_lines), any::<bool>())
                .prop_map(|(lines, crlf)| lines.join(if crlf { "\r\n" } else { "\n" }))
        }

        /// Prose without any character a quote, attribution, header,
        /// separator or signature could be built from.
        fn plain_body() -> impl Strategy<Value = String> {
            prop::collection::vec("[A-Za-z ,.!?']{0,70}", 1..30).prop_map(|lines| lines.join("\n"))
        }

        fn normalised_lines(body: &str) -> Vec<String> {
            body.replace("\r\n", "\n").replace('\r', "\n").split('\n').map(|l| l.trim().to_string()).collect()
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            #[test]
            fn kept_lines_come_from_the_input(body in body(40)) {
                let out = strip_quoted(&body);
                prop_assert!(!out.contains('\r'));
                prop_assert_eq!(out.is_empty(), body.trim().is_empty());
                let input = normalised_lines(&body);
                for line in out.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    prop_assert!(
                        input.iter().any(|i| i.starts_with(line) || i.ends_with(line)),
                        "{:?} is not from the input", line
                    );
                }
            }

            #[test]
            fn text_without_quotes_is_kept_whole(body in plain_body()) {
                let out = strip_quoted(&body);
                let mut expected: Vec<String> = Vec::new();
                for line in body.lines().map(str::trim_end) {
                    if line.trim().is_empty() {
                        if expected.last().is_some_and(|l| !l.is_empty()) {
                            expected.push(String::new());
                        }
                    } else {
                        expected.push(line.to_string());
                    }
                }
                prop_assert_eq!(out, expected.join("\n").trim().to_string());
            }

        }

        proptest! {
            // Large generated inputs: fewer cases keep the suite quick.
            #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

            #[test]
            fn work_is_linear_in_lines(body in body(400), blanks in 0usize..2_000) {
                let body = format!("{body}{}{body}", "\n".repeat(blanks));
                let lines = body.replace("\r\n", "\n").split(['\n', '\r']).count();
                let (_, work) = strip_counted(&body);
                prop_assert!(work <= 6 * lines + 8, "work {} for {} lines", work, lines);
            }
        }
    }
}
