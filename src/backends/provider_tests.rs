//! The provider clients against local servers speaking each provider's wire protocol
//! (`testing::providers`): what goes over the wire, what comes back, and the failure modes.

use std::sync::Arc;
use std::time::Duration;

use super::chat::{ChatClient, ChatConfig, ChatMessage, ChatRequest, Tool, ToolCall};
use super::deepgram::{DeepgramConfig, DeepgramStt};
use super::elevenlabs::{self, ElevenLabsConfig, ElevenLabsTts};
use super::http::RetryPolicy;
use super::openai::{OpenAiConfig, OpenAiStt, OpenAiTts, hint_of_prompt};
use super::*;
use crate::config::Secret;
use crate::engine::audio::{g711, resample};
use crate::testing::providers::{FakeDeepgram, FakeElevenLabs, FakeOpenAi, SpeechFormat, tone};

/// Short waits between attempts, so failure tests stay fast.
fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        timeout: Duration::from_secs(5),
        attempts: 3,
        backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(20),
    }
}

fn deepgram_config(fake: &FakeDeepgram) -> DeepgramConfig {
    let mut c = DeepgramConfig::new(&fake.url, Secret::new(&fake.api_key));
    c.backoff = Duration::from_millis(20);
    c
}

/// `ms` of 16 kHz caller audio, pushed in 20 ms frames.
fn say(session: &mut dyn SttSession, ms: u64) {
    for frame in tone(ms, 16_000).chunks(320) {
        session.push(frame);
    }
}

/// Poll `cond` every 10 ms for at most 5 s.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---- Deepgram ----

