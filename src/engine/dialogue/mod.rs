//! The receptionist's script as a state machine: intro, disclosures, name, location, screening
//! questions (re-asked at most twice), the caller's own questions answered from the custom context,
//! and a polite close. It knows nothing of audio or time: the call engine tells it what the caller
//! said (or keyed), that the caller stayed silent, that a backend failed or that time ran out, and it
//! answers with the next [`Turn`]: what to say and what to do after.
//!
//! Without a language model this is the whole, deterministic policy. With one (`Dialogue::new`'s
//! `use_model`), the caller's words are read by the model instead of the rules ([`Step::Consult`]:
//! several answers at once and out of order, a question asked in the middle of the script) and
//! their questions are answered by it from the custom context, streamed a sentence at a time
//! ([`Step::Answer`]); the script, its order and its guarantees stay here, and everything the
//! model says is checked first (`model`). A model that fails hands the rest of the call to the
//! rules.

pub mod context;
pub mod model;
pub mod turn;
pub mod understand;

use std::sync::Arc;

use crate::model::{
    AnswerRecord, AnswerValue, CallEvent, DisclosureKind, EndReason, QuestionKind,
    ReceptionistSettings,
};
use model::{AnswerRequest, ModelRequest, UnderstandRequest, Understanding, Wanted};

/// How many times a question is asked at most (the first time plus two re-asks).
pub const MAX_ASKS: u8 = 3;
/// Silence reminders before the agent hangs up.
pub const MAX_REMINDERS: u8 = 2;
/// Backend failures apologised for before the agent ends the call.
pub const MAX_BACKEND_FAILURES: u8 = 3;
/// Caller questions answered before the agent moves to the close.
pub const MAX_CALLER_QUESTIONS: u8 = 5;

/// What a prompt is, for the engine: disclosures are never interruptible and are tracked until the
/// carrier confirms they played in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptKind {
    Intro,
    Disclosure(DisclosureKind),
    Say,
    Closing,
}

/// One sentence or short paragraph the agent speaks.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub text: String,
    pub interruptible: bool,
    pub kind: PromptKind,
}

impl Prompt {
    fn say(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            interruptible: true,
            kind: PromptKind::Say,
        }
    }
}

/// What the agent expects to hear next; the engine uses it for endpointing and the keypad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Name,
    Location,
    Answer(QuestionKind),
    CallerQuestion,
}

/// After the prompts have played.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Listen(Expect),
    HangUp(EndReason),
}

/// The agent's next turn.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub prompts: Vec<Prompt>,
    pub next: Next,
}

/// What the caller did.
#[derive(Debug, Clone, Copy)]
pub enum Reply<'a> {
    Speech(&'a str),
    Keypad(&'a str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Name,
    Location,
    Question(usize),
    CallerQuestions,
    Done,
}

/// What follows the caller's words.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Say this.
    Turn(Turn),
    /// Ask the model to read the caller's words ([`ModelRequest::Understand`]); answer with
    /// [`Dialogue::on_understood`] or [`Dialogue::on_model_failed`].
    Consult(ModelRequest),
    /// Say `before`, then the model's answer to the caller's question ([`ModelRequest::Answer`])
    /// sentence by sentence ([`Dialogue::answer_sentence`]), then what [`Dialogue::answer_done`]
    /// (or [`Dialogue::answer_failed`]) returns.
    Answer {
        before: Vec<Prompt>,
        request: ModelRequest,
    },
}

/// A caller's question being answered by the model.
#[derive(Debug)]
struct PendingAnswer {
    question: String,
    /// Sentences accepted so far.
    spoken: u8,
    /// No more sentences are taken (the limit, or one that could not be trusted).
    stopped: bool,
    /// What follows the answer.
    follow: Turn,
}

/// The receptionist script for one call.
pub struct Dialogue {
    settings: Arc<ReceptionistSettings>,
    returning_caller: bool,
    /// Consult the language model (until it fails).
    use_model: bool,
    stage: Stage,
    /// Times the current stage's question has been asked.
    asks: u8,
    reminders: u8,
    backend_failures: u8,
    caller_questions: u8,
    name: Option<String>,
    location: Option<String>,
    /// Stages settled (given, or given up on), in or out of order.
    name_done: bool,
    location_done: bool,
    answered: Vec<bool>,
    /// The caller's words the model is reading.
    utterance: String,
    answering: Option<PendingAnswer>,
    events: Vec<CallEvent>,
    /// The context's sentences by meaning, when the server has a sentence encoder.
    meanings: Option<Arc<context::ContextMeanings>>,
    /// The caller's words and their meaning (given with their transcript).
    question_meaning: Option<(String, Arc<[f32]>)>,
}

impl Dialogue {
    pub fn new(settings: Arc<ReceptionistSettings>, returning_caller: bool) -> Self {
        Self::with_model(settings, returning_caller, false)
    }

    /// Match the caller's questions to the context by meaning too (see
    /// [`set_question_meaning`](Self::set_question_meaning)).
    pub fn with_meanings(mut self, meanings: Option<Arc<context::ContextMeanings>>) -> Self {
        self.meanings = meanings;
        self
    }

    /// The meaning of the caller's words `text` (their transcript): a question in them is
    /// answered by the context sentences closest in meaning.
    pub fn set_question_meaning(&mut self, text: &str, meaning: Arc<[f32]>) {
        self.question_meaning = Some((text.to_string(), meaning));
    }

