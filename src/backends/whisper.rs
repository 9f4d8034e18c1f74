//! Offline speech-to-text with OpenAI's Whisper (tiny.en by default, MIT licence), run by candle.
//! A call in multilingual mode uses the multilingual base model when it is installed: the
//! language is detected from each utterance (the decoder's most likely language token after
//! start-of-transcript), the utterance is transcribed in it, and the session reports it
//! ([`SttSession::finish_heard`]). That model is loaded on the first multilingual utterance, not
//! at start-up, so a server that never takes such a call never pays its memory.
//!
//! The model ships in CTranslate2's format (`model.bin`, see [`ct2`]); its variables are read
//! into candle tensors under the names of `candle_transformers::models::whisper` and the model's
//! sizes are derived from their shapes. The log-mel spectrogram ([`mel`]) and the byte-level BPE
//! decoding of tokens ([`Vocabulary`]) are a few lines each here.
//!
//! Decoding is greedy, without timestamps, with Whisper's suppressed tokens and a length cap
//! proportional to the audio, by a decoder that keeps each layer's keys and values between
//! steps ([`network`]; candle's runs the whole sequence again at every step). It runs on blocking threads from a bounded pool of decoders (one
//! per core by default), each with its own small rayon pool so that one decode uses a bounded
//! number of threads.
//!
//! Latency: a session watches the energy of the audio pushed into it and, once the caller has
//! paused ([`EARLY_PAUSE_MS`] of quiet after speech), starts a decode of the audio so far in the
//! background (only when a decoder is free right away: speculation never queues behind real
//! work). If no speech follows before `finish`, that transcript is the answer; the engine's
//! end-of-turn silence is longer than the pause, so most turns' transcripts are ready or nearly
//! ready when the turn ends.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::whisper::{Config as ModelConfig, model::Whisper};
use futures_util::FutureExt;
use futures_util::future::Shared as SharedFuture;

use super::lease::{self, LeasePool};
use super::{
    BackendError, BoxFuture, Heard, SpeechToText, SttCall, SttHint, SttSession, UtteranceBuffer,
};
use crate::engine::dialogue::understand;

mod network;
mod projection;
use network::{CachedDecoder, Encoder, Steps};
use projection::Among;

/// The directory under the models directory that holds Whisper tiny.en.
pub const MODEL_SUBDIR: &str = "whisper-tiny.en";
/// The directory under the models directory that holds the multilingual Whisper base.
pub const MULTILINGUAL_SUBDIR: &str = "whisper-base";

/// Quiet after speech that starts a background decode of the audio so far.
pub const EARLY_PAUSE_MS: u64 = 300;

const SAMPLE_RATE: usize = 16_000;
const N_FFT: usize = 400;
const HOP: usize = 160;
/// Whisper's window in seconds, what it was trained on (`WhisperConfig::min_window_secs`).
pub const TRAINED_WINDOW_SECS: usize = 30;

/// End-of-text in the English-only vocabulary (the multilingual one's is found by name).
const EOT_ENGLISH: u32 = 50256;
/// Vocabularies this large or larger are multilingual (Whisper's own rule).
const MULTILINGUAL_VOCAB: usize = 51865;

/// Whether `models_dir` holds the Whisper model.
pub fn installed(models_dir: &Path) -> bool {
    model_in(&models_dir.join(MODEL_SUBDIR))
}

/// Whether `models_dir` holds the multilingual Whisper model.
pub fn multilingual_installed(models_dir: &Path) -> bool {
    model_in(&models_dir.join(MULTILINGUAL_SUBDIR))
}

fn model_in(dir: &Path) -> bool {
    dir.join("model.bin").is_file() && dir.join("vocabulary.txt").is_file()
}

/// Whisper settings.
#[derive(Debug, Clone)]
pub struct WhisperConfig {
    /// The directory holding `model.bin`, `vocabulary.txt` and `config.json`.
    pub model_dir: PathBuf,
    /// Decoders kept ready; at most this many utterances are decoded at once.
    pub pool_size: usize,
    /// Threads one decode may use.
    pub threads_per_decode: usize,
    /// The shortest window encoded, in whole seconds: the utterance's frames, rounded up to a
    /// whole second, are padded with silence up to it. Not Whisper's 30 s
    /// ([`TRAINED_WINDOW_SECS`]): measured on the held-out utterances of `scripts/accuracy`,
    /// encoding only the utterance was about five times faster (the encoder's cost grows with
    /// its input: 1500 positions for 30 s) with no loss of accuracy once the decoder's tendency
    /// to say the utterance again is cut off (see [`repeated_tail`]). 3 by default: on the
    /// first few hundred ms of what a caller says over the agent (a barge-in check), tiny.en makes far more of a 3 s window than of a 1 s one
    /// ("sorry", "wait", "hold on" heard by 400 ms of speech in 32 of 36 interruptions against
    /// 19, `scripts/barge-in-words`), at no measurable cost (the decoder's steps, not the
    /// encoder, take the time of a short utterance), and whole answers come out as well or
    /// slightly better (`scripts/accuracy`: WER 34.9 → 33.6 %, answers right 325 → 324 of 552).
    pub min_window_secs: usize,
    /// Decode in the background when the caller pauses (see the module documentation).
    pub early_decode: bool,
    /// The multilingual model's directory, for calls in multilingual mode (`None`: such calls
    /// are heard in English by the model above).
    pub multilingual_dir: Option<PathBuf>,
    /// A barge-in check's words ([`SttSession::partial_over_agent`]) that would take the floor
    /// are decoded again with only the tokens backchannels are made of, and read as the
    /// backchannel when that is at most this much less likely (mean log-probability per token,
    /// nats; [`BACKCHANNEL_MARGIN`] by default); `None`: they are read as heard.
    pub backchannel_margin: Option<f64>,
    /// What a barge-in check's decode is primed with, as the text said before the talk over the
    /// agent (English-only models; [`CHECK_PRIMER`] by default, empty: not primed). Such a
    /// decode serves only the check, never the turn's words.
    pub check_primer: Vec<String>,
}

impl WhisperConfig {
    /// The model in `models_dir`, one decoder per core, one thread per decode.
    pub fn new(models_dir: &Path) -> Self {
        Self {
            model_dir: models_dir.join(MODEL_SUBDIR),
            pool_size: std::thread::available_parallelism().map_or(2, |n| n.get()),
            threads_per_decode: 1,
            min_window_secs: 3,
            early_decode: true,
            multilingual_dir: multilingual_installed(models_dir)
                .then(|| models_dir.join(MULTILINGUAL_SUBDIR)),
            backchannel_margin: Some(BACKCHANNEL_MARGIN),
            check_primer: CHECK_PRIMER.iter().map(|w| w.to_string()).collect(),
        }
    }
}

// ---- CTranslate2's model.bin ----

/// Reading CTranslate2's `model.bin`: a little-endian header (binary version, spec name,
/// revision), then each variable (name, rank, dimensions, dtype id, byte count, raw bytes), then
/// aliases (name → variable name). Strings are a u16 length counting a final NUL, then the bytes.
pub mod ct2 {
    use std::collections::HashMap;

    /// The element types CTranslate2 writes (its `DataType` enum, in order).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Ct2Type {
        F32,
        I8,
        I16,
        I32,
        F16,
        Bf16,
    }

    impl Ct2Type {
        fn from_id(id: u8) -> Option<Self> {
            Some(match id {
                0 => Self::F32,
                1 => Self::I8,
                2 => Self::I16,
                3 => Self::I32,
                4 => Self::F16,
                5 => Self::Bf16,
                _ => return None,
            })
        }

        pub fn size(self) -> usize {
            match self {
                Self::I8 => 1,
                Self::I16 | Self::F16 | Self::Bf16 => 2,
                Self::F32 | Self::I32 => 4,
            }
        }
    }

    /// One variable, its bytes borrowed from the file.
    #[derive(Debug)]
    pub struct Variable<'a> {
        pub shape: Vec<usize>,
        pub dtype: Ct2Type,
        pub data: &'a [u8],
    }

    /// A parsed `model.bin`.
    #[derive(Debug)]
    pub struct Ct2Model<'a> {
        pub binary_version: u32,
        pub spec: String,
        pub revision: u32,
        pub variables: HashMap<String, Variable<'a>>,
        /// alias → variable name
        pub aliases: Vec<(String, String)>,
    }

    struct Cursor<'a> {
        bytes: &'a [u8],
        pos: usize,
    }

    impl<'a> Cursor<'a> {
        fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
            let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
            match end {
                Some(end) => {
                    let s = &self.bytes[self.pos..end];
                    self.pos = end;
                    Ok(s)
                }
                None => Err(format!(
                    "truncated at byte {} reading {what} ({n} bytes wanted, {} left)",
                    self.pos,
                    self.bytes.len() - self.pos
                )),
            }
        }
        fn u8(&mut self, what: &str) -> Result<u8, String> {
            Ok(self.take(1, what)?[0])
        }
        fn u16(&mut self, what: &str) -> Result<u16, String> {
            let b = self.take(2, what)?;
            Ok(u16::from_le_bytes([b[0], b[1]]))
        }
        fn u32(&mut self, what: &str) -> Result<u32, String> {
            let b = self.take(4, what)?;
            Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        }
        fn string(&mut self, what: &str) -> Result<String, String> {
            let n = self.u16(what)? as usize;
            let b = self.take(n, what)?;
            let b = b.strip_suffix(&[0]).unwrap_or(b);
            String::from_utf8(b.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
        }
    }

    /// Parse a whole `model.bin` (binary versions 2 to 6: names, dtype ids and aliases).
    pub fn parse(bytes: &[u8]) -> Result<Ct2Model<'_>, String> {
        let mut c = Cursor { bytes, pos: 0 };
        let binary_version = c.u32("the binary version")?;
        if !(3..=6).contains(&binary_version) {
            return Err(format!(
                "unsupported CTranslate2 binary version {binary_version} (3 to 6 are read)"
            ));
        }
        let spec = c.string("the spec name")?;
        let revision = c.u32("the spec revision")?;
        let count = c.u32("the variable count")?;
        let mut variables = HashMap::new();
        for i in 0..count {
            let name = c.string(&format!("variable {i}'s name"))?;
            let rank = c.u8(&format!("{name}'s rank"))? as usize;
            let mut shape = Vec::with_capacity(rank);
            for _ in 0..rank {
                shape.push(c.u32(&format!("{name}'s shape"))? as usize);
            }
            let dtype = if binary_version >= 4 {
                let id = c.u8(&format!("{name}'s type"))?;
                Ct2Type::from_id(id).ok_or_else(|| format!("{name}: unknown type id {id}"))?
            } else {
                match c.u8(&format!("{name}'s item size"))? {
                    4 => Ct2Type::F32,
                    2 => Ct2Type::F16,
                    1 => Ct2Type::I8,
                    n => return Err(format!("{name}: unknown item size {n}")),
                }
            };
            let num_bytes = if binary_version >= 4 {
                c.u32(&format!("{name}'s size"))? as usize
            } else {
                c.u32(&format!("{name}'s size"))? as usize * dtype.size()
            };
            let elements: usize = shape.iter().product();
            if elements * dtype.size() != num_bytes {
                return Err(format!(
                    "{name}: shape {shape:?} of {dtype:?} does not fit its {num_bytes} bytes"
                ));
            }
            let data = c.take(num_bytes, &format!("{name}'s data"))?;
            variables.insert(name, Variable { shape, dtype, data });
        }
        let mut aliases = Vec::new();
        let n = c.u32("the alias count")?;
        for _ in 0..n {
            let alias = c.string("an alias")?;
            let target = c.string("an alias target")?;
            aliases.push((alias, target));
        }
        Ok(Ct2Model {
            binary_version,
            spec,
            revision,
            variables,
            aliases,
        })
    }
}

