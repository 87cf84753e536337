//! A mail as its sender wrote it, on request: the conversation shows text;
//! `…/entries/{i}/original` shows the original HTML in a frame, and the
//! frame's document comes from its own URL (`…/body`).
//!
//! Two independent walls keep it inert. The frame has `sandbox` with no
//! permission at all (no scripts, no same origin, no forms, no popups,
//! no top navigation), and the document is served with its own
//! `Content-Security-Policy: sandbox; default-src 'none'; img-src 'self'
//! data:; style-src 'unsafe-inline'` and `nosniff`, which hold even when
//! it is opened on its own. Before either, the HTML is cleaned with
//! ammonia (no script, no handler, no `javascript:`, no SVG or MathML, no
//! form, frame, `<base>` or `<meta>`). Remote images are removed, and
//! counted for a notice: loading them would tell the sender when the mail
//! was read. `cid:` images point at the mail's own stored attachment,
//! through a short-lived signed URL (a sandboxed frame sends no cookie).

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use hmac::Mac;
use mail_parser::{MessageParser, MimeHeaders};
use sha2::{Digest, Sha256};

use super::Console;
use super::session::User;
use super::views::{self, Page};
use crate::desk::Desk;
use crate::mail::mime::{self, Kind};
use crate::record::TicketRecord;
use crate::store::BlobKind;
use crate::ticket::ThreadType;

/// HTML shown from a mail: a browser takes seconds to lay out a megabyte
/// of text, and minutes for ten.
const MAX_HTML: usize = 1 << 20;
/// Text shown when a mail has no HTML.
const MAX_TEXT: usize = 1 << 20;
/// Inline images are served up to this size.
const MAX_INLINE: u64 = 10 << 20;
/// How long a signed inline-image URL works.
const INLINE_FOR: i64 = 3600;
/// Image types shown inline; everything else (SVG above all) is not.
const INLINE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

/// What a mail holds to show.
#[derive(Debug, Default)]
pub struct Parts {
    pub html: Option<String>,
    pub text: Option<String>,
    /// Content-ID (lower-cased, without brackets) → SHA-256 of the part.
    pub cids: HashMap<String, String>,
    pub cut: bool,
}

fn is_body(e: &mime::Entity<'_>) -> bool {
    e.kind == Kind::Leaf && !e.info.attachment && (e.parent.is_none() || e.info.filename.is_none())
}

/// The first HTML and plain-text body parts and the inline parts' ids,
/// read with the same bounded MIME walk as ingest.
pub fn extract(raw: &[u8]) -> Parts {
    let parser = MessageParser::default();
    let tree = mime::walk(raw, &parser);
    let mut out = Parts::default();
    for e in &tree.entities {
        if e.kind != Kind::Leaf {
            continue;
        }
        let html = e.info.is("text", "html") && is_body(e);
        let text = e.info.is("text", "plain") && is_body(e);
        if (html && out.html.is_none()) || (text && out.text.is_none()) {
            let limit = if html { MAX_HTML } else { MAX_TEXT };
            let (bytes, _, cut) = mime::decode_transfer(e.body, e.info.encoding, limit);
            out.cut |= cut;
            let decoded = crate::mail::charset::decode_body(&bytes, e.info.charset.as_deref(), None, None);
            if html {
                out.html = Some(decoded.text);
            } else {
                out.text = Some(crate::text::clean_text(&decoded.text));
            }
            continue;
        }
        let Some(id) = parser.parse_headers(e.header.as_ref()).and_then(|m| m.content_id().map(str::to_owned)) else {
            continue;
        };
        let (bytes, _, _) = mime::decode_transfer(e.body, e.info.encoding, usize::MAX);
        let sha = hex::encode(Sha256::digest(&bytes));
        out.cids.insert(id.trim().trim_matches(['<', '>']).to_ascii_lowercase(), sha);
    }
    out
}

/// Open elements past this depth: cleaning would cost too much (an HTML
/// parser's work grows with depth times length), so the text is shown.
pub const MAX_DEPTH: usize = 512;

