//! What the dialogue asks a language model, and what it accepts back. The model is consulted at
//! two points only, each with a narrow, structured contract:
//!
//! - **Understand** the caller's words: the name, the location and screening answers they gave
//!   (in any order, several at once), a question they asked, whether they want to end. The
//!   dialogue checks every field against what the caller actually said and against the question's
//!   kind before it keeps it; what fails the check is ignored, as if the model had said nothing.
//! - **Answer** a caller's question from the receptionist's custom context, streamed a sentence at
//!   a time. Every sentence is checked before it is spoken: a number, a name or a promise that is
//!   not in the context (or the call) is never said; the agent says a recruiter will follow up
//!   instead and the rest of the answer is dropped.
//!
//! Pure: no I/O, no clock. The driver turns a [`ModelRequest`] into a provider's request
//! (`backends::llm`) and feeds the results back to the engine.

use super::understand::normalize;
use crate::model::QuestionKind;

/// Something the caller has not given yet, in script order.
#[derive(Debug, Clone, PartialEq)]
pub enum Wanted {
    Name,
    Location,
    Answer {
        index: usize,
        question: String,
        kind: QuestionKind,
    },
}

/// Read the caller's words.
#[derive(Debug, Clone, PartialEq)]
pub struct UnderstandRequest {
    /// What the caller said (the transcript of their turn).
    pub utterance: String,
    /// What the agent asked last.
    pub asked: String,
    /// What the caller has not given yet; the first is what the agent is asking for now (or
    /// nothing: the caller is asking their own questions).
    pub wanted: Vec<Wanted>,
}

/// Answer the caller's question from the custom context.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerRequest {
    /// The caller's question, as the model (or the caller) put it.
    pub question: String,
    /// The caller's location, when known (for job suggestions).
    pub location: Option<String>,
    /// Only positions whose location matches the caller's may be suggested.
    pub enforce_job_location_match: bool,
}

/// One consultation of the model.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelRequest {
    Understand(UnderstandRequest),
    Answer(AnswerRequest),
}

/// What the model read in the caller's words (before the dialogue checks it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Understanding {
    pub name: Option<String>,
    pub location: Option<String>,
    /// (question index, the answer in the caller's words or as "yes"/"no"/a number).
    pub answers: Vec<(usize, String)>,
    /// A question the caller asked.
    pub caller_question: Option<String>,
    /// The caller has no (more) questions or wants to end the call.
    pub wants_to_end: bool,
}

/// Sentences of an answer spoken at most: a phone answer is short.
pub const MAX_ANSWER_SENTENCES: u8 = 3;
/// Longest sentence spoken from a model's answer, in characters.
pub const MAX_SENTENCE_CHARS: usize = 240;

/// The line said when the context has no answer (or the model's answer could not be trusted).
pub const NO_ANSWER: &str =
    "I don't have that information, but a recruiter will follow up with you about it.";

fn words(text: &str) -> Vec<String> {
    normalize(text)
        .split_whitespace()
        .map(|w| w.trim_matches('\'').to_string())
        .filter(|w| !w.is_empty())
        .collect()
}

