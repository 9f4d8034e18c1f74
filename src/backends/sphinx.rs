//! Offline speech-to-text with PocketSphinx 5prealpha (Debian `libpocketsphinx-dev`) and its US
//! English model (Debian `pocketsphinx-en-us`), through a minimal FFI.
//!
//! The `pocketsphinx` crate (0.6) binds an older API: its `ps_start_utt` and `ps_get_hyp` take an
//! extra argument that Debian's library does not, its `cmd_ln_*` functions live in SphinxBase which
//! it does not link, and its decoder asserts instead of returning errors. Hence the few lines here.
//!
//! Models are loaded once, into a pool of decoders (one per core, about 100 MB each). A session
//! only buffers audio; `finish` borrows a decoder from the pool and decodes the whole utterance on
//! a blocking thread (real-time factor about 0.3).

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};

use super::lease::LeasePool;
use super::{BackendError, BoxFuture, SpeechToText, SttHint, SttSession, UtteranceBuffer};

#[allow(non_camel_case_types)]
#[repr(C)]
struct cmd_ln_t {
    _private: [u8; 0],
}
#[allow(non_camel_case_types)]
#[repr(C)]
struct ps_decoder_t {
    _private: [u8; 0],
}
#[allow(non_camel_case_types)]
#[repr(C)]
struct arg_t {
    _private: [u8; 0],
}

// Signatures from pocketsphinx/pocketsphinx.h and sphinxbase/{cmd_ln,err}.h, 5prealpha.
unsafe extern "C" {
    fn ps_args() -> *const arg_t;
    fn cmd_ln_parse_r(
        inout_cmdln: *mut cmd_ln_t,
        defn: *const arg_t,
        argc: i32,
        argv: *mut *mut c_char,
        strict: i32,
    ) -> *mut cmd_ln_t;
    fn cmd_ln_free_r(cmdln: *mut cmd_ln_t) -> c_int;
    fn ps_init(config: *mut cmd_ln_t) -> *mut ps_decoder_t;
    fn ps_free(ps: *mut ps_decoder_t) -> c_int;
    fn ps_start_utt(ps: *mut ps_decoder_t) -> c_int;
    fn ps_process_raw(
        ps: *mut ps_decoder_t,
        data: *const i16,
        n_samples: usize,
        no_search: c_int,
        full_utt: c_int,
    ) -> c_int;
    fn ps_end_utt(ps: *mut ps_decoder_t) -> c_int;
    fn ps_get_hyp(ps: *mut ps_decoder_t, out_best_score: *mut i32) -> *const c_char;
    fn err_set_logfp(stream: *mut c_void);
}

/// Where Debian's `pocketsphinx-en-us` puts the model.
pub const DEBIAN_MODEL_DIR: &str = "/usr/share/pocketsphinx/model/en-us";

/// When to fill the empty 4-8 kHz band of upsampled telephone audio with quiet noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HighBandFill {
    /// When the band holds less than [`HIGH_BAND_EMPTY_RATIO`] of the utterance's energy.
    Auto,
    Always,
    Never,
}

/// Below this share of the energy above 4 kHz, 16 kHz audio is treated as upsampled narrowband.
pub const HIGH_BAND_EMPTY_RATIO: f64 = 1e-5;

/// PocketSphinx settings.
#[derive(Debug, Clone)]
pub struct SphinxConfig {
    /// Acoustic model directory (`-hmm`).
    pub hmm: PathBuf,
    /// Language model (`-lm`).
    pub lm: PathBuf,
    /// Pronunciation dictionary (`-dict`).
    pub dict: PathBuf,
    /// Decoders kept loaded; at most this many utterances are decoded at once.
    pub pool_size: usize,
    pub high_band_fill: HighBandFill,
    /// RMS level of the filler noise, in dBFS.
    pub high_band_fill_dbfs: f64,
    /// Further PocketSphinx options, e.g. `("-remove_noise", "no")`.
    pub extra_args: Vec<(String, String)>,
}