#[tokio::test]
async fn deepgram_one_socket_per_call_and_finals_joined() {
    let fake = FakeDeepgram::start(&["My name is Maria Lopez.", "Yes, I am."]).await;
    let mut config = deepgram_config(&fake);
    config.model = Some("nova-3".into());
    let stt = DeepgramStt::new(config).unwrap();
    let mut call = stt
        .open_call(false, &["Mesa".into(), "San Tan Valley".into()])
        .expect("Deepgram keeps a socket per call");

    let mut first = call.start(SttHint::Name);
    say(first.as_mut(), 1_000);
    assert_eq!(first.finish().await.unwrap(), "my name is maria lopez");
    // "Yes," comes back final after 0.4 s, "I am." only after Finalize: both count
    let mut second = call.start(SttHint::YesNo);
    assert!(stt.partials(), "Deepgram's interim results answer partials");
    assert_eq!(
        second.partial().unwrap().await.unwrap(),
        "",
        "nothing heard yet"
    );
    say(second.as_mut(), 440);
    // what was said so far: the final "Yes," and the interim "I am."
    let mut heard = String::new();
    for _ in 0..200 {
        heard = second.partial().unwrap().await.unwrap();
        if heard == "yes i am" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(heard, "yes i am");
    assert_eq!(second.finish().await.unwrap(), "yes i am");
    // an utterance without audio is empty, without asking the provider
    assert_eq!(call.start(SttHint::Any).finish().await.unwrap(), "");
    drop(call);
    eventually("CloseStream", || {
        fake.messages().last().map(String::as_str) == Some("CloseStream")
    })
    .await;

    let connections = fake.connections();
    assert_eq!(connections.len(), 1, "one socket for the whole call");
    let c = &connections[0];
    assert_eq!(
        c.authorization.as_deref(),
        Some(format!("Token {}", fake.api_key).as_str())
    );
    for (k, v) in [
        ("encoding", "linear16"),
        ("sample_rate", "16000"),
        ("channels", "1"),
        ("interim_results", "true"),
        ("endpointing", "300"),
        ("utterance_end_ms", "1000"),
        ("smart_format", "true"),
        ("model", "nova-3"),
    ] {
        assert_eq!(
            c.query.get(k).map(String::as_str),
            Some(v),
            "{k} in {:?}",
            c.query
        );
    }
    // the places of the positions, as Nova-3 takes them
    let keyterms: Vec<&str> = c
        .pairs
        .iter()
        .filter(|(k, _)| k == "keyterm")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(keyterms, ["Mesa", "San Tan Valley"]);
    assert_eq!(
        fake.messages(),
        ["audio", "Finalize", "audio", "Finalize", "CloseStream"]
    );
    assert_eq!(fake.audio_bytes(), (16_000 + 7_040) * 2);
    assert_eq!(fake.odd_frames(), 0);
    assert_eq!(fake.remaining(), 0);
}

#[tokio::test]
async fn deepgram_in_a_multilingual_call_asks_for_the_language_and_reports_it() {
    let fake = FakeDeepgram::start(&["Me llamo Juan Pérez.", "My name is Maria Lopez."]).await;
    fake.detect_language("es");
    let stt: Arc<dyn SpeechToText> = Arc::new(DeepgramStt::new(deepgram_config(&fake)).unwrap());
    // through the fallback, as the server uses it
    let stt: Arc<dyn SpeechToText> = Arc::new(FallbackStt::new(
        "deepgram",
        stt,
        Arc::new(ScriptedStt::new(ScriptedAnswers(Vec::new()))),
        Duration::from_secs(5),
    ));
    let mut call = open_call(&stt, true, &[]);
    let mut session = call.start(SttHint::Name);
    say(session.as_mut(), 1_000);
    let heard = session.finish_heard().await.unwrap();
    assert_eq!(heard.text, "me llamo juan pérez");
    assert_eq!(heard.language.as_deref(), Some("es"));
    // an English-only call does not ask, and hears no language
    let mut call = open_call(&stt, false, &[]);
    let mut session = call.start(SttHint::Name);
    say(session.as_mut(), 1_000);
    let heard = session.finish_heard().await.unwrap();
    assert_eq!(heard.language, None);
    let connections = fake.connections();
    assert_eq!(
        connections[0]
            .query
            .get("detect_language")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(connections[1].query.get("detect_language"), None);
}

#[tokio::test]
async fn deepgram_keeps_an_idle_socket_alive() {
    let fake = FakeDeepgram::start(&["Hello."]).await;
    let mut config = deepgram_config(&fake);
    config.keepalive = Duration::from_millis(200);
    let stt = DeepgramStt::new(config).unwrap();
    let mut call = stt.open_call(false, &[]).unwrap();
    // between turns (the agent talking) no audio goes out: KeepAlive does
    eventually("two KeepAlives", || {
        fake.messages().iter().filter(|m| *m == "KeepAlive").count() >= 2
    })
    .await;
    let mut s = call.start(SttHint::Any);
    say(s.as_mut(), 500);
    assert_eq!(s.finish().await.unwrap(), "hello");
    assert_eq!(fake.connections().len(), 1);
}

#[tokio::test]
async fn deepgram_dropped_socket_reconnects_and_replays_the_utterance() {
    let fake = FakeDeepgram::start(&["My name is Maria Lopez.", "Chicago."]).await;
    // the first socket dies half-way through the first utterance, without a close frame
    fake.drop_after(16_000);
    let stt = DeepgramStt::new(deepgram_config(&fake)).unwrap();
    let mut call = stt.open_call(false, &[]).unwrap();
    let mut s = call.start(SttHint::Name);
    say(s.as_mut(), 1_000);
    assert_eq!(s.finish().await.unwrap(), "my name is maria lopez");
    let mut s = call.start(SttHint::Location);
    say(s.as_mut(), 600);
    assert_eq!(s.finish().await.unwrap(), "chicago");
    assert_eq!(fake.connections().len(), 2, "reconnected once");
    // the utterance's audio went out again on the new socket
    assert!(
        fake.audio_bytes() >= 16_000 + 32_000 + 19_200,
        "{}",
        fake.audio_bytes()
    );
}

#[tokio::test]
async fn deepgram_refused_key_fails_fast_and_falls_back_for_the_call() {
    let fake = FakeDeepgram::start(&["never heard"]).await;
    fake.reject_with(401);
    let primary: Arc<dyn SpeechToText> =
        Arc::new(DeepgramStt::new(deepgram_config(&fake)).unwrap());
    // without a fallback: an error, after one attempt (401 is not retried)
    let mut s = primary.start(SttHint::Any);
    say(s.as_mut(), 300);
    let err = s.finish().await.unwrap_err();
    assert!(
        matches!(err, BackendError::Failed(ref m) if m.contains("401")),
        "{err}"
    );
    assert_eq!(fake.connections().len(), 1);

    let fallback: Arc<dyn SpeechToText> = Arc::new(ScriptedStt::new(ScriptedAnswers::from([
        "first fallback",
        "second fallback",
    ])));
    let stt: Arc<dyn SpeechToText> = Arc::new(FallbackStt::new(
        "deepgram",
        primary,
        fallback,
        Duration::from_secs(5),
    ));
    assert!(stt.partials(), "the wrapper offers the primary's partials");
    let mut call = open_call(&stt, false, &[]);
    let mut s = call.start(SttHint::Any);
    say(s.as_mut(), 300);
    // the refused socket: a partial is an error (the engine waits for its deadline), not a hang
    let partial = tokio::time::timeout(Duration::from_secs(5), s.partial().unwrap()).await;
    assert!(partial.expect("answered").is_err());
    assert_eq!(s.finish().await.unwrap(), "first fallback");
    let connections = fake.connections().len();
    let mut s = call.start(SttHint::Any);
    say(s.as_mut(), 300);
    assert_eq!(s.finish().await.unwrap(), "second fallback");
    assert_eq!(
        fake.connections().len(),
        connections,
        "the rest of the call stays offline"
    );
}

// ---- OpenAI-compatible ----

fn openai_config(fake: &FakeOpenAi, model: &str) -> OpenAiConfig {
    OpenAiConfig {
        base_url: fake.url.clone(),
        api_key: Secret::new(&fake.api_key),
        model: model.into(),
        retry: quick_retry(),
    }
}

#[tokio::test]
async fn openai_transcription_in_a_multilingual_call_names_the_language() {
    let fake = FakeOpenAi::start(&["Me llamo José.", "Sí.", "Mesa.", "Mesa."]).await;
    fake.transcription_language("spanish");
    let stt = OpenAiStt::new(openai_config(&fake, "whisper-1")).unwrap();
    let mut s = stt.start_in(SttHint::Name, true);
    say(s.as_mut(), 500);
    let heard = s.finish_heard().await.unwrap();
    assert_eq!(heard.text, "me llamo josé");
    assert_eq!(heard.language.as_deref(), Some("es"));
    let r = &fake.requests()[0];
    assert_eq!(r.body["response_format"], "verbose_json");
    assert!(r.body["prompt"].is_null(), "no English prompt biases it");
    // an English-only session: plain JSON, the hint's prompt, no language
    let mut s = stt.start_in(SttHint::YesNo, false);
    say(s.as_mut(), 300);
    assert_eq!(s.finish_heard().await.unwrap().language, None);
    let r = &fake.requests()[1];
    assert_eq!(r.body["response_format"], "json");
    assert_eq!(r.body["prompt"], "Yes. No.");
    // asked where they live, biased toward the places of the positions, in either mode
    let places = ["Mesa".to_string(), "Sun City West".to_string()];
    for multilingual in [false, true] {
        let mut s = stt.start_with_terms(SttHint::Location, multilingual, &places);
        say(s.as_mut(), 300);
        s.finish_heard().await.unwrap();
    }
    let requests = fake.requests();
    assert_eq!(
        requests[2].body["prompt"],
        "I live in San Antonio, Texas. Mesa, Sun City West."
    );
    assert_eq!(requests[3].body["prompt"], "Mesa, Sun City West.");
    assert_eq!(
        hint_of_prompt("I live in San Antonio, Texas. Mesa, Sun City West."),
        SttHint::Location
    );
}

#[test]
fn recognisers_language_names_and_tags_become_codes() {
    assert_eq!(language_code("es").as_deref(), Some("es"));
    assert_eq!(language_code("pt-BR").as_deref(), Some("pt"));
    assert_eq!(language_code("es-419").as_deref(), Some("es"));
    assert_eq!(language_code("Spanish").as_deref(), Some("es"));
    assert_eq!(language_code("haitian creole").as_deref(), Some("ht"));
    assert_eq!(language_code("klingon"), None);
    assert_eq!(language_code(""), None);
}

#[tokio::test]
async fn openai_transcribes_a_wav_upload() {
    let fake = FakeOpenAi::start(&["My name is José, I'm 25."]).await;
    let stt = OpenAiStt::new(openai_config(&fake, "whisper-1")).unwrap();
    let mut s = stt.start(SttHint::Name);
    say(s.as_mut(), 500);
    assert_eq!(s.finish().await.unwrap(), "my name is josé i'm 25");
    // nothing said: nothing sent
    assert_eq!(stt.start(SttHint::Any).finish().await.unwrap(), "");
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(
        r.authorization.as_deref(),
        Some(format!("Bearer {}", fake.api_key).as_str())
    );
    assert_eq!(r.body["model"], "whisper-1");
    assert_eq!(r.body["response_format"], "json");
    assert_eq!(r.body["filename"], "utterance.wav");
    assert_eq!(r.wav, Some((16_000, 1, 16, 8_000)));
    // what the dialogue expects biases the model: a name here
    assert_eq!(r.body["prompt"], "My name is Maria Lopez.");
}

#[tokio::test]
async fn openai_retries_429_and_5xx_but_not_4xx() {
    let fake = FakeOpenAi::start(&["yes", "no"]).await;
    let stt = OpenAiStt::new(openai_config(&fake, "whisper-1")).unwrap();
    fake.fail_next(&[429, 503]);
    assert_eq!(
        stt.transcribe(&tone(200, 16_000), SttHint::Any)
            .await
            .unwrap(),
        "yes"
    );
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 503, 200]);

    fake.fail_next(&[400]);
    let err = stt
        .transcribe(&tone(200, 16_000), SttHint::Any)
        .await
        .unwrap_err();
    assert!(
        matches!(err, BackendError::Failed(ref m) if m.contains("400")),
        "{err}"
    );
    assert_eq!(fake.requests().len(), 4, "a 400 is not retried");

    // a wrong key is a 401, not retried, and the key is not in the error
    let mut bad = openai_config(&fake, "whisper-1");
    bad.api_key = Secret::new("sk-wrong-key");
    let err = OpenAiStt::new(bad)
        .unwrap()
        .transcribe(&tone(200, 16_000), SttHint::Any)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("401") && !err.to_string().contains("sk-wrong-key"),
        "{err}"
    );
    assert_eq!(fake.requests().len(), 5);

    // retries are bounded
    fake.fail_next(&[500, 500, 500, 500]);
    assert!(matches!(
        stt.transcribe(&tone(200, 16_000), SttHint::Any).await,
        Err(BackendError::Unavailable(_))
    ));
    assert_eq!(fake.requests().len(), 8);
}

