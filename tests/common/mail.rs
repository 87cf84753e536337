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