fn load_err(dir: &Path, what: impl std::fmt::Display) -> BackendError {
    BackendError::Unavailable(format!("whisper model in {}: {what}", dir.display()))
}

fn tensor_of(var: &ct2::Variable<'_>, dev: &Device) -> candle_core::Result<Tensor> {
    use ct2::Ct2Type;
    let dtype = match var.dtype {
        Ct2Type::F32 => DType::F32,
        Ct2Type::F16 => DType::F16,
        Ct2Type::Bf16 => DType::BF16,
        other => candle_core::bail!("{other:?} weights are not supported (quantised model?)"),
    };
    Tensor::from_raw_buffer(var.data, dtype, &var.shape, dev)?.to_dtype(DType::F32)
}

/// The candle Whisper variables (`model.encoder.…`, `model.decoder.…`) of a CTranslate2
/// `WhisperSpec`, and the model configuration their shapes imply.
fn candle_vars(
    model: &ct2::Ct2Model<'_>,
    dev: &Device,
) -> Result<(HashMap<String, Tensor>, ModelConfig), String> {
    if model.spec != "WhisperSpec" {
        return Err(format!("spec {:?}, not WhisperSpec", model.spec));
    }
    let mut out = HashMap::new();
    let get = |name: &str| -> Result<Tensor, String> {
        let name = model
            .aliases
            .iter()
            .find(|(a, _)| a == name)
            .map_or(name, |(_, t)| t.as_str());
        let var = model
            .variables
            .get(name)
            .ok_or_else(|| format!("variable {name} missing"))?;
        tensor_of(var, dev).map_err(|e| format!("{name}: {e}"))
    };
    let split = |t: &Tensor, parts: usize| -> Result<Vec<Tensor>, String> {
        t.chunk(parts, 0).map_err(|e| e.to_string())
    };
    let layers = |prefix: &str| {
        (0..)
            .take_while(|i| {
                model
                    .variables
                    .contains_key(&format!("{prefix}/layer_{i}/ffn/linear_0/weight"))
            })
            .count()
    };
    let put_linear = |out: &mut HashMap<String, Tensor>, from: &str, to: &str| {
        out.insert(format!("{to}.weight"), get(&format!("{from}/weight"))?);
        out.insert(format!("{to}.bias"), get(&format!("{from}/bias"))?);
        Ok::<_, String>(())
    };
    let put_norm = |out: &mut HashMap<String, Tensor>, from: &str, to: &str| {
        out.insert(format!("{to}.weight"), get(&format!("{from}/gamma"))?);
        out.insert(format!("{to}.bias"), get(&format!("{from}/beta"))?);
        Ok::<_, String>(())
    };
    // q, k and v fused along the output dimension (k has no bias in Whisper; CTranslate2 stores
    // zeros there).
    let put_attention = |out: &mut HashMap<String, Tensor>,
                         from: &str,
                         to: &str,
                         fused: &[&str]|
     -> Result<(), String> {
        let w = get(&format!("{from}/weight"))?;
        let b = get(&format!("{from}/bias"))?;
        let (ws, bs) = (split(&w, fused.len())?, split(&b, fused.len())?);
        for ((name, w), b) in fused.iter().zip(ws).zip(bs) {
            out.insert(format!("{to}.{name}.weight"), w);
            if *name != "k_proj" {
                out.insert(format!("{to}.{name}.bias"), b);
            }
        }
        Ok(())
    };
    let n_enc = layers("encoder");
    let n_dec = layers("decoder");
    if n_enc == 0 || n_dec == 0 {
        return Err("no encoder or decoder layers".into());
    }
    for (side, n) in [("encoder", n_enc), ("decoder", n_dec)] {
        for i in 0..n {
            let (f, t) = (
                format!("{side}/layer_{i}"),
                format!("model.{side}.layers.{i}"),
            );
            put_norm(
                &mut out,
                &format!("{f}/self_attention/layer_norm"),
                &format!("{t}.self_attn_layer_norm"),
            )?;
            put_attention(
                &mut out,
                &format!("{f}/self_attention/linear_0"),
                &format!("{t}.self_attn"),
                &["q_proj", "k_proj", "v_proj"],
            )?;
            put_linear(
                &mut out,
                &format!("{f}/self_attention/linear_1"),
                &format!("{t}.self_attn.out_proj"),
            )?;
            put_norm(
                &mut out,
                &format!("{f}/ffn/layer_norm"),
                &format!("{t}.final_layer_norm"),
            )?;
            put_linear(&mut out, &format!("{f}/ffn/linear_0"), &format!("{t}.fc1"))?;
            put_linear(&mut out, &format!("{f}/ffn/linear_1"), &format!("{t}.fc2"))?;
            if side == "decoder" {
                put_norm(
                    &mut out,
                    &format!("{f}/attention/layer_norm"),
                    &format!("{t}.encoder_attn_layer_norm"),
                )?;
                put_attention(
                    &mut out,
                    &format!("{f}/attention/linear_0"),
                    &format!("{t}.encoder_attn"),
                    &["q_proj"],
                )?;
                put_attention(
                    &mut out,
                    &format!("{f}/attention/linear_1"),
                    &format!("{t}.encoder_attn"),
                    &["k_proj", "v_proj"],
                )?;
                put_linear(
                    &mut out,
                    &format!("{f}/attention/linear_2"),
                    &format!("{t}.encoder_attn.out_proj"),
                )?;
            }
        }
        put_norm(
            &mut out,
            &format!("{side}/layer_norm"),
            &format!("model.{side}.layer_norm"),
        )?;
    }
    for conv in ["conv1", "conv2"] {
        put_linear(
            &mut out,
            &format!("encoder/{conv}"),
            &format!("model.encoder.{conv}"),
        )?;
    }
    let embeddings = get("decoder/embeddings/weight")?;
    let positions = get("decoder/position_encodings/encodings")?;
    let enc_positions = &model
        .variables
        .get("encoder/position_encodings/encodings")
        .ok_or("variable encoder/position_encodings/encodings missing")?
        .shape;
    let conv1 = &model
        .variables
        .get("encoder/conv1/weight")
        .ok_or("variable encoder/conv1/weight missing")?
        .shape;
    let heads = |side: &str| -> Result<usize, String> {
        let v = model
            .variables
            .get(&format!("{side}/num_heads"))
            .ok_or_else(|| format!("{side}/num_heads missing"))?;
        Ok(match (v.dtype, v.data) {
            (ct2::Ct2Type::I8, [n]) => *n as usize,
            (ct2::Ct2Type::I16, [a, b]) => u16::from_le_bytes([*a, *b]) as usize,
            (ct2::Ct2Type::I32, [a, b, c, d]) => u32::from_le_bytes([*a, *b, *c, *d]) as usize,
            _ => return Err(format!("{side}/num_heads: unexpected {:?}", v.dtype)),
        })
    };
    let (vocab_size, d_model) = embeddings.dims2().map_err(|e| e.to_string())?;
    if conv1.len() != 3 || enc_positions.len() != 2 {
        return Err("unexpected conv1 or position shapes".into());
    }
    let config = ModelConfig {
        num_mel_bins: conv1[1],
        max_source_positions: enc_positions[0],
        d_model,
        encoder_attention_heads: heads("encoder")?,
        encoder_layers: n_enc,
        vocab_size,
        max_target_positions: positions.dims()[0],
        decoder_attention_heads: heads("decoder")?,
        decoder_layers: n_dec,
        suppress_tokens: Vec::new(),
    };
    out.insert("model.decoder.embed_tokens.weight".into(), embeddings);
    out.insert("model.decoder.embed_positions.weight".into(), positions);
    Ok((out, config))
}

/// The tokens Whisper's `config.json` says never to emit (`suppress_ids`) and never to start
/// with (`suppress_ids_begin`), and its language tokens.
#[derive(Debug, Clone, Default)]
struct Suppress {
    always: Vec<u32>,
    begin: Vec<u32>,
    /// The language tokens (`lang_ids`; multilingual models).
    languages: Vec<u32>,
}

fn read_suppress(dir: &Path) -> Result<Suppress, BackendError> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| load_err(dir, e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| load_err(dir, e))?;
    let ids = |key: &str| -> Vec<u32> {
        v.get(key)
            .and_then(|a| a.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_u64())
                    .map(|x| x as u32)
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(Suppress {
        always: ids("suppress_ids"),
        begin: ids("suppress_ids_begin"),
        languages: ids("lang_ids"),
    })
}

/// The special tokens a decode uses, found by name in the vocabulary (their ids differ between
/// the English-only and the multilingual models).
#[derive(Debug, Clone)]
struct Specials {
    eot: u32,
    sot: u32,
    no_speech: u32,
    no_timestamps: u32,
    /// Multilingual models: `<|transcribe|>` and each language token with its code.
    transcribe: Option<u32>,
    languages: Vec<(u32, String)>,
}

impl Specials {
    fn find(vocab: &Vocabulary, lang_ids: &[u32]) -> Result<Self, String> {
        let need = |name: &str| {
            vocab
                .find(name)
                .ok_or_else(|| format!("vocabulary.txt lacks {name}"))
        };
        let multilingual = vocab.len() >= MULTILINGUAL_VOCAB;
        let languages = if multilingual {
            lang_ids
                .iter()
                .filter_map(|&id| {
                    let t = vocab.tokens.get(id as usize)?;
                    let code = std::str::from_utf8(t)
                        .ok()?
                        .strip_prefix("<|")?
                        .strip_suffix("|>")?;
                    Some((id, code.to_string()))
                })
                .collect::<Vec<_>>()
        } else {
            Vec::new()
        };
        if multilingual && languages.is_empty() {
            return Err("config.json names no language tokens (lang_ids)".into());
        }
        Ok(Self {
            eot: vocab.eot,
            sot: need("<|startoftranscript|>")?,
            no_speech: need("<|nocaptions|>").or_else(|_| need("<|nospeech|>"))?,
            no_timestamps: need("<|notimestamps|>")?,
            transcribe: if multilingual {
                Some(need("<|transcribe|>")?)
            } else {
                None
            },
            languages,
        })
    }
}

// ---- tokens to text ----

/// Whisper's byte-level BPE vocabulary: token id → bytes.
#[derive(Debug, Clone)]
pub struct Vocabulary {
    tokens: Vec<Vec<u8>>,
    /// End-of-text: it and every id after it are special tokens.
    eot: u32,
}

/// GPT-2's printable stand-ins for bytes: printable Latin-1 bytes stand for themselves, the
/// others (controls, space, 0x7f-0xa0, 0xad) for 256, 257, … in byte order.
fn byte_of_char() -> HashMap<char, u8> {
    let mut map = HashMap::with_capacity(256);
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, 0x21..=0x7e | 0xa1..=0xac | 0xae..=0xff);
        let c = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(next).unwrap_or('\u{fffd}');
            next += 1;
            c
        };
        map.insert(c, b);
    }
    map
}

impl Vocabulary {
    /// One token per line, in id order (CTranslate2's `vocabulary.txt`).
    pub fn parse(text: &str) -> Self {
        let map = byte_of_char();
        let tokens = text
            .lines()
            .map(|line| {
                // special tokens (`<|endoftext|>`) are never decoded; others map char by char
                line.chars()
                    .map(|c| map.get(&c).copied().unwrap_or(b'?'))
                    .collect()
            })
            .collect::<Vec<Vec<u8>>>();
        let eot = tokens
            .iter()
            .position(|t| t == b"<|endoftext|>")
            .map_or(EOT_ENGLISH, |i| i as u32);
        Self { tokens, eot }
    }