#[tokio::test]
async fn openai_speech_as_pcm_and_as_wav_plays_at_8k() {
    let fake = FakeOpenAi::start(&[]).await;
    let tts = OpenAiTts::new(openai_config(&fake, "tts-1")).unwrap();
    let speech = tts.synthesize("Hello there", "nova").await.unwrap();
    assert_eq!(speech.sample_rate, 24_000);
    assert_eq!(speech.pcm, tone(11 * 60, 24_000));
    assert!(!speech.fallback);
    let r = &fake.requests()[0];
    assert_eq!(r.body["model"], "tts-1");
    assert_eq!(r.body["voice"], "nova");
    assert_eq!(r.body["input"], "Hello there");
    assert_eq!(r.body["response_format"], "pcm");
    assert_eq!(tts.voices()[0], "alloy");

    // a voice OpenAI does not have speaks with the default one
    fake.speech_format(SpeechFormat::Wav);
    let speech = tts.synthesize("Hi", "slt").await.unwrap();
    assert_eq!(fake.requests()[1].body["voice"], "alloy");
    assert_eq!(speech.sample_rate, 22_050);
    assert_eq!(speech.pcm, tone(2 * 60, 22_050));

    // the prompt cache turns any rate into the engine's 8 kHz µ-law: 24 kHz → a third the samples
    fake.speech_format(SpeechFormat::Pcm);
    let cache = PromptCache::new(Arc::new(tts));
    let ulaw = cache.speak("nova", "Hello there").await.unwrap();
    assert!(
        (ulaw.len() as i64 - 11 * 60 * 8).abs() <= 2,
        "{}",
        ulaw.len()
    );
    assert_eq!(cache.len(), 1);
}

