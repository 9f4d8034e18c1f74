//! Keypad digits: buffered until `#`, or until `dtmf_gap` passes after the last one (numbers are
//! keyed digit by digit). Whether a digit is accepted at all is the coordinator's decision (it
//! depends on what the dialogue expects and who has the floor).

use std::time::Duration;

/// Digits kept per answer; more are ignored (no answer we ask for is longer).
const MAX_DIGITS: usize = 16;

pub(super) struct Keypad {
    digits: String,
    last_ms: u64,
    gap_ms: u64,
}

impl Keypad {
    pub(super) fn new(gap: Duration) -> Self {
        Self {
            digits: String::new(),
            last_ms: 0,
            gap_ms: gap.as_millis() as u64,
        }
    }

    /// A key on a phone keypad (anything else the carrier sends is ignored).
    pub(super) fn is_key(digit: char) -> bool {
        digit.is_ascii_digit() || digit == '#' || digit == '*'
    }

    /// Buffer an accepted digit pressed at `now_ms`.
    pub(super) fn handle_digit(&mut self, now_ms: u64, digit: char) {
        if self.digits.len() < MAX_DIGITS {
            self.digits.push(digit);
        }
        self.last_ms = now_ms;
    }

    pub(super) fn is_empty(&self) -> bool {
        self.digits.is_empty()
    }

    /// Forget buffered digits (a new question is asked).
    pub(super) fn clear(&mut self) {
        self.digits.clear();
    }

    /// The buffered digits and when the last was pressed; `None` when there are none.
    pub(super) fn take(&mut self) -> Option<(String, u64)> {
        if self.digits.is_empty() {
            return None;
        }
        Some((std::mem::take(&mut self.digits), self.last_ms))
    }

    /// When the buffered digits are due as an answer.
    pub(super) fn poll_timeout(&self) -> Option<u64> {
        (!self.digits.is_empty()).then_some(self.last_ms + self.gap_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_buffer_until_the_gap_passes() {
        let mut k = Keypad::new(Duration::from_millis(2500));
        assert_eq!(k.poll_timeout(), None);
        assert_eq!(k.take(), None);
        k.handle_digit(1_000, '4');
        k.handle_digit(1_800, '2');
        assert_eq!(
            k.poll_timeout(),
            Some(4_300),
            "the gap restarts with each digit"
        );
        assert_eq!(k.take(), Some(("42".to_string(), 1_800)));
        assert!(k.is_empty());
        assert_eq!(k.poll_timeout(), None);
    }

    #[test]
    fn only_keypad_keys_count_and_the_buffer_is_bounded() {
        assert!(Keypad::is_key('7') && Keypad::is_key('#') && Keypad::is_key('*'));
        assert!(!Keypad::is_key('x') && !Keypad::is_key('A'));
        let mut k = Keypad::new(Duration::from_millis(2500));
        for i in 0..40 {
            k.handle_digit(i, '1');
        }
        assert_eq!(k.take().map(|(d, _)| d.len()), Some(MAX_DIGITS));
        k.handle_digit(50, '9');
        k.clear();
        assert_eq!(k.take(), None);
    }
}
