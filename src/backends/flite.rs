//! Offline text-to-speech with flite 2.2 (Debian `flite1-dev`), through a minimal FFI.
//!
//! flite keeps global state (its language and lexicon tables, and each voice is a process-wide
//! singleton that synthesis mutates), so every call into it holds one process-wide lock, on a
//! blocking thread. A sentence takes a few tens of milliseconds.

use std::ffi::{CString, c_char, c_int};
use std::sync::{Arc, Mutex, OnceLock};

use super::{BackendError, BoxFuture, Speech, TextToSpeech};

/// Longest text synthesised, in characters; longer text is cut at a word boundary.
pub const MAX_TTS_CHARS: usize = 1000;

#[allow(non_camel_case_types)]
#[repr(C)]
struct cst_voice {
    _private: [u8; 0],
}

/// `cst_wave` from `flite/cst_wave.h` (flite 2.2).
#[allow(non_camel_case_types)]
#[repr(C)]
struct cst_wave {
    kind: *const c_char,
    sample_rate: c_int,
    num_samples: c_int,
    num_channels: c_int,
    samples: *mut i16,
}

unsafe extern "C" {
    fn flite_init() -> c_int;
    fn flite_text_to_wave(text: *const c_char, voice: *mut cst_voice) -> *mut cst_wave;
    fn delete_wave(wave: *mut cst_wave);
    fn register_cmu_us_slt(voxdir: *const c_char) -> *mut cst_voice;
    fn register_cmu_us_kal16(voxdir: *const c_char) -> *mut cst_voice;
    fn register_cmu_us_kal(voxdir: *const c_char) -> *mut cst_voice;
    fn register_cmu_us_rms(voxdir: *const c_char) -> *mut cst_voice;
    fn register_cmu_us_awb(voxdir: *const c_char) -> *mut cst_voice;
}

/// The voices, by name; the first is the default. Registration functions take an (unused for
/// compiled-in voices) voice directory.
const VOICES: [(&str, unsafe extern "C" fn(*const c_char) -> *mut cst_voice); 5] = [
    ("slt", register_cmu_us_slt),
    ("kal16", register_cmu_us_kal16),
    ("rms", register_cmu_us_rms),
    ("awb", register_cmu_us_awb),
    ("kal", register_cmu_us_kal),
];

/// The registered voices. Only touched while holding the [`Flite`] mutex.
struct Flite {
    voices: Vec<(&'static str, *mut cst_voice)>,
}

// SAFETY: the voice pointers are process-wide singletons owned by flite and never freed; they are
// only used while holding the mutex around `Flite`, so at most one thread uses flite at a time.
unsafe impl Send for Flite {}

static FLITE: OnceLock<Result<Arc<Mutex<Flite>>, BackendError>> = OnceLock::new();

fn flite() -> Result<Arc<Mutex<Flite>>, BackendError> {
    FLITE
        .get_or_init(|| {
            // SAFETY: called once (OnceLock), before any other flite call.
            unsafe { flite_init() };
            let mut voices = Vec::new();
            for (name, register) in VOICES {
                // SAFETY: the register functions accept a NULL voice directory for built-in voices.
                let voice = unsafe { register(std::ptr::null()) };
                if voice.is_null() {
                    tracing::warn!(voice = name, "flite voice failed to register");
                } else {
                    voices.push((name, voice));
                }
            }
            if voices.is_empty() {
                return Err(BackendError::Unavailable(
                    "flite: no voice registered".into(),
                ));
            }
            Ok(Arc::new(Mutex::new(Flite { voices })))
        })
        .clone()
}

impl Flite {
    fn voice(&self, name: &str) -> *mut cst_voice {
        let name = name.trim().to_ascii_lowercase();
        let name = name.strip_prefix("cmu_us_").unwrap_or(&name);
        self.voices
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or(&self.voices[0]) // invariant: `flite()` never builds an empty list
            .1
    }

    fn synthesize(&self, text: &CString, voice: &str) -> Result<Speech, BackendError> {
        let voice = self.voice(voice);
        // SAFETY: `text` is a NUL-terminated string, `voice` a registered voice; `&self` is only
        // reachable through the mutex, so no other thread is inside flite.
        let wave = unsafe { flite_text_to_wave(text.as_ptr(), voice) };
        if wave.is_null() {
            return Err(BackendError::Failed("flite returned no audio".into()));
        }
        // SAFETY: `wave` is a valid cst_wave owned by us until `delete_wave`.
        let speech = unsafe {
            let w = &*wave;
            let channels = w.num_channels.max(1) as usize;
            let n = w.num_samples.max(0) as usize * channels;
            let pcm = if w.samples.is_null() || n == 0 {
                Vec::new()
            } else {
                let all = std::slice::from_raw_parts(w.samples, n);
                // Mono in practice; take the first channel otherwise.
                all.iter().step_by(channels).copied().collect()
            };
            Speech {
                pcm,
                sample_rate: w.sample_rate.max(0) as u32,
                fallback: false,
            }
        };
        // SAFETY: frees the wave returned above exactly once.
        unsafe { delete_wave(wave) };
        if speech.sample_rate == 0 {
            return Err(BackendError::Failed(
                "flite returned a zero sample rate".into(),
            ));
        }
        Ok(speech)
    }
}

/// flite text-to-speech. Cheap to clone; all clones share one engine.
#[derive(Clone)]
pub struct FliteTts {
    flite: Arc<Mutex<Flite>>,
    names: Arc<[String]>,
}

impl std::fmt::Debug for FliteTts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FliteTts")
            .field("voices", &self.names)
            .finish()
    }
}