    /// The id of a special token by its name (`<|startoftranscript|>`).
    pub fn find(&self, name: &str) -> Option<u32> {
        let at = self.eot as usize;
        self.tokens
            .get(at..)?
            .iter()
            .position(|t| t == name.as_bytes())
            .map(|i| (at + i) as u32)
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The text of `ids` (special tokens, from end-of-text on, skipped).
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            if id >= self.eot {
                continue;
            }
            if let Some(t) = self.tokens.get(id as usize) {
                bytes.extend_from_slice(t);
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Words around a number in an answer to a number question, besides the numbers themselves
/// ([`understand::UNITS`], [`understand::TENS`]) and digits: "about five years", "I have two
/// years of experience", "none".
const AROUND_NUMBERS: &[&str] = &[
    "oh",
    "hundred",
    "thousand",
    "half",
    "a",
    "an",
    "and",
    "about",
    "around",
    "almost",
    "nearly",
    "over",
    "under",
    "more",
    "less",
    "than",
    "maybe",
    "roughly",
    "just",
    "year",
    "years",
    "month",
    "months",
    "week",
    "weeks",
    "i",
    "i've",
    "i'm",
    "have",
    "had",
    "of",
    "experience",
    "none",
    "no",
    "only",
];

impl Vocabulary {
    /// Which tokens an answer to a number question may be made of (numbers in words and
    /// digits, [`AROUND_NUMBERS`], `.` and `,`): a word-starting token that begins one of the
    /// words, a continuation that is part of one, any run of digits. Special tokens are not in
    /// it.
    pub fn number_answer_tokens(&self) -> Vec<bool> {
        let words = understand::UNITS
            .iter()
            .chain(understand::TENS)
            .chain(AROUND_NUMBERS);
        self.tokens_of(words.copied(), true, &[".", ","])
    }

    /// Which tokens a backchannel may be made of (the engine's backchannel sounds and
    /// acknowledgements, `.`, `,` and `!`), as [`Self::number_answer_tokens`] finds them.
    pub fn backchannel_tokens(&self) -> Vec<bool> {
        let words = understand::BACKCHANNEL_SOUNDS
            .iter()
            .chain(understand::ACKNOWLEDGEMENTS)
            .chain(&["uh-huh", "mm-hmm", "all right"]);
        self.tokens_of(words.copied(), false, &[".", ",", "!"])
    }

    /// The tokens that spell `words`: a word-starting token that begins one of them, a
    /// continuation that is part of one, the punctuation `marks`, and with `digits` any run of
    /// digits.
    fn tokens_of<'w>(
        &self,
        words: impl Iterator<Item = &'w str>,
        digits: bool,
        marks: &[&str],
    ) -> Vec<bool> {
        // every piece a token may be: a word's beginnings (a token that starts a word) and its
        // inner parts (a continuation); one lookup per token, so that a 52,000-token vocabulary
        // takes milliseconds (this runs when a model loads, the multilingual one during a call)
        let mut starts = std::collections::HashSet::new();
        let mut inner = std::collections::HashSet::new();
        for w in words {
            for end in 1..=w.len() {
                starts.insert(&w[..end]);
                for begin in 1..end {
                    inner.insert(&w[begin..end]);
                }
            }
        }
        self.tokens
            .iter()
            .enumerate()
            .map(|(id, bytes)| {
                if id as u32 >= self.eot || bytes.len() > 16 || !bytes.is_ascii() {
                    return false;
                }
                let starts_word = bytes.first() == Some(&b' ');
                let word = bytes.trim_ascii_start().to_ascii_lowercase();
                let Ok(word) = std::str::from_utf8(&word) else {
                    return false;
                };
                !word.is_empty()
                    && ((digits && word.bytes().all(|b| b.is_ascii_digit()))
                        || marks.contains(&word)
                        || if starts_word {
                            starts.contains(word)
                        } else {
                            inner.contains(word)
                        })
            })
            .collect()
    }
}

/// Whisper's text as the engine's transcripts are: lowercase words separated by single spaces,
/// punctuation dropped (apostrophes inside words and the `.` or `,` inside a number kept).
pub fn normalize_text(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for (i, &c) in chars.iter().enumerate() {
        let between =
            |f: fn(&char) -> bool| i > 0 && f(&chars[i - 1]) && chars.get(i + 1).is_some_and(f);
        let keep = c.is_alphanumeric()
            || (c == '\'' && between(|c| c.is_alphanumeric()))
            || ((c == '.' || c == ',') && between(|c| c.is_ascii_digit()));
        if keep {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.extend(c.to_lowercase());
        } else {
            pending_space = true;
        }
    }
    out
}

// ---- the log-mel spectrogram ----

/// Whisper's log-mel features: Slaney-style mel filterbank, Hann window of 400 samples, hop 160,
/// power spectrum, log10, floored 8 (log10 units) below the peak, scaled as `(x + 4) / 4`.
pub mod mel {
    use super::{HOP, N_FFT, SAMPLE_RATE};

    fn hz_to_mel(f: f64) -> f64 {
        // Slaney: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
        let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
        let min_log_mel = min_log_hz / f_sp;
        let logstep = 6.4f64.ln() / 27.0;
        if f >= min_log_hz {
            min_log_mel + (f / min_log_hz).ln() / logstep
        } else {
            f / f_sp
        }
    }

    fn mel_to_hz(m: f64) -> f64 {
        let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
        let min_log_mel = min_log_hz / f_sp;
        let logstep = 6.4f64.ln() / 27.0;
        if m >= min_log_mel {
            min_log_hz * (logstep * (m - min_log_mel)).exp()
        } else {
            m * f_sp
        }
    }

    /// `n_mels` triangular filters over the `N_FFT / 2 + 1` bins from 0 to 8 kHz, each scaled to
    /// unit area (Slaney normalisation), row-major `[n_mels][bins]`.
    pub fn filterbank(n_mels: usize) -> Vec<f32> {
        let bins = N_FFT / 2 + 1;
        let top = hz_to_mel(SAMPLE_RATE as f64 / 2.0);
        let points: Vec<f64> = (0..n_mels + 2)
            .map(|i| mel_to_hz(top * i as f64 / (n_mels + 1) as f64))
            .collect();
        let mut fb = vec![0f32; n_mels * bins];
        for m in 0..n_mels {
            let (lo, mid, hi) = (points[m], points[m + 1], points[m + 2]);
            let norm = 2.0 / (hi - lo);
            for k in 0..bins {
                let f = k as f64 * SAMPLE_RATE as f64 / N_FFT as f64;
                let w = ((f - lo) / (mid - lo)).min((hi - f) / (hi - mid)).max(0.0);
                fb[m * bins + k] = (w * norm) as f32;
            }
        }
        fb
    }

    /// Computes log-mel spectrograms (holds the FFT plan and the filterbank).
    pub struct MelSpectrogram {
        n_mels: usize,
        filters: Vec<f32>,
        /// Each filter's bins from its first non-zero weight to its last (the others add only
        /// zeros: leaving them out changes no sum).
        spans: Vec<std::ops::Range<usize>>,
        window: Vec<f32>,
        fft: std::sync::Arc<dyn realfft::RealToComplex<f32>>,
    }

    impl MelSpectrogram {
        pub fn new(n_mels: usize) -> Self {
            let window = (0..N_FFT)
                .map(|i| {
                    let x = 2.0 * std::f64::consts::PI * i as f64 / N_FFT as f64;
                    (0.5 - 0.5 * x.cos()) as f32
                })
                .collect();
            let filters = filterbank(n_mels);
            let bins = N_FFT / 2 + 1;
            let spans = filters
                .chunks_exact(bins)
                .map(|row| {
                    let first = row.iter().position(|&w| w != 0.0).unwrap_or(0);
                    let last = row.iter().rposition(|&w| w != 0.0).map_or(0, |l| l + 1);
                    first..last.max(first)
                })
                .collect();
            Self {
                n_mels,
                filters,
                spans,
                window,
                fft: realfft::RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT),
            }
        }

        pub fn n_mels(&self) -> usize {
            self.n_mels
        }

        /// The features of `pcm` (16 kHz) over `n_frames` frames (row-major `[n_mels][n_frames]`):
        /// frames past the audio are the features of silence, as when Whisper pads with zeros.
        /// Frames are centred on multiples of the hop, the audio reflected at its start and end.
        pub fn compute(&self, pcm: &[f32], n_frames: usize) -> Vec<f32> {
            let bins = N_FFT / 2 + 1;
            let half = N_FFT / 2;
            // what the STFT sees: the audio followed by zeros up to the last frame's end
            let padded_len = (n_frames * HOP).max(pcm.len());
            let sample = |i: isize| -> f32 {
                // reflect padding around the (zero-extended) signal, as torch.stft(center=True)
                let n = padded_len as isize;
                let j = if i < 0 {
                    -i
                } else if i >= n {
                    2 * (n - 1) - i
                } else {
                    i
                };
                pcm.get(j.clamp(0, n - 1) as usize).copied().unwrap_or(0.0)
            };
            let mut mel = vec![0f32; self.n_mels * n_frames];
            let mut frame = self.fft.make_input_vec();
            let mut spectrum = self.fft.make_output_vec();
            let mut power = vec![0f32; bins];
            let mut scratch = self.fft.make_scratch_vec();
            let audio_frames = pcm.len().div_ceil(HOP) + 2;
            // the last transformed frame's windowed samples (the FFT overwrites its input) and
            // its index: a frame just like it (the constant run Smart Turn puts before a short
            // utterance) has its features
            let mut last_frame = vec![0f32; N_FFT];
            let mut last: Option<usize> = None;
            for t in 0..n_frames {
                if t > audio_frames {
                    // all zeros: every mel bin takes the floor below
                    for m in 0..self.n_mels {
                        mel[m * n_frames + t] = -10.0;
                    }
                    continue;
                }
                let start = (t * HOP) as isize - half as isize;
                match pcm
                    .get(start.max(0) as usize..)
                    .and_then(|s| s.get(..N_FFT))
                {
                    // inside the audio: no padding to look up
                    Some(samples) if start >= 0 => {
                        for ((x, &s), &w) in frame.iter_mut().zip(samples).zip(&self.window) {
                            *x = s * w;
                        }
                    }
                    _ => {
                        for (i, x) in frame.iter_mut().enumerate() {
                            *x = sample(start + i as isize) * self.window[i];
                        }
                    }
                }
                if let Some(prev) = last
                    && last_frame == frame
                {
                    for m in 0..self.n_mels {
                        mel[m * n_frames + t] = mel[m * n_frames + prev];
                    }
                    continue;
                }
                last = Some(t);
                last_frame.copy_from_slice(&frame);
                if self
                    .fft
                    .process_with_scratch(&mut frame, &mut spectrum, &mut scratch)
                    .is_err()
                {
                    last = None;
                    continue;
                }
                for (p, c) in power.iter_mut().zip(&spectrum) {
                    *p = c.norm_sqr();
                }
                for (m, span) in self.spans.iter().enumerate() {
                    let row = &self.filters[m * bins..(m + 1) * bins];
                    let e: f32 = row[span.clone()]
                        .iter()
                        .zip(&power[span.clone()])
                        .map(|(w, p)| w * p)
                        .sum();
                    mel[m * n_frames + t] = e.max(1e-10).log10();
                }
            }
            let peak = mel.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            for v in &mut mel {
                *v = (v.max(peak - 8.0) + 4.0) / 4.0;
            }
            mel
        }
    }
}

// ---- the model and one decode ----

/// What is loaded once and shared by every decoder.
struct Shared {
    /// candle's model: its configuration (the decodes run on `encoder` and `decoder`), and what
    /// the tests hold those to.
    model: Whisper,
    /// The encoder with a cheaper GELU, and the text decoder that feeds each step's new token
    /// only (the weights are `model`'s).
    encoder: Encoder,
    decoder: CachedDecoder,
    vocab: Vocabulary,
    /// [`Vocabulary::number_answer_tokens`]: the second decode of an answer to a number question.
    number_tokens: Vec<bool>,
    /// [`Vocabulary::backchannel_tokens`] and [`WhisperConfig::backchannel_margin`].
    backchannel: Option<(Vec<bool>, f64)>,
    specials: Specials,
    suppress: Suppress,
    /// What primes a decode with the call's key terms ([`Shared::primer`]), when the model has
    /// `<|startofprev|>` and a `tokenizer.json`.
    priming: Option<Priming>,
    /// [`WhisperConfig::check_primer`] as a primer's tokens (empty for a multilingual model).
    check_primer: Vec<u32>,
    mel: mel::MelSpectrogram,
    min_window_secs: usize,
}

/// Whisper's "previous text": `<|startofprev|>` and the tokens of text the decoder reads as
/// said before this utterance, which biases it toward those words' spelling.
struct Priming {
    start_of_prev: u32,
    tokenizer: tokenizers::Tokenizer,
}

/// One decoder: its threads (the model is [`Shared`]; a decode's state is its own [`Steps`]).
struct Decoder {
    threads: rayon::ThreadPool,
}

/// Thrown out of a decode when its result is no longer wanted.
const CANCELLED: &str = "cancelled";

impl Shared {
    fn load(config: &WhisperConfig) -> Result<Self, BackendError> {
        let dir = &config.model_dir;
        let bin = dir.join("model.bin");
        let bytes = std::fs::read(&bin).map_err(|e| {
            load_err(
                dir,
                format!("{e} (run scripts/install-models to install it)"),
            )
        })?;
        let ct2 = ct2::parse(&bytes).map_err(|e| load_err(dir, format!("model.bin: {e}")))?;
        let dev = Device::Cpu;
        let (vars, model_config) =
            candle_vars(&ct2, &dev).map_err(|e| load_err(dir, format!("model.bin: {e}")))?;
        drop(ct2);
        drop(bytes);
        let vocab_text =
            std::fs::read_to_string(dir.join("vocabulary.txt")).map_err(|e| load_err(dir, e))?;
        let vocab = Vocabulary::parse(&vocab_text);
        if vocab.len() != model_config.vocab_size {
            return Err(load_err(
                dir,
                format!(
                    "vocabulary.txt has {} tokens, the model {}",
                    vocab.len(),
                    model_config.vocab_size
                ),
            ));
        }
        let suppress = read_suppress(dir)?;
        let specials = Specials::find(&vocab, &suppress.languages).map_err(|e| load_err(dir, e))?;
        let vb = VarBuilder::from_tensors(vars, DType::F32, &dev);
        let n_mels = model_config.num_mel_bins;
        let encoder =
            Encoder::load(vb.pp("model.encoder"), &model_config).map_err(|e| load_err(dir, e))?;
        let decoder = CachedDecoder::load(vb.pp("model.decoder"), &model_config)
            .map_err(|e| load_err(dir, e))?;
        let model = Whisper::load(&vb, model_config).map_err(|e| load_err(dir, e))?;
        let priming = match (
            vocab.find("<|startofprev|>"),
            tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")),
        ) {
            (Some(start_of_prev), Ok(tokenizer)) => Some(Priming {
                start_of_prev,
                tokenizer,
            }),
            (_, Err(e)) => {
                tracing::warn!(
                    dir = %dir.display(),
                    "whisper: no tokenizer.json ({e}); key terms will not prime its decodes"
                );
                None
            }
            (None, _) => None,
        };
        let mut shared = Self {
            model,
            encoder,
            decoder,
            number_tokens: vocab.number_answer_tokens(),
            backchannel: config
                .backchannel_margin
                .map(|m| (vocab.backchannel_tokens(), m)),
            vocab,
            specials,
            suppress,
            priming,
            check_primer: Vec::new(),
            mel: mel::MelSpectrogram::new(n_mels),
            min_window_secs: config.min_window_secs.max(1),
        };
        // the multilingual model's checks hear callers in any language: not primed in English
        if shared.specials.transcribe.is_none() {
            shared.check_primer = shared.primer(&config.check_primer);
        }
        Ok(shared)
    }

