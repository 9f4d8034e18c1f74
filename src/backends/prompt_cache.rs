//! µ-law 8 kHz audio of fixed prompts, synthesised ahead of time so the greeting plays at once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;

use super::{BackendError, TextToSpeech};
use crate::engine::audio::{g711, resample};

/// At most this many prompts are kept.
pub const PROMPT_CACHE_MAX_ENTRIES: usize = 2_000;
/// At most this many bytes of audio (about 2.2 hours at 8 kB/s) are kept.
pub const PROMPT_CACHE_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Prompts synthesised at once by [`PromptCache::warm`].
const WARM_CONCURRENCY: usize = 2;

/// µ-law 8 kHz audio of fixed prompts, keyed by (voice, text). Cheap to clone (clones share the
/// cache), thread-safe, bounded by [`PROMPT_CACHE_MAX_ENTRIES`] and [`PROMPT_CACHE_MAX_BYTES`]:
/// the oldest insertions are evicted first.
#[derive(Clone)]
pub struct PromptCache {
    tts: Arc<dyn TextToSpeech>,
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<String, Arc<[u8]>>,
    order: VecDeque<String>,
    bytes: usize,
}

impl std::fmt::Debug for PromptCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("PromptCache")
            .field("entries", &inner.map.len())
            .field("bytes", &inner.bytes)
            .finish()
    }
}

/// A synthesiser's stream on its way to 8 kHz µ-law (see [`PromptCache::speak_stream`]).
struct Streamed {
    pieces: super::SpeechStream,
    /// What to cache once complete; `None` once it must not be (fallback audio, an error, too
    /// long).
    whole: Option<Vec<u8>>,
    /// Pieces at another rate go through one resampler, so the joins are clean.
    resampler: Option<(u32, resample::StreamResampler)>,
    cache: PromptCache,
    key: String,
    done: bool,
}

impl Streamed {
    async fn next(&mut self) -> Option<Result<Arc<[u8]>, BackendError>> {
        loop {
            if self.done {
                return None;
            }
            let pcm8k = match self.pieces.next().await {
                Some(Ok(speech)) => {
                    if speech.fallback {
                        self.whole = None;
                    }
                    if speech.sample_rate == 8_000 && self.resampler.is_none() {
                        speech.pcm
                    } else {
                        let (rate, r) = self.resampler.get_or_insert_with(|| {
                            (
                                speech.sample_rate,
                                resample::StreamResampler::new(speech.sample_rate, 8_000),
                            )
                        });
                        if *rate != speech.sample_rate {
                            // a rate change mid-stream: resample this piece on its own
                            resample(&speech.pcm, speech.sample_rate, 8_000)
                        } else {
                            r.push(&speech.pcm)
                        }
                    }
                }
                Some(Err(e)) => {
                    self.done = true;
                    self.whole = None;
                    return Some(Err(e));
                }
                None => {
                    self.done = true;
                    let tail = match self.resampler.take() {
                        Some((_, r)) => r.finish(),
                        None => Vec::new(),
                    };
                    let ulaw = encode(&tail);
                    if let Some(mut w) = self.whole.take() {
                        w.extend_from_slice(&ulaw);
                        if !w.is_empty() && w.len() <= PROMPT_CACHE_MAX_BYTES {
                            self.cache.insert(self.key.clone(), w.into());
                        }
                    }
                    return (!ulaw.is_empty()).then(|| Ok(ulaw.into()));
                }
            };
            let ulaw = encode(&pcm8k);
            if let Some(w) = &mut self.whole {
                if w.len() + ulaw.len() > PROMPT_CACHE_MAX_BYTES {
                    self.whole = None;
                } else {
                    w.extend_from_slice(&ulaw);
                }
            }
            if !ulaw.is_empty() {
                return Some(Ok(ulaw.into()));
            }
            // the resampler held it all back: wait for more
        }
    }
}

/// 8 kHz PCM as µ-law.
fn encode(pcm8k: &[i16]) -> Vec<u8> {
    let mut ulaw = vec![0u8; pcm8k.len()];
    g711::encode_into(pcm8k, &mut ulaw);
    ulaw
}

/// `speech` as 8 kHz µ-law.
fn to_mulaw(speech: super::Speech) -> Vec<u8> {
    let pcm8k = if speech.sample_rate == 8_000 {
        speech.pcm
    } else {
        resample(&speech.pcm, speech.sample_rate, 8_000)
    };
    encode(&pcm8k)
}

/// Unambiguous key for (voice, text).
fn key(voice: &str, text: &str) -> String {
    format!("{}:{voice}{text}", voice.len())
}

