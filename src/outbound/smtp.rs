//! SMTP client (in progress).