    /// Greedy decoding of one utterance of 16 kHz audio; a multilingual model first detects
    /// its language, weighing the call's earlier utterances (`prior`: the sum of their
    /// languages' log-probabilities, empty for none).
    fn transcribe(
        &self,
        pcm: &[i16],
        cancel: &AtomicBool,
        prior: &[f32],
        expected: &Expected,
        over_agent: bool,
    ) -> candle_core::Result<Decoded> {
        let started = std::time::Instant::now();
        let samples: Vec<f32> = pcm.iter().map(|&s| f32::from(s) / 32768.0).collect();
        let max_frames = 2 * self.model.config.max_source_positions;
        // the utterance's frames, rounded up to a whole second (conv2 halves them), at least the
        // shortest window
        let n_frames = (samples
            .len()
            .div_ceil(HOP)
            .div_ceil(100)
            .max(self.min_window_secs)
            * 100)
            .min(max_frames);
        let samples = &samples[..samples.len().min(n_frames * HOP)];
        let mel = self.mel.compute(samples, n_frames);
        let mel = Tensor::from_vec(mel, (1, self.mel.n_mels(), n_frames), &Device::Cpu)?;
        let features = self.encoder.forward(&mel)?;
        let encode_ms = started.elapsed().as_millis() as u64;
        // the features' keys and values, computed once for every decode below
        let fresh = self.decoder.start(&features)?;

        let seconds = pcm.len() as f64 / SAMPLE_RATE as f64;
        let cap = ((8.0 + 8.0 * seconds) as usize).min(self.model.config.max_target_positions / 2);
        let sp = &self.specials;
        let mut languages = Vec::new();
        // a barge-in check hears talk over the agent, which is mostly a backchannel or the
        // opening of an interruption; a turn's decode hears the call's key terms
        let mut tokens = if over_agent {
            self.check_primer.clone()
        } else {
            self.primer(&expected.terms)
        };
        let primed = !tokens.is_empty();
        let (transcript, language) = match sp.transcribe {
            None => (vec![sp.sot, sp.no_timestamps], None),
            Some(transcribe) => {
                // the language tokens' log-probabilities after start-of-transcript; with the
                // call's earlier utterances, the likeliest is this one's language
                let hidden = self.decoder.forward(&mut fresh.clone(), &[sp.sot])?;
                let logits: Vec<f32> = self.decoder.logits(&hidden)?.flatten_all()?.to_vec1()?;
                languages = log_softmax(
                    sp.languages
                        .iter()
                        .map(|(id, _)| logits.get(*id as usize).copied().unwrap_or(f32::MIN)),
                );
                let best = likeliest(&languages, prior)
                    .ok_or_else(|| candle_core::Error::Msg("no language token".into()))?;
                let (id, code) = &sp.languages[best];
                (
                    vec![sp.sot, *id, transcribe, sp.no_timestamps],
                    Some(code.clone()),
                )
            }
        };
        tokens.extend(transcript);
        let prompt = tokens.len();
        let vocab = self.model.config.vocab_size;
        let mut suppressed = vec![false; vocab];
        for &id in &self.suppress.always {
            if let Some(s) = suppressed.get_mut(id as usize) {
                *s = true;
            }
        }
        // no timestamps and no other special token in the text: only end-of-text may end it
        for s in suppressed.iter_mut().skip(sp.eot as usize + 1) {
            *s = true;
        }
        let free = self.greedy(
            fresh.clone(),
            &tokens,
            // unprimed, Whisper's estimate of no speech is read at its first step
            !primed,
            &suppressed,
            None,
            cap,
            cancel,
        )?;
        // the chance of no speech as the model estimates it unprimed: after key terms it runs
        // far lower (coughs at 0.78-0.93 unprimed are heard as "i'm dead" primed)
        let no_speech = match free.no_speech {
            Some(p) => p,
            None => self.no_speech(fresh.clone())?,
        };
        let avg_logprob = free.avg_logprob();
        // Whisper's rule for silence (no speech likely and the words unsure); encoding only the
        // utterance, not 30 s, makes the no-speech estimate run higher (the multilingual
        // model's: 0.45 on a clear English sentence; tiny.en's: 0.60-0.77 on some clearly
        // spoken names and yes-or-no answers), hence thresholds above Whisper's 0.6. Coughs and
        // noise bursts score 0.78-0.93 (README, "The offline recognisers"). A barge-in check
        // keeps Whisper's 0.6: over the agent, words heard in a sound that is likely none stop
        // it more often for a backchannel than sooner for an interruption
        let no_speech_threshold = match (sp.transcribe.is_some(), over_agent) {
            (true, _) => 0.8,
            (false, true) => 0.6,
            (false, false) => 0.7,
        };
        let silent = no_speech > no_speech_threshold && avg_logprob < -1.0;
        let mut text = normalize_text(&self.vocab.decode(&free.tokens[prompt..]));
        // how sure it is, for tuning (never the words: they are personal data)
        tracing::debug!(
            avg_logprob,
            no_speech,
            silent,
            over_agent,
            encode_ms,
            ms = started.elapsed().as_millis() as u64,
            "whisper: decoded"
        );
        // an answer to a number question with no number in it ("high beers" for "five years"):
        // decode again from the same features, with only the tokens such an answer is made of,
        // and take that when it holds a number and the model finds it nearly as likely. Not in
        // a barge-in check: its words only say whether the caller takes the floor, and forced
        // into a number a backchannel would ("okay" made "8")
        if expected.number
            && !over_agent
            && !silent
            && !text.is_empty()
            && language.as_deref().is_none_or(|l| l == "en")
            && understand::parse_number(&text).is_none()
        {
            let numbers = self.greedy(
                fresh.clone(),
                &tokens,
                false,
                &suppressed,
                // its first tokens are the least sure: give up only well below the bar
                Some((
                    &self.number_tokens,
                    avg_logprob - 2.0 * NUMBER_RESCUE_MARGIN,
                )),
                cap,
                cancel,
            )?;
            let rescued = normalize_text(&self.vocab.decode(&numbers.tokens[prompt..]));
            // nearly as likely, with a number, and not a few words standing for a sentence (a
            // question such as "what does the job pay?" forced into "1")
            let words = |t: &str| t.split(' ').filter(|w| !w.is_empty()).count();
            let taken = numbers.avg_logprob() >= avg_logprob - NUMBER_RESCUE_MARGIN
                && words(&rescued) * 2 >= words(&text)
                && understand::parse_number(&rescued).is_some();
            tracing::debug!(
                free = avg_logprob,
                numbers = numbers.avg_logprob(),
                taken,
                "whisper: second decode for a number answer"
            );
            if taken {
                text = rescued;
            }
        }
        // a barge-in check whose words would take the floor: a backchannel the check cut short
        // ("go" of "got it") is read as one when the model finds it nearly as likely; words
        // that open an interruption ("sorry", "wait") stop the agent without that decode (no
        // backchannel of the three sets of scripts/barge-in-words was heard with one)
        let mut backchannel = None;
        if let Some((allowed, margin)) = &self.backchannel
            && over_agent
            && !silent
            && language.as_deref().is_none_or(|l| l == "en")
            && understand::takes_the_floor(&text)
            && !understand::opens_an_interruption(&text)
        {
            let heard = self.greedy(
                fresh,
                &tokens,
                false,
                &suppressed,
                Some((allowed, avg_logprob - 2.0 * margin)),
                cap,
                cancel,
            )?;
            let rescued = normalize_text(&self.vocab.decode(&heard.tokens[prompt..]));
            let taken = (heard.avg_logprob() >= avg_logprob - margin)
                .then(|| understand::backchannel_cut_short(&rescued))
                .flatten();
            tracing::debug!(
                free = avg_logprob,
                backchannel = heard.avg_logprob(),
                taken = taken.is_some(),
                "whisper: second decode for a backchannel"
            );
            backchannel = taken;
        }
        if silent {
            text.clear();
        }
        if text.is_empty() {
            // a sound with no words says nothing about the language
            languages.clear();
        }
        Ok(Decoded {
            heard: Heard {
                language: language.filter(|_| !text.is_empty()),
                text,
            },
            languages,
            backchannel,
        })
    }
}

/// What the dialogue expects of an utterance, as a decode uses it.
#[derive(Debug, Clone, Default)]
struct Expected {
    /// An answer to a number question: a transcript without a number is decoded again, with
    /// only the words such an answer is made of ([`Shared::transcribe`]).
    number: bool,
    /// Words the caller is likely to say that the model may not spell as the call knows them
    /// (the places of the receptionist's positions): the decode is primed with them.
    terms: Arc<[String]>,
}

/// At most this many tokens of key terms prime a decode (Whisper allows 223 of previous text;
/// each costs the decoder a step's worth of work once per decode).
const MAX_PRIMER_TOKENS: usize = 48;

impl Shared {
    /// `<|startofprev|>` and the tokens of `terms` as one line of text (" Phoenix, Mesa,
    /// Tempe."), the last ones kept when they are too many; empty without terms or priming.
    fn primer(&self, terms: &[String]) -> Vec<u32> {
        let (Some(p), false) = (&self.priming, terms.is_empty()) else {
            return Vec::new();
        };
        let text = format!(" {}.", terms.join(", "));
        let Ok(encoding) = p.tokenizer.encode(text.as_str(), false) else {
            return Vec::new();
        };
        let ids = encoding.get_ids();
        let ids = &ids[ids.len().saturating_sub(MAX_PRIMER_TOKENS)..];
        let mut primer = Vec::with_capacity(ids.len() + 1);
        primer.push(p.start_of_prev);
        primer.extend(ids.iter().filter(|&&id| id < self.specials.eot));
        primer
    }
}

/// What a barge-in check's decode is primed with (English-only models), as the text before the
/// caller's: a hum and the word most interruptions open with, so that a backchannel cut short
/// is heard as one rather than as a word that takes the floor. Measured with
/// `scripts/barge-in-words` on four sets of interruptions and backchannels in voices never
/// tuned on (README, "The offline voice, turn-taking and barge-in"): backchannels that stop the
/// agent 41 → 30 of 178, interruptions stopped by 400 ms of speech 95 → 89 of 136 (by 600 ms 116
/// → 117). "Okay" in it made "hey" and "wait" heard as "okay".
pub const CHECK_PRIMER: &[&str] = &["Mm-hmm", "Sorry"];

/// How much less likely (mean log-probability per token, nats) a barge-in check's second
/// decode, with only the tokens of backchannels, may be than what it heard and still be taken:
/// "go" (of "got it") read as "got". Measured with `scripts/barge-in-words` on three sets of
/// interruptions and backchannels in voices never tuned on (README, "The offline voice,
/// turn-taking and barge-in"): backchannels that stop the agent 44 → 35 of 138, interruptions
/// stopped by 400 ms of speech 81 → 77 of 106.
pub const BACKCHANNEL_MARGIN: f64 = 1.0;

/// How much less likely (mean log-probability per token, nats) the second decode of an answer
/// to a number question may be than the first and still be taken. Measured on number answers
/// and non-answers in voices never tuned on (README, "The offline recognisers").
const NUMBER_RESCUE_MARGIN: f64 = 1.0;

/// One greedy decode: the prompt and the tokens after it, their summed log-probability, and the
/// chance of no speech read at the start (when asked for).
struct Greedy {
    tokens: Vec<u32>,
    generated: usize,
    sum_logprob: f64,
    no_speech: Option<f64>,
}

impl Greedy {
    /// Mean log-probability per token, end-of-text included.
    fn avg_logprob(&self) -> f64 {
        self.sum_logprob / (self.generated + 1) as f64
    }
}

impl Shared {
    /// Greedy decoding after `prompt` on a decode of the encoded features just started
    /// (`steps`: nothing fed yet); with `read_no_speech`, the chance of no speech is read at
    /// the prompt's first token (start-of-transcript: no previous text). With `only`, each step takes
    /// the likeliest of those tokens (or end-of-text), and the decode gives up once its mean
    /// log-probability after three tokens is below `floor` (it would not be taken); the
    /// log-probabilities are always the model's over every token it may emit, so that a
    /// constrained decode's score compares with a free one's.
    #[allow(clippy::too_many_arguments)]
    fn greedy(
        &self,
        mut steps: Steps,
        prompt: &[u32],
        read_no_speech: bool,
        suppressed: &[bool],
        only: Option<(&[bool], f64)>,
        cap: usize,
        cancel: &AtomicBool,
    ) -> candle_core::Result<Greedy> {
        let sp = &self.specials;
        let mut tokens = prompt.to_vec();
        let mut sum_logprob = 0f64;
        let mut no_speech = None;
        // what each step chooses among: every token, and with `only` those it allows
        let both;
        let among: &[Among] = match only {
            None => &[Among::All],
            Some((allowed, _)) => {
                both = [Among::All, Among::Allowed(allowed, sp.eot as usize)];
                &both
            }
        };
        for step in 0..cap {
            if cancel.load(Ordering::Relaxed) {
                candle_core::bail!("{CANCELLED}");
            }
            // only what the decoder has not seen: the prompt, then one token a step
            let fed = steps.fed();
            let hidden = self.decoder.forward(&mut steps, &tokens[fed..])?;
            let seq = hidden.dim(1)?;
            if step == 0 && read_no_speech {
                no_speech = Some(self.no_speech_at(&hidden)?);
            }
            let logits = self.decoder.logits_for_choice(
                &hidden.i((.., seq - 1..))?,
                |logits| {
                    for (l, &s) in logits.iter_mut().zip(suppressed) {
                        if s {
                            *l = f32::NEG_INFINITY;
                        }
                    }
                    if step == 0 {
                        for &id in &self.suppress.begin {
                            if let Some(l) = logits.get_mut(id as usize) {
                                *l = f32::NEG_INFINITY;
                            }
                        }
                    }
                },
                among,
            )?;
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let (best, &chosen) = logits
                .iter()
                .enumerate()
                .filter(|(id, _)| {
                    only.is_none_or(|(o, _)| {
                        *id as u32 == sp.eot || o.get(*id).copied().unwrap_or(false)
                    })
                })
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap_or((sp.eot as usize, &max));
            let log_sum: f64 = logits
                .iter()
                .filter(|l| l.is_finite())
                .map(|&l| f64::from(l - max).exp())
                .sum::<f64>()
                .ln();
            sum_logprob += f64::from(chosen - max) - log_sum;
            let best = best as u32;
            if best == sp.eot {
                break;
            }
            tokens.push(best);
            let repeated = repeated_tail(&tokens[prompt.len()..]);
            if repeated > 0 {
                tokens.truncate(tokens.len() - repeated);
                break;
            }
            let n = tokens.len() - prompt.len();
            if let Some((_, floor)) = only
                && n >= 3
                && sum_logprob / (n as f64) < floor
            {
                break;
            }
        }
        let generated = tokens.len() - prompt.len();
        Ok(Greedy {
            tokens,
            generated,
            sum_logprob,
            no_speech,
        })
    }
}

impl Shared {
    /// The chance that there is no speech, read after start-of-transcript alone (`steps`:
    /// nothing fed yet).
    fn no_speech(&self, mut steps: Steps) -> candle_core::Result<f64> {
        let hidden = self.decoder.forward(&mut steps, &[self.specials.sot])?;
        self.no_speech_at(&hidden)
    }

