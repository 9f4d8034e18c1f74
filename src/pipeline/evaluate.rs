//! The deterministic evaluator and the routing rule: pure functions of a call's answers and the
//! receptionist's settings. The rubric is written out in `prompts/evaluation_rubric.md`.

use serde::{Deserialize, Serialize};

use crate::model::{AnswerRecord, AnswerValue, Question, QuestionKind, Review};

/// The evaluator's name stored with each evaluation.
pub const DETERMINISTIC: &str = "deterministic";

/// How one screening question scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QuestionScore {
    pub index: usize,
    pub question: String,
    pub kind: QuestionKind,
    /// What the caller said (or keyed), when the question was answered.
    pub answer: Option<String>,
    /// `pass`, `fail`, `answered` (no expectation configured), `unclear` or `unanswered`.
    pub result: String,
    /// Yes/no and number questions: whether the answer met `expected`.
    pub passed: Option<bool>,
    /// Free-text questions: 1 (no useful answer) to 5.
    pub rating: Option<u8>,
    /// 0-100, the question's contribution before weighting.
    pub score: u8,
    pub weight: f64,
    pub dealbreaker: bool,
    pub dealbreaker_failed: bool,
}

/// The result of evaluating one call's answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub score: u8,
    pub dealbreaker_failed: bool,
    pub summary: String,
    pub questions: Vec<QuestionScore>,
}

/// Score `answers` against `questions` (the settings the call was made with).
pub fn evaluate(
    questions: &[Question],
    answers: &[AnswerRecord],
    name: Option<&str>,
    location: Option<&str>,
) -> Outcome {
    let scored: Vec<QuestionScore> = questions
        .iter()
        .enumerate()
        .map(|(i, q)| score_question(i, q, answers.iter().find(|a| a.question_index == i)))
        .collect();
    let total_weight: f64 = scored.iter().map(|q| q.weight).sum();
    let score = if scored.is_empty() || total_weight <= 0.0 {
        // nothing to fail: the caller answered everything that was asked
        100
    } else {
        let weighted: f64 = scored.iter().map(|q| q.weight * f64::from(q.score)).sum();
        (weighted / total_weight).round().clamp(0.0, 100.0) as u8
    };
    let dealbreaker_failed = scored.iter().any(|q| q.dealbreaker_failed);
    let summary = summary(&scored, score, dealbreaker_failed, name, location);
    Outcome {
        score,
        dealbreaker_failed,
        summary,
        questions: scored,
    }
}