#[tokio::test]
async fn openai_speech_streams_its_pcm_and_the_joins_resample_cleanly() {
    use futures_util::StreamExt;
    let fake = FakeOpenAi::start(&[]).await;
    // 4,801 bytes (100 ms and a split sample) every 50 ms
    fake.speech_pace(4_801, Duration::from_millis(50));
    let tts = OpenAiTts::new(openai_config(&fake, "tts-1")).unwrap();
    // 40 characters: 2.4 s at 24 kHz, 115,200 bytes, 24 pieces
    let text = "Thanks for calling about the open roles.";
    let mut pieces = tts.synthesize_stream(text, "alloy");
    let first = pieces.next().await.unwrap().unwrap();
    assert_eq!(first.sample_rate, 24_000);
    assert_eq!(
        first.pcm.len(),
        2_400,
        "the split sample waits for its other byte"
    );
    assert!(
        fake.speech_pieces_sent() < 24,
        "the first piece came before the rest was made"
    );
    let mut pcm = first.pcm;
    while let Some(piece) = pieces.next().await {
        pcm.extend_from_slice(&piece.unwrap().pcm);
    }
    assert_eq!(pcm, tone(40 * 60, 24_000), "every sample, in order");

    // through the prompt cache: 8 kHz µ-law pieces, resampled as one stream
    let cache = PromptCache::new(Arc::new(tts));
    let mut streamed = Vec::new();
    let mut pieces = cache.speak_stream("alloy", text);
    let mut n = 0;
    while let Some(piece) = pieces.next().await {
        n += 1;
        streamed.extend_from_slice(&piece.unwrap());
    }
    assert!(n > 10, "{n} pieces");
    let whole = resample(&tone(40 * 60, 24_000), 24_000, 8_000);
    let mut expected = vec![0u8; whole.len()];
    g711::encode_into(&whole, &mut expected);
    assert_eq!(streamed.len(), expected.len());
    // the same as resampling the whole, to within a µ-law step or two
    let worst = streamed
        .iter()
        .zip(&expected)
        .map(|(a, b)| (i32::from(g711::ulaw_decode(*a)) - i32::from(g711::ulaw_decode(*b))).abs())
        .max()
        .unwrap();
    assert!(worst < 300, "{worst}");
    assert_eq!(
        cache.get("alloy", text).map(|a| a.len()),
        Some(expected.len())
    );
}