    /// The chance that there is no speech, from the decoder's outputs for a first step fed
    /// start-of-transcript first.
    fn no_speech_at(&self, hidden: &Tensor) -> candle_core::Result<f64> {
        let no = self.specials.no_speech as usize;
        let first = self.decoder.logits_for_choice(
            &hidden.i((.., 0..1))?,
            |_| {},
            &[Among::All, Among::Token(no)],
        )?;
        Ok(softmax_at(&first, no))
    }
}

/// One utterance decoded: what was heard, and (multilingual models) the log-probabilities of
/// the model's languages, in [`Specials::languages`]' order, for the call's later utterances.
#[derive(Debug, Clone, Default)]
struct Decoded {
    heard: Heard,
    languages: Vec<f32>,
    /// A barge-in check's reading of `heard` as a backchannel the check cut short, when it is one.
    backchannel: Option<String>,
}

/// The index of the likeliest language given this utterance's log-probabilities and the call's
/// earlier evidence (summed log-probabilities; empty for none).
fn likeliest(this: &[f32], prior: &[f32]) -> Option<usize> {
    this.iter()
        .enumerate()
        .map(|(i, l)| (i, l + prior.get(i).copied().unwrap_or(0.0)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

/// The largest of `logits`, and the sum of each's exponential relative to it.
fn max_and_sum(logits: &[f32]) -> (f32, f32) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    (max, logits.iter().map(|l| (l - max).exp()).sum())
}

/// The softmax of `logits` at `id` (0 past their end).
fn softmax_at(logits: &[f32], id: usize) -> f64 {
    let (max, sum) = max_and_sum(logits);
    logits
        .get(id)
        .map_or(0.0, |&l| f64::from((l - max).exp() / sum))
}

fn log_softmax(logits: impl Iterator<Item = f32>) -> Vec<f32> {
    let logits: Vec<f32> = logits.collect();
    let (max, sum) = max_and_sum(&logits);
    let log_sum = max + sum.ln();
    logits.into_iter().map(|l| l - log_sum).collect()
}

/// The evidence for the caller's language over a call's utterances so far: each language's
/// log-probability summed over them, older utterances weighing less ([`EVIDENCE_KEPT`]; empty
/// until an utterance had words). Shared by the call's sessions: a short "sí" that alone sounds
/// Italian is heard as Spanish once the caller has said a sentence in Spanish.
type LanguageEvidence = Arc<Mutex<Vec<f32>>>;

/// How much of the evidence so far each new utterance keeps: a caller who switches language
/// (a few answers in English, then "¿puedo hablar en español?") is heard in the new one from
/// their second utterance in it, not after as many as they said in the first; a short unsure
/// utterance is still outweighed by the sentence before it.
const EVIDENCE_KEPT: f32 = 0.5;

/// How many tokens at the end of `tokens` repeat what came just before them (0: none): greedy
/// decoding of a small model can get stuck in a loop, and without the 30 s window it tends to
/// say the utterance again. A phrase of 4 or more tokens said twice running, 2 or 3 tokens said
/// three times, or one token five times counts.
fn repeated_tail(tokens: &[u32]) -> usize {
    for n in (1..=16).rev() {
        let times = match n {
            1 => 5,
            2 | 3 => 3,
            _ => 2,
        };
        if tokens.len() < times * n {
            continue;
        }
        let t = &tokens[tokens.len() - times * n..];
        if t.chunks(n).all(|c| c == &t[..n]) {
            return (times - 1) * n;
        }
    }
    0
}

struct Pool {
    shared: Shared,
    decoders: Arc<LeasePool<Decoder>>,
    /// Decodes run to their end or cancelled (for tests and measurements).
    decodes: std::sync::atomic::AtomicU64,
}

/// A decoder borrowed from a model's pool.
struct Lease {
    decoder: lease::Lease<Decoder>,
    pool: Arc<Pool>,
}

impl Pool {
    /// Loads the model in `config.model_dir` and makes its decoders (the weights are shared).
    fn load(config: &WhisperConfig) -> Result<Self, BackendError> {
        let shared = Shared::load(config)?;
        let n = config.pool_size.max(1);
        let decoders = (0..n)
            .map(|i| {
                let threads = rayon::ThreadPoolBuilder::new()
                    .num_threads(config.threads_per_decode.max(1))
                    .thread_name(move |t| format!("whisper-{i}-{t}"))
                    .build()
                    .map_err(|e| BackendError::Unavailable(format!("whisper threads: {e}")))?;
                Ok(Decoder { threads })
            })
            .collect::<Result<Vec<_>, BackendError>>()?;
        Ok(Self {
            shared,
            decoders: LeasePool::new("whisper", decoders),
            decodes: Default::default(),
        })
    }

    async fn lease(self: &Arc<Self>) -> Result<Lease, BackendError> {
        Ok(Lease {
            decoder: self.decoders.lease().await?,
            pool: self.clone(),
        })
    }

    /// A decoder only if one is free now.
    fn try_lease(self: &Arc<Self>) -> Option<Lease> {
        Some(Lease {
            decoder: self.decoders.try_lease()?,
            pool: self.clone(),
        })
    }
}

/// A model's decoder pool, loaded at once or on first use (the multilingual model). A load
/// that fails is remembered: each utterance is then heard by the fallback model (the
/// multilingual model's is tiny.en: the words of an English caller still come through, with no
/// language named), or fails at once without one, and the call's fallback answers.
struct Model {
    config: WhisperConfig,
    pool: tokio::sync::OnceCell<Result<Arc<Pool>, BackendError>>,
    fallback: Option<Arc<Model>>,
}

impl Model {
    fn loaded(config: WhisperConfig, pool: Pool) -> Self {
        Self {
            config,
            pool: tokio::sync::OnceCell::new_with(Some(Ok(Arc::new(pool)))),
            fallback: None,
        }
    }

    fn lazy(config: WhisperConfig, fallback: Arc<Model>) -> Self {
        Self {
            config,
            pool: tokio::sync::OnceCell::new(),
            fallback: Some(fallback),
        }
    }

    /// The pool, when it is loaded already (the fallback's, when this one failed to load).
    fn ready(&self) -> Option<&Arc<Pool>> {
        match self.pool.get()? {
            Ok(pool) => Some(pool),
            Err(_) => self.fallback.as_ref()?.pool.get()?.as_ref().ok(),
        }
    }

    /// The pool, loading it on a blocking thread the first time.
    async fn get(&self) -> Result<Arc<Pool>, BackendError> {
        self.pool
            .get_or_init(|| async {
                let config = self.config.clone();
                let started = std::time::Instant::now();
                let pool = tokio::task::spawn_blocking(move || Pool::load(&config))
                    .await
                    .map_err(|e| BackendError::Failed(format!("whisper load task: {e}")))
                    .and_then(|p| p);
                match &pool {
                    Ok(_) => tracing::info!(
                        model = %self.config.model_dir.display(),
                        load_ms = started.elapsed().as_millis() as u64,
                        "whisper: multilingual model loaded"
                    ),
                    Err(e) => tracing::warn!(
                        error = %e,
                        fallback = self.fallback.is_some(),
                        "whisper: model failed to load"
                    ),
                }
                pool.map(Arc::new)
            })
            .await
            .clone()
    }

    /// Starts loading the model in the background if it is not loaded (outside a runtime:
    /// nothing, it loads at first use).
    fn preload(self: &Arc<Self>) {
        if self.pool.initialized() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let model = self.clone();
            runtime.spawn(async move {
                let _ = model.get().await;
            });
        }
    }

    /// A decoder, waiting for one (and for the model) if need be; the fallback's when this
    /// model cannot be loaded.
    async fn lease(&self) -> Result<Lease, BackendError> {
        match (self.get().await, &self.fallback) {
            (Ok(pool), _) => pool.lease().await,
            (Err(_), Some(fallback)) => fallback.get().await?.lease().await,
            (Err(e), None) => Err(e),
        }
    }
}

/// Decode `pcm` on a blocking thread with the leased decoder.
async fn decode_leased(
    lease: Lease,
    pcm: Arc<Vec<i16>>,
    cancel: Arc<AtomicBool>,
    prior: Vec<f32>,
    expected: Expected,
    over_agent: bool,
) -> Result<Decoded, BackendError> {
    let Lease { decoder, pool } = lease;
    decoder
        .run(move |Decoder { threads }| {
            pool.decodes.fetch_add(1, Ordering::Relaxed);
            threads
                .install(|| {
                    pool.shared
                        .transcribe(&pcm, &cancel, &prior, &expected, over_agent)
                })
                .map_err(|e| BackendError::Failed(format!("whisper: {e}")))
        })
        .await
}

/// Whisper speech-to-text. Cheap to clone; clones share the models and the decoder pools.
#[derive(Clone)]
pub struct WhisperStt {
    english: Arc<Model>,
    /// For calls in multilingual mode, when that model is installed; loaded on first use.
    multilingual: Option<Arc<Model>>,
}

impl std::fmt::Debug for WhisperStt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperStt")
            .field("multilingual", &self.multilingual.is_some())
            .finish_non_exhaustive()
    }
}