impl Default for SphinxConfig {
    /// Debian's en-us model (or the directory in `RECEPTIONIST_SPHINX_MODEL_DIR`, laid out the same
    /// way), one decoder per core.
    fn default() -> Self {
        let dir = std::env::var_os("RECEPTIONIST_SPHINX_MODEL_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEBIAN_MODEL_DIR));
        Self {
            hmm: dir.join("en-us"),
            lm: dir.join("en-us.lm.bin"),
            dict: dir.join("cmudict-en-us.dict"),
            pool_size: std::thread::available_parallelism().map_or(2, |n| n.get()),
            high_band_fill: HighBandFill::Auto,
            high_band_fill_dbfs: -30.0,
            extra_args: Vec::new(),
        }
    }
}

/// One PocketSphinx decoder.
struct Decoder {
    raw: *mut ps_decoder_t,
}

// SAFETY: a decoder has no thread affinity; it is owned by one `Decoder` and used by one thread at a
// time (it moves between the pool and a single blocking task).
unsafe impl Send for Decoder {}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: `raw` came from `ps_init` and is freed once.
        unsafe { ps_free(self.raw) };
    }
}

fn silence_sphinx_logging() {
    static ONCE: Once = Once::new();
    // SAFETY: NULL disables SphinxBase's logging; set before any decoder exists.
    ONCE.call_once(|| unsafe { err_set_logfp(std::ptr::null_mut()) });
}

fn path_arg(p: &Path, what: &str) -> Result<CString, BackendError> {
    if !p.exists() {
        // Checked here because a missing model file makes SphinxBase call exit().
        return Err(BackendError::Unavailable(format!(
            "pocketsphinx {what} not found at {} (Debian package pocketsphinx-en-us)",
            p.display()
        )));
    }
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| BackendError::Unavailable(format!("pocketsphinx {what}: NUL in path")))
}

impl Decoder {
    fn load(config: &SphinxConfig) -> Result<Self, BackendError> {
        silence_sphinx_logging();
        let mut args = vec![
            CString::new("-hmm").expect("no NUL"),
            path_arg(&config.hmm, "acoustic model")?,
            CString::new("-lm").expect("no NUL"),
            path_arg(&config.lm, "language model")?,
            CString::new("-dict").expect("no NUL"),
            path_arg(&config.dict, "dictionary")?,
        ];
        for (name, value) in &config.extra_args {
            for arg in [name, value] {
                args.push(CString::new(arg.as_str()).map_err(|_| {
                    BackendError::Unavailable(format!("pocketsphinx option {name}: NUL"))
                })?);
            }
        }
        let mut argv: Vec<*mut c_char> = args.iter().map(|a| a.as_ptr().cast_mut()).collect();
        // SAFETY: argv holds valid NUL-terminated strings that outlive the call (SphinxBase copies
        // them); it is not modified by the parser.
        let cmdln = unsafe {
            cmd_ln_parse_r(
                std::ptr::null_mut(),
                ps_args(),
                argv.len() as i32,
                argv.as_mut_ptr(),
                1,
            )
        };
        if cmdln.is_null() {
            return Err(BackendError::Unavailable(
                "pocketsphinx: bad configuration".into(),
            ));
        }
        // SAFETY: `cmdln` is a valid configuration; ps_init takes its own reference to it.
        let raw = unsafe { ps_init(cmdln) };
        // SAFETY: releases our reference (the decoder keeps its own).
        unsafe { cmd_ln_free_r(cmdln) };
        drop(args);
        if raw.is_null() {
            return Err(BackendError::Unavailable(
                "pocketsphinx: decoder failed to load".into(),
            ));
        }
        let mut decoder = Self { raw };
        // PocketSphinx's front end adapts (noise and silence statistics) from one utterance to
        // the next, and a fresh decoder starts far from what telephone audio looks like: its
        // first utterance came out worse ("yes" → "yeah and"). One second of the filler noise
        // brings it to the state later utterances see.
        let mut prime = vec![0i16; 16_000];
        fill_high_band(&mut prime, config.high_band_fill_dbfs);
        decoder.decode(&prime)?;
        Ok(decoder)
    }