    /// The context's answer to `question`: by meaning when both are known (the meaning given
    /// for these very words), else, or when nothing is close enough, by its words.
    fn answer_from_context(&mut self, question: &str) -> Option<String> {
        let by_meaning = match (&self.meanings, &self.question_meaning) {
            (Some(m), Some((text, q))) if text.trim() == question.trim() => {
                context::answer_by_meaning(m, q)
            }
            _ => None,
        };
        by_meaning.or_else(|| context::answer(&self.settings.custom_context, question))
    }

    /// A dialogue that consults a language model when `use_model` (see [`Step`]).
    pub fn with_model(
        settings: Arc<ReceptionistSettings>,
        returning_caller: bool,
        use_model: bool,
    ) -> Self {
        Self {
            answered: vec![false; settings.questions.len()],
            settings,
            returning_caller,
            use_model,
            stage: Stage::Name,
            asks: 0,
            reminders: 0,
            backend_failures: 0,
            caller_questions: 0,
            name: None,
            location: None,
            name_done: false,
            location_done: false,
            utterance: String::new(),
            answering: None,
            events: Vec::new(),
            meanings: None,
            question_meaning: None,
        }
    }

    /// Whether the caller's words go to the model.
    pub fn uses_model(&self) -> bool {
        self.use_model
    }

    /// The fixed prompts of this receptionist, to synthesise ahead of time.
    pub fn fixed_prompts(settings: &ReceptionistSettings) -> Vec<String> {
        let mut d = Dialogue::new(Arc::new(settings.clone()), false);
        let mut out: Vec<String> = d.start().prompts.into_iter().map(|p| p.text).collect();
        out.push(NAME_QUESTION.to_string());
        out.push(LOCATION_QUESTION.to_string());
        out.push(CALLER_QUESTIONS.to_string());
        out.push(APOLOGY.to_string());
        out.push(SILENCE_GOODBYE.to_string());
        out.push(FAILURE_GOODBYE.to_string());
        out.push(TIME_LIMIT_GOODBYE.to_string());
        out.push(DRAIN_GOODBYE.to_string());
        out.extend(SHORT_LINES.iter().map(|l| l.to_string()));
        out.push(model::NO_ANSWER.to_string());
        for q in &settings.questions {
            out.push(q.text.clone());
        }
        out
    }