/// Whether `html` nests deeper than [`MAX_DEPTH`]; linear (a tokenizer and
/// a counter). Elements whose end tag is optional or that have none are not
/// counted: a page of unclosed `<p>` is flat.
pub fn too_deep(html: &str) -> bool {
    use html5gum::{Token, Tokenizer};
    const FLAT: &[&[u8]] = &[
        b"p",
        b"li",
        b"dt",
        b"dd",
        b"tr",
        b"td",
        b"th",
        b"option",
        b"optgroup",
        b"tbody",
        b"thead",
        b"tfoot",
        b"colgroup",
        b"rt",
        b"rp",
        b"br",
        b"img",
        b"hr",
        b"input",
        b"meta",
        b"link",
        b"area",
        b"base",
        b"col",
        b"embed",
        b"source",
        b"track",
        b"wbr",
        b"param",
    ];
    let mut depth = 0usize;
    for t in Tokenizer::new(html) {
        match t {
            Ok(Token::StartTag(tag)) if !tag.self_closing && !FLAT.contains(&tag.name.as_slice()) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return true;
                }
            }
            Ok(Token::EndTag(tag)) if !FLAT.contains(&tag.name.as_slice()) => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// A cleaned HTML document and how many remote images it lost.
#[derive(Debug)]
pub struct Cleaned {
    pub html: String,
    pub blocked: usize,
}

fn remote(v: &str) -> bool {
    let v = v.trim().to_ascii_lowercase();
    v.starts_with("http:") || v.starts_with("https:") || v.starts_with("//") || v.starts_with("ftp:")
}

/// Cleans a mail's HTML; `cid` turns a `cid:` reference into our own URL.
pub fn clean(html: &str, cid: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Cleaned {
    let blocked = Arc::new(AtomicUsize::new(0));
    let counter = blocked.clone();
    let mut b = ammonia::Builder::default();
    // Layout attributes mail needs; style can load nothing under the frame's policy.
    b.add_generic_attributes(["style", "align", "valign", "bgcolor", "width", "height", "dir"]);
    b.add_url_schemes(["cid", "data"]);
    b.attribute_filter(move |element, attribute, value| -> Option<Cow<'_, str>> {
        let lower = value.trim_start().to_ascii_lowercase();
        match (element, attribute) {
            ("img", "src") => {
                if let Some(id) = lower.strip_prefix("cid:") {
                    return cid(id.trim().trim_matches(['<', '>'])).map(Cow::Owned);
                }
                let data_image = ["data:image/png", "data:image/gif", "data:image/jpeg", "data:image/webp"]
                    .iter()
                    .any(|p| lower.starts_with(p));
                if data_image {
                    return Some(Cow::Borrowed(value));
                }
                if remote(&lower) {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                None
            }
            (_, "style") if lower.contains("url(") || lower.contains("image-set") || lower.contains("expression(") => {
                if lower.contains("http") || lower.contains("//") {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                None
            }
            (_, "href" | "src" | "cite" | "longdesc") if lower.starts_with("cid:") || lower.starts_with("data:") => {
                None
            }
            _ => Some(Cow::Borrowed(value)),
        }
    });
    let body = b.clean(html).to_string();
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><style>body{{font:15px/1.5 system-ui,sans-serif;margin:12px;color:#111;background:#fff}}img{{max-width:100%;height:auto}}table{{max-width:100%}}</style></head><body>{body}</body></html>"
    );
    Cleaned { html, blocked: blocked.load(Ordering::Relaxed) }
}

/// A plain-text mail as a document for the same frame.
fn text_document(text: &str) -> String {
    let escaped: Vec<String> = super::views::breakable(text)
        .iter()
        .map(|p| askama::filters::escape(p, askama::filters::Html).map(|e| e.to_string()).unwrap_or_default())
        .collect();
    let escaped = escaped.join("<wbr>");
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><style>body{{margin:12px;background:#fff;color:#111}}pre{{font:14px/1.5 ui-monospace,monospace;white-space:pre-wrap}}</style></head><body><pre>{escaped}</pre></body></html>"
    )
}

fn sign(secret: &[u8], sha: &str, name: &str, exp: i64) -> String {
    let mut m = hmac::Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    for p in [b"console inline" as &[u8], sha.as_bytes(), name.as_bytes(), exp.to_string().as_bytes()] {
        m.update(p);
        m.update(b"\n");
    }
    hex::encode(&m.finalize().into_bytes()[..16])
}

/// What the frame shows for one entry, computed once and kept a while
/// (the page and its frame ask for it one after the other).
pub struct Shown {
    pub html: Option<Cleaned>,
    pub text: Option<String>,
    pub note: Option<String>,
}

type Recent = VecDeque<(String, std::time::Instant, Arc<Shown>)>;
static RECENT: LazyLock<Mutex<Recent>> = LazyLock::new(|| Mutex::new(VecDeque::new()));
const RECENT_KEEP: usize = 8;
const RECENT_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// The raw mail behind entry `index` of ticket `rec`: the k-th customer
/// entry stamped `t` is the k-th mail ingested for the ticket at `t`.
fn raw_of(desk: &Desk, rec: &TicketRecord, index: usize) -> Result<Result<(String, Vec<u8>), String>, String> {
    let threads = &rec.ticket.threads;
    let Some(e) = threads.get(index).filter(|e| e.kind == ThreadType::User) else {
        return Ok(Err("This entry has no original mail.".into()));
    };
    let k = threads[..index].iter().filter(|x| x.kind == ThreadType::User && x.timestamp == e.timestamp).count();
    let mails = desk.ticket_mails(rec.number).map_err(|e| e.to_string())?;
    let Some(m) = mails.iter().filter(|m| m.at == e.timestamp).nth(k) else {
        return Ok(Err("The original of this entry is not kept.".into()));
    };
    if let Some(at) = m.pruned {
        return Ok(Err(format!("The original was removed by retention on {}.", at.format("%Y-%m-%d"))));
    }
    match desk.store().raw(&m.raw_sha256).map_err(|e| e.to_string())? {
        Some(raw) => Ok(Ok((m.raw_sha256.clone(), raw))),
        None => Ok(Err("The original of this entry is not kept.".into())),
    }
}

fn show(desk: &Desk, n: u64, index: usize) -> Result<Option<(TicketRecord, Arc<Shown>)>, String> {
    let Some(rec) = desk.ticket(n).map_err(|e| e.to_string())? else { return Ok(None) };
    let key = format!("{n}/{index}/{}", rec.version);
    {
        let mut recent = RECENT.lock().unwrap_or_else(|e| e.into_inner());
        recent.retain(|(_, at, _)| at.elapsed() < RECENT_FOR);
        if let Some((_, _, s)) = recent.iter().find(|(k, _, _)| *k == key) {
            return Ok(Some((rec, s.clone())));
        }
    }
    let shown = match raw_of(desk, &rec, index)? {
        Err(note) => Shown { html: None, text: None, note: Some(note) },
        Ok((_, raw)) => {
            let parts = extract(&raw);
            let note = parts.cut.then(|| "The mail is longer than what is shown here (its first megabyte).".to_owned());
            let deep = parts.html.as_deref().is_some_and(too_deep);
            let note = match (deep, note) {
                (true, _) => Some(format!(
                    "The mail's HTML nests more than {MAX_DEPTH} levels deep, too deep to clean and show safely: here is its text."
                )),
                (false, n) => n,
            };
            let deep_html = if deep { parts.html.clone() } else { None };
            match parts.html.filter(|_| !deep) {
                Some(html) => {
                    let files: Vec<(String, String, String)> = rec
                        .ticket
                        .attachments
                        .iter()
                        .filter_map(|a| Some((a.sha256()?.to_owned(), a.filename.clone(), a.mime_type.clone())))
                        .collect();
                    let cids = parts.cids;
                    let secret = desk.secret().to_vec();
                    let exp = Utc::now().timestamp() + INLINE_FOR;
                    let cid = move |id: &str| {
                        let sha = cids.get(&id.to_ascii_lowercase())?;
                        let (_, name, mime) =
                            files.iter().find(|(s, _, m)| s == sha && INLINE_TYPES.contains(&m.as_str()))?;
                        let _ = mime;
                        let sig = sign(&secret, sha, name, exp);
                        let name_enc: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
                        Some(format!("/desk/inline/{sha}/{}?e={exp}&s={sig}", name_enc.replace('+', "%20")))
                    };
                    Shown { html: Some(clean(&html, cid)), text: None, note }
                }
                None if deep && parts.text.is_none() => {
                    let text = crate::mail::html::render(deep_html.as_deref().unwrap_or(""), MAX_TEXT).text;
                    Shown { html: None, text: Some(text), note }
                }
                None => Shown { html: None, text: Some(parts.text.unwrap_or_default()), note },
            }
        }
    };
    let shown = Arc::new(shown);
    let mut recent = RECENT.lock().unwrap_or_else(|e| e.into_inner());
    if recent.len() >= RECENT_KEEP {
        recent.pop_front();
    }
    recent.push_back((key, std::time::Instant::now(), shown.clone()));
    Ok(Some((rec, shown)))
}

async fn shown(c: &Console, number: &str, index: &str) -> Result<(TicketRecord, usize, Arc<Shown>), Response> {
    let not_found = || super::pages::refused(StatusCode::NOT_FOUND, "There is no such ticket or entry.");
    let (Ok(n), Ok(i)) = (number.parse::<u64>(), index.parse::<usize>()) else { return Err(not_found()) };
    let desk = c.desk().clone();
    let r = tokio::task::spawn_blocking(move || show(&desk, n, i))
        .await
        .map_err(|e| {
            super::pages::refused(StatusCode::INTERNAL_SERVER_ERROR, &format!("Reading the mail failed: {e}"))
        })?
        .map_err(|e| {
            super::pages::refused(StatusCode::SERVICE_UNAVAILABLE, &format!("Reading the mail failed: {e}"))
        })?;
    let (rec, s) = r.ok_or_else(not_found)?;
    Ok((rec, i, s))
}

/// `GET …/entries/{index}/original`: the console page around the frame.
pub async fn page(State(c): State<Console>, user: User, Path((number, index)): Path<(String, String)>) -> Response {
    let (rec, i, s) = match shown(&c, &number, &index).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let p = views::Original {
        c: user.chrome(&c).page("ticket"),
        number: rec.number,
        index: i,
        title: rec.ticket.title.clone(),
        html: s.html.is_some(),
        blocked: s.html.as_ref().map(|h| h.blocked).unwrap_or(0),
        note: s.note.clone(),
    };
    super::pages::html(StatusCode::OK, &p.c.nonce.clone(), p.render_page())
}

/// `GET …/entries/{index}/body`: the frame's document, sandboxed on its own.
pub async fn body(State(c): State<Console>, _user: User, Path((number, index)): Path<(String, String)>) -> Response {
    let (_, _, s) = match shown(&c, &number, &index).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let doc = match (&s.html, &s.text, &s.note) {
        (Some(h), _, _) => h.html.clone(),
        (None, Some(t), _) => text_document(t),
        (None, None, note) => text_document(note.as_deref().unwrap_or("")),
    };
    let mut r = doc.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(super::guard::MAIL_POLICY));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("SAMEORIGIN"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    r
}

#[derive(serde::Deserialize)]
pub struct Signed {
    e: i64,
    s: String,
}

/// `GET /desk/inline/{sha256}/{filename}?e=…&s=…`: an image a mail shows
/// inline (`cid:`). The signature is the permission (the sandboxed frame
/// sends no cookie); only raster image types are served.
pub async fn inline(
    State(c): State<Console>,
    Path((sha, name)): Path<(String, String)>,
    Query(q): Query<Signed>,
) -> Response {
    let nope = || (StatusCode::NOT_FOUND, "no such image").into_response();
    let expected = sign(c.desk().secret(), &sha, &name, q.e);
    let sig_ok: bool = subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), q.s.as_bytes()).into();
    if !sig_ok || q.e < Utc::now().timestamp() || !crate::store::is_sha256_name(&sha) {
        return nope();
    }
    let desk = c.desk().clone();
    let found = tokio::task::spawn_blocking(move || -> Option<(String, Vec<u8>)> {
        let a = desk.attachment_record(&sha, &name).ok()??;
        if !INLINE_TYPES.contains(&a.mime_type.as_str()) || a.size > MAX_INLINE {
            return None;
        }
        let bytes = desk.store().backend().get_blob(BlobKind::Attachment, &sha).ok()??;
        Some((a.mime_type, bytes))
    })
    .await
    .ok()
    .flatten();
    let Some((mime, bytes)) = found else { return nope() };
    let mut r = bytes.into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&mime) {
        h.insert(header::CONTENT_TYPE, v);
    }
    crate::api::routes::sandboxed(h);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=3600"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cleaned(html: &str) -> Cleaned {
        clean(html, |id| (id == "logo@x").then(|| "/desk/inline/aa/logo.png?e=1&s=2".to_owned()))
    }

    #[test]
    fn nothing_that_runs_or_loads_survives() {
        let hostile = r#"<p onclick="alert(1)">hi</p><script>alert(2)</script><img src=x onerror=alert(3)>
<a href="jAvAsCrIpT:alert(4)">a</a><a href="&#106;avascript:alert(5)">b</a>
<svg><animate onbegin=alert(6) attributeName=x></svg><math><annotation-xml encoding="text/html"><img src=1 onerror=alert(7)></annotation-xml></math>
<style>@import url(https://evil.test/x.css)</style><div style="background:url(https://evil.test/t.gif)">bg</div>
<meta http-equiv="refresh" content="0;url=https://evil.test/"><base href="https://evil.test/"><form action="/desk/logout"><button>x</button></form>
<iframe src="/desk/"></iframe><div hx-post="/desk/bulk" data-x="1">htmx</div><img src="https://evil.test/pixel.gif"><img src="//evil.test/p2.gif">
<img src="cid:logo@x"><img src="cid:other@x"><img src="data:image/png;base64,iVBORw0KGgo="><a href="data:text/html,<script>alert(8)</script>">d</a>
<object data="x.swf"></object><embed src="x"><link rel=stylesheet href="https://evil.test/l.css"><a href="https://example.com/ok">ok</a>"#;
        let c = cleaned(hostile);
        let lower = c.html.to_ascii_lowercase();
        for bad in [
            "<script",
            "onclick",
            "onerror",
            "onbegin",
            "javascript:",
            "<svg",
            "<math",
            "@import",
            "evil.test",
            "<meta http",
            "<base",
            "<form",
            "<iframe",
            "hx-post",
            "data-x",
            "data:text",
            "<object",
            "<embed",
            "<link",
            "cid:",
        ] {
            assert!(!lower.contains(bad), "{bad} survived: {}", c.html);
        }
        assert_eq!(c.blocked, 3, "two remote images and a remote background: {}", c.html);
        assert!(c.html.contains(r#"<img src="/desk/inline/aa/logo.png?e=1&amp;s=2">"#), "{}", c.html);
        assert!(c.html.contains("data:image/png;base64"), "a data image stays");
        assert!(c.html.contains(r#"href="https://example.com/ok""#), "links stay");
    }

    #[test]
    fn absurd_html_is_bounded() {
        let deep = format!("{}x{}", "<div>".repeat(100_000), "</div>".repeat(100_000));
        let t = std::time::Instant::now();
        assert!(too_deep(&deep), "100,000 nested divs are not cleaned");
        assert!(t.elapsed() < std::time::Duration::from_secs(5), "the depth check is linear");
        let ok = format!("{}x{}", "<div>".repeat(MAX_DEPTH), "</div>".repeat(MAX_DEPTH));
        assert!(!too_deep(&ok));
        assert!(cleaned(&ok).html.contains('x'));
        assert!(!too_deep(&"<p>unclosed ".repeat(5000)), "unclosed paragraphs are flat");
        let t = std::time::Instant::now();
        let line = format!("<p>{}</p>", "a".repeat(10 << 20));
        assert!(cleaned(&line).html.len() > 10 << 20);
        eprintln!("a 10 MiB line cleaned in {:?}", t.elapsed());
    }

    #[test]
    fn the_html_part_and_inline_ids_are_found() {
        let raw = b"From: a@b.test\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/related; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hi <img src=\"cid:logo@x\"></p>\r\n--b\r\nContent-Type: image/png\r\nContent-ID: <Logo@X>\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--b--\r\n";
        let p = extract(raw);
        assert!(p.html.unwrap().contains("cid:logo@x"));
        assert_eq!(p.cids.get("logo@x").map(String::as_str), Some(hex::encode(Sha256::digest(b"hello")).as_str()));
    }
}