#[tokio::test]
async fn failing_speech_provider_falls_back_and_is_not_cached() {
    let fake = FakeOpenAi::start(&[]).await;
    fake.fail_always(500);
    let primary: Arc<dyn TextToSpeech> =
        Arc::new(OpenAiTts::new(openai_config(&fake, "tts-1")).unwrap());
    let fallback: Arc<dyn TextToSpeech> = Arc::new(ScriptedTts::new());
    let tts = FallbackTts::new(
        "openai",
        primary,
        fallback,
        Duration::from_secs(5),
        Duration::from_secs(60),
    );
    let speech = tts.synthesize("Hello", "alloy").await.unwrap();
    assert!(speech.fallback);
    assert_eq!(speech.sample_rate, 8_000, "the scripted fallback's audio");
    assert_eq!(
        fake.requests().len(),
        3,
        "three attempts, then the fallback"
    );
    // during the cool-down the provider is not asked again, and nothing is cached
    let cache = PromptCache::new(Arc::new(tts));
    assert!(!cache.speak("alloy", "Hello").await.unwrap().is_empty());
    assert_eq!(fake.requests().len(), 3);
    assert!(cache.is_empty());
}

fn chat_client(fake: &FakeOpenAi) -> ChatClient {
    ChatClient::new(ChatConfig {
        base_url: fake.url.clone(),
        api_key: Secret::new(&fake.api_key),
        model: "gpt-test".into(),
        retry: quick_retry(),
    })
    .unwrap()
}