impl PromptCache {
    pub fn new(tts: Arc<dyn TextToSpeech>) -> Self {
        Self {
            tts,
            inner: Arc::new(Mutex::new(Inner::default())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map stays consistent across a panic elsewhere: every update is done in one place.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cache as one call uses it: the same prompts, synthesised by the call's own
    /// [`TextToSpeech::for_call`].
    pub fn for_call(&self) -> Self {
        Self {
            tts: self.tts.for_call().unwrap_or_else(|| self.tts.clone()),
            inner: self.inner.clone(),
        }
    }

    /// Its synthesiser speaks other languages than English (see
    /// [`TextToSpeech::speaks_languages`]).
    pub fn speaks_languages(&self) -> bool {
        self.tts.speaks_languages()
    }

    pub fn get(&self, voice: &str, text: &str) -> Option<Arc<[u8]>> {
        self.lock().map.get(&key(voice, text)).cloned()
    }

    /// Number of cached prompts.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Cache hit → returns at once; miss → synthesize, convert to 8 kHz µ-law, insert, return.
    pub async fn speak(&self, voice: &str, text: &str) -> Result<Arc<[u8]>, BackendError> {
        if let Some(hit) = self.get(voice, text) {
            return Ok(hit);
        }
        let speech = self.tts.synthesize(text, voice).await?;
        let fallback = speech.fallback;
        let audio: Arc<[u8]> = to_mulaw(speech).into();
        if fallback {
            // the chosen backend failed: play this once, ask the chosen one again next time
            return Ok(audio);
        }
        Ok(self.insert(key(voice, text), audio))
    }

    /// [`speak`](Self::speak) piece by piece: a cached prompt is one piece; otherwise the
    /// synthesiser's pieces as they come ([`TextToSpeech::synthesize_stream`]), in 8 kHz µ-law,
    /// and the whole is cached once it is complete.
    pub fn speak_stream(
        &self,
        voice: &str,
        text: &str,
    ) -> futures_util::stream::BoxStream<'static, Result<Arc<[u8]>, BackendError>> {
        if let Some(hit) = self.get(voice, text) {
            return Box::pin(futures_util::stream::once(async move { Ok(hit) }));
        }
        let state = Streamed {
            pieces: self.tts.synthesize_stream(text, voice),
            whole: Some(Vec::new()),
            resampler: None,
            cache: self.clone(),
            key: key(voice, text),
            done: false,
        };
        Box::pin(futures_util::stream::unfold(state, |mut s| async move {
            let item = s.next().await?;
            Some((item, s))
        }))
    }

    /// Inserts unless another task got there first; returns the cached value either way, so
    /// every caller of a prompt shares one allocation.
    fn insert(&self, key: String, audio: Arc<[u8]>) -> Arc<[u8]> {
        let mut inner = self.lock();
        if let Some(existing) = inner.map.get(&key) {
            return existing.clone();
        }
        if audio.len() > PROMPT_CACHE_MAX_BYTES {
            return audio; // too big to keep; still usable once
        }
        while inner.map.len() >= PROMPT_CACHE_MAX_ENTRIES
            || inner.bytes + audio.len() > PROMPT_CACHE_MAX_BYTES
        {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some(evicted) = inner.map.remove(&oldest) {
                inner.bytes -= evicted.len();
            }
        }
        inner.bytes += audio.len();
        inner.order.push_back(key.clone());
        inner.map.insert(key, audio.clone());
        audio
    }

    /// Synthesize many prompts concurrently-but-bounded ahead of time; errors are logged, not
    /// returned. It is background work ([`super::lease::in_background`]): a live call's
    /// synthesis never waits for an engine behind it.
    pub async fn warm(&self, voice: &str, texts: &[String]) {
        super::lease::in_background(self.warm_now(voice, texts)).await
    }

    async fn warm_now(&self, voice: &str, texts: &[String]) {
        let mut seen = std::collections::HashSet::new();
        // Owned values only: the future must stay `Send` for any caller's lifetimes.
        let todo: Vec<String> = texts
            .iter()
            .filter(|t| seen.insert(t.as_str()) && self.get(voice, t).is_none())
            .cloned()
            .collect();
        let jobs = todo.into_iter().map(|text| {
            let cache = self.clone();
            let voice = voice.to_owned();
            async move { cache.speak(&voice, &text).await.err() }
        });
        let mut results = futures_util::stream::iter(jobs).buffer_unordered(WARM_CONCURRENCY);
        let mut failures = 0usize;
        while let Some(result) = results.next().await {
            if let Some(err) = result {
                failures += 1;
                tracing::warn!(voice, error = %err, "prompt synthesis failed while warming the cache");
            }
        }
        if failures > 0 {
            tracing::warn!(voice, failures, "some prompts were not cached");
        }
    }
}
