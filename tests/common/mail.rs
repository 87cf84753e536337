//! The one mail builder: a plain-text mail to support@example.test, with
//! only the headers a test names, in CRLF as it arrives over IMAP.
//!
//! ```ignore
//! let raw = Mail::from("Carla <carla@customer.test>").subject("Printer").id("m1@c.test")
//!     .header("In-Reply-To", "<m0@c.test>").body("It smokes.").bytes();
//! ```

pub struct Mail {
    headers: Vec<(String, String)>,
    body: String,
}

impl Mail {
    /// From `from`, to support@example.test, subject "Printer".
    pub fn from(from: &str) -> Mail {
        Mail {
            headers: vec![
                ("From".into(), from.into()),
                ("To".into(), "support@example.test".into()),
                ("Subject".into(), "Printer".into()),
            ],
            body: String::new(),
        }
    }

    /// Sets a header, replacing one of the same name.
    pub fn header(mut self, name: &str, value: &str) -> Mail {
        match self.headers.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some(h) => h.1 = value.into(),
            None => self.headers.push((name.into(), value.into())),
        }
        self
    }

    pub fn to(self, to: &str) -> Mail {
        self.header("To", to)
    }

    pub fn cc(self, cc: &str) -> Mail {
        self.header("Cc", cc)
    }

    pub fn subject(self, subject: &str) -> Mail {
        self.header("Subject", subject)
    }

    /// The Message-ID, without angle brackets.
    pub fn id(self, id: &str) -> Mail {
        self.header("Message-ID", &format!("<{id}>"))
    }

    /// In-Reply-To, as written (angle brackets included).
    pub fn in_reply_to(self, id: &str) -> Mail {
        self.header("In-Reply-To", id)
    }

    pub fn references(self, ids: &str) -> Mail {
        self.header("References", ids)
    }

    /// The text body (LF or CRLF; sent as CRLF).
    pub fn body(mut self, body: &str) -> Mail {
        self.body = body.into();
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut out = String::new();
        for (n, v) in &self.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(&self.body.replace("\r\n", "\n").replace('\n', "\r\n"));
        out.push_str("\r\n");
        out.into_bytes()
    }
}

/// Mail number `i` of a benchmark's customer traffic to `to`: five
/// subjects, 500 senders, a body of one to six sentences of filler; its
/// Message-ID is `<{tag}-{i}@customer.example.test>`.
pub fn customer_traffic(i: usize, to: &str, tag: &str) -> Vec<u8> {
    let subjects =
        ["Cannot log in", "Invoice question", "API returns 401", "Feature idea: dark mode", "Printer on fire"];
    let body = format!(
        "Hello support,\r\n\r\nthis is message {i}. {}\r\n\r\nThanks,\r\nCustomer {i}\r\n",
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(1 + i % 6)
    );
    format!(
        "From: Customer {i} <customer+{}@example.test>\r\nTo: {to}\r\nSubject: {} #{i}\r\nMessage-ID: <{tag}-{i}@customer.example.test>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}",
        i % 500,
        subjects[i % subjects.len()],
    )
    .into_bytes()
}