#[tokio::test]
async fn chat_streams_text_and_assembles_tool_calls() {
    let fake = FakeOpenAi::start(&[]).await;
    fake.fail_next(&[429]);
    let client = chat_client(&fake);
    let request = ChatRequest {
        messages: vec![
            ChatMessage::system("Answer briefly."),
            ChatMessage::user("What's the pay?"),
        ],
        tools: vec![Tool {
            name: "record_answer".into(),
            description: "Record a screening answer".into(),
            parameters: serde_json::json!({"type": "object"}),
        }],
        tool_choice: None,
        request_id: None,
        temperature: Some(0.0),
        max_tokens: Some(100),
    };
    let mut stream = client.stream(&request).await.unwrap();
    let mut deltas = Vec::new();
    while let Some(d) = stream.next_text().await.unwrap() {
        deltas.push(d);
    }
    assert_eq!(deltas, ["Pay is ", "$18 ", "an hour."]);
    let reply = stream.into_reply();
    assert_eq!(reply.text, "Pay is $18 an hour.");
    assert_eq!(reply.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(
        reply.tool_calls,
        [ToolCall {
            id: "call_1".into(),
            name: "record_answer".into(),
            arguments: r#"{"question": 1, "answer": "yes"}"#.into(),
        }]
    );
    let requests = fake.requests_to("/chat/completions");
    assert_eq!(
        requests.iter().map(|r| r.status).collect::<Vec<_>>(),
        [429, 200]
    );
    let body = &requests[1].body;
    assert_eq!(body["stream"], true);
    assert_eq!(body["model"], "gpt-test");
    assert_eq!(body["messages"][1]["content"], "What's the pay?");
    assert_eq!(body["tools"][0]["function"]["name"], "record_answer");
}

#[tokio::test]
async fn chat_rejects_malformed_and_truncated_streams() {
    let fake = FakeOpenAi::start(&[]).await;
    let client = chat_client(&fake);
    let request = ChatRequest {
        messages: vec![ChatMessage::user("hi")],
        ..ChatRequest::default()
    };
    fake.chat_body("data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: {not json\n\n");
    let err = client.complete(&request).await.unwrap_err();
    assert!(err.to_string().contains("malformed"), "{err}");
    // the connection ends before [DONE] and before any finish_reason
    fake.chat_body("data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n");
    assert!(matches!(
        client.complete(&request).await,
        Err(BackendError::Unavailable(_))
    ));
    // an error event mid-stream
    fake.chat_body("data: {\"error\":{\"message\":\"overloaded\"}}\n\n");
    let err = client.complete(&request).await.unwrap_err();
    assert!(err.to_string().contains("overloaded"), "{err}");
    // a complete answer without a trailing newline
    fake.chat_body("data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]");
    assert_eq!(client.complete(&request).await.unwrap().text, "Hi");
}

// ---- ElevenLabs ----

#[tokio::test]
async fn elevenlabs_streams_ulaw_in_the_input_streaming_protocol() {
    let fake = FakeElevenLabs::start().await;
    let tts =
        ElevenLabsTts::new(ElevenLabsConfig::new(&fake.url, Secret::new(&fake.api_key))).unwrap();
    let speech = tts
        .synthesize("Hello there, caller.", "EXAVITQu4vr4xnSDxMaL")
        .await
        .unwrap();
    assert_eq!(speech.sample_rate, 8_000);
    // exactly the fake's µ-law audio, decoded (several base64 chunks joined in order)
    let pcm = tone(20 * 60, 8_000);
    let mut ulaw = vec![0u8; pcm.len()];
    g711::encode_into(&pcm, &mut ulaw);
    let mut expected = vec![0i16; ulaw.len()];
    g711::decode_into(&ulaw, &mut expected);
    assert_eq!(speech.pcm, expected);

    let streams = fake.streams();
    assert_eq!(streams.len(), 1);
    let s = &streams[0];
    assert_eq!(s.voice_id, "EXAVITQu4vr4xnSDxMaL");
    assert_eq!(s.api_key.as_deref(), Some(fake.api_key.as_str()));
    assert_eq!(
        s.query.get("model_id").map(String::as_str),
        Some(elevenlabs::DEFAULT_MODEL)
    );
    assert_eq!(
        s.query.get("output_format").map(String::as_str),
        Some("ulaw_8000")
    );
    assert_eq!(s.messages.len(), 3, "{:?}", s.messages);
    assert_eq!(s.messages[0]["text"], " ");
    assert!(s.messages[0]["voice_settings"].is_object());
    assert_eq!(s.messages[1]["text"], "Hello there, caller. ");
    assert_eq!(s.messages[1]["try_trigger_generation"], true);
    assert_eq!(s.messages[1]["flush"], true);
    assert_eq!(s.messages[2]["text"], "");

    // an offline voice name speaks with the default ElevenLabs voice
    tts.synthesize("Hi.", "slt").await.unwrap();
    assert_eq!(fake.streams()[1].voice_id, elevenlabs::DEFAULT_VOICE);
}

#[tokio::test]
async fn elevenlabs_failures_are_errors_and_fall_back() {
    let fake = FakeElevenLabs::start().await;
    let bad =
        ElevenLabsTts::new(ElevenLabsConfig::new(&fake.url, Secret::new("xi-wrong"))).unwrap();
    let err = bad.synthesize("Hi.", "slt").await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");

    fake.fail(true);
    let tts =
        ElevenLabsTts::new(ElevenLabsConfig::new(&fake.url, Secret::new(&fake.api_key))).unwrap();
    let err = tts.synthesize("Hi.", "slt").await.unwrap_err();
    assert!(err.to_string().contains("quota_exceeded"), "{err}");
    assert_eq!(fake.streams().len(), 1, "a reported error is not retried");

    let with_fallback = FallbackTts::new(
        "elevenlabs",
        Arc::new(tts),
        Arc::new(ScriptedTts::new()),
        Duration::from_secs(5),
        Duration::from_secs(60),
    );
    let speech = with_fallback.synthesize("Hi.", "slt").await.unwrap();
    assert!(speech.fallback && !speech.pcm.is_empty());
}

#[tokio::test]
async fn elevenlabs_hands_on_its_first_piece_while_the_rest_is_made() {
    use futures_util::StreamExt;
    let fake = FakeElevenLabs::start().await;
    fake.pace(Duration::from_millis(100));
    let tts =
        ElevenLabsTts::new(ElevenLabsConfig::new(&fake.url, Secret::new(&fake.api_key))).unwrap();
    // 40 characters: 2.4 s of audio, 12 messages of 1,600 bytes, the last 100 ms apart
    let text = "Thanks for calling about the open roles.";
    let mut pieces = tts.synthesize_stream(text, "slt");
    let first = pieces.next().await.unwrap().unwrap();
    assert_eq!(first.pcm.len(), 1_600);
    let sent = fake.audio_sent();
    assert!(
        sent < 12,
        "the first piece came after {sent} of 12 messages"
    );
    let mut all = first.pcm;
    while let Some(piece) = pieces.next().await {
        all.extend_from_slice(&piece.unwrap().pcm);
    }
    assert_eq!(all.len(), 40 * 60 * 8);

    // through the prompt cache: µ-law pieces as they come, the whole cached once complete
    let cache = PromptCache::new(Arc::new(tts));
    let mut pieces = cache.speak_stream("slt", text);
    let mut n = 0;
    let mut bytes = 0;
    while let Some(piece) = pieces.next().await {
        n += 1;
        bytes += piece.unwrap().len();
    }
    assert_eq!((n, bytes), (12, 40 * 60 * 8));
    assert_eq!(cache.get("slt", text).map(|a| a.len()), Some(bytes));
    let mut again = cache.speak_stream("slt", text);
    assert_eq!(
        again.next().await.unwrap().unwrap().len(),
        bytes,
        "one piece"
    );
    assert_eq!(fake.streams().len(), 2, "the cached prompt asks nobody");
}

/// ElevenLabs on `fake`, falling back to the scripted voice past `budget`, with no cool-down
/// for other calls (only the call it failed in stays offline).
fn elevenlabs_with_fallback(fake: &FakeElevenLabs, budget: Duration) -> FallbackTts {
    let primary =
        ElevenLabsTts::new(ElevenLabsConfig::new(&fake.url, Secret::new(&fake.api_key))).unwrap();
    FallbackTts::new(
        "elevenlabs",
        Arc::new(primary),
        Arc::new(ScriptedTts::new()),
        budget,
        Duration::ZERO,
    )
}

#[tokio::test]
async fn a_voice_slow_to_start_is_replaced_by_the_offline_one_for_that_line_and_call() {
    use futures_util::StreamExt;
    let fake = FakeElevenLabs::start().await;
    fake.first_delay(Duration::from_secs(3));
    let shared = elevenlabs_with_fallback(&fake, Duration::from_millis(300));
    let call = shared.for_call().unwrap();
    let mut pieces = call.synthesize_stream("Which city or area do you live in?", "slt");
    let speech = pieces.next().await.unwrap().unwrap();
    assert!(speech.fallback, "the offline voice said it");
    assert_eq!(
        fake.audio_sent(),
        0,
        "without waiting for the slow provider"
    );
    assert!(pieces.next().await.is_none());
    // the rest of the call does not wait for it again
    assert!(call.synthesize("Goodbye.", "slt").await.unwrap().fallback);
    assert_eq!(fake.streams().len(), 1);
}

#[tokio::test]
async fn a_speech_stream_dropped_midway_keeps_its_start_and_the_call_stays_offline() {
    use futures_util::StreamExt;
    let fake = FakeElevenLabs::start().await;
    fake.drop_after(Some(2));
    // no cool-down for other calls: only the call it failed in stays offline
    let shared = elevenlabs_with_fallback(&fake, Duration::from_secs(5));
    let call = shared.for_call().expect("a call of its own");
    let mut pieces = call.synthesize_stream("Thanks for calling about the open roles.", "slt");
    let mut came = Vec::new();
    while let Some(piece) = pieces.next().await {
        came.push(piece.map(|p| (p.pcm.len(), p.fallback)));
    }
    assert_eq!(came.len(), 3, "{came:?}");
    assert_eq!(came[0].as_ref().unwrap(), &(1_600, false));
    assert_eq!(came[1].as_ref().unwrap(), &(1_600, false));
    assert!(
        came[2].is_err(),
        "then the break, not a repeat of the start"
    );
    assert_eq!(fake.streams().len(), 1, "no retry after audio came");

    // the rest of that call speaks offline, at once, without asking the provider again
    fake.drop_after(None);
    let mut next = call.synthesize_stream("Which city or area do you live in?", "slt");
    let speech = next.next().await.unwrap().unwrap();
    assert!(speech.fallback);
    assert!(next.next().await.is_none());
    assert!(call.synthesize("Goodbye.", "slt").await.unwrap().fallback);
    assert_eq!(fake.streams().len(), 1);
    // another call (and the shared synthesiser) still uses the provider
    let other = shared.for_call().unwrap();
    let speech = other.synthesize("Hello.", "slt").await.unwrap();
    assert!(!speech.fallback);
    assert_eq!(fake.streams().len(), 2);
}

#[tokio::test]
async fn the_model_translates_what_the_agent_says_and_changed_numbers_are_not_trusted() {
    use super::llm::{LanguageModel, Translations, checked_translation};
    use crate::testing::providers::sse_text;
    let fake = FakeOpenAi::start(&[]).await;
    fake.chat_responder(|body| {
        let system = body["messages"][0]["content"].as_str().unwrap_or("");
        assert!(system.contains("into Spanish"), "{system}");
        assert!(body.get("tools").is_none() || body["tools"].as_array().is_some_and(Vec::is_empty));
        match body["messages"][1]["content"].as_str().unwrap_or("") {
            "The pay is $18 per hour." => sse_text(&["El pago es de ", "$18 por hora."]),
            // a model that changes the amount
            "Shifts start at 6 am." => sse_text(&["Los turnos empiezan a las 7."]),
            other => panic!("unexpected {other}"),
        }
    });
    let llm = LanguageModel::new(chat_client(&fake));
    let translations = Translations::default();
    let said = translations
        .get_or_translate(&llm, "Chloe", "The pay is $18 per hour.", "es", "call-s1")
        .await;
    assert_eq!(said, "El pago es de $18 por hora.");
    // kept: the same line in the same language asks nobody
    let again = translations
        .get_or_translate(&llm, "Chloe", "The pay is $18 per hour.", "es", "call-s2")
        .await;
    assert_eq!(again, said);
    assert_eq!(fake.requests_to("/chat/completions").len(), 1);
    // a translation that changed a number is not said: the English is
    let said = translations
        .get_or_translate(&llm, "Chloe", "Shifts start at 6 am.", "es", "call-s3")
        .await;
    assert_eq!(said, "Shifts start at 6 am.");
    assert_eq!(translations.len(), 1, "nor kept");
    // the checks on their own
    assert!(checked_translation("Call 555 0100.", "Llame al 555 0100.").is_ok());
    assert!(checked_translation("Call 555 0100.", "Llame.").is_err());
    assert!(checked_translation("Hi.", "").is_err());
    assert!(checked_translation("Hi.", &"hola ".repeat(100)).is_err());
}

// ---- the language model in the dialogue (llm.rs) ---------------------------------------------

fn understand_request(utterance: &str) -> crate::engine::dialogue::model::UnderstandRequest {
    use crate::engine::dialogue::model::{UnderstandRequest, Wanted};
    UnderstandRequest {
        utterance: utterance.into(),
        asked: "May I have your first and last name?".into(),
        wanted: vec![
            Wanted::Name,
            Wanted::Answer {
                index: 0,
                question: "Are you at least 18?".into(),
                kind: crate::model::QuestionKind::YesNo,
            },
        ],
    }
}

#[tokio::test]
async fn the_model_reads_the_callers_words_through_a_forced_tool_call() {
    use super::llm::{LanguageModel, RECORD_TURN};
    use crate::testing::providers::sse_tool_call;
    let fake = FakeOpenAi::start(&[]).await;
    fake.chat_responder(|body| {
        assert_eq!(body["tool_choice"]["function"]["name"], RECORD_TURN);
        assert_eq!(body["tools"][0]["function"]["name"], RECORD_TURN);
        assert_eq!(body["stream"], true);
        let said = body["messages"][1]["content"].as_str().unwrap();
        assert_eq!(said, "maria lopez and yes i'm 20");
        sse_tool_call(
            RECORD_TURN,
            r#"{"name": "Maria Lopez", "answers": [{"question": 0, "answer": "yes"}], "caller_question": null}"#,
        )
    });
    fake.fail_next(&[503]);
    let llm = LanguageModel::new(chat_client(&fake));
    let settings = crate::testing::sample_settings();
    let read = |said: &'static str| {
        let (llm, settings) = (&llm, &settings);
        async move {
            llm.understand(settings, &understand_request(said), "call-1-c1")
                .await
        }
    };
    let u = read("maria lopez and yes i'm 20").await.unwrap();
    assert_eq!(u.name.as_deref(), Some("Maria Lopez"));
    assert_eq!(u.answers, vec![(0, "yes".to_string())]);
    assert_eq!(
        fake.requests_to("/chat/completions").len(),
        2,
        "one retry after 503"
    );
    assert!(
        fake.requests_to("/chat/completions")
            .iter()
            .all(|r| r.request_id.as_deref() == Some("call-1-c1"))
    );

    // a model that answers outside the schema: an error, never a half-read turn
    fake.chat_responder(|_| sse_tool_call(RECORD_TURN, r#"{"answers": "yes"}"#));
    assert!(read("maria lopez and yes i'm 20").await.is_err());
    // a server without tool calls that writes the JSON as text is still read
    fake.chat_responder(|_| {
        crate::testing::providers::sse_text(&["Sure: {\"name\": ", "\"Maria Lopez\"}"])
    });
    let u = read("maria lopez and yes i'm 20").await.unwrap();
    assert_eq!(u.name.as_deref(), Some("Maria Lopez"));
    // plain text with no JSON at all, and a 401: errors
    fake.chat_responder(|_| crate::testing::providers::sse_text(&["Hello!"]));
    assert!(read("hi").await.is_err());
    fake.fail_always(401);
    assert!(read("hi").await.is_err());
}

#[tokio::test]
async fn the_models_answer_streams_in_pieces() {
    use super::llm::LanguageModel;
    use crate::engine::dialogue::model::AnswerRequest;
    let fake = FakeOpenAi::start(&[]).await;
    fake.chat_responder(|body| {
        assert!(body.get("tools").is_none());
        let system = body["messages"][0]["content"].as_str().unwrap();
        assert!(system.contains("Pay is $18 per hour."), "{system}");
        crate::testing::providers::sse_text(&["Pay is ", "$18 per hour.", " Shifts start at 6 am."])
    });
    let llm = LanguageModel::new(chat_client(&fake));
    let settings = crate::testing::sample_settings();
    let mut stream = llm
        .answer(
            &settings,
            &AnswerRequest {
                question: "what's the pay".into(),
                location: None,
                enforce_job_location_match: false,
            },
            "call-1-c2",
        )
        .await
        .unwrap();
    let mut pieces = Vec::new();
    while let Some(p) = stream.next_text().await.unwrap() {
        pieces.push(p);
    }
    assert_eq!(
        pieces,
        ["Pay is ", "$18 per hour.", " Shifts start at 6 am."]
    );
}
