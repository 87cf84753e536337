//! Which ticket a mail belongs to: the questions the desk asks the store,
//! in the order that decides. The desk only answers them (see
//! `desk::ingest::lookup`); which ids count, and in which order, is here.

use super::identity;
use super::token::TokenMatcher;
use crate::mail::InboundMail;

/// A delivery report's embedded Message-ID counts only when a mail system
/// sent the report (a null return path, MAILER-DAEMON or postmaster):
/// anyone can write a multipart/report.
pub fn from_mail_system(mail: &InboundMail) -> bool {
    mail.auto.null_return_path || mail.auto.daemon_sender
}

/// What to look up for one mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Questions<'m> {
    /// The mail of ours a report from a mail system says failed.
    pub bounced: Option<&'m str>,
    /// Message-IDs whose ticket is this mail's, best first: the bounced
    /// mail's, then In-Reply-To, then References newest first (the closest
    /// ancestor is the best match).
    pub thread: Vec<&'m str>,
    /// Our own ids among the parents, nearest first: the first that is
    /// really ours is the mail this one answers (its text is cut out).
    pub ours: Vec<&'m str>,
    /// The ticket number the subject's token names.
    pub token: Option<u64>,
    /// This mail's own Message-ID, when it looks like one we generate:
    /// our own mail coming back, if the store knows it.
    pub own_id: Option<&'m str>,
}

pub fn questions<'m>(mail: &'m InboundMail, tokens: &TokenMatcher, our_domain: &str) -> Questions<'m> {
    let bounced =
        mail.report.as_ref().filter(|_| from_mail_system(mail)).and_then(|r| r.original_message_id.as_deref());
    Questions {
        bounced: bounced.filter(|id| identity::is_our_id(id, our_domain)),
        thread: bounced.into_iter().chain(mail.parent_ids()).collect(),
        ours: mail.parent_ids().filter(|id| identity::is_our_id(id, our_domain)).collect(),
        token: tokens.find(&mail.subject),
        own_id: mail.message_id.as_deref().filter(|id| identity::is_our_id(id, our_domain)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> InboundMail {
        InboundMail::parse(raw.as_bytes()).unwrap()
    }

    #[test]
    fn in_reply_to_comes_before_references_newest_first() {
        let m = parse(
            "From: c@x.test\nSubject: Re: [Ticket #7] printer\nMessage-ID: <m3@x.test>\nIn-Reply-To: <m2@x.test>\nReferences: <m0@x.test> <m1@x.test> <m2@x.test>\n\nhi\n",
        );
        let q = questions(&m, &TokenMatcher::new("Ticket"), "example.test");
        assert_eq!(q.thread, vec!["m2@x.test", "m2@x.test", "m1@x.test", "m0@x.test"]);
        assert_eq!(q.token, Some(7));
        assert_eq!((q.bounced, q.own_id), (None, None));
    }

    #[test]
    fn a_report_counts_first_and_only_from_a_mail_system() {
        let report = |from: &str| {
            parse(&format!(
                "From: {from}\nTo: support@example.test\nMessage-ID: <b1@mx.test>\nSubject: Undelivered\nIn-Reply-To: <x@y.test>\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=B\n\n--B\nContent-Type: text/plain\n\nfailed\n--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.test\n\nFinal-Recipient: rfc822; c@x.test\nAction: failed\nStatus: 5.1.1\n--B\nContent-Type: text/rfc822-headers\n\nMessage-ID: <ticketd.1.ack.x@example.test>\nSubject: x\n--B--\n"
            ))
        };
        let tokens = TokenMatcher::new("Ticket");
        let m = report("MAILER-DAEMON@mx.test");
        let q = questions(&m, &tokens, "example.test");
        assert_eq!(q.thread.first(), Some(&"ticketd.1.ack.x@example.test"), "the report's original first");
        assert_eq!(q.bounced, Some("ticketd.1.ack.x@example.test"));
        let m = report("mallory@evil.test");
        let q = questions(&m, &tokens, "example.test");
        assert_eq!(q.thread, vec!["x@y.test"], "from a person, a report names nothing");
        assert_eq!(q.bounced, None);
    }
}