/// A name or place the model extracted, kept only if every word of it was said by the caller
/// (the model may tidy case, never invent), with at most `max_words` words. Title-cased.
pub fn said_by_caller(value: &str, utterance: &str, max_words: usize) -> Option<String> {
    let said = words(utterance);
    let value_words = words(value);
    if value_words.is_empty()
        || value_words.len() > max_words
        || !value_words.iter().all(|w| said.contains(w))
        || value_words
            .iter()
            .any(|w| w.chars().any(|c| c.is_ascii_digit()))
    {
        return None;
    }
    Some(
        value_words
            .iter()
            .map(|w| {
                let mut c = w.chars();
                match c.next() {
                    Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                    None => String::new(),
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// A free-text answer the model extracted, kept if most of its words were said by the caller.
pub fn mostly_said(value: &str, utterance: &str) -> bool {
    let said = words(utterance);
    let value_words = words(value);
    if value_words.is_empty() {
        return false;
    }
    let kept = value_words.iter().filter(|w| said.contains(w)).count();
    kept * 5 >= value_words.len() * 3
}

/// Words a reply may say only if the context says them too: promises and guarantees.
const PROMISES: &[&str] = &[
    "guarantee",
    "guaranteed",
    "guarantees",
    "promise",
    "promised",
    "promises",
    "hired",
    "certainly",
];

/// Capitalised words a sentence may use freely (beyond its first word).
const ALWAYS_ALLOWED: &[&str] = &["i", "i'm", "i'll", "i've", "i'd", "ai", "ok", "okay"];

/// Whether a sentence of a model's answer says only what `known` (the custom context, and the
/// call's own facts: the agent's name, the caller's name and place) says: every number, every
/// capitalised word past the first and every promise must appear there.
pub fn grounded(sentence: &str, known: &str) -> bool {
    let known_words = words(known);
    let known_digits: Vec<String> = known_words.iter().map(|w| digits_of(w)).collect();
    let known_norm = normalize(known);
    for (i, raw) in sentence.split_whitespace().enumerate() {
        let token: String = raw
            .trim_matches(|c: char| !c.is_alphanumeric() && c != '$' && c != '\'')
            .to_string();
        if token.is_empty() {
            continue;
        }
        let lower = token.to_lowercase();
        if token.chars().any(|c| c.is_ascii_digit()) {
            let d = digits_of(&lower);
            if !known_digits.contains(&d) {
                return false;
            }
            continue;
        }
        let bare = lower.trim_matches('\'').trim_start_matches('$').to_string();
        if PROMISES.contains(&bare.as_str()) && !known_words.contains(&bare) {
            return false;
        }
        let capitalised = token.chars().next().is_some_and(|c| c.is_uppercase());
        let sentence_start = i == 0;
        if capitalised
            && !sentence_start
            && !ALWAYS_ALLOWED.contains(&bare.as_str())
            && !known_words.contains(&bare)
            && !known_norm.contains(&bare)
        {
            return false;
        }
    }
    true
}

/// The digits (and decimal point) of a token: "$18.50" → "18.50", "40,000" → "40000".
fn digits_of(token: &str) -> String {
    let d: String = token
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    d.trim_matches('.').to_string()
}

/// Splits streamed text into sentences as they complete.
#[derive(Debug, Default)]
pub struct SentenceSplitter {
    buf: String,
}

impl SentenceSplitter {
    /// Add text; returns the sentences it completed.
    pub fn push(&mut self, text: &str) -> Vec<String> {
        self.buf.push_str(text);
        let mut out = Vec::new();
        while let Some(end) = self.sentence_end() {
            let sentence: String = self.buf.drain(..end).collect();
            let sentence = sentence.trim();
            if !sentence.is_empty() {
                out.push(sentence.to_string());
            }
        }
        out
    }

    /// The rest, at the end of the stream.
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.buf);
        let rest = rest.trim();
        (!rest.is_empty()).then(|| rest.to_string())
    }

    /// The end (exclusive) of the first complete sentence: `.`, `!` or `?` followed by white
    /// space, not a decimal point ("$18.50") and not a lone initial.
    fn sentence_end(&self) -> Option<usize> {
        let b = self.buf.as_bytes();
        for i in 0..b.len() {
            if matches!(b[i], b'.' | b'!' | b'?') {
                let next = b.get(i + 1)?;
                if next.is_ascii_whitespace() {
                    let prev_digit = i > 0 && b[i - 1].is_ascii_digit();
                    if b[i] == b'.' && prev_digit && b.get(i + 2).is_some_and(u8::is_ascii_digit) {
                        continue;
                    }
                    return Some(i + 1);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracted_values_must_be_the_callers_words() {
        assert_eq!(
            said_by_caller("maria lopez", "uh yes it's Maria Lopez", 4).as_deref(),
            Some("Maria Lopez")
        );
        assert_eq!(said_by_caller("Maria Gonzalez", "it's maria", 4), None);
        assert_eq!(said_by_caller("", "anything", 4), None);
        assert!(mostly_said(
            "nights and weekends",
            "I can do nights and weekends"
        ));
        assert!(!mostly_said("available every day of the week", "sure"));
    }

    #[test]
    fn answers_say_only_what_the_context_says() {
        let context = "Pay is $18 per hour. Shifts start at 6 am at the Riverside warehouse.";
        assert!(grounded("The pay is $18 per hour.", context));
        assert!(grounded("Shifts start at 6 am.", context));
        assert!(grounded("It's at the Riverside warehouse.", context));
        assert!(
            !grounded("The pay is $22 per hour.", context),
            "invented pay"
        );
        assert!(
            !grounded("It's at 12 Main Street.", context),
            "invented address"
        );
        assert!(!grounded("You're guaranteed a job.", context), "a promise");
        assert!(
            !grounded("Ask for Dave at the gate.", context),
            "an invented name"
        );
        assert!(grounded("Sure, I can help with that.", context));
    }

    #[test]
    fn sentences_complete_as_the_text_streams() {
        let mut s = SentenceSplitter::default();
        assert!(
            s.push("Pay is $18.").is_empty(),
            "not yet followed by space"
        );
        assert_eq!(s.push("50 an hour. Shifts"), vec!["Pay is $18.50 an hour."]);
        assert_eq!(s.push(" are days! Any"), vec!["Shifts are days!"]);
        assert_eq!(s.finish().as_deref(), Some("Any"));
        assert_eq!(s.finish(), None);
    }
}