impl WhisperStt {
    /// Loads the model (about 0.2 s and 150 MB; the decoders share its weights). The
    /// multilingual model, if configured, is loaded when a multilingual call first needs it.
    pub fn new(config: WhisperConfig) -> Result<Self, BackendError> {
        let pool = Pool::load(&config)?;
        let english = Arc::new(Model::loaded(config.clone(), pool));
        let multilingual = config.multilingual_dir.clone().map(|dir| {
            Arc::new(Model::lazy(
                WhisperConfig {
                    model_dir: dir,
                    multilingual_dir: None,
                    ..config
                },
                english.clone(),
            ))
        });
        Ok(Self {
            english,
            multilingual,
        })
    }

    /// Whether calls in multilingual mode are heard by the multilingual model.
    pub fn multilingual(&self) -> bool {
        self.multilingual.is_some()
    }

    /// Whether the multilingual model's load has finished (or failed: then the English model
    /// hears multilingual calls).
    pub fn multilingual_loaded(&self) -> bool {
        self.multilingual
            .as_ref()
            .is_some_and(|m| m.pool.initialized())
    }

    /// Decodes started so far by the English model, including those started at a pause and
    /// those cancelled.
    pub fn decodes(&self) -> u64 {
        self.english
            .ready()
            .map_or(0, |p| p.decodes.load(Ordering::Relaxed))
    }

    /// Transcribe one whole utterance of 16 kHz mono audio.
    pub async fn transcribe(&self, pcm16k: Vec<i16>) -> Result<String, BackendError> {
        Ok(self.transcribe_in(pcm16k, false).await?.text)
    }

    /// Transcribe one whole utterance; `multilingual`: with the multilingual model (when
    /// installed), which also names the language.
    pub async fn transcribe_in(
        &self,
        pcm16k: Vec<i16>,
        multilingual: bool,
    ) -> Result<Heard, BackendError> {
        if pcm16k.is_empty() {
            return Ok(Heard::default());
        }
        let lease = self.model(multilingual).lease().await?;
        Ok(decode_leased(
            lease,
            Arc::new(pcm16k),
            Arc::default(),
            Vec::new(),
            Expected::default(),
            false,
        )
        .await?
        .heard)
    }

    fn model(&self, multilingual: bool) -> &Arc<Model> {
        match &self.multilingual {
            Some(m) if multilingual => m,
            _ => &self.english,
        }
    }
}

impl SpeechToText for WhisperStt {
    fn partials(&self) -> bool {
        true
    }

    fn start(&self, hint: SttHint) -> Box<dyn SttSession> {
        self.start_in(hint, false)
    }

    fn start_in(&self, hint: SttHint, multilingual: bool) -> Box<dyn SttSession> {
        self.session(hint, multilingual, &[], None)
    }

    /// The decodes are primed with the terms as Whisper's previous text.
    fn start_with_terms(
        &self,
        hint: SttHint,
        multilingual: bool,
        terms: &[String],
    ) -> Box<dyn SttSession> {
        self.session(hint, multilingual, terms, None)
    }

    /// A multilingual call's utterances share what they said about the caller's language. The
    /// multilingual model, loaded on first use, starts loading now (in the background), so that
    /// the first caller's first words do not wait for it: the greeting and the first question
    /// take longer than the load (4.5 s on a busy 2-core machine).
    fn open_call(&self, multilingual: bool, _terms: &[String]) -> Option<Box<dyn SttCall>> {
        if let Some(model) = self.multilingual.as_ref().filter(|_| multilingual) {
            model.preload();
        }
        (multilingual && self.multilingual.is_some()).then(|| {
            Box::new(WhisperCall {
                stt: self.clone(),
                evidence: LanguageEvidence::default(),
            }) as Box<dyn SttCall>
        })
    }
}

impl WhisperStt {
    fn session(
        &self,
        hint: SttHint,
        multilingual: bool,
        terms: &[String],
        evidence: Option<LanguageEvidence>,
    ) -> Box<dyn SttSession> {
        Box::new(WhisperSession {
            model: self.model(multilingual).clone(),
            expected: Expected {
                number: hint == SttHint::Number,
                terms: terms.into(),
            },
            buffer: UtteranceBuffer::default(),
            pause: PauseDetector::default(),
            early: None,
            evidence,
        })
    }
}

/// One multilingual call: its sessions weigh the call's earlier utterances when they name the
/// language.
struct WhisperCall {
    stt: WhisperStt,
    evidence: LanguageEvidence,
}

impl SttCall for WhisperCall {
    fn start(&mut self, hint: SttHint) -> Box<dyn SttSession> {
        self.start_with_terms(hint, &[])
    }

    fn start_with_terms(&mut self, hint: SttHint, terms: &[String]) -> Box<dyn SttSession> {
        self.stt
            .session(hint, true, terms, Some(self.evidence.clone()))
    }
}

// ---- one utterance ----

/// 20 ms at 16 kHz.
const FRAME: usize = crate::engine::audio::SAMPLES_16K;
/// 20 ms at 8 kHz (telephone audio).
const PHONE_FRAME: usize = crate::engine::audio::SAMPLES_8K;
/// A frame is loud (speech) this far above the quietest frame of the utterance…
const SPEECH_ABOVE_FLOOR_DB: f32 = 12.0;
/// …and above this level.
const SPEECH_MIN_DBFS: f32 = -50.0;
/// Speech frames needed before a pause counts (a click is not a turn).
const MIN_SPEECH_FRAMES: u32 = 5;

/// Finds pauses after speech in the audio of an utterance, frame by frame.
#[derive(Debug, Default)]
struct PauseDetector {
    sum_sq: f64,
    in_frame: usize,
    frames: u64,
    floor_db: Option<f32>,
    speech_frames: u32,
    /// The frame after the last speech frame (0: no speech yet).
    speech_end: u64,
}