    /// Events (name, location, answers) produced since the last call.
    pub fn take_events(&mut self) -> Vec<CallEvent> {
        std::mem::take(&mut self.events)
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// What the agent is waiting for now.
    pub fn expect(&self) -> Expect {
        match self.stage {
            Stage::Name => Expect::Name,
            Stage::Location => Expect::Location,
            Stage::Question(i) => Expect::Answer(self.settings.questions[i].kind),
            Stage::CallerQuestions | Stage::Done => Expect::CallerQuestion,
        }
    }

    /// Greeting, disclosures and the first question.
    pub fn start(&mut self) -> Turn {
        let s = &self.settings;
        let mut prompts = Vec::new();
        let intro = if s.intro_message.trim().is_empty() {
            format!(
                "Hi, I'm {}. Thanks for calling about our open positions.",
                s.agent_name
            )
        } else {
            s.intro_message.trim().to_string()
        };
        prompts.push(Prompt {
            text: intro,
            interruptible: false,
            kind: PromptKind::Intro,
        });
        for (on, kind, text) in [
            (
                s.disclose_ai,
                DisclosureKind::Ai,
                "Please note that I am an AI assistant, not a person.",
            ),
            (
                s.disclose_recording,
                DisclosureKind::Recording,
                "This call is recorded for hiring purposes.",
            ),
            (
                s.disclose_e_verify,
                DisclosureKind::EVerify,
                "We participate in E-Verify.",
            ),
        ] {
            if on {
                prompts.push(Prompt {
                    text: text.to_string(),
                    interruptible: false,
                    kind: PromptKind::Disclosure(kind),
                });
            }
        }
        self.stage = Stage::Name;
        self.asks = 1;
        prompts.push(Prompt::say(NAME_QUESTION));
        Turn {
            prompts,
            next: Next::Listen(Expect::Name),
        }
    }

    /// The caller answered (by voice or keypad).
    pub fn on_reply(&mut self, reply: Reply<'_>) -> Turn {
        self.reminders = 0;
        match self.stage {
            Stage::Name => self.on_name(reply),
            Stage::Location => self.on_location(reply),
            Stage::Question(i) => self.on_answer(i, reply),
            Stage::CallerQuestions => self.on_caller_question(reply),
            Stage::Done => self.closing(EndReason::Completed),
        }
    }

    /// The caller spoke: with the model, ask it to read their words ([`Step::Consult`]);
    /// otherwise the rules' turn.
    pub fn on_speech(&mut self, text: &str) -> Step {
        if !self.use_model || self.stage == Stage::Done {
            return Step::Turn(self.on_reply(Reply::Speech(text)));
        }
        self.reminders = 0;
        self.answering = None;
        self.utterance = text.to_string();
        Step::Consult(ModelRequest::Understand(UnderstandRequest {
            utterance: text.to_string(),
            asked: self.current_question(),
            wanted: self.wanted(),
        }))
    }

    /// What the caller has not given yet, the current stage's first.
    fn wanted(&self) -> Vec<Wanted> {
        let mut out = Vec::new();
        if !self.name_done {
            out.push(Wanted::Name);
        }
        if self.settings.collect_location && !self.location_done {
            out.push(Wanted::Location);
        }
        for (i, q) in self.settings.questions.iter().enumerate() {
            if !self.answered[i] {
                out.push(Wanted::Answer {
                    index: i,
                    question: q.text.clone(),
                    kind: q.kind,
                });
            }
        }
        out
    }

    /// The model read the caller's words: keep what checks out (each item for its own
    /// question, in any order), answer a question they asked, and go on with the first question
    /// still open. When the model found nothing, the rules read the words instead.
    pub fn on_understood(&mut self, u: Understanding) -> Step {
        let text = std::mem::take(&mut self.utterance);
        let stage = self.stage;
        let mut prompts = Vec::new();
        let mut got_current = false;
        let mut got_any = false;
        if !self.name_done
            && let Some(name) = u
                .name
                .as_deref()
                .and_then(|n| model::said_by_caller(n, &text, 4))
        {
            let first = name.split(' ').next().unwrap_or(&name).to_string();
            self.record_name(name);
            prompts.push(Prompt::say(format!("Thank you, {first}.")));
            if self.returning_caller {
                prompts.push(self.welcome_back());
            }
            got_current |= stage == Stage::Name;
            got_any = true;
        }
        if self.settings.collect_location
            && !self.location_done
            && let Some(place) = u
                .location
                .as_deref()
                .and_then(|l| model::said_by_caller(l, &text, 6))
        {
            self.record_location(place);
            if prompts.is_empty() {
                prompts.push(Prompt::say(GOT_IT));
            }
            got_current |= stage == Stage::Location;
            got_any = true;
        }
        for (i, answer) in &u.answers {
            let Some(q) = self.settings.questions.get(*i) else {
                continue;
            };
            if self.answered[*i] {
                continue;
            }
            let value = match q.kind {
                QuestionKind::FreeText => model::mostly_said(answer, &text)
                    .then(|| AnswerValue::Text(answer.trim().to_string())),
                // a number must have been said; the model may read "since 2019" as 7
                QuestionKind::Number if understand::parse_number(&text).is_none() => None,
                kind => understand::understand(kind, answer),
            };
            let Some(value) = value else {
                continue;
            };
            let attempts = if stage == Stage::Question(*i) {
                self.asks
            } else {
                1
            };
            self.record_answer(*i, text.clone(), value, attempts, false);
            if prompts.is_empty() {
                prompts.push(Prompt::say(THANK_YOU));
            }
            got_current |= stage == Stage::Question(*i);
            got_any = true;
        }
        let question = u
            .caller_question
            .filter(|q| !q.trim().is_empty())
            .filter(|_| self.caller_questions < MAX_CALLER_QUESTIONS);
        if stage == Stage::CallerQuestions && question.is_none() && u.wants_to_end {
            return Step::Turn(self.closing(EndReason::Completed));
        }
        let follow = if stage == Stage::CallerQuestions {
            if question.is_some() {
                self.caller_questions += 1;
                if self.caller_questions >= MAX_CALLER_QUESTIONS {
                    self.closing(EndReason::Completed)
                } else {
                    Turn {
                        prompts: vec![Prompt::say(OTHER_QUESTIONS)],
                        next: Next::Listen(Expect::CallerQuestion),
                    }
                }
            } else {
                let mut t = self.on_reply(Reply::Speech(&text));
                prompts.append(&mut t.prompts);
                t.prompts = prompts;
                return Step::Turn(t);
            }
        } else if got_current {
            self.advance_after(stage, Vec::new())
        } else if got_any || question.is_some() {
            // the current question again, not counted as a re-ask: it was not answered wrongly
            Turn {
                prompts: vec![Prompt::say(self.current_question())],
                next: Next::Listen(self.expect()),
            }
        } else {
            // nothing the model could find: the rules read the words (and re-ask as they do)
            return Step::Turn(self.on_reply(Reply::Speech(&text)));
        };
        match question {
            Some(question) => {
                if stage != Stage::CallerQuestions {
                    self.caller_questions += 1;
                }
                self.answering = Some(PendingAnswer {
                    question: question.clone(),
                    spoken: 0,
                    stopped: false,
                    follow,
                });
                Step::Answer {
                    before: prompts,
                    request: ModelRequest::Answer(AnswerRequest {
                        question,
                        location: self.location.clone(),
                        enforce_job_location_match: self.settings.enforce_job_location_match,
                    }),
                }
            }
            None => {
                prompts.extend(follow.prompts);
                Step::Turn(Turn {
                    prompts,
                    next: follow.next,
                })
            }
        }
    }

    /// The words sent to the model, taken back when the caller went on talking before it
    /// answered (they are read again with what the caller added).
    pub fn take_utterance(&mut self) -> String {
        std::mem::take(&mut self.utterance)
    }

    /// The model could not read the caller's words (failed, timed out, answered outside its
    /// contract): the rules read them, and take over for the rest of the call.
    pub fn on_model_failed(&mut self) -> Turn {
        self.use_model = false;
        let text = std::mem::take(&mut self.utterance);
        self.on_reply(Reply::Speech(&text))
    }

    /// A sentence of the model's answer: the prompt to say, if it can be trusted, and whether the
    /// answer is over (the limit, or an untrustworthy sentence: the rest is not wanted).
    pub fn answer_sentence(&mut self, sentence: &str) -> (Option<Prompt>, bool) {
        let known = self.known_facts();
        let elsewhere = self.elsewhere(sentence);
        let Some(a) = self.answering.as_mut() else {
            return (None, true);
        };
        if a.stopped {
            return (None, true);
        }
        let sentence = sentence.trim();
        if sentence.is_empty() {
            return (None, false);
        }
        if sentence.chars().count() > model::MAX_SENTENCE_CHARS
            || !model::grounded(sentence, &known)
            || elsewhere
        {
            a.stopped = true;
            // said nothing yet: the line every caller gets when there is no answer
            let line = (a.spoken == 0).then(|| Prompt::say(model::NO_ANSWER));
            a.spoken += 1;
            return (line, true);
        }
        a.spoken += 1;
        a.stopped = a.spoken >= model::MAX_ANSWER_SENTENCES;
        (Some(Prompt::say(sentence)), a.stopped)
    }

    /// The model's answer is complete: what follows it (preceded by the rules' answer when the
    /// model said nothing usable).
    pub fn answer_done(&mut self) -> Turn {
        let Some(a) = self.answering.take() else {
            return Turn {
                prompts: Vec::new(),
                next: Next::Listen(self.expect()),
            };
        };
        let mut prompts = Vec::new();
        if a.spoken == 0 {
            let question = a.question.clone();
            prompts.push(Prompt::say(
                self.answer_from_context(&question)
                    .unwrap_or_else(|| model::NO_ANSWER.to_string()),
            ));
        }
        prompts.extend(a.follow.prompts);
        Turn {
            prompts,
            next: a.follow.next,
        }
    }

    /// The model failed while answering: finish the turn without it, and without it for the rest
    /// of the call.
    pub fn answer_failed(&mut self) -> Turn {
        self.use_model = false;
        self.answer_done()
    }

    /// The caller talked over the answer: the rest of it, and what was to follow, are dropped.
    pub fn answer_abandoned(&mut self) {
        self.answering = None;
    }

    /// Whether a model's answer is being spoken.
    pub fn answering(&self) -> bool {
        self.answering.is_some()
    }

    /// With the job location match enforced, whether a sentence names a place of the context's
    /// positions that is not the caller's.
    fn elsewhere(&self, sentence: &str) -> bool {
        let (true, Some(loc)) = (self.settings.enforce_job_location_match, &self.location) else {
            return false;
        };
        let loc = understand::normalize(loc);
        let said = format!(" {} ", understand::normalize(sentence));
        context::job_places(&self.settings.custom_context)
            .iter()
            .any(|place| !loc.contains(place.as_str()) && said.contains(&format!(" {place} ")))
    }

    /// What an answer may mention: the custom context and the call's own facts.
    fn known_facts(&self) -> String {
        let s = &self.settings;
        let mut known = format!("{} {}", s.custom_context, s.agent_name);
        for extra in [&self.name, &self.location].into_iter().flatten() {
            known.push(' ');
            known.push_str(extra);
        }
        known
    }

    /// The caller said nothing for a while after the agent finished.
    pub fn on_silence(&mut self) -> Turn {
        self.answering = None;
        self.reminders += 1;
        if self.reminders > MAX_REMINDERS {
            self.stage = Stage::Done;
            return Turn {
                prompts: vec![closing_prompt(SILENCE_GOODBYE)],
                next: Next::HangUp(EndReason::Silence),
            };
        }
        let mut prompts = vec![Prompt::say(STILL_THERE)];
        prompts.push(Prompt::say(self.current_question()));
        Turn {
            prompts,
            next: Next::Listen(self.expect()),
        }
    }

    /// A speech backend failed or timed out: apologise and ask again, or end the call politely.
    pub fn on_backend_failure(&mut self) -> Turn {
        self.answering = None;
        self.backend_failures += 1;
        if self.backend_failures >= MAX_BACKEND_FAILURES {
            self.stage = Stage::Done;
            return Turn {
                prompts: vec![closing_prompt(FAILURE_GOODBYE)],
                next: Next::HangUp(EndReason::BackendFailure),
            };
        }
        Turn {
            prompts: vec![Prompt::say(APOLOGY), Prompt::say(self.current_question())],
            next: Next::Listen(self.expect()),
        }
    }

    /// The maximum call length was reached.
    pub fn on_time_limit(&mut self) -> Turn {
        self.answering = None;
        self.stage = Stage::Done;
        Turn {
            prompts: vec![closing_prompt(TIME_LIMIT_GOODBYE)],
            next: Next::HangUp(EndReason::MaxDuration),
        }
    }

    /// The server is shutting down and cannot wait for the call to end.
    pub fn on_drain(&mut self) -> Turn {
        self.stage = Stage::Done;
        Turn {
            prompts: vec![closing_prompt(DRAIN_GOODBYE)],
            next: Next::HangUp(EndReason::ServerShutdown),
        }
    }

    fn current_question(&self) -> String {
        match self.stage {
            Stage::Name => NAME_QUESTION.to_string(),
            Stage::Location => LOCATION_QUESTION.to_string(),
            Stage::Question(i) => self.settings.questions[i].text.clone(),
            Stage::CallerQuestions | Stage::Done => CALLER_QUESTIONS.to_string(),
        }
    }

    fn on_name(&mut self, reply: Reply<'_>) -> Turn {
        let name = match reply {
            Reply::Speech(t) => understand::extract_name(t),
            Reply::Keypad(_) => None,
        };
        let mut prompts = Vec::new();
        match name {
            Some(name) => {
                let first = name.split(' ').next().unwrap_or(&name).to_string();
                self.record_name(name);
                prompts.push(Prompt::say(format!("Thank you, {first}.")));
            }
            None if self.asks < MAX_ASKS => {
                self.asks += 1;
                return Turn {
                    prompts: vec![Prompt::say(REASK_NAME)],
                    next: Next::Listen(Expect::Name),
                };
            }
            None => prompts.push(Prompt::say(LETS_CONTINUE)),
        }
        if self.returning_caller {
            prompts.push(self.welcome_back());
        }
        self.advance_after(Stage::Name, prompts)
    }

    fn on_location(&mut self, reply: Reply<'_>) -> Turn {
        let place = match reply {
            Reply::Speech(t) => understand::extract_location(t),
            Reply::Keypad(_) => None,
        };
        let mut prompts = Vec::new();
        match place {
            Some(place) => {
                self.record_location(place);
                prompts.push(Prompt::say(GOT_IT));
            }
            None if self.asks < MAX_ASKS => {
                self.asks += 1;
                return Turn {
                    prompts: vec![Prompt::say(REASK_LOCATION)],
                    next: Next::Listen(Expect::Location),
                };
            }
            None => prompts.push(Prompt::say(LETS_CONTINUE)),
        }
        self.advance_after(Stage::Location, prompts)
    }

    fn on_answer(&mut self, i: usize, reply: Reply<'_>) -> Turn {
        let q = self.settings.questions[i].clone();
        let (raw, value, via_dtmf) = match reply {
            Reply::Speech(t) => (t.to_string(), understand::understand(q.kind, t), false),
            Reply::Keypad(d) => (d.to_string(), understand::understand_dtmf(q.kind, d), true),
        };
        let value = match value {
            Some(v) => v,
            None if self.asks < MAX_ASKS => {
                self.asks += 1;
                let hint = match q.kind {
                    QuestionKind::YesNo => REASK_YES_NO,
                    QuestionKind::Number => REASK_NUMBER,
                    QuestionKind::FreeText => REASK,
                };
                return Turn {
                    prompts: vec![Prompt::say(hint), Prompt::say(q.text.clone())],
                    next: Next::Listen(Expect::Answer(q.kind)),
                };
            }
            None => AnswerValue::Unclear,
        };
        let attempts = self.asks;
        self.record_answer(i, raw, value.clone(), attempts, via_dtmf);
        let ack = match value {
            AnswerValue::Unclear => LETS_MOVE_ON,
            _ => THANK_YOU,
        };
        self.advance_after(Stage::Question(i), vec![Prompt::say(ack)])
    }

    fn on_caller_question(&mut self, reply: Reply<'_>) -> Turn {
        let text = match reply {
            Reply::Speech(t) => t,
            Reply::Keypad(_) => return self.closing(EndReason::Completed),
        };
        if understand::is_done(text) {
            return self.closing(EndReason::Completed);
        }
        let n = understand::normalize(text);
        if matches!(
            n.as_str(),
            "yes" | "yeah" | "yes please" | "sure" | "yes i do" | "i do" | "yep" | "okay"
        ) {
            return Turn {
                prompts: vec![Prompt::say(WHAT_TO_KNOW)],
                next: Next::Listen(Expect::CallerQuestion),
            };
        }
        self.caller_questions += 1;
        let answer = self.answer_from_context(text).unwrap_or_else(|| {
            "I don't have that information, but a recruiter will follow up with you about it."
                .to_string()
        });
        if self.caller_questions >= MAX_CALLER_QUESTIONS {
            let mut t = self.closing(EndReason::Completed);
            t.prompts.insert(0, Prompt::say(answer));
            return t;
        }
        Turn {
            prompts: vec![Prompt::say(answer), Prompt::say(OTHER_QUESTIONS)],
            next: Next::Listen(Expect::CallerQuestion),
        }
    }

    /// Move to the stage after `from`, appending its question to `prompts`.
    fn advance_after(&mut self, from: Stage, mut prompts: Vec<Prompt>) -> Turn {
        match from {
            Stage::Name => self.name_done = true,
            Stage::Location => self.location_done = true,
            Stage::Question(i) => self.answered[i] = true,
            Stage::CallerQuestions | Stage::Done => {}
        }
        let next = match from {
            Stage::CallerQuestions | Stage::Done => Stage::Done,
            _ => self.next_stage(),
        };
        self.stage = next;
        self.asks = 1;
        match next {
            Stage::Location => {
                prompts.push(Prompt::say(LOCATION_QUESTION));
                Turn {
                    prompts,
                    next: Next::Listen(Expect::Location),
                }
            }
            Stage::Question(i) => {
                let q = &self.settings.questions[i];
                prompts.push(Prompt::say(q.text.clone()));
                Turn {
                    prompts,
                    next: Next::Listen(Expect::Answer(q.kind)),
                }
            }
            Stage::CallerQuestions => {
                if let Some(loc) = &self.location
                    && context::lists_jobs(&self.settings.custom_context)
                {
                    // positions that fit where the caller lives; with the location match
                    // enforced, a caller with none near is told so rather than offered others
                    let jobs = context::jobs_near(&self.settings.custom_context, loc);
                    if !jobs.is_empty() {
                        prompts.push(Prompt::say(format!(
                            "Based on your location, this may interest you: {}",
                            jobs.join(" ")
                        )));
                    } else if self.settings.enforce_job_location_match {
                        prompts.push(Prompt::say(format!(
                            "I don't see open positions near {loc} right now, but we'll keep your details on file."
                        )));
                    }
                }
                prompts.push(Prompt::say(CALLER_QUESTIONS));
                Turn {
                    prompts,
                    next: Next::Listen(Expect::CallerQuestion),
                }
            }
            Stage::Done | Stage::Name => {
                let mut t = self.closing(EndReason::Completed);
                prompts.append(&mut t.prompts);
                t.prompts = prompts;
                t
            }
        }
    }

    /// The first stage of the script not settled yet.
    fn next_stage(&self) -> Stage {
        if !self.name_done {
            Stage::Name
        } else if self.settings.collect_location && !self.location_done {
            Stage::Location
        } else if let Some(i) = self.answered.iter().position(|a| !a) {
            Stage::Question(i)
        } else {
            Stage::CallerQuestions
        }
    }

    fn welcome_back(&self) -> Prompt {
        let line =
            context::returning_caller_line(&self.settings.custom_context).unwrap_or_else(|| {
                "I see you've called us before. I'll add this call to your existing application."
                    .to_string()
            });
        Prompt::say(format!("Welcome back. {line}"))
    }

    fn record_name(&mut self, name: String) {
        self.events.push(CallEvent::Name { name: name.clone() });
        self.name = Some(name);
        self.name_done = true;
    }

    fn record_location(&mut self, place: String) {
        self.events.push(CallEvent::Location {
            location: place.clone(),
        });
        self.location = Some(place);
        self.location_done = true;
    }

    fn record_answer(
        &mut self,
        i: usize,
        raw: String,
        value: AnswerValue,
        attempts: u8,
        via_dtmf: bool,
    ) {
        let q = &self.settings.questions[i];
        let meets_expected = q
            .expected
            .as_deref()
            .filter(|e| !e.trim().is_empty())
            .and_then(|e| understand::parse_expected(q.kind, e).ok())
            .and_then(|e| understand::meets(&e, &value));
        let dealbreaker_failed = q.dealbreaker && meets_expected == Some(false);
        self.events.push(CallEvent::Answer(AnswerRecord {
            question_index: i,
            question: q.text.clone(),
            kind: q.kind,
            raw,
            value,
            attempts,
            via_dtmf,
            meets_expected,
            dealbreaker_failed,
        }));
        self.answered[i] = true;
    }

    fn closing(&mut self, reason: EndReason) -> Turn {
        self.stage = Stage::Done;
        let thanks = closing_thanks(self.name.as_deref());
        // the caller's name in a short line of its own; the rest is synthesised ahead of time,
        // so the goodbye starts as soon as that short line is ready
        Turn {
            prompts: vec![closing_prompt(thanks), closing_prompt(CLOSING_DETAILS)],
            next: Next::HangUp(reason),
        }
    }
}

/// The goodbye's first line, with the caller's first name when it is known: the one line of the
/// goodbye that cannot be synthesised before the call (the driver has it synthesised as soon as
/// the name is heard, so the goodbye starts at once).
pub fn closing_thanks(name: Option<&str>) -> String {
    match name {
        Some(n) => format!(
            "Thank you for calling, {}.",
            n.split(' ').next().unwrap_or(n)
        ),
        None => "Thank you for calling.".to_string(),
    }
}

fn closing_prompt(text: impl Into<String>) -> Prompt {
    Prompt {
        text: text.into(),
        interruptible: false,
        kind: PromptKind::Closing,
    }
}

/// Short lines every receptionist says, synthesised ahead of time with its fixed prompts.
pub const THANK_YOU: &str = "Thank you.";
pub const GOT_IT: &str = "Got it.";
pub const STILL_THERE: &str = "Are you still there?";
pub const OTHER_QUESTIONS: &str = "Do you have any other questions?";
pub const LETS_CONTINUE: &str = "No problem, let's continue.";
pub const LETS_MOVE_ON: &str = "No problem, let's move on.";
pub const WHAT_TO_KNOW: &str = "Sure, what would you like to know?";
pub const REASK_NAME: &str =
    "Sorry, I didn't catch your name. Could you tell me your first and last name?";
pub const REASK_LOCATION: &str = "Sorry, I didn't catch that. Which city or area do you live in?";
pub const REASK_YES_NO: &str =
    "Sorry, I didn't catch that. Please say yes or no, or press 1 for yes and 2 for no.";
pub const REASK_NUMBER: &str = "Sorry, I didn't catch that. Please say a number, or type it on your keypad followed by the pound key.";
pub const REASK: &str = "Sorry, I didn't catch that.";
pub const CLOSING_DETAILS: &str = "You'll get a text message shortly to confirm the details we captured. Have a great day. Goodbye!";
/// Those lines, in one list.
pub const SHORT_LINES: [&str; 13] = [
    THANK_YOU,
    GOT_IT,
    STILL_THERE,
    OTHER_QUESTIONS,
    LETS_CONTINUE,
    LETS_MOVE_ON,
    WHAT_TO_KNOW,
    REASK_NAME,
    REASK_LOCATION,
    REASK_YES_NO,
    REASK_NUMBER,
    REASK,
    CLOSING_DETAILS,
];

pub const NAME_QUESTION: &str = "To get started, may I have your first and last name?";
pub const LOCATION_QUESTION: &str = "Which city or area do you live in?";
pub const CALLER_QUESTIONS: &str =
    "Do you have any questions about the job, like the pay, the shifts or the location?";
pub const APOLOGY: &str = "Sorry, I'm having trouble on my end. Let me ask that again.";
pub const SILENCE_GOODBYE: &str =
    "I haven't heard anything, so I'll end the call now. Feel free to call back any time. Goodbye.";
pub const FAILURE_GOODBYE: &str =
    "I'm sorry, we're having technical difficulties. Please call back a little later. Goodbye.";
pub const DRAIN_GOODBYE: &str = "I'm sorry, I have to end our call now. Please call back in a few minutes to finish. Thank you for calling. Goodbye.";
pub const TIME_LIMIT_GOODBYE: &str = "We've reached the time limit for this call. Thank you for calling; a recruiter will be in touch. Goodbye.";

#[cfg(test)]
mod tests {
    use super::*;

