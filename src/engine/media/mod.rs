//! Carrier media-stream wire formats ⇄ typed events. Parse and serialise only: no I/O, no policy.
//!
//! One module per carrier; Twilio first (see `docs/telephony-protocols.md` §1.4-1.6).

pub mod twilio;

pub use twilio::WireError;

/// Appends `s` to `out` as the body of a JSON string (without the quotes), escaping `"`, `\` and
/// control characters. Carriers echo strings we send (stream sids, mark names) and strings they
/// send may come from untrusted configuration, so every string written goes through this.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0C => "\\f",
            0x00..=0x1F => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xF) as usize] as char);
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
}

#[cfg(test)]
mod tests {
    use super::push_json_str;

    #[test]
    fn escapes_round_trip_through_serde_json() {
        for s in [
            "plain",
            "quo\"te",
            "back\\slash",
            "nl\nx\r\t",
            "\u{0}\u{1}\u{1f}\u{7f}",
            "é€😀",
            "</script>",
            "",
        ] {
            let mut out = String::from("\"");
            push_json_str(&mut out, s);
            out.push('"');
            let back: String = serde_json::from_str(&out).unwrap();
            assert_eq!(back, s);
        }
    }
}
