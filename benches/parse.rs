//! Parse benchmark (not a timed test): hostile and huge mails through
//! `InboundMail::parse`, each in its own child process so one case's memory
//! peak cannot hide another's. Prints parse time, the process's peak RSS
//! while parsing (VmHWM, reset through /proc/self/clear_refs after the mail
//! is loaded; the loaded mail itself counts, as does the process's own
//! baseline shown as `base`), and that peak as a multiple of the mail's size. `strip` is `quote::strip_quoted` on the body, which
//! triage runs on every reply.
//!
//! Run: `cargo bench --bench parse` (add a case name to run just that one).

use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use ticketd::mail::InboundMail;
use ticketd::mail::quote::strip_quoted;

const CASES: &[&str] = &[
    "rfc822-40k-deep",
    "div-100k-deep",
    "html-43MB",
    "attach-43MB",
    "text-20MiB",
    "parts-10k",
    "tags-20k",
    "no-boundary-16k",
    "cc-40k",
];

fn generate(case: &str) -> Vec<u8> {
    let head = |extra: &str| {
        format!(
            "From: Carla <carla@example.test>\r\nTo: support@example.test\r\nSubject: {case}\r\nMessage-ID: <{case}@example.test>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n{extra}"
        )
    };
    match case {
        "rfc822-40k-deep" => {
            let mut s = head("Content-Type: message/rfc822\r\n\r\n");
            for _ in 0..40_000 {
                s.push_str("Content-Type: message/rfc822\r\n\r\n");
            }
            s.push_str("From: x@example.test\r\n\r\ninnermost\r\n");
            s.into_bytes()
        }
        "div-100k-deep" => {
            let n = 100_000;
            let mut s = head("Content-Type: text/html; charset=utf-8\r\n\r\n");
            s.push_str(&"<div>".repeat(n));
            s.push_str("deep");
            s.push_str(&"</div>".repeat(n));
            s.into_bytes()
        }
        "html-43MB" => {
            let mut s =
                head("Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n");
            s.reserve(43 << 20);
            s.push_str("<html><head><style>p{margin:0}</style></head><body>\r\n");
            let mut i = 0;
            while s.len() < 43_000_000 {
                s.push_str(&format!(
                    "<p class=3D\"MsoNormal\">Row {i}: the export of <a href=3D\"https://portal.example.test/r/{i}\">report {i}</a> fail=\r\ns with =E2=80=94 timeout.</p><table><tr><td>{i}</td><td>ok</td></tr></table>\r\n"
                ));
                i += 1;
            }
            s.push_str("</body></html>\r\n");
            s.into_bytes()
        }
        "attach-43MB" => {
            let mut s = head(
                "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nthe logs\r\n--b\r\nContent-Type: application/gzip; name=\"logs.tar.gz\"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
            );
            s.reserve(43 << 20);
            const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let mut x: u32 = 1;
            while s.len() < 43_000_000 {
                for _ in 0..76 {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    s.push(A[(x >> 26) as usize] as char);
                }
                s.push_str("\r\n");
            }
            s.push_str("--b--\r\n");
            s.into_bytes()
        }
        "text-20MiB" => {
            let mut s = head("Content-Type: text/plain; charset=utf-8\r\n\r\n");
            let line = "The printer on the third floor prints every page twice — please help.\r\n";
            while s.len() < 20 << 20 {
                s.push_str(line);
            }
            s.into_bytes()
        }
        "parts-10k" => {
            let mut s = head(
                "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee the files\r\n",
            );
            for i in 0..10_000 {
                s.push_str(&format!("--b\r\nContent-Type: text/plain; name=\"f{i}.txt\"\r\nContent-Disposition: attachment; filename=\"f{i}.txt\"\r\n\r\n{i}\r\n"));
            }
            s.push_str("--b--\r\n");
            s.into_bytes()
        }
        "tags-20k" => {
            let mut s = head("Content-Type: text/plain\r\n\r\n");
            for i in 0..20_000 {
                s.push_str(&format!("#tag t{i}\r\n"));
            }
            s.push_str("the rest of the answer\r\n");
            s.into_bytes()
        }
        "no-boundary-16k" => {
            let mut s = head("Content-Type: multipart/mixed; boundary=B\r\n\r\n");
            for i in 0..16_000 {
                s.push_str(&format!(
                    "--B\r\nContent-Type: multipart/mixed; boundary=nowhere{i}\r\n\r\n{}\r\n",
                    "x".repeat(100)
                ));
            }
            s.push_str("--B--\r\n");
            s.into_bytes()
        }
        "cc-40k" => {
            let cc: Vec<String> = (0..40_000).map(|i| format!("Person {i} <p{i}@example.test>")).collect();
            let mut s = head(&format!("Cc: {}\r\n\r\n", cc.join(",\r\n ")));
            s.push_str("hello\r\n");
            s.into_bytes()
        }
        other => panic!("unknown case {other}"),
    }
}

fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Runs in the child: load, reset the peak, parse, report one line.
fn child(case: &str, file: &Path) {
    let raw = std::fs::read(file).expect("read mail");
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let base_kb = status_kb("VmRSS:");
    let started = Instant::now();
    let mail = InboundMail::parse(&raw).expect("parse");
    let parse_s = started.elapsed().as_secs_f64();
    let peak_kb = status_kb("VmHWM:");
    let started = Instant::now();
    let stripped = strip_quoted(&mail.body);
    let strip_s = started.elapsed().as_secs_f64();
    let attached: usize = mail.attachments.iter().map(|a| a.bytes.len()).sum();
    println!(
        "{case}\t{}\t{parse_s}\t{peak_kb}\t{reset}\t{}\t{}\t{attached}\t{}\t{strip_s}\t{}\t{base_kb}",
        raw.len(),
        mail.body.len(),
        mail.attachments.len(),
        mail.notes.len(),
        stripped.len()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1], Path::new(&args[i + 2]));
        return;
    }
    let only: Vec<&str> = args.iter().skip(1).filter(|a| !a.starts_with("--")).map(String::as_str).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = std::env::current_exe().expect("own path");
    println!(
        "{:<16} {:>8} {:>8} {:>8} {:>8} {:>7} {:>8} {:>5} {:>8} {:>5} {:>8}",
        "case", "mail MB", "parse s", "base MB", "peak MB", "peak/x", "body KB", "att", "att KB", "notes", "strip s"
    );
    for case in CASES.iter().filter(|c| only.is_empty() || only.contains(c)) {
        let path = dir.path().join(format!("{case}.eml"));
        std::fs::write(&path, generate(case)).expect("write mail");
        let out = Command::new(&exe).arg("--child").arg(case).arg(&path).output().expect("run child");
        let line = String::from_utf8_lossy(&out.stdout);
        let f: Vec<&str> = line.trim().split('\t').collect();
        if !out.status.success() || f.len() < 12 {
            println!("{case:<16} FAILED: {}", String::from_utf8_lossy(&out.stderr).trim());
            continue;
        }
        let num = |i: usize| f[i].parse::<f64>().unwrap_or(f64::NAN);
        let size_mb = num(1) / 1e6;
        let peak_mb = num(3) * 1024.0 / 1e6;
        println!(
            "{:<16} {:>8.2} {:>8.3} {:>8.1} {:>8.1} {:>7.2} {:>8.1} {:>5} {:>8.1} {:>5} {:>8.3}{}",
            case,
            size_mb,
            num(2),
            num(11) * 1024.0 / 1e6,
            peak_mb,
            peak_mb / size_mb,
            num(5) / 1024.0,
            f[6],
            num(7) / 1024.0,
            f[8],
            num(9),
            if f[4] == "true" { "" } else { "  (peak not reset: includes loading)" }
        );
        let _ = std::io::stdout().flush();
    }
}