fn score_question(index: usize, q: &Question, answer: Option<&AnswerRecord>) -> QuestionScore {
    let mut out = QuestionScore {
        index,
        question: q.text.clone(),
        kind: q.kind,
        answer: answer.map(|a| a.raw.clone()),
        result: "unanswered".into(),
        passed: None,
        rating: None,
        score: 0,
        weight: q.weight,
        dealbreaker: q.dealbreaker,
        dealbreaker_failed: false,
    };
    let Some(a) = answer else {
        if q.kind == QuestionKind::FreeText {
            out.rating = Some(1);
        }
        return out;
    };
    if a.value == AnswerValue::Unclear {
        out.result = "unclear".into();
        if q.kind == QuestionKind::FreeText {
            out.rating = Some(1);
        }
        out.dealbreaker_failed = a.dealbreaker_failed;
        return out;
    }
    match q.kind {
        QuestionKind::YesNo | QuestionKind::Number => match a.meets_expected {
            Some(true) => {
                out.result = "pass".into();
                out.passed = Some(true);
                out.score = 100;
            }
            Some(false) => {
                out.result = "fail".into();
                out.passed = Some(false);
                out.dealbreaker_failed = q.dealbreaker || a.dealbreaker_failed;
            }
            None => {
                out.result = "answered".into();
                out.score = 100;
            }
        },
        QuestionKind::FreeText => {
            let text = match &a.value {
                AnswerValue::Text(t) => t.as_str(),
                _ => a.raw.as_str(),
            };
            let rating = rate_free_text(&q.text, q.expected.as_deref(), text);
            out.rating = Some(rating);
            out.score = (rating - 1) * 25;
            out.result = if rating >= 3 { "pass" } else { "fail" }.into();
            out.passed = Some(rating >= 3);
            out.dealbreaker_failed = a.dealbreaker_failed || (q.dealbreaker && rating < 3);
        }
    }
    out
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

const STOP_WORDS: &[&str] = &[
    "a", "an", "the", "and", "or", "of", "to", "in", "on", "at", "for", "with", "do", "does",
    "did", "you", "your", "i", "my", "me", "is", "are", "was", "were", "be", "have", "has", "any",
    "what", "how", "which", "who", "why", "when", "where", "tell", "us", "about", "can", "could",
    "would", "will", "it", "that", "this", "so", "if", "as", "by", "from", "yes", "no",
];

/// A free-text answer rated 1-5: keywords from `expected` (comma-separated, any of which should
/// appear) when configured, else the answer's length and whether it speaks to the question.
pub fn rate_free_text(question: &str, expected: Option<&str>, answer: &str) -> u8 {
    let answer_words = words(answer);
    if answer_words.is_empty() {
        return 1;
    }
    let joined = format!(" {} ", answer_words.join(" "));
    let long = answer_words.len() >= 8;
    let keywords: Vec<String> = expected
        .unwrap_or_default()
        .split(',')
        .map(|k| words(k).join(" "))
        .filter(|k| !k.is_empty())
        .collect();
    if !keywords.is_empty() {
        let matched = keywords
            .iter()
            .filter(|k| joined.contains(&format!(" {k} ")))
            .count();
        return match matched {
            0 => 2,
            1 => 3 + u8::from(long),
            _ => 4 + u8::from(long),
        }
        .min(5);
    }
    let topical = words(question)
        .iter()
        .filter(|w| w.len() > 2 && !STOP_WORDS.contains(&w.as_str()))
        .any(|w| answer_words.contains(w));
    let base = match answer_words.len() {
        0..=2 => 2,
        3..=7 => 3,
        _ => 4,
    };
    (base + u8::from(topical)).min(5)
}

fn summary(
    scored: &[QuestionScore],
    score: u8,
    dealbreaker_failed: bool,
    name: Option<&str>,
    location: Option<&str>,
) -> String {
    let who = match (name, location) {
        (Some(n), Some(l)) => format!("{n}, from {l}."),
        (Some(n), None) => format!("{n}."),
        (None, Some(l)) => format!("Caller from {l}."),
        (None, None) => "Caller gave no name.".to_string(),
    };
    if scored.is_empty() {
        return format!("{who} No screening questions; score {score}/100.");
    }
    let passed = scored
        .iter()
        .filter(|q| matches!(q.result.as_str(), "pass" | "answered"))
        .count();
    let mut out = format!(
        "{who} Score {score}/100: {passed} of {} screening questions met.",
        scored.len()
    );
    let unanswered = scored
        .iter()
        .filter(|q| matches!(q.result.as_str(), "unanswered" | "unclear"))
        .count();
    if unanswered > 0 {
        out.push_str(&format!(" {unanswered} unanswered or unclear."));
    }
    if dealbreaker_failed {
        let failed: Vec<String> = scored
            .iter()
            .filter(|q| q.dealbreaker_failed)
            .map(|q| format!("\"{}\"", q.question))
            .collect();
        out.push_str(&format!(" Failed dealbreaker: {}.", failed.join(", ")));
    }
    out
}

/// Where an evaluated candidate goes: manual approval → needs review; otherwise approved when the
/// score reaches the threshold with no failed dealbreaker, else rejected.
pub fn route(manual_approval: bool, threshold: u8, score: u8, dealbreaker_failed: bool) -> Review {
    if manual_approval {
        Review::NeedsReview
    } else if score >= threshold && !dealbreaker_failed {
        Review::Approved
    } else {
        Review::Rejected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(
        text: &str,
        kind: QuestionKind,
        expected: Option<&str>,
        dealbreaker: bool,
        weight: f64,
    ) -> Question {
        Question {
            text: text.into(),
            kind,
            expected: expected.map(str::to_string),
            dealbreaker,
            weight,
        }
    }

    fn a(
        i: usize,
        kind: QuestionKind,
        raw: &str,
        value: AnswerValue,
        meets: Option<bool>,
    ) -> AnswerRecord {
        AnswerRecord {
            question_index: i,
            question: String::new(),
            kind,
            raw: raw.into(),
            value,
            attempts: 1,
            via_dtmf: false,
            meets_expected: meets,
            dealbreaker_failed: false,
        }
    }

    #[test]
    fn weighted_score_and_dealbreakers() {
        let questions = vec![
            q("Are you 18?", QuestionKind::YesNo, Some("yes"), true, 1.0),
            q(
                "Years of experience?",
                QuestionKind::Number,
                Some(">= 1"),
                false,
                2.0,
            ),
            q(
                "Tell us about forklifts",
                QuestionKind::FreeText,
                Some("forklift, pallet jack"),
                false,
                1.0,
            ),
        ];
        let answers = vec![
            a(0, QuestionKind::YesNo, "no", AnswerValue::No, Some(false)),
            a(
                1,
                QuestionKind::Number,
                "three",
                AnswerValue::Number(3.0),
                Some(true),
            ),
            a(
                2,
                QuestionKind::FreeText,
                "i drove a forklift for two years at a big warehouse",
                AnswerValue::Text("i drove a forklift for two years at a big warehouse".into()),
                None,
            ),
        ];
        let out = evaluate(&questions, &answers, Some("John Smith"), Some("Chicago"));
        // (0*1 + 100*2 + 75*1) / 4 = 68.75
        assert_eq!(out.score, 69);
        assert!(out.dealbreaker_failed);
        assert_eq!(out.questions[0].result, "fail");
        assert!(out.questions[0].dealbreaker_failed);
        assert_eq!(out.questions[2].rating, Some(4));
        assert!(
            out.summary.contains("John Smith, from Chicago."),
            "{}",
            out.summary
        );
        assert!(
            out.summary.contains("Failed dealbreaker: \"Are you 18?\""),
            "{}",
            out.summary
        );
        assert_eq!(
            route(false, 60, out.score, out.dealbreaker_failed),
            Review::Rejected
        );
        assert_eq!(
            route(true, 60, out.score, out.dealbreaker_failed),
            Review::NeedsReview
        );
    }

    #[test]
    fn unanswered_questions_score_nothing() {
        let questions = vec![
            q("Are you 18?", QuestionKind::YesNo, Some("yes"), false, 1.0),
            q("Why this job?", QuestionKind::FreeText, None, false, 1.0),
        ];
        let answers = vec![a(
            0,
            QuestionKind::YesNo,
            "yes",
            AnswerValue::Yes,
            Some(true),
        )];
        let out = evaluate(&questions, &answers, None, None);
        assert_eq!(out.score, 50);
        assert_eq!(out.questions[1].result, "unanswered");
        assert_eq!(out.questions[1].rating, Some(1));
        assert!(!out.dealbreaker_failed);
        assert_eq!(route(false, 50, 50, false), Review::Approved);
        assert_eq!(route(false, 51, 50, false), Review::Rejected);
    }

    #[test]
    fn no_questions_is_a_full_score() {
        let out = evaluate(&[], &[], Some("Ann"), None);
        assert_eq!(out.score, 100);
        assert!(out.summary.starts_with("Ann."));
    }

    #[test]
    fn free_text_ratings() {
        assert_eq!(rate_free_text("Why?", Some("forklift"), ""), 1);
        assert_eq!(rate_free_text("Why?", Some("forklift"), "i like people"), 2);
        assert_eq!(rate_free_text("Why?", Some("forklift"), "forklift"), 3);
        assert_eq!(
            rate_free_text(
                "Why?",
                Some("forklift, pallet jack"),
                "forklift and a pallet jack"
            ),
            4
        );
        assert_eq!(
            rate_free_text(
                "Describe your warehouse experience",
                None,
                "two years in a warehouse picking orders on nights"
            ),
            5
        );
        assert_eq!(
            rate_free_text("Describe your warehouse experience", None, "not much"),
            2
        );
        // keywords match whole words only
        assert_eq!(rate_free_text("Q", Some("art"), "i am smart"), 2);
    }
}