impl PauseDetector {
    /// Feed audio in frames of `frame` samples (20 ms: [`FRAME`] at 16 kHz, [`PHONE_FRAME`] at
    /// 8 kHz); returns the end (in frames) of the speech before a pause, when this push completed
    /// the pause.
    fn push(&mut self, pcm: &[i16], frame: usize) -> Option<u64> {
        let pause_frames = EARLY_PAUSE_MS / 20;
        let mut paused = None;
        for &s in pcm {
            self.sum_sq += f64::from(s) * f64::from(s);
            self.in_frame += 1;
            if self.in_frame < frame {
                continue;
            }
            let rms = (self.sum_sq / frame as f64).sqrt().max(1.0);
            let db = (20.0 * (rms / 32768.0).log10()) as f32;
            self.sum_sq = 0.0;
            self.in_frame = 0;
            self.frames += 1;
            let floor = *self.floor_db.get_or_insert(db);
            // the floor follows the quietest frames down at once and up slowly
            self.floor_db = Some(if db < floor { db } else { floor + 0.05 });
            if db > floor + SPEECH_ABOVE_FLOOR_DB && db > SPEECH_MIN_DBFS {
                self.speech_frames += 1;
                self.speech_end = self.frames;
            } else if self.speech_frames >= MIN_SPEECH_FRAMES
                && self.frames - self.speech_end == pause_frames
            {
                paused = Some(self.speech_end);
            }
        }
        paused
    }
}

/// A background decode started at a pause (by the session itself, or asked for by
/// [`SttSession::partial`]); its result serves the end of the turn too when nothing follows.
struct Early {
    /// The speech end it covers, in frames.
    speech_end: u64,
    result: SharedFuture<BoxFuture<'static, Result<Decoded, BackendError>>>,
    cancel: Arc<AtomicBool>,
    /// Someone waits for it (`partial`): not cancelled for a speculative decode.
    awaited: bool,
    /// A barge-in check asked for it: primed for talk over the agent
    /// ([`WhisperConfig::check_primer`]), it reads a backchannel cut short as one, and serves
    /// only checks.
    over_agent: bool,
}

struct WhisperSession {
    model: Arc<Model>,
    /// What the dialogue expects of the utterance.
    expected: Expected,
    buffer: UtteranceBuffer,
    pause: PauseDetector,
    early: Option<Early>,
    /// The call's language evidence (multilingual calls).
    evidence: Option<LanguageEvidence>,
}

impl WhisperSession {
    /// What the call's earlier utterances said about the language.
    fn prior(evidence: &Option<LanguageEvidence>) -> Vec<f32> {
        evidence.as_ref().map_or_else(Vec::new, |e| {
            e.lock().unwrap_or_else(|e| e.into_inner()).clone()
        })
    }

    /// Add a final decode's language log-probabilities to the call's evidence.
    fn learn(evidence: &Option<LanguageEvidence>, decoded: &Decoded) {
        let (Some(e), false) = (evidence, decoded.languages.is_empty()) else {
            return;
        };
        let mut e = e.lock().unwrap_or_else(|e| e.into_inner());
        if e.is_empty() {
            e.clone_from(&decoded.languages);
        } else {
            for (sum, l) in e.iter_mut().zip(&decoded.languages) {
                *sum = *sum * EVIDENCE_KEPT + l;
            }
        }
    }

    /// Decode the audio so far in the background. `wait`: for a free decoder (else only if one
    /// is free now: no speculation under load).
    fn start_early(&mut self, speech_end: u64, wait: bool, over_agent: bool) -> Option<&Early> {
        if let Some(old) = self.early.take()
            && !old.awaited
        {
            old.cancel.store(true, Ordering::Relaxed);
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let lease = if wait {
            None
        } else {
            // speculation only on a loaded model with a decoder free now
            Some(self.model.ready()?.try_lease()?)
        };
        let model = self.model.clone();
        let pcm = Arc::new(self.buffer.to_vec());
        let cancel = Arc::new(AtomicBool::new(false));
        let c = cancel.clone();
        let prior = Self::prior(&self.evidence);
        let expected = self.expected.clone();
        let decode: BoxFuture<'static, Result<Decoded, BackendError>> = Box::pin(async move {
            let lease = match lease {
                Some(l) => l,
                None => model.lease().await?,
            };
            decode_leased(lease, pcm, c, prior, expected, over_agent).await
        });
        let result = decode.shared();
        // it runs whether or not anyone waits for it
        runtime.spawn(result.clone().map(|_| ()));
        self.early = Some(Early {
            speech_end,
            result,
            cancel,
            awaited: wait,
            over_agent,
        });
        self.early.as_ref()
    }
}

impl WhisperSession {
    /// The decode of the audio so far: the one running or done for it, else a new one
    /// (`over_agent`: for a barge-in check, which a decode for a pause does not serve).
    fn decode_so_far(
        &mut self,
        over_agent: bool,
    ) -> Option<SharedFuture<BoxFuture<'static, Result<Decoded, BackendError>>>> {
        let speech_end = self.pause.speech_end;
        let early = match &self.early {
            // a check's decode is primed for talk over the agent: it serves only checks
            Some(e) if e.speech_end == speech_end && e.over_agent == over_agent => e,
            _ => self.start_early(speech_end, true, over_agent)?,
        };
        Some(early.result.clone())
    }

    /// The caller paused after speech that ended at frame `end`: decode the audio so far in the
    /// background if a decoder is free.
    fn paused(&mut self, end: u64) {
        if self.model.config.early_decode
            && self.buffer.dropped() == 0
            // a decode asked for by `partial` runs: it covers this audio, or is awaited (a
            // barge-in check's serves no turn)
            && self
                .early
                .as_ref()
                .is_none_or(|e| e.over_agent || (e.speech_end != end && !e.awaited))
        {
            self.start_early(end, false, false);
        }
    }
}

impl SttSession for WhisperSession {
    fn push(&mut self, pcm16k: &[i16]) {
        self.buffer.push(pcm16k);
        if let Some(end) = self.pause.push(pcm16k, FRAME) {
            self.paused(end);
        }
    }

    fn push_phone(&mut self, mulaw: &[u8]) {
        self.buffer.push_phone(mulaw);
        let mut pcm = [0i16; PHONE_FRAME];
        for chunk in mulaw.chunks(PHONE_FRAME) {
            let pcm = &mut pcm[..chunk.len()];
            crate::engine::audio::g711::decode_into(chunk, pcm);
            if let Some(end) = self.pause.push(pcm, PHONE_FRAME) {
                self.paused(end);
            }
        }
    }

