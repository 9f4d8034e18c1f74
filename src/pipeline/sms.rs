//! What a caller's reply to a text means.

/// The intent of an inbound text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// YES and its usual variants: the details are right (also opts back in, as at Twilio).
    Confirm,
    /// STOP and the other standard opt-out keywords.
    OptOut,
    /// START / UNSTOP.
    OptIn,
    /// HELP / INFO: answered by the carrier; stored only.
    Help,
    /// Anything else: a correction for the recruiter.
    Other,
}

impl Intent {
    pub fn as_str(self) -> &'static str {
        match self {
            Intent::Confirm => "confirm",
            Intent::OptOut => "opt_out",
            Intent::OptIn => "opt_in",
            Intent::Help => "help",
            Intent::Other => "correction",
        }
    }
}

const OPT_OUT: &[&str] = &[
    "stop",
    "stopall",
    "stop all",
    "unsubscribe",
    "cancel",
    "end",
    "quit",
    "optout",
    "opt out",
    "revoke",
];
const OPT_IN: &[&str] = &["start", "unstop"];
const HELP: &[&str] = &["help", "info"];
const CONFIRM: &[&str] = &[
    "yes",
    "y",
    "yeah",
    "yea",
    "yep",
    "yup",
    "ya",
    "yes please",
    "ok",
    "okay",
    "k",
    "correct",
    "confirm",
    "confirmed",
    "sure",
    "si",
    "sí",
    "oui",
    "that's right",
    "thats right",
    "that is right",
    "that's correct",
    "thats correct",
    "that is correct",
    "all correct",
    "all good",
    "looks good",
    "right",
    "yes correct",
];
/// First words that confirm when what follows does not contradict.
const CONFIRM_LEAD: &[&str] = &[
    "yes",
    "yeah",
    "yep",
    "yup",
    "correct",
    "confirmed",
    "confirm",
];
/// Words that turn a "yes, but ..." into a correction.
const CONTRADICT: &[&str] = &[
    "but",
    "not",
    "no",
    "wrong",
    "change",
    "actually",
    "except",
    "however",
    "incorrect",
    "isn't",
    "isnt",
    "should",
];

/// Lower-case words, punctuation and emoji dropped (apostrophes kept).
fn normalise(body: &str) -> String {
    body.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn classify(body: &str) -> Intent {
    let text = normalise(body);
    let t = text.as_str();
    if OPT_OUT.contains(&t) {
        return Intent::OptOut;
    }
    if OPT_IN.contains(&t) {
        return Intent::OptIn;
    }
    if HELP.contains(&t) {
        return Intent::Help;
    }
    if CONFIRM.contains(&t) {
        return Intent::Confirm;
    }
    let mut words = t.split(' ');
    if let Some(first) = words.next()
        && CONFIRM_LEAD.contains(&first)
    {
        let rest: Vec<&str> = words.collect();
        if rest.len() <= 6 && !rest.iter().any(|w| CONTRADICT.contains(w)) {
            return Intent::Confirm;
        }
    }
    Intent::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_classified() {
        for yes in [
            "YES",
            "yes",
            " Yes! ",
            "Y",
            "yep",
            "Yes, that's correct",
            "OK",
            "Correct.",
            "yes 👍",
            "Yes it is",
        ] {
            assert_eq!(classify(yes), Intent::Confirm, "{yes:?}");
        }
        for stop in [
            "STOP",
            "stop",
            "Stop.",
            "UNSUBSCRIBE",
            "cancel",
            "STOPALL",
            "quit",
        ] {
            assert_eq!(classify(stop), Intent::OptOut, "{stop:?}");
        }
        assert_eq!(classify("START"), Intent::OptIn);
        assert_eq!(classify("help"), Intent::Help);
        for other in [
            "yes but my name is Jon",
            "No, I live in Evanston",
            "my name is spelled Smyth",
            "stop calling me names lol",
            "",
            "yes my name is not john it is jon",
        ] {
            assert_eq!(classify(other), Intent::Other, "{other:?}");
        }
    }
}
