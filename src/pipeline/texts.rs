//! The texts the pipeline sends, rendered from the templates in `prompts/` (`{name}` placeholders;
//! unknown placeholders are left as they are).

use crate::model::{AnswerRecord, AnswerValue, QuestionKind};

const CONFIRMATION: &str = include_str!("../../prompts/sms_confirmation.txt");
const ACKNOWLEDGEMENT: &str = include_str!("../../prompts/sms_acknowledgement.txt");
const INVITATION_DEFAULT: &str = include_str!("../../prompts/invitation_default.txt");
const INVITATION_SUBJECT: &str = include_str!("../../prompts/invitation_email_subject.txt");

/// Longest answer quoted back in a confirmation text.
const MAX_ANSWER_CHARS: usize = 60;
/// Answers listed in a confirmation text at most.
const MAX_ANSWERS: usize = 5;

/// Replace each `{key}` of `template` with its value.
pub fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.trim_end().to_string();
    for (key, value) in values {
        out = out.replace(&format!("{{{key}}}"), value);
    }
    out
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{}…", cut.trim_end())
    }
}

/// A short line for an answer worth reading back (a clear yes/no or number, or the start of a
/// free-text answer).
fn answer_line(a: &AnswerRecord) -> Option<String> {
    let value = match (&a.value, a.kind) {
        (AnswerValue::Yes, _) => "yes".to_string(),
        (AnswerValue::No, _) => "no".to_string(),
        (AnswerValue::Number(n), _) => {
            if n.fract() == 0.0 && n.abs() < 1e9 {
                format!("{}", *n as i64)
            } else {
                format!("{n}")
            }
        }
        (AnswerValue::Text(t), QuestionKind::FreeText) => clip(t, MAX_ANSWER_CHARS),
        _ => return None,
    };
    Some(format!("- {} {value}", clip(&a.question, MAX_ANSWER_CHARS)))
}

/// The confirmation text: what was captured on the call, asking for YES or a correction.
pub fn confirmation(
    agent_name: &str,
    name: &str,
    location: Option<&str>,
    answers: &[AnswerRecord],
) -> String {
    let first = name.split_whitespace().next().unwrap_or(name);
    let mut details = vec![format!("- Name: {name}")];
    if let Some(l) = location {
        details.push(format!("- Location: {l}"));
    }
    details.extend(answers.iter().filter_map(answer_line).take(MAX_ANSWERS));
    render(
        CONFIRMATION,
        &[
            ("name", first),
            ("agent_name", agent_name),
            ("details", &details.join("\n")),
        ],
    )
}

/// The one short reply to a correction.
pub fn acknowledgement() -> String {
    ACKNOWLEDGEMENT.trim().to_string()
}

/// The invitation text (the interviewer's own template, or the default) and the email subject.
pub fn invitation(
    template: &str,
    candidate_name: &str,
    interviewer_name: &str,
    interview_link: &str,
) -> (String, String) {
    let template = if template.trim().is_empty() {
        INVITATION_DEFAULT
    } else {
        template
    };
    let values = [
        ("candidate_name", candidate_name),
        ("interviewer_name", interviewer_name),
        ("interview_link", interview_link),
    ];
    let mut body = render(template, &values);
    if !interview_link.is_empty() && !body.contains(interview_link) {
        body.push_str(&format!("\n{interview_link}"));
    }
    (body, render(INVITATION_SUBJECT, &values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmation_lists_what_was_captured() {
        let answers = vec![AnswerRecord {
            question_index: 0,
            question: "Are you at least 18 years old?".into(),
            kind: QuestionKind::YesNo,
            raw: "yes".into(),
            value: AnswerValue::Yes,
            attempts: 1,
            via_dtmf: false,
            meets_expected: Some(true),
            dealbreaker_failed: false,
        }];
        let text = confirmation("Chloe", "John Smith", Some("Chicago"), &answers);
        assert!(
            text.starts_with("Hi John, thanks for calling Chloe."),
            "{text}"
        );
        assert!(
            text.contains(
                "- Name: John Smith\n- Location: Chicago\n- Are you at least 18 years old? yes"
            ),
            "{text}"
        );
        assert!(text.contains("Reply YES"));
        assert!(text.contains("STOP"));
    }

    #[test]
    fn invitation_uses_the_template_and_always_carries_the_link() {
        let (body, subject) = invitation(
            "Hello {candidate_name}, book a slot with {interviewer_name}.",
            "Ann",
            "Warehouse interview",
            "https://x.example/i/1",
        );
        assert_eq!(
            body,
            "Hello Ann, book a slot with Warehouse interview.\nhttps://x.example/i/1"
        );
        assert_eq!(subject, "Your invitation: Warehouse interview");
        let (body, _) = invitation("", "Ann", "W", "https://x");
        assert!(body.starts_with("Hi Ann, good news"));
    }
}
