//! placeholder until the quote stripper lands
pub fn strip_quoted(body: &str) -> String {
    body.trim().to_owned()
}
