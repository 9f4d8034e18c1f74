//! The real binary with cloud providers chosen by flags, pointed at local stand-ins that speak
//! the providers' wire protocols (`receptionist::testing::providers`):
//!
//! - a chosen provider without its key stops `serve` at start-up with a clear error;
//! - a whole call through the Twilio media path with `--stt deepgram --tts elevenlabs --llm
//!   openai`: the model reads each turn and answers the caller's question (what it invents is
//!   not said), the caller's answers are stored, the agent speaks ElevenLabs' audio, one Deepgram
//!   socket serves the whole call, and no key reaches the log;
//! - the same call without a question with `--stt openai --tts openai` on an OpenAI-compatible
//!   stand-in, and with a language model too slow to wait for (the rules take over).

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use common::binary::{Served, serve_command};
use common::{free_port, trials};
use receptionist::testing::providers::{FakeDeepgram, FakeElevenLabs, FakeOpenAi};
use receptionist::tools::simulate::{CallerTurn, read_wav_8k, simulate_call};

/// This binary's tests (`harness = false`, see `common::trials`), the longest first.
fn main() -> std::process::ExitCode {
    trials::main(vec![
        trials::test("whole_calls_with_the_other_pairings_of_providers", || {
            Box::pin(whole_calls_with_the_other_pairings_of_providers())
        }),
        trials::test(
            "a_multilingual_receptionist_answers_the_caller_in_their_language",
            || Box::pin(a_multilingual_receptionist_answers_the_caller_in_their_language()),
        ),
        trials::test(
            "whole_call_with_deepgram_elevenlabs_and_a_language_model",
            || Box::pin(whole_call_with_deepgram_elevenlabs_and_a_language_model()),
        ),
        trials::test("whole_call_with_openai_compatible_speech", || {
            Box::pin(whole_call_with_openai_compatible_speech())
        }),
        trials::test("a_slow_language_model_hands_the_call_to_the_rules", || {
            Box::pin(a_slow_language_model_hands_the_call_to_the_rules())
        }),
        trials::test(
            "a_chosen_provider_without_its_key_stops_serve_at_start",
            || Box::pin(a_chosen_provider_without_its_key_stops_serve_at_start()),
        ),
    ])
}

async fn a_chosen_provider_without_its_key_stops_serve_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    for (args, missing) in [
        (&["--stt", "deepgram"][..], "DEEPGRAM_API_KEY"),
        (&["--tts", "elevenlabs"][..], "ELEVENLABS_API_KEY"),
        (&["--tts", "openai"][..], "OPENAI_API_KEY"),
        (
            &["--backends", "scripted", "--llm", "openai"][..],
            "OPENAI_API_KEY",
        ),
    ] {
        let out = tokio::time::timeout(
            Duration::from_secs(30),
            serve_command(tmp.path())
                .args(args)
                .args(["--listen", &format!("127.0.0.1:{}", free_port())])
                .stdout(Stdio::null())
                .output(),
        )
        .await
        .expect("serve should stop at once")
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started:\n{stderr}");
        assert!(
            stderr.contains(missing) && stderr.contains("not set"),
            "{args:?}:\n{stderr}"
        );
    }
    // an environment variable choosing a provider is checked the same way
    let out = serve_command(tmp.path())
        .env("RECEPTIONIST_STT", "deepgram")
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("DEEPGRAM_API_KEY"));
}

fn fixture(name: &str) -> CallerTurn {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("audio-fixtures")
        .join(name);
    CallerTurn::Audio {
        label: name.to_string(),
        pcm8k: read_wav_8k(&path).unwrap(),
    }
}

/// What the stand-ins hear, whatever the recordings say: the stored answers must come from these.
const TRANSCRIPTS: [&str; 4] = [
    "My name is Maria Lopez.",
    "Yes, I am.",
    "I have 4 years.",
    "No, thank you.",
];

/// With the language model: a question about the pay between the name and the first answer.
const TRANSCRIPTS_WITH_QUESTION: [&str; 5] = [
    "My name is Maria Lopez.",
    "How much does it pay?",
    "Yes, I am.",
    "I have 4 years.",
    "No, thank you.",
];
const TURNS: [&str; 4] = [
    "name.wav",
    "yes.wav",
    "number_three.wav",
    "no_questions.wav",
];
const TURNS_WITH_QUESTION: [&str; 5] = [
    "name.wav",
    "question_pay.wav",
    "yes.wav",
    "number_three.wav",
    "no_questions.wav",
];

