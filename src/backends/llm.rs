//! The language model in the dialogue, over an OpenAI-compatible chat-completions server
//! (`chat.rs`): the engine's [`ModelRequest`]s turned into requests built from the templates in
//! `prompts/`, and the answers turned back into what the engine takes.
//!
//! - Understanding: one request with the `record_turn` tool forced; its arguments are read into
//!   an [`Understanding`]. Arguments that are not the expected JSON (or no call at all, with no
//!   JSON in the text either) are an error: the engine hands the turn to the rules.
//! - Answers: a plain streamed request; the text deltas go to the engine as they arrive, which
//!   splits them into sentences and checks each before it is spoken.

use serde_json::{Value, json};

use super::BackendError;
use super::chat::{ChatClient, ChatMessage, ChatRequest, ChatStream, Tool};
use crate::engine::dialogue::model::{AnswerRequest, UnderstandRequest, Understanding, Wanted};
use crate::model::{QuestionKind, ReceptionistSettings};
use crate::pipeline::texts::render;

const UNDERSTAND: &str = include_str!("../../prompts/understand.md");
const ANSWER: &str = include_str!("../../prompts/answer.md");
/// The tool the model fills in to say what it read.
pub const RECORD_TURN: &str = "record_turn";

/// The chat model, as the dialogue consults it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct LanguageModel {
    client: ChatClient,
}

impl LanguageModel {
    pub fn new(client: ChatClient) -> Self {
        Self { client }
    }

    /// The request that reads the caller's words.
    pub fn understand_request(
        settings: &ReceptionistSettings,
        request: &UnderstandRequest,
        turn: &str,
    ) -> ChatRequest {
        let wanted = request
            .wanted
            .iter()
            .map(|w| match w {
                Wanted::Name => "- name: the caller's first and last name".to_string(),
                Wanted::Location => "- location: the city or area the caller lives in".to_string(),
                Wanted::Answer {
                    index,
                    question,
                    kind,
                } => {
                    let kind = match kind {
                        QuestionKind::YesNo => "yes/no",
                        QuestionKind::Number => "number",
                        QuestionKind::FreeText => "open",
                    };
                    format!("- question {index} ({kind}): {question}")
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let wanted = if wanted.is_empty() {
            "- nothing: the caller may ask their own questions now".to_string()
        } else {
            wanted
        };
        let system = render(
            UNDERSTAND,
            &[
                ("agent_name", settings.agent_name.as_str()),
                ("asked", request.asked.as_str()),
                ("wanted", wanted.as_str()),
            ],
        );
        ChatRequest {
            messages: vec![
                ChatMessage::system(system),
                ChatMessage::user(request.utterance.clone()),
            ],
            tools: vec![record_turn_tool()],
            tool_choice: Some(RECORD_TURN.to_string()),
            request_id: Some(turn.to_string()),
            temperature: Some(0.0),
            max_tokens: Some(300),
        }
    }

    /// The request that answers the caller's question (streamed text).
    pub fn answer_request(
        settings: &ReceptionistSettings,
        request: &AnswerRequest,
        turn: &str,
    ) -> ChatRequest {
        let location_rule = match (&request.location, request.enforce_job_location_match) {
            (Some(place), true) => format!(
                "The caller lives in {place}: suggest only open positions located in or near {place}, and none located elsewhere.\n"
            ),
            (Some(place), false) => format!(
                "The caller lives in {place}; when they ask about open positions, suggest the ones that fit.\n"
            ),
            (None, _) => String::new(),
        };
        let context = if settings.custom_context.trim().is_empty() {
            "(none)"
        } else {
            settings.custom_context.trim()
        };
        let system = render(
            ANSWER,
            &[
                ("agent_name", settings.agent_name.as_str()),
                ("location_rule", location_rule.as_str()),
                ("context", context),
            ],
        );
        ChatRequest {
            messages: vec![
                ChatMessage::system(system),
                ChatMessage::user(request.question.clone()),
            ],
            tools: Vec::new(),
            tool_choice: None,
            request_id: Some(turn.to_string()),
            temperature: Some(0.2),
            max_tokens: Some(150),
        }
    }

    /// Read the caller's words. `turn` names the call and consultation (`X-Request-Id`).
    pub async fn understand(
        &self,
        settings: &ReceptionistSettings,
        request: &UnderstandRequest,
        turn: &str,
    ) -> Result<Understanding, BackendError> {
        let reply = self
            .client
            .complete(&Self::understand_request(settings, request, turn))
            .await?;
        let arguments = match reply.tool_calls.iter().find(|c| c.name == RECORD_TURN) {
            Some(call) => call.arguments.clone(),
            // a server without tool calls may still answer with the JSON in its text
            None => match (reply.text.find('{'), reply.text.rfind('}')) {
                (Some(a), Some(b)) if a < b => reply.text[a..=b].to_string(),
                _ => {
                    return Err(BackendError::Failed(
                        "language model: no record_turn call in the answer".into(),
                    ));
                }
            },
        };
        parse_understanding(&arguments)
    }

    /// Start the streamed answer to the caller's question.
    pub async fn answer(
        &self,
        settings: &ReceptionistSettings,
        request: &AnswerRequest,
        turn: &str,
    ) -> Result<ChatStream, BackendError> {
        self.client
            .stream(&Self::answer_request(settings, request, turn))
            .await
    }
}

/// The `record_turn` tool: what the model may say it read.
fn record_turn_tool() -> Tool {
    let text_or_null = json!({ "type": ["string", "null"] });
    Tool {
        name: RECORD_TURN.to_string(),
        description: "Record what the caller said in this turn.".to_string(),
        parameters: json!({
            "type": "object",
            "properties": {
                "name": text_or_null,
                "location": text_or_null,
                "answers": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "question": { "type": "integer", "minimum": 0 },
                            "answer": { "type": "string" }
                        },
                        "required": ["question", "answer"],
                        "additionalProperties": false
                    }
                },
                "caller_question": text_or_null,
                "wants_to_end": { "type": "boolean" }
            },
            "required": ["answers"],
            "additionalProperties": false
        }),
    }
}