    /// Decode one whole utterance of 16 kHz audio.
    fn decode(&mut self, pcm: &[i16]) -> Result<String, BackendError> {
        let fail = |what: &str| BackendError::Failed(format!("pocketsphinx: {what} failed"));
        // SAFETY: `self.raw` is a live decoder used only by this thread (`&mut self`); `pcm` is a
        // valid slice for the duration of the call.
        unsafe {
            if ps_start_utt(self.raw) < 0 {
                return Err(fail("start_utt"));
            }
            if ps_process_raw(self.raw, pcm.as_ptr(), pcm.len(), 0, 1) < 0 {
                ps_end_utt(self.raw);
                return Err(fail("process_raw"));
            }
            if ps_end_utt(self.raw) < 0 {
                return Err(fail("end_utt"));
            }
            let mut score = 0i32;
            let hyp = ps_get_hyp(self.raw, &mut score);
            if hyp.is_null() {
                return Ok(String::new());
            }
            // Copied before the decoder is touched again.
            Ok(super::normalize_transcript(
                &CStr::from_ptr(hyp).to_string_lossy(),
            ))
        }
    }
}

struct Pool {
    decoders: Arc<LeasePool<Decoder>>,
    high_band_fill: HighBandFill,
    high_band_fill_dbfs: f64,
}

/// PocketSphinx speech-to-text. Cheap to clone; clones share the decoder pool.
#[derive(Clone)]
pub struct SphinxStt {
    pool: Arc<Pool>,
}

impl std::fmt::Debug for SphinxStt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SphinxStt")
            .field("high_band_fill", &self.pool.high_band_fill)
            .finish()
    }
}

impl SphinxStt {
    /// Loads `config.pool_size` decoders (about 0.5 s and 100 MB each, done in parallel).
    pub fn new(config: SphinxConfig) -> Result<Self, BackendError> {
        let n = config.pool_size.max(1);
        silence_sphinx_logging();
        let decoders: Vec<Decoder> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..n).map(|_| s.spawn(|| Decoder::load(&config))).collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(BackendError::Unavailable(
                            "pocketsphinx load panicked".into(),
                        ))
                    })
                })
                .collect::<Result<_, _>>()
        })?;
        Ok(Self {
            pool: Arc::new(Pool {
                decoders: LeasePool::new("pocketsphinx", decoders),
                high_band_fill: config.high_band_fill,
                high_band_fill_dbfs: config.high_band_fill_dbfs,
            }),
        })
    }

    /// Transcribe one whole utterance of 16 kHz mono audio.
    pub async fn transcribe(&self, pcm16k: Vec<i16>) -> Result<String, BackendError> {
        decode_pooled(self.pool.clone(), pcm16k).await
    }
}

async fn decode_pooled(pool: Arc<Pool>, mut pcm: Vec<i16>) -> Result<String, BackendError> {
    if pcm.is_empty() {
        return Ok(String::new());
    }
    let fill = pool.high_band_fill;
    let fill_dbfs = pool.high_band_fill_dbfs;
    pool.decoders
        .run(move |decoder| {
            let fill = match fill {
                HighBandFill::Always => true,
                HighBandFill::Never => false,
                HighBandFill::Auto => high_band_ratio(&pcm) < HIGH_BAND_EMPTY_RATIO,
            };
            if fill {
                fill_high_band(&mut pcm, fill_dbfs);
            }
            decoder.decode(&pcm)
        })
        .await
}

impl SpeechToText for SphinxStt {
    fn start(&self, _hint: SttHint) -> Box<dyn SttSession> {
        Box::new(SphinxSession {
            pool: self.pool.clone(),
            buffer: UtteranceBuffer::default(),
        })
    }

    fn partials(&self) -> bool {
        true
    }
}