/// A whole call on the real binary started with `flags` and `env`, the caller playing `turns`
/// (a name, yes, a number, no questions; maybe a question). Checks the stored call holds the
/// stand-in's answers, the log names the choices and holds none of `secrets`; returns the log
/// and the stored call.
async fn whole_call(
    flags: &[&str],
    env: &[(&str, &str)],
    secrets: &[&str],
    turns: &[&str],
) -> (String, Value) {
    whole_call_with(flags, env, secrets, turns, json!({})).await
}

/// [`whole_call`] with the receptionist's `settings` (merged over the test's).
async fn whole_call_with(
    flags: &[&str],
    env: &[(&str, &str)],
    secrets: &[&str],
    turns: &[&str],
    settings: Value,
) -> (String, Value) {
    let served = Served::start(flags, env).await;
    let mut receptionist = json!({
            "agent_name": "Chloe",
            "intro_message": "Hi, this is Chloe.",
            "disclose_ai": false,
            "disclose_recording": false,
            "disclose_e_verify": false,
            "collect_location": false,
            "custom_context": "Pay is $18 per hour. Shifts start at 6 am.",
            "questions": [
                {"text": "Are you at least eighteen years old?", "kind": "yes_no", "expected": "yes"},
                {"text": "How many years of warehouse experience do you have?", "kind": "number", "expected": ">= 1"}
            ]
    });
    if let (Some(r), Value::Object(extra)) = (receptionist.as_object_mut(), settings) {
        r.extend(extra);
    }
    let phone = served.receptionist(receptionist).await;
    let opts = served.sim(&phone, turns.iter().map(|t| fixture(t)).collect());
    let out = simulate_call(opts).await.unwrap();
    assert!(out.first_audio_ms.is_some(), "no agent audio arrived");
    assert_eq!(out.protocol_errors, 0);
    let id = out.call_id.clone().expect("the call was connected");
    let call = served.ended_call(&id).await;
    let log = served.stop().await;
    assert_eq!(call["end_reason"], "completed", "{call}\n{log}");
    assert_eq!(call["name"], "Maria Lopez", "{call}");
    let answers = call["answers"].as_array().unwrap();
    assert_eq!(answers.len(), 2, "{call}");
    assert_eq!(answers[0]["value"], json!({"type": "yes"}), "{call}");
    assert_eq!(
        answers[1]["value"],
        json!({"type": "number", "value": 4.0}),
        "{call}"
    );
    // the providers served the whole call: nothing fell back
    assert!(!log.contains("speech synthesis failed"), "{log}");
    assert!(!log.contains("speech recognition failed"), "{log}");
    // the start-up log names the choices, and no key appears anywhere in it
    assert!(log.contains("speech backends"), "{log}");
    for secret in secrets {
        assert!(!log.contains(secret), "a key reached the log");
    }
    (log, call)
}

/// [`whole_call`] with `--stt deepgram --tts elevenlabs --llm openai` on these stand-ins.
async fn whole_cloud_call(
    deepgram: &FakeDeepgram,
    elevenlabs: &FakeElevenLabs,
    llm: &FakeOpenAi,
    turns: &[&str],
) -> (String, Value) {
    whole_cloud_call_with(deepgram, elevenlabs, llm, turns, json!({})).await
}

/// [`whole_cloud_call`] with the receptionist's `settings`.
async fn whole_cloud_call_with(
    deepgram: &FakeDeepgram,
    elevenlabs: &FakeElevenLabs,
    llm: &FakeOpenAi,
    turns: &[&str],
    settings: Value,
) -> (String, Value) {
    whole_call_with(
        &[
            "--stt",
            "deepgram",
            "--tts",
            "elevenlabs",
            "--llm",
            "openai",
        ],
        &[
            ("DEEPGRAM_API_KEY", &deepgram.api_key),
            ("DEEPGRAM_URL", &deepgram.url),
            ("ELEVENLABS_API_KEY", &elevenlabs.api_key),
            ("ELEVENLABS_URL", &elevenlabs.url),
            ("OPENAI_API_KEY", &llm.api_key),
            ("OPENAI_BASE_URL", &llm.url),
        ],
        &[&deepgram.api_key, &elevenlabs.api_key, &llm.api_key],
        turns,
        settings,
    )
    .await
}

