//! The SMTP side of the outbox: [`build`] turns an [`OutMail`](crate::outbox::OutMail)
//! into RFC 5322 bytes, [`smtp`] speaks to the relay, and the [`sender`]
//! task drains the outbox and reports each outcome to the desk's writer.

pub mod build;
pub mod sender;
pub mod smtp;