    pub fn settings() -> ReceptionistSettings {
        let mut s = crate::testing::sample_settings();
        s.disclose_e_verify = false;
        s.custom_context =
            "Pay is $18 per hour. If you already applied, expect a reply within 3 days.".into();
        s.questions[1].weight = 2.0;
        s
    }

    /// The answers among the dialogue's events since they were last taken.
    fn answers(d: &mut Dialogue) -> Vec<AnswerRecord> {
        d.take_events()
            .into_iter()
            .filter_map(|e| match e {
                CallEvent::Answer(a) => Some(a),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn full_script() {
        let mut d = Dialogue::new(Arc::new(settings()), false);
        let t = d.start();
        assert_eq!(t.prompts.len(), 4);
        assert!(!t.prompts[0].interruptible && !t.prompts[1].interruptible);
        assert_eq!(t.next, Next::Listen(Expect::Name));
        let t = d.on_reply(Reply::Speech("my name is john smith"));
        assert_eq!(t.prompts[0].text, "Thank you, John.");
        assert_eq!(t.next, Next::Listen(Expect::Location));
        let t = d.on_reply(Reply::Speech("i live in chicago"));
        assert_eq!(t.next, Next::Listen(Expect::Answer(QuestionKind::YesNo)));
        // unclear twice, then keypad
        let t = d.on_reply(Reply::Speech("banana"));
        assert!(t.prompts[0].text.contains("press 1"));
        let t = d.on_reply(Reply::Keypad("1"));
        assert_eq!(t.next, Next::Listen(Expect::Answer(QuestionKind::Number)));
        let t = d.on_reply(Reply::Speech("three years"));
        assert_eq!(t.next, Next::Listen(Expect::CallerQuestion));
        let t = d.on_reply(Reply::Speech("what is the pay"));
        assert!(t.prompts[0].text.contains("$18 per hour"));
        let t = d.on_reply(Reply::Speech("no thank you"));
        assert_eq!(t.next, Next::HangUp(EndReason::Completed));
        assert!(t.prompts[0].text.contains("John"));
        let answers = answers(&mut d);
        assert_eq!(answers.len(), 2);
        assert_eq!(answers[0].value, AnswerValue::Yes);
        assert!(answers[0].via_dtmf);
        assert_eq!(answers[0].attempts, 2);
        assert_eq!(answers[1].value, AnswerValue::Number(3.0));
        assert_eq!(answers[1].meets_expected, Some(true));
    }

    #[test]
    fn a_caller_who_does_not_know_is_not_asked_again_nor_heard_as_a_no() {
        let mut d = Dialogue::new(Arc::new(settings()), false);
        d.start();
        d.on_reply(Reply::Speech("my name is john smith"));
        let t = d.on_reply(Reply::Speech("i live in chicago"));
        assert_eq!(t.next, Next::Listen(Expect::Answer(QuestionKind::YesNo)));
        // "not" is in it, and it is no "no": the recruiter goes over it, the call goes on
        let t = d.on_reply(Reply::Speech("i'm not sure"));
        assert_eq!(t.prompts[0].text, LETS_MOVE_ON);
        assert_eq!(t.next, Next::Listen(Expect::Answer(QuestionKind::Number)));
        let t = d.on_reply(Reply::Speech("no idea"));
        assert_eq!(t.prompts[0].text, LETS_MOVE_ON);
        let answers = answers(&mut d);
        assert_eq!(answers.len(), 2);
        for a in &answers {
            assert_eq!(a.value, AnswerValue::Unclear);
            assert_eq!(a.attempts, 1);
        }
        assert_eq!(answers[0].raw, "i'm not sure");
        assert_eq!(t.next, Next::Listen(Expect::CallerQuestion));
    }

    #[test]
    fn asks_at_most_three_times_and_flags_dealbreaker() {
        let mut s = settings();
        s.collect_location = false;
        let mut d = Dialogue::new(Arc::new(s), false);
        d.start();
        d.on_reply(Reply::Speech("john"));
        d.on_reply(Reply::Speech("hmm"));
        d.on_reply(Reply::Speech("hmm"));
        let t = d.on_reply(Reply::Speech("hmm"));
        assert_eq!(t.next, Next::Listen(Expect::Answer(QuestionKind::Number)));
        let t = d.on_reply(Reply::Speech("none"));
        assert!(matches!(t.next, Next::Listen(_)));
        let a = answers(&mut d)
            .into_iter()
            .find(|a| a.question_index == 0)
            .unwrap();
        assert_eq!(a.value, AnswerValue::Unclear);
        assert_eq!(a.attempts, 3);
        assert!(!a.dealbreaker_failed);

        let mut d = Dialogue::new(Arc::new(settings()), false);
        d.start();
        d.on_reply(Reply::Speech("john"));
        d.on_reply(Reply::Speech("chicago"));
        d.on_reply(Reply::Speech("no"));
        let a = answers(&mut d).into_iter().next().unwrap();
        assert!(a.dealbreaker_failed);
    }

    #[test]
    fn silence_and_failures_end_politely() {
        let mut d = Dialogue::new(Arc::new(settings()), false);
        d.start();
        assert!(matches!(d.on_silence().next, Next::Listen(Expect::Name)));
        assert!(matches!(d.on_silence().next, Next::Listen(Expect::Name)));
        assert_eq!(d.on_silence().next, Next::HangUp(EndReason::Silence));

        let mut d = Dialogue::new(Arc::new(settings()), false);
        d.start();
        assert_eq!(d.on_backend_failure().prompts[0].text, APOLOGY);
        d.on_backend_failure();
        assert_eq!(
            d.on_backend_failure().next,
            Next::HangUp(EndReason::BackendFailure)
        );
    }

    #[test]
    fn returning_caller_hears_context_line() {
        let mut d = Dialogue::new(Arc::new(settings()), true);
        d.start();
        let t = d.on_reply(Reply::Speech("my name is john smith"));
        assert!(t.prompts.iter().any(|p| p.text.contains("already applied")));
    }

    #[test]
    fn positions_are_suggested_where_the_caller_lives() {
        let mut s = settings();
        s.questions.clear();
        s.custom_context =
            "We are hiring warehouse associates in Chicago and forklift drivers in Dallas.".into();
        let run = |s: &ReceptionistSettings, place: &str| {
            let mut d = Dialogue::new(Arc::new(s.clone()), false);
            d.start();
            d.on_reply(Reply::Speech("my name is john smith"));
            let t = d.on_reply(Reply::Speech(&format!("i live in {place}")));
            assert_eq!(t.next, Next::Listen(Expect::CallerQuestion));
            t.prompts
                .into_iter()
                .map(|p| p.text)
                .collect::<Vec<_>>()
                .join(" ")
        };
        let said = run(&s, "dallas");
        assert!(said.contains("forklift drivers in Dallas"), "{said}");
        assert!(!said.contains("Chicago"), "{said}");
        assert!(!run(&s, "boston").contains("positions near"));
        s.enforce_job_location_match = true;
        assert!(run(&s, "boston").contains("I don't see open positions near Boston"));

        // the model's answer may not offer the positions elsewhere
        let mut d = caller_from_dallas_asking_for_jobs(s);
        let (p, stop) = d.answer_sentence("We have forklift drivers in Dallas.");
        assert!(p.is_some() && !stop);
        let (p, stop) = d.answer_sentence("There are also warehouse jobs in Chicago.");
        assert!(p.is_none() && stop);
    }

    /// A call with the language model in which John Smith from Dallas asks what jobs there are.
    fn caller_from_dallas_asking_for_jobs(s: ReceptionistSettings) -> Dialogue {
        let mut d = Dialogue::with_model(Arc::new(s), false, true);
        d.start();
        d.on_speech("i'm john smith from dallas");
        d.on_understood(Understanding {
            name: Some("john smith".into()),
            location: Some("dallas".into()),
            caller_question: Some("what jobs do you have".into()),
            ..Understanding::default()
        });
        d
    }

    /// With the job location match enforced, a position's place written with its state ("Dallas,
    /// Texas") is the caller's when they live there: the model's sentence about it is said.
    #[test]
    fn a_place_written_with_its_state_is_the_callers() {
        let mut s = settings();
        s.questions.clear();
        s.enforce_job_location_match = true;
        s.custom_context = "We are hiring forklift drivers in Dallas, Texas and warehouse \
            associates in Chicago."
            .into();
        let mut d = caller_from_dallas_asking_for_jobs(s);
        let (p, stop) = d.answer_sentence("We have forklift drivers in Dallas, Texas.");
        assert!(
            p.is_some() && !stop,
            "a Dallas caller hears about Dallas, Texas"
        );
        let (p, stop) = d.answer_sentence("There are also warehouse jobs in Chicago.");
        assert!(p.is_none() && stop);
    }

    #[test]
    fn short_lines_are_synthesised_ahead_with_the_fixed_prompts() {
        let fixed = Dialogue::fixed_prompts(&settings());
        for line in SHORT_LINES.iter().chain([&model::NO_ANSWER]) {
            assert!(fixed.iter().any(|f| f == line), "{line}");
        }
    }

    #[test]
    fn no_questions_no_location_goes_to_caller_questions() {
        let mut s = settings();
        s.questions.clear();
        s.collect_location = false;
        let mut d = Dialogue::new(Arc::new(s), false);
        d.start();
        let t = d.on_reply(Reply::Speech("maria"));
        assert_eq!(t.next, Next::Listen(Expect::CallerQuestion));
    }
}