/// A language model as the stand-in plays it: reads the test's transcripts into `record_turn`
/// and answers the pay question, adding a promise the context does not make.
fn scripted_model(body: &Value) -> String {
    use receptionist::testing::providers::{sse_text, sse_tool_call};
    if body.get("tools").is_none() {
        return sse_text(&[
            "The pay is ",
            "$18 per hour. ",
            "You will be hired on the spot.",
        ]);
    }
    let said = body["messages"][1]["content"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    let arguments = if said.contains("maria lopez") {
        json!({"name": "Maria Lopez", "answers": []})
    } else if said.contains("pay") {
        json!({"answers": [], "caller_question": "How much does it pay?"})
    } else if said.contains("yes") {
        json!({"answers": [{"question": 0, "answer": "yes"}]})
    } else if said.contains('4') || said.contains("four") {
        json!({"answers": [{"question": 1, "answer": "4"}]})
    } else if said.contains("no") {
        json!({"answers": [], "wants_to_end": true})
    } else {
        json!({"answers": []})
    };
    sse_tool_call("record_turn", &arguments.to_string())
}

async fn whole_call_with_deepgram_elevenlabs_and_a_language_model() {
    let deepgram = FakeDeepgram::start(&TRANSCRIPTS_WITH_QUESTION).await;
    let elevenlabs = FakeElevenLabs::start().await;
    // its audio comes in pieces while it synthesises: the call plays them as they come
    elevenlabs.pace(Duration::from_millis(30));
    let llm = FakeOpenAi::start(&[]).await;
    llm.chat_responder(scripted_model);
    let (log, call) = whole_cloud_call(&deepgram, &elevenlabs, &llm, &TURNS_WITH_QUESTION).await;
    assert!(
        log.contains(r#"stt="deepgram" tts="elevenlabs" llm="openai""#),
        "{log}"
    );
    // the model read every turn and answered the question; what it invented was not said
    assert!(!log.contains("language model failed"), "{log}");
    let chats = llm.requests_to("/chat/completions");
    let readings = chats
        .iter()
        .filter(|r| r.body.get("tools").is_some())
        .count();
    assert_eq!((readings, chats.len()), (5, 6), "{chats:?}");
    let said = call["transcript"].to_string();
    assert!(said.contains("The pay is $18 per hour."), "{call}");
    assert!(!said.contains("hired"), "{call}");
    let latencies = call["latencies"].as_array().unwrap();
    assert!(
        latencies.iter().all(|l| l["llm_first_ms"].is_u64()),
        "{call}"
    );
    // every transcript was complete when Finalize was answered, none cut off by the deadline
    assert!(!log.contains("finals incomplete at the deadline"), "{log}");

    // one Deepgram socket for the whole call, closed at its end; every utterance finalised
    let deadline = Instant::now() + Duration::from_secs(10);
    while deepgram.messages().last().map(String::as_str) != Some("CloseStream") {
        assert!(Instant::now() < deadline, "{:?}", deepgram.messages());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(deepgram.connections().len(), 1);
    assert_eq!(deepgram.remaining(), 0, "{:?}", deepgram.messages());
    let finalizes = deepgram
        .messages()
        .iter()
        .filter(|m| *m == "Finalize")
        .count();
    assert_eq!(finalizes, 5, "{:?}", deepgram.messages());
    assert_eq!(deepgram.odd_frames(), 0);

    // every request names the call, and the turn it is for
    let id = call["id"].as_str().unwrap();
    assert_eq!(deepgram.connections()[0].request_id.as_deref(), Some(id));
    assert!(
        chats.iter().all(|r| r
            .request_id
            .as_deref()
            .is_some_and(|r| r.starts_with(&format!("{id}-c")))),
        "{chats:?}"
    );
    // (prompts synthesised ahead at start-up belong to no call)
    let in_call: Vec<_> = elevenlabs
        .streams()
        .into_iter()
        .filter_map(|s| s.request_id)
        .collect();
    assert!(!in_call.is_empty());
    assert!(
        in_call.iter().all(|r| r.starts_with(&format!("{id}-s"))),
        "{in_call:?}"
    );

    // the agent spoke with ElevenLabs (its default voice: the receptionist's is an offline name)
    let streams = elevenlabs.streams();
    assert!(!streams.is_empty());
    assert!(
        streams
            .iter()
            .all(|s| s.voice_id == receptionist::backends::elevenlabs::DEFAULT_VOICE)
    );
    assert!(
        streams.iter().any(|s| s
            .messages
            .iter()
            .any(|m| m["text"] == "Hi, this is Chloe. ")),
        "{streams:?}"
    );
}

async fn a_multilingual_receptionist_answers_the_caller_in_their_language() {
    let deepgram = FakeDeepgram::start(&TRANSCRIPTS_WITH_QUESTION).await;
    deepgram.detect_language("es");
    let elevenlabs = FakeElevenLabs::start().await;
    let llm = FakeOpenAi::start(&[]).await;
    // the stand-in "translates" by marking the text, so the test can tell what was translated
    llm.chat_responder(|body| {
        let system = body["messages"][0]["content"].as_str().unwrap_or_default();
        if system.contains("Translate the text into Spanish") {
            let text = body["messages"][1]["content"].as_str().unwrap_or_default();
            return receptionist::testing::providers::sse_text(&["[es] ", text]);
        }
        scripted_model(body)
    });
    let (log, call) = whole_cloud_call_with(
        &deepgram,
        &elevenlabs,
        &llm,
        &TURNS_WITH_QUESTION,
        json!({"language_mode": "multilingual"}),
    )
    .await;
    assert_eq!(call["caller_language"], "es", "{call}");
    assert_eq!(call["agent_language"], "es", "{call}");
    assert!(
        log.contains("the agent speaks the caller's language"),
        "{log}"
    );
    // Deepgram was asked to tell the language
    assert_eq!(
        deepgram.connections()[0]
            .query
            .get("detect_language")
            .map(String::as_str),
        Some("true")
    );
    // before the caller spoke, English; after, ElevenLabs was given the translations
    let texts: Vec<String> = elevenlabs
        .streams()
        .iter()
        .filter_map(|s| s.messages.get(1)?["text"].as_str().map(String::from))
        .collect();
    assert!(
        texts.iter().any(|t| t == "Hi, this is Chloe. "),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.starts_with("[es] Are you at least")),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|t| t == "[es] The pay is $18 per hour. "),
        "the checked answer, translated: {texts:?}"
    );
    // what the model invented was still never said, in any language
    assert!(texts.iter().all(|t| !t.contains("hired")), "{texts:?}");
    // and the recruiter reads the transcript in English, the script's words
    assert!(
        call["transcript"]
            .to_string()
            .contains("The pay is $18 per hour."),
        "{call}"
    );
}

async fn whole_call_with_openai_compatible_speech() {
    let openai = FakeOpenAi::start(&[
        TRANSCRIPTS[0],
        "I live in Mesa.",
        TRANSCRIPTS[1],
        TRANSCRIPTS[2],
        TRANSCRIPTS[3],
    ])
    .await;
    let (log, call) = whole_call_with(
        &["--stt", "openai", "--tts", "openai"],
        &[
            ("OPENAI_API_KEY", &openai.api_key),
            ("OPENAI_BASE_URL", &openai.url),
            ("RECEPTIONIST_STT_MODEL", "whisper-large-v3"),
        ],
        &[&openai.api_key],
        &[TURNS[0], "location.wav", TURNS[1], TURNS[2], TURNS[3]],
        json!({
            "collect_location": true,
            "custom_context": "We are hiring warehouse associates in Mesa and drivers near Tempe. \
                Pay is $18 per hour.",
        }),
    )
    .await;
    assert!(
        log.contains(r#"stt="openai" tts="openai" llm="none""#),
        "{log}"
    );
    assert_eq!(call["location"], "Mesa", "{call}");
    // one upload per utterance, each a 16 kHz mono WAV, with the chosen model, naming the call
    // and the utterance
    let id = call["id"].as_str().unwrap();
    let uploads = openai.requests_to("/audio/transcriptions");
    assert_eq!(uploads.len(), 5, "{uploads:?}");
    // what the dialogue expects biases each upload; asked where they live, the caller is
    // heard with the places the receptionist's context names...
    assert_eq!(uploads[0].body["prompt"], "My name is Maria Lopez.");
    assert_eq!(
        uploads[1].body["prompt"],
        "I live in San Antonio, Texas. Mesa, Tempe."
    );
    assert_eq!(uploads[2].body["prompt"], "Yes. No.");
    // and asked whether they have questions, with the places alone (callers ask about them)
    assert_eq!(uploads[4].body["prompt"], "Mesa, Tempe.");
    for u in &uploads {
        assert!(
            u.request_id
                .as_deref()
                .is_some_and(|r| r.starts_with(&format!("{id}-u"))),
            "{u:?}"
        );
        assert_eq!(u.body["model"], "whisper-large-v3");
        let (rate, channels, bits, samples) = u.wav.expect("a WAV file");
        assert_eq!((rate, channels, bits), (16_000, 1, 16));
        assert!(samples > 1_600, "{samples}");
    }
    // the agent spoke with OpenAI's default voice (the receptionist's is an offline name)
    let speech = openai.requests_to("/audio/speech");
    assert!(
        speech
            .iter()
            .any(|r| r.body["input"] == "Hi, this is Chloe." && r.body["voice"] == "alloy"),
        "{speech:?}"
    );
    assert!(
        speech
            .iter()
            .all(|r| r.body["response_format"] == "pcm" && r.body["model"] == "tts-1")
    );
}

/// The other pairings of recogniser and voice: Deepgram with OpenAI's voice and the rules;
/// OpenAI's transcription with ElevenLabs' voice and the model. With the two calls above, each
/// recogniser has served a whole call with each voice, with and without the model.
async fn whole_calls_with_the_other_pairings_of_providers() {
    let deepgram = FakeDeepgram::start(&TRANSCRIPTS).await;
    let openai = FakeOpenAi::start(&[]).await;
    let (log, _) = whole_call_with(
        &["--stt", "deepgram", "--tts", "openai"],
        &[
            ("DEEPGRAM_API_KEY", &deepgram.api_key),
            ("DEEPGRAM_URL", &deepgram.url),
            ("RECEPTIONIST_STT_MODEL", "nova-3"),
            ("OPENAI_API_KEY", &openai.api_key),
            ("OPENAI_BASE_URL", &openai.url),
        ],
        &[&deepgram.api_key, &openai.api_key],
        &TURNS,
        json!({"custom_context": "Pay is $18 per hour. Locations: Mesa, Tempe and San Tan Valley."}),
    )
    .await;
    assert!(
        log.contains(r#"stt="deepgram" tts="openai" llm="none""#),
        "{log}"
    );
    assert!(!openai.requests_to("/audio/speech").is_empty());
    // the call's one socket opened with the places the context names, as Nova-3 takes them
    let connections = deepgram.connections();
    let keyterms: Vec<&str> = connections[0]
        .pairs
        .iter()
        .filter(|(k, _)| k == "keyterm")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(keyterms, ["Mesa", "Tempe", "San Tan Valley"]);

    let openai = FakeOpenAi::start(&TRANSCRIPTS_WITH_QUESTION).await;
    openai.chat_responder(scripted_model);
    let elevenlabs = FakeElevenLabs::start().await;
    let (log, call) = whole_call(
        &["--stt", "openai", "--tts", "elevenlabs", "--llm", "openai"],
        &[
            ("OPENAI_API_KEY", &openai.api_key),
            ("OPENAI_BASE_URL", &openai.url),
            ("ELEVENLABS_API_KEY", &elevenlabs.api_key),
            ("ELEVENLABS_URL", &elevenlabs.url),
        ],
        &[&openai.api_key, &elevenlabs.api_key],
        &TURNS_WITH_QUESTION,
    )
    .await;
    assert!(
        log.contains(r#"stt="openai" tts="elevenlabs" llm="openai""#),
        "{log}"
    );
    assert!(!log.contains("language model failed"), "{log}");
    assert!(
        call["transcript"]
            .to_string()
            .contains("The pay is $18 per hour."),
        "{call}"
    );
    assert_eq!(openai.requests_to("/audio/transcriptions").len(), 5);
    assert!(!elevenlabs.streams().is_empty());
}

async fn a_slow_language_model_hands_the_call_to_the_rules() {
    let deepgram = FakeDeepgram::start(&TRANSCRIPTS).await;
    let elevenlabs = FakeElevenLabs::start().await;
    let llm = FakeOpenAi::start(&[]).await;
    llm.chat_responder(scripted_model);
    // slower than the engine waits (4 s): the first reading is given up, the rules read it
    llm.chat_delay(Duration::from_secs(6));
    let (_, call) = whole_cloud_call(&deepgram, &elevenlabs, &llm, &TURNS).await;
    // asked once, then not again for the rest of the call
    assert_eq!(llm.requests_to("/chat/completions").len(), 1);
    assert_eq!(call["name"], "Maria Lopez", "{call}");
}