impl FliteTts {
    /// Initialises flite and registers its voices (once per process).
    pub fn new() -> Result<Self, BackendError> {
        let flite = flite()?;
        let names = flite
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .voices
            .iter()
            .map(|(n, _)| n.to_string())
            .collect();
        Ok(Self { flite, names })
    }

    /// Synthesise on the current thread (blocks for tens of milliseconds).
    pub fn synthesize_blocking(&self, text: &str, voice: &str) -> Result<Speech, BackendError> {
        let text = sanitize(text);
        if text.is_empty() {
            return Ok(Speech {
                pcm: Vec::new(),
                sample_rate: 16_000,
                fallback: false,
            });
        }
        let text = CString::new(text).map_err(|_| BackendError::Failed("NUL in text".into()))?;
        // A panic while holding the lock cannot leave flite half-updated from Rust's side (the
        // lock only guards FFI calls), so a poisoned lock is still usable.
        let flite = self.flite.lock().unwrap_or_else(|e| e.into_inner());
        flite.synthesize(&text, voice)
    }
}

impl TextToSpeech for FliteTts {
    fn synthesize(
        &self,
        text: &str,
        voice: &str,
    ) -> BoxFuture<'static, Result<Speech, BackendError>> {
        let this = self.clone();
        let text = text.to_owned();
        let voice = voice.to_owned();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || this.synthesize_blocking(&text, &voice))
                .await
                .map_err(|e| BackendError::Failed(format!("flite task: {e}")))?
        })
    }

    fn voices(&self) -> Vec<String> {
        self.names.to_vec()
    }
}

/// Printable ASCII only (flite's English front end expects it): common typographic characters are
/// mapped to ASCII, accents stripped from Latin letters, control characters become spaces, other
/// characters are dropped; whitespace is collapsed and the text capped at [`MAX_TTS_CHARS`].
pub(crate) fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_TTS_CHARS + 8));
    let mut last_space = true;
    for c in text.chars() {
        let mapped: &str = match c {
            ' '..='~' => {
                let mut buf = [0u8; 4];
                let s = c.encode_utf8(&mut buf);
                push_collapsed(&mut out, s, &mut last_space);
                if out.len() >= MAX_TTS_CHARS {
                    break;
                }
                continue;
            }
            c if c.is_whitespace() || c.is_control() => " ",
            '\u{2018}' | '\u{2019}' | '\u{02BC}' => "'",
            '\u{201C}' | '\u{201D}' | '\u{00AB}' | '\u{00BB}' => "\"",
            '\u{2010}'..='\u{2015}' => "-",
            '\u{2026}' => "...",
            '\u{00E0}'..='\u{00E5}' => "a",
            '\u{00C0}'..='\u{00C5}' => "A",
            '\u{00E8}'..='\u{00EB}' => "e",
            '\u{00C8}'..='\u{00CB}' => "E",
            '\u{00EC}'..='\u{00EF}' => "i",
            '\u{00CC}'..='\u{00CF}' => "I",
            '\u{00F2}'..='\u{00F6}' | '\u{00F8}' => "o",
            '\u{00D2}'..='\u{00D6}' | '\u{00D8}' => "O",
            '\u{00F9}'..='\u{00FC}' => "u",
            '\u{00D9}'..='\u{00DC}' => "U",
            '\u{00E7}' => "c",
            '\u{00C7}' => "C",
            '\u{00F1}' => "n",
            '\u{00D1}' => "N",
            '\u{00DF}' => "ss",
            _ => "",
        };
        push_collapsed(&mut out, mapped, &mut last_space);
        if out.len() >= MAX_TTS_CHARS {
            break;
        }
    }
    if out.len() > MAX_TTS_CHARS {
        out.truncate(MAX_TTS_CHARS); // ASCII only, so any index is a char boundary
        if let Some(i) = out.rfind(' ').filter(|&i| i > MAX_TTS_CHARS / 2) {
            out.truncate(i);
        }
    }
    out.trim_end().to_owned()
}

fn push_collapsed(out: &mut String, s: &str, last_space: &mut bool) {
    for c in s.chars() {
        if c == ' ' {
            if !*last_space {
                out.push(' ');
                *last_space = true;
            }
        } else {
            out.push(c);
            *last_space = false;
        }
    }
}
