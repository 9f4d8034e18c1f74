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
const TRANSLATE: &str = include_str!("../../prompts/translate.md");
/// Longest translation kept, in characters (what the agent says is a few sentences).
const MAX_TRANSLATION_CHARS: usize = 1_000;
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

    /// The request that translates what the agent is about to say into `language` (an ISO
    /// 639-1 code).
    pub fn translate_request(
        agent_name: &str,
        text: &str,
        language: &str,
        turn: &str,
    ) -> ChatRequest {
        let system = render(
            TRANSLATE,
            &[
                ("agent_name", agent_name),
                ("language", language_name(language)),
            ],
        );
        ChatRequest {
            messages: vec![ChatMessage::system(system), ChatMessage::user(text)],
            tools: Vec::new(),
            tool_choice: None,
            request_id: Some(turn.to_string()),
            temperature: Some(0.0),
            max_tokens: Some(400),
        }
    }

    /// `text` in `language`, checked: a translation that is empty, far too long, or does not
    /// carry exactly the text's numbers (an amount, a time, a count changed, dropped or added)
    /// is an error, and the text is then said as it is.
    pub async fn translate(
        &self,
        agent_name: &str,
        text: &str,
        language: &str,
        turn: &str,
    ) -> Result<String, BackendError> {
        let reply = self
            .client
            .complete(&Self::translate_request(agent_name, text, language, turn))
            .await?;
        checked_translation(text, &reply.text)
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

/// Translations of what the agent says, shared by every call (the same prompts come back in
/// every call in a language): bounded, the oldest forgotten first. Cheap to clone.
#[derive(Clone, Default, Debug)]
pub struct Translations {
    inner: std::sync::Arc<std::sync::Mutex<TranslationMap>>,
}

#[derive(Default, Debug)]
struct TranslationMap {
    map: std::collections::HashMap<(String, String), String>,
    order: std::collections::VecDeque<(String, String)>,
}

/// At most this many translations are kept.
pub const MAX_TRANSLATIONS: usize = 4_096;
/// Longest wait for a translation; past it the agent says the text in English.
pub const TRANSLATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);

impl Translations {
    fn lock(&self) -> std::sync::MutexGuard<'_, TranslationMap> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `text` in `language`: kept from before, or asked of `llm` (within [`TRANSLATE_TIMEOUT`])
    /// and kept. When the model fails or its translation is not trusted, `text` itself: the
    /// caller hears English rather than nothing.
    pub async fn get_or_translate(
        &self,
        llm: &LanguageModel,
        agent_name: &str,
        text: &str,
        language: &str,
        turn: &str,
    ) -> String {
        let key = (language.to_string(), text.to_string());
        if let Some(hit) = self.lock().map.get(&key) {
            return hit.clone();
        }
        let result = tokio::time::timeout(
            TRANSLATE_TIMEOUT,
            llm.translate(agent_name, text, language, turn),
        )
        .await
        .unwrap_or(Err(BackendError::Timeout));
        match result {
            Ok(said) => {
                let mut inner = self.lock();
                if inner.map.len() >= MAX_TRANSLATIONS
                    && let Some(oldest) = inner.order.pop_front()
                {
                    inner.map.remove(&oldest);
                }
                if inner.map.insert(key.clone(), said.clone()).is_none() {
                    inner.order.push_back(key);
                }
                said
            }
            Err(e) => {
                // never the text: it may hold what the caller said
                tracing::warn!(language, error = %e, "translation failed; said in English");
                text.to_string()
            }
        }
    }

    /// Translations kept.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The translation `said` of `text` if it can be trusted (see [`LanguageModel::translate`]).
pub fn checked_translation(text: &str, said: &str) -> Result<String, BackendError> {
    let said = said
        .trim()
        .trim_matches(|c| c == '"' || c == '“' || c == '”')
        .trim();
    if said.is_empty() || said.chars().count() > MAX_TRANSLATION_CHARS.min(4 * text.len() + 40) {
        return Err(BackendError::Failed(
            "language model: translation empty or too long".into(),
        ));
    }
    if numbers(text) != numbers(said) {
        return Err(BackendError::Failed(
            "language model: translation changed the numbers".into(),
        ));
    }
    Ok(said.to_string())
}

/// The digit runs of `text`, sorted (`$18.50` and `18,50` are both 18 and 50).
fn numbers(text: &str) -> Vec<&str> {
    let mut runs: Vec<&str> = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|r| !r.is_empty())
        .collect();
    runs.sort_unstable();
    runs
}

/// The English name of a language code, for the prompt (the code itself when unknown).
pub fn language_name(code: &str) -> &str {
    match code {
        "es" => "Spanish",
        "fr" => "French",
        "de" => "German",
        "it" => "Italian",
        "pt" => "Portuguese",
        "nl" => "Dutch",
        "pl" => "Polish",
        "ru" => "Russian",
        "uk" => "Ukrainian",
        "zh" => "Chinese",
        "ja" => "Japanese",
        "ko" => "Korean",
        "vi" => "Vietnamese",
        "tl" => "Tagalog",
        "ar" => "Arabic",
        "hi" => "Hindi",
        "tr" => "Turkish",
        "ro" => "Romanian",
        "ht" => "Haitian Creole",
        "en" => "English",
        other => other,
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