    fn partial(&mut self) -> Option<BoxFuture<'static, Result<String, BackendError>>> {
        let result = self.decode_so_far(false)?;
        Some(Box::pin(async move { Ok(result.await?.heard.text) }))
    }

    fn partial_over_agent(&mut self) -> Option<BoxFuture<'static, Result<String, BackendError>>> {
        let result = self.decode_so_far(true)?;
        Some(Box::pin(async move {
            let decoded = result.await?;
            Ok(decoded.backchannel.unwrap_or(decoded.heard.text))
        }))
    }

    fn finish(self: Box<Self>) -> BoxFuture<'static, Result<String, BackendError>> {
        let heard = self.finish_heard();
        Box::pin(async move { Ok(heard.await?.text) })
    }

    fn finish_heard(self: Box<Self>) -> BoxFuture<'static, Result<Heard, BackendError>> {
        let Self {
            model,
            expected,
            buffer,
            pause,
            early,
            evidence,
        } = *self;
        if buffer.dropped() > 0 {
            tracing::debug!(
                dropped_samples = buffer.dropped(),
                pushed_samples = buffer.pushed(),
                "utterance exceeded the STT buffer; oldest audio dropped"
            );
        }
        Box::pin(async move {
            if let Some(early) = early {
                // nothing was said after the pause: its transcript is the utterance's (not a
                // barge-in check's, primed for talk over the agent)
                if early.speech_end == pause.speech_end && !early.over_agent {
                    if let Ok(decoded) = early.result.await {
                        Self::learn(&evidence, &decoded);
                        return Ok(decoded.heard);
                    }
                } else {
                    early.cancel.store(true, Ordering::Relaxed);
                }
            }
            if buffer.len() == 0 || pause.speech_frames == 0 {
                return Ok(Heard::default());
            }
            let lease = model.lease().await?;
            let prior = Self::prior(&evidence);
            let decoded = decode_leased(
                lease,
                Arc::new(buffer.into_vec()),
                Arc::default(),
                prior,
                expected,
                false,
            )
            .await?;
            Self::learn(&evidence, &decoded);
            Ok(decoded.heard)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encoder with the cheaper GELU gives candle's encoder's features, within float error.
    #[test]
    fn the_encoder_gives_candles_features() {
        let config = WhisperConfig::new(&crate::testing::installed_models_dir());
        let shared = Shared::load(&config).unwrap();
        let mut model = shared.model.clone();
        // a second of a rising tone and its harmonics, as log-mel
        let pcm: Vec<f32> = (0..SAMPLE_RATE)
            .map(|i| {
                let t = i as f32 / SAMPLE_RATE as f32;
                (0.3 * (2.0 * std::f32::consts::PI * (200.0 + 300.0 * t) * t).sin()).sin()
            })
            .collect();
        let frames = 300;
        let mel = shared.mel.compute(&pcm, frames);
        let mel = Tensor::from_vec(mel, (1, shared.mel.n_mels(), frames), &Device::Cpu).unwrap();
        let ours = shared.encoder.forward(&mel).unwrap();
        let candles = model.encoder.forward(&mel, true).unwrap();
        assert_eq!(ours.dims(), candles.dims());
        let diff: f32 = (ours - candles)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(diff < 1e-3, "features differ by {diff}");
    }

    /// The decoder fed a step's new token at a time gives, position by position, the logits
    /// candle's decoder gives when it runs over the whole sequence.
    #[test]
    fn the_cached_decoder_gives_the_logits_of_the_whole_sequence() {
        let config = WhisperConfig::new(&crate::testing::installed_models_dir());
        let shared = Shared::load(&config).unwrap();
        let mut model = shared.model.clone();
        let state = model.config.d_model;
        // any features will do for the arithmetic: a fixed pattern over 3 s (150 positions)
        let values: Vec<f32> = (0..150 * state)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let features = Tensor::from_vec(values, (1, 150, state), &Device::Cpu).unwrap();
        let sp = &shared.specials;
        let tokens = [sp.sot, sp.no_timestamps, 502, 1438, 318, 5335, 13];

        let input = Tensor::new(&tokens[..], &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let hidden = model.decoder.forward(&input, &features, true).unwrap();
        let whole: Vec<Vec<f32>> = model
            .decoder
            .final_linear(&hidden)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2()
            .unwrap();

        let mut steps = shared.decoder.start(&features).unwrap();
        let mut stepped: Vec<Vec<f32>> = Vec::new();
        for feed in [
            &tokens[..2],
            &tokens[2..3],
            &tokens[3..4],
            &tokens[4..5],
            &tokens[5..],
        ] {
            let hidden = shared.decoder.forward(&mut steps, feed).unwrap();
            let logits = shared.decoder.logits(&hidden).unwrap();
            stepped.extend(logits.squeeze(0).unwrap().to_vec2::<f32>().unwrap());
        }
        assert_eq!(steps.fed(), tokens.len());
        assert_eq!(stepped.len(), whole.len());
        for (pos, (a, b)) in whole.iter().zip(&stepped).enumerate() {
            let diff = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            assert!(diff < 1e-3, "position {pos}: logits differ by {diff}");
            let best = |l: &[f32]| {
                l.iter()
                    .enumerate()
                    .max_by(|x, y| x.1.total_cmp(y.1))
                    .map(|(i, _)| i)
            };
            assert_eq!(best(a), best(b), "position {pos}");
        }
        // past the decoder's context is an error, not a panic
        let mut steps = shared.decoder.start(&features).unwrap();
        let too_many = vec![sp.sot; model.config.max_target_positions + 1];
        assert!(shared.decoder.forward(&mut steps, &too_many).is_err());
    }

    #[test]
    fn a_number_answer_is_made_of_number_words_digits_and_what_goes_around_them() {
        // GPT-2's byte stand-ins: `Ġ` is a space (a token that starts a word)
        let vocab = Vocabulary::parse(
            "Ġfive\nĠyears\nĠbeers\nteen\n12\nĠhigh\n.\nĠFif\nĠabout\nĠjob\n<|endoftext|>\nĠfive",
        );
        assert_eq!(
            vocab.number_answer_tokens(),
            [
                true, true, false, true, true, false, true, true, true, false, false, false
            ]
        );
    }

    #[test]
    fn a_backchannel_is_made_of_its_words_pieces_and_punctuation() {
        let vocab = Vocabulary::parse(
            "Ġgot
ĠGot
Ġgo
Ġsorry
Ġuh
-
huh
!
12
Ġwait
Ġokay
<|endoftext|>
Ġokay",
        );
        assert_eq!(
            vocab.backchannel_tokens(),
            [
                true, true, true, false, true, true, true, true, false, false, true, false, false
            ]
        );
    }

    #[test]
    fn a_short_or_bad_model_file_is_a_clear_error() {
        assert!(
            ct2::parse(&[])
                .unwrap_err()
                .contains("truncated at byte 0 reading the binary version")
        );
        assert!(
            ct2::parse(&[9, 0, 0, 0])
                .unwrap_err()
                .contains("unsupported CTranslate2 binary version 9")
        );
        // version 6, spec "WhisperSpec", revision 3, one variable cut short
        let mut b = 6u32.to_le_bytes().to_vec();
        let s = b"WhisperSpec\0";
        b.extend((s.len() as u16).to_le_bytes());
        b.extend(s);
        b.extend(3u32.to_le_bytes());
        b.extend(1u32.to_le_bytes());
        let name = b"x\0";
        b.extend((name.len() as u16).to_le_bytes());
        b.extend(name);
        b.push(1); // rank
        b.extend(4u32.to_le_bytes()); // shape [4]
        b.push(0); // f32
        b.extend(16u32.to_le_bytes());
        b.extend([0u8; 8]); // 8 of 16 bytes
        let err = ct2::parse(&b).unwrap_err();
        assert!(err.contains("x's data"), "{err}");
        // completed, with no aliases, it parses
        b.extend([0u8; 8]);
        b.extend(0u32.to_le_bytes());
        let m = ct2::parse(&b).unwrap();
        assert_eq!((m.spec.as_str(), m.revision), ("WhisperSpec", 3));
        assert_eq!(m.variables["x"].shape, vec![4]);
        // a model that is not Whisper is refused by name
        let err = candle_vars(&m, &Device::Cpu).unwrap_err();
        assert!(err.contains("decoder"), "{err}");
        // a byte count that does not match the shape
        let n = b.len();
        b[n - 4 - 16 - 4] = 12;
        assert!(ct2::parse(&b).unwrap_err().contains("does not fit"));
    }

    #[test]
    fn the_mel_filterbank_is_slaney_normalised() {
        let fb = mel::filterbank(80);
        let bins = N_FFT / 2 + 1;
        assert_eq!(fb.len(), 80 * bins);
        // every filter has weight, triangular and non-negative; filters' peaks rise in frequency
        let peak = |m: usize| {
            (0..bins)
                .max_by(|&a, &b| fb[m * bins + a].total_cmp(&fb[m * bins + b]))
                .unwrap()
        };
        for m in 0..80 {
            assert!(fb[m * bins..(m + 1) * bins].iter().all(|&w| w >= 0.0));
            assert!(fb[m * bins..(m + 1) * bins].iter().any(|&w| w > 0.0), "{m}");
            if m > 0 {
                assert!(peak(m) >= peak(m - 1));
            }
        }
        // Slaney normalisation: each triangle has unit area in Hz (bins are 40 Hz apart); the
        // wide filters at the top, sampled by many bins, show it
        for m in 60..80 {
            let area: f32 = fb[m * bins..(m + 1) * bins].iter().sum::<f32>() * 40.0;
            assert!((area - 1.0).abs() < 0.05, "filter {m}: {area}");
        }
    }

    #[test]
    fn the_log_mel_of_a_tone_peaks_at_its_frequency() {
        let mel = mel::MelSpectrogram::new(80);
        let tone: Vec<f32> = (0..16_000)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16_000.0).sin())
            .collect();
        let frames = 200;
        let m = mel.compute(&tone, frames);
        assert_eq!(m.len(), 80 * frames);
        let at = |bin: usize, t: usize| m[bin * frames + t];
        let loudest = (0..80)
            .max_by(|&a, &b| at(a, 50).total_cmp(&at(b, 50)))
            .unwrap();
        // 1 kHz is mel 15 of 0..45.2 over 82 points: filter 26 (counting from 0)
        assert!((25..=27).contains(&loudest), "{loudest}");
        let peak = m.iter().copied().fold(f32::MIN, f32::max);
        assert!(at(loudest, 50) > peak - 0.05, "{} {peak}", at(loudest, 50));
        // the silence after the tone is floored 8 (log10) below the peak: 2 after scaling
        assert!((at(loudest, 150) - (peak - 2.0)).abs() < 1e-4);
        assert!((at(3, 150) - (peak - 2.0)).abs() < 1e-4);
    }

    #[test]
    fn tokens_decode_through_the_byte_level_alphabet() {
        // ids 0..: "Hello", "Ġworld", "âĢĻ" (the bytes of ’), "Ċ" (newline)
        let v = Vocabulary::parse("Hello\n\u{120}world\n\u{e2}\u{122}\u{13b}\n\u{10a}\n");
        assert_eq!(v.len(), 4);
        assert_eq!(v.decode(&[0, 1]), "Hello world");
        assert_eq!(v.decode(&[2]), "\u{2019}");
        assert_eq!(v.decode(&[3]), "\n");
        assert_eq!(v.decode(&[0, EOT_ENGLISH, 1]), "Hello world");
    }

    #[test]
    fn text_is_normalised_like_other_transcripts() {
        assert_eq!(
            normalize_text(" Yes, my name's John O'Brien."),
            "yes my name's john o'brien"
        );
        assert_eq!(
            normalize_text("It's 555-0123, or $40,000."),
            "it's 555 0123 or 40,000"
        );
        assert_eq!(normalize_text("'Okay.' ... 2.5 years"), "okay 2.5 years");
        assert_eq!(normalize_text(""), "");
    }

    #[test]
    fn a_calls_earlier_utterances_outweigh_one_unsure_one() {
        // languages: en, es, it
        let said_sentence = log_softmax([0.0, 6.0, 1.0].into_iter());
        assert_eq!(likeliest(&said_sentence, &[]), Some(1));
        let probs: f32 = said_sentence.iter().map(|l| l.exp()).sum();
        assert!((probs - 1.0).abs() < 1e-5);
        // a short "sí" that alone sounds a little more Italian than Spanish
        let si = log_softmax([0.0, 2.0, 2.5].into_iter());
        assert_eq!(likeliest(&si, &[]), Some(2));
        assert_eq!(likeliest(&si, &said_sentence), Some(1));
        // evidence adds up utterance by utterance, the older weighing less; a sound with no
        // words adds nothing
        let evidence: LanguageEvidence = Arc::default();
        let decoded = |languages: Vec<f32>| Decoded {
            heard: Heard::default(),
            languages,
            backchannel: None,
        };
        let some = Some(evidence.clone());
        WhisperSession::learn(&some, &decoded(said_sentence.clone()));
        WhisperSession::learn(&some, &decoded(Vec::new()));
        WhisperSession::learn(&some, &decoded(si.clone()));
        let sum = WhisperSession::prior(&some);
        for ((s, a), b) in sum.iter().zip(&said_sentence).zip(&si) {
            assert!((s - (a * EVIDENCE_KEPT + b)).abs() < 1e-6);
        }
        assert!(WhisperSession::prior(&None).is_empty());
    }

    #[test]
    fn a_caller_who_switches_language_is_heard_in_it_from_their_second_utterance() {
        // languages: en, es
        let english = log_softmax([8.0, 0.0].into_iter());
        let spanish = log_softmax([0.0, 8.0].into_iter());
        let some = Some(LanguageEvidence::default());
        let decoded = |languages: &Vec<f32>| Decoded {
            heard: Heard::default(),
            languages: languages.clone(),
            backchannel: None,
        };
        for _ in 0..4 {
            WhisperSession::learn(&some, &decoded(&english));
        }
        // the first Spanish utterance after four English ones is still taken for English...
        assert_eq!(likeliest(&spanish, &WhisperSession::prior(&some)), Some(0));
        WhisperSession::learn(&some, &decoded(&spanish));
        // ... the second is Spanish
        assert_eq!(likeliest(&spanish, &WhisperSession::prior(&some)), Some(1));
    }

    #[test]
    fn special_tokens_are_found_by_name_in_either_vocabulary() {
        let mut lines: Vec<String> = (0..50257).map(|i| format!("t{i}")).collect();
        lines.push("<|endoftext|>".into()); // 50257: multilingual layout
        lines.push("<|startoftranscript|>".into());
        lines.push("<|en|>".into());
        lines.push("<|es|>".into());
        for name in ["<|transcribe|>", "<|nocaptions|>", "<|notimestamps|>"] {
            lines.push(name.into());
        }
        while lines.len() < MULTILINGUAL_VOCAB {
            lines.push(format!("<|{}|>", lines.len()));
        }
        let vocab = Vocabulary::parse(&lines.join("\n"));
        let sp = Specials::find(&vocab, &[50259, 50260]).unwrap();
        assert_eq!((sp.eot, sp.sot, sp.transcribe), (50257, 50258, Some(50261)));
        assert_eq!((sp.no_speech, sp.no_timestamps), (50262, 50263));
        assert_eq!(
            sp.languages,
            vec![(50259, "en".to_string()), (50260, "es".to_string())]
        );
        // a multilingual model must name its languages
        assert!(Specials::find(&vocab, &[]).is_err());
        // special tokens never reach the text
        assert_eq!(vocab.decode(&[1, 50257, 50259]), "t1");
    }

    #[test]
    fn loops_are_caught() {
        assert_eq!(repeated_tail(&[1, 2, 3, 2, 3, 2, 3]), 4);
        assert_eq!(repeated_tail(&[5, 5, 5, 5, 5]), 4);
        assert_eq!(repeated_tail(&[9, 1, 2, 3, 4, 1, 2, 3, 4]), 4);
        // "five five five" and "no no" are things callers say
        assert_eq!(repeated_tail(&[5, 5, 5]), 0);
        assert_eq!(repeated_tail(&[7, 8, 7, 8]), 0);
        assert_eq!(repeated_tail(&[1, 2, 3, 4, 5]), 0);
    }

    #[test]
    fn pauses_after_speech_are_found() {
        let mut d = PauseDetector::default();
        let quiet = vec![3i16; FRAME * 10];
        let loud: Vec<i16> = (0..FRAME * 20)
            .map(|i| if i % 20 < 10 { 8000 } else { -8000 })
            .collect();
        assert_eq!(d.push(&quiet, FRAME), None);
        assert_eq!(d.push(&loud, FRAME), None);
        // 300 ms of quiet after 30 frames: the pause is reported once, with the speech's end
        let pause = vec![3i16; FRAME * 20];
        assert_eq!(d.push(&pause[..FRAME * 14], FRAME), None);
        assert_eq!(d.push(&pause[FRAME * 14..FRAME * 15], FRAME), Some(30));
        assert_eq!(d.push(&pause[FRAME * 15..], FRAME), None);
    }
}