fn contract(what: &str) -> BackendError {
    BackendError::Failed(format!("language model: record_turn {what}"))
}

/// `record_turn`'s arguments, checked against the tool's schema. Fields the schema does not know
/// are ignored; a field of the wrong type is an error (the whole reading is then not trusted).
pub fn parse_understanding(arguments: &str) -> Result<Understanding, BackendError> {
    let value: Value =
        serde_json::from_str(arguments).map_err(|_| contract("arguments are not JSON"))?;
    let Value::Object(map) = value else {
        return Err(contract("arguments are not an object"));
    };
    let text = |key: &str| -> Result<Option<String>, BackendError> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => {
                let s = s.trim();
                Ok((!s.is_empty()).then(|| s.to_string()))
            }
            Some(_) => Err(contract(&format!("{key} is not text"))),
        }
    };
    let mut answers = Vec::new();
    match map.get("answers") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                let index = item
                    .get("question")
                    .and_then(|q| {
                        q.as_u64()
                            .or_else(|| q.as_str().and_then(|s| s.trim().parse().ok()))
                    })
                    .ok_or_else(|| contract("answer without a question number"))?;
                let answer = match item.get("answer") {
                    Some(Value::String(s)) => s.trim().to_string(),
                    Some(Value::Number(n)) => n.to_string(),
                    Some(Value::Bool(b)) => if *b { "yes" } else { "no" }.to_string(),
                    _ => return Err(contract("answer without a value")),
                };
                if !answer.is_empty() {
                    answers.push((index as usize, answer));
                }
            }
        }
        Some(_) => return Err(contract("answers is not a list")),
    }
    let wants_to_end = match map.get("wants_to_end") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(contract("wants_to_end is not true or false")),
    };
    Ok(Understanding {
        name: text("name")?,
        location: text("location")?,
        answers,
        caller_question: text("caller_question")?,
        wants_to_end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_read_against_the_schema() {
        let u = parse_understanding(
            r#"{"name":"Maria Lopez","location":null,"answers":[{"question":0,"answer":"yes"},{"question":"1","answer":3}],"caller_question":" ","wants_to_end":false,"mood":"happy"}"#,
        )
        .unwrap();
        assert_eq!(u.name.as_deref(), Some("Maria Lopez"));
        assert_eq!(u.location, None);
        assert_eq!(u.answers, vec![(0, "yes".into()), (1, "3".into())]);
        assert_eq!(u.caller_question, None, "blank is none");
        assert!(parse_understanding("not json").is_err());
        assert!(parse_understanding("[1,2]").is_err());
        assert!(parse_understanding(r#"{"answers":"yes"}"#).is_err());
        assert!(parse_understanding(r#"{"answers":[{"answer":"yes"}]}"#).is_err());
        assert!(parse_understanding(r#"{"name":42}"#).is_err());
        assert_eq!(parse_understanding("{}").unwrap(), Understanding::default());
    }

    #[test]
    fn requests_carry_the_script_and_the_context() {
        let mut s = crate::testing::sample_settings();
        s.custom_context = "Pay is $18 per hour.".into();
        let r = LanguageModel::understand_request(
            &s,
            &UnderstandRequest {
                utterance: "it's maria and I live in austin".into(),
                asked: "May I have your name?".into(),
                wanted: vec![
                    Wanted::Name,
                    Wanted::Answer {
                        index: 1,
                        question: "How many years?".into(),
                        kind: QuestionKind::Number,
                    },
                ],
            },
            "call-1-c1",
        );
        assert_eq!(r.request_id.as_deref(), Some("call-1-c1"));
        assert!(
            r.messages[0]
                .content
                .contains("- question 1 (number): How many years?")
        );
        assert!(r.messages[0].content.contains("May I have your name?"));
        assert_eq!(r.messages[1].content, "it's maria and I live in austin");
        assert_eq!(r.tool_choice.as_deref(), Some(RECORD_TURN));
        let r = LanguageModel::answer_request(
            &s,
            &AnswerRequest {
                question: "what's the pay".into(),
                location: Some("Austin".into()),
                enforce_job_location_match: true,
            },
            "call-1-c2",
        );
        assert!(r.messages[0].content.contains("Pay is $18 per hour."));
        assert!(
            r.messages[0]
                .content
                .contains("only open positions located in or near Austin")
        );
        assert!(r.tools.is_empty());
    }
}