struct SphinxSession {
    pool: Arc<Pool>,
    buffer: UtteranceBuffer,
}

impl SttSession for SphinxSession {
    fn push(&mut self, pcm16k: &[i16]) {
        self.buffer.push(pcm16k);
    }

    fn push_phone(&mut self, mulaw: &[u8]) {
        self.buffer.push_phone(mulaw);
    }

    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<String, BackendError>> {
        let Self { pool, buffer } = *self;
        if buffer.dropped() > 0 {
            tracing::debug!(
                dropped_samples = buffer.dropped(),
                pushed_samples = buffer.pushed(),
                "utterance exceeded the STT buffer; oldest audio dropped"
            );
        }
        Box::pin(decode_pooled(pool, buffer.into_vec()))
    }

    fn partial(&mut self) -> Option<BoxFuture<'static, Result<String, BackendError>>> {
        Some(Box::pin(decode_pooled(
            self.pool.clone(),
            self.buffer.to_vec(),
        )))
    }
}

// ---- the telephone-band fix ----

const HP_TAPS: usize = 63;

/// A linear-phase high-pass FIR for 16 kHz audio with its -6 dB point at `cutoff_hz`
/// (windowed sinc, Blackman window, spectral inversion).
fn high_pass_taps(cutoff_hz: f64) -> [f64; HP_TAPS] {
    let fc = cutoff_hz / 16_000.0;
    let m = (HP_TAPS - 1) as f64;
    let mut h = [0.0; HP_TAPS];
    for (i, tap) in h.iter_mut().enumerate() {
        let x = i as f64 - m / 2.0;
        let sinc = if x == 0.0 {
            2.0 * fc
        } else {
            (2.0 * std::f64::consts::PI * fc * x).sin() / (std::f64::consts::PI * x)
        };
        let w = 0.42 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / m).cos()
            + 0.08 * (4.0 * std::f64::consts::PI * i as f64 / m).cos();
        *tap = sinc * w;
    }
    let sum: f64 = h.iter().sum();
    for tap in &mut h {
        *tap = -*tap / sum;
    }
    h[HP_TAPS / 2] += 1.0;
    h
}

fn fir(taps: &[f64; HP_TAPS], x: &[f64]) -> Vec<f64> {
    (0..x.len())
        .map(|n| {
            let lo = n.saturating_sub(HP_TAPS - 1);
            (lo..=n).map(|k| taps[n - k] * x[k]).sum()
        })
        .collect()
}

/// Share of the signal's energy above about 4.5 kHz (0 for silence).
pub(crate) fn high_band_ratio(pcm: &[i16]) -> f64 {
    let x: Vec<f64> = pcm.iter().map(|&s| f64::from(s)).collect();
    let total: f64 = x.iter().map(|v| v * v).sum();
    if total == 0.0 {
        return 0.0;
    }
    let high: f64 = fir(&high_pass_taps(4_500.0), &x)
        .iter()
        .map(|v| v * v)
        .sum();
    high / total
}

/// Adds quiet noise above 4 kHz (RMS `level_dbfs`), deterministic for a given length, so that
/// audio upsampled from 8 kHz telephone audio looks wideband to the 16 kHz acoustic model.
pub(crate) fn fill_high_band(pcm: &mut [i16], level_dbfs: f64) {
    // xorshift64*: deterministic, so a recording always decodes the same way.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut white = || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (r >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let noise: Vec<f64> = (0..pcm.len()).map(|_| white()).collect();
    let noise = fir(&high_pass_taps(4_300.0), &noise);
    let rms = (noise.iter().map(|v| v * v).sum::<f64>() / noise.len().max(1) as f64).sqrt();
    if rms == 0.0 {
        return;
    }
    let gain = 32_768.0 * 10f64.powf(level_dbfs / 20.0) / rms;
    for (s, n) in pcm.iter_mut().zip(&noise) {
        *s = (f64::from(*s) + n * gain)
            .round()
            .clamp(-32_768.0, 32_767.0) as i16;
    }
}
