//! Whisper's encoder and text decoder as this project runs them, on candle's tensors and the
//! weights candle's model loaded (the `VarBuilder`'s tensors are shared, not copied).
//!
//! The decoder is fed one step's new tokens at a time. candle's `TextDecoder` keeps the
//! cross-attention's keys and values between steps but not the self-attention's, so each greedy
//! step runs every layer over the whole sequence again (the prompt and every token so far). This
//! one keeps each layer's self-attention keys and values for the decode in a [`Steps`], so a
//! step runs the layers over its new token only: the same arithmetic, in a fraction of the work
//! once a transcript is a few tokens long.

use candle_core::{CpuStorage, CustomOp1, D, Device, Layout, Result, Shape, Storage, Tensor};
use candle_nn::{Conv1d, Conv1dConfig, Embedding, LayerNorm, Linear, Module, VarBuilder};
use candle_transformers::models::whisper::Config;

use super::projection::{Among, Approx, QuantizedRows, refine};

/// One attention's projections (Whisper's key projection has no bias).
struct Attention {
    query: Linear,
    key: Linear,
    value: Linear,
    out: Linear,
}

impl Attention {
    fn load(n_state: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            query: candle_nn::linear(n_state, n_state, vb.pp("q_proj"))?,
            key: candle_nn::linear_no_bias(n_state, n_state, vb.pp("k_proj"))?,
            value: candle_nn::linear(n_state, n_state, vb.pp("v_proj"))?,
            out: candle_nn::linear(n_state, n_state, vb.pp("out_proj"))?,
        })
    }

    /// Self-attention's queries, keys and values of `h`, split over `heads` (queries and keys
    /// scaled).
    fn split_qkv(&self, heads: &Heads, h: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        Ok((
            heads.scale(&heads.split(&self.query.forward(h)?)?)?,
            heads.scale(&heads.split(&self.key.forward(h)?)?)?,
            heads.split(&self.value.forward(h)?)?,
        ))
    }
}

/// A layer's self-attention and MLP, each behind its layer norm (the encoder's layers are this).
struct Block {
    attn: Attention,
    attn_ln: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    mlp_ln: LayerNorm,
}

impl Block {
    fn load(n_state: usize, vb: &VarBuilder) -> Result<Self> {
        Ok(Self {
            attn: Attention::load(n_state, vb.pp("self_attn"))?,
            attn_ln: layer_norm(n_state, vb.pp("self_attn_layer_norm"))?,
            fc1: candle_nn::linear(n_state, 4 * n_state, vb.pp("fc1"))?,
            fc2: candle_nn::linear(4 * n_state, n_state, vb.pp("fc2"))?,
            mlp_ln: layer_norm(n_state, vb.pp("final_layer_norm"))?,
        })
    }

    /// The MLP's residual step.
    fn mlp(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.mlp_ln.forward(x)?;
        x + self.fc2.forward(&gelu(&self.fc1.forward(&h)?)?)?
    }
}

/// A decoder layer: a block with the cross-attention to the encoder's features between.
struct Layer {
    block: Block,
    cross: Attention,
    cross_ln: LayerNorm,
}

fn layer_norm(n_state: usize, vb: VarBuilder) -> Result<LayerNorm> {
    Ok(LayerNorm::new(
        vb.get(n_state, "weight")?,
        vb.get(n_state, "bias")?,
        1e-5,
    ))
}

/// The decoder's weights, loaded once and shared by every decode.
pub(super) struct CachedDecoder {
    token_embedding: Embedding,
    positional_embedding: Tensor,
    layers: Vec<Layer>,
    ln: LayerNorm,
    n_head: usize,
    n_ctx: usize,
    /// The token embedding again, as integers, for the projection onto the vocabulary.
    vocabulary: QuantizedRows,
}

/// One decode's state: each layer's keys and values of the encoder's features (computed once)
/// and of the tokens fed so far (heads split, keys pre-scaled). A clone shares the tensors.
#[derive(Clone)]
pub(super) struct Steps {
    cross: Vec<(Tensor, Tensor)>,
    past: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl Steps {
    /// Tokens fed so far.
    pub(super) fn fed(&self) -> usize {
        self.len
    }
}

impl CachedDecoder {
    /// The decoder under `vb` (`model.decoder` of candle's Whisper variable names).
    pub(super) fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let n_state = cfg.d_model;
        let layers = (0..cfg.decoder_layers)
            .map(|i| {
                let vb = vb.pp(format!("layers.{i}"));
                Ok(Layer {
                    block: Block::load(n_state, &vb)?,
                    cross: Attention::load(n_state, vb.pp("encoder_attn"))?,
                    cross_ln: layer_norm(n_state, vb.pp("encoder_attn_layer_norm"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let token_embedding = candle_nn::embedding(cfg.vocab_size, n_state, vb.pp("embed_tokens"))?;
        let vocabulary = QuantizedRows::new(
            &token_embedding
                .embeddings()
                .flatten_all()?
                .to_vec1::<f32>()?,
            n_state,
        );
        Ok(Self {
            token_embedding,
            vocabulary,
            positional_embedding: vb.get(
                (cfg.max_target_positions, n_state),
                "embed_positions.weight",
            )?,
            layers,
            ln: layer_norm(n_state, vb.pp("layer_norm"))?,
            n_head: cfg.decoder_attention_heads,
            n_ctx: cfg.max_target_positions,
        })
    }

    /// A decode of the encoder's `features` (batch 1): their keys and values, layer by layer.
    pub(super) fn start(&self, features: &Tensor) -> Result<Steps> {
        let heads = Heads(self.n_head);
        let cross = self
            .layers
            .iter()
            .map(|l| {
                let k = heads.split(&l.cross.key.forward(features)?)?;
                let v = heads.split(&l.cross.value.forward(features)?)?;
                Ok((heads.scale(&k)?.transpose(2, 3)?.contiguous()?, v))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Steps {
            cross,
            past: vec![None; self.layers.len()],
            len: 0,
        })
    }

    /// A decode's next step: `tokens` (batch 1), which follow those fed before; the decoder's
    /// output for each of them, after its final layer norm.
    pub(super) fn forward(&self, steps: &mut Steps, tokens: &[u32]) -> Result<Tensor> {
        let dev = Device::Cpu;
        let n = tokens.len();
        let start = steps.len;
        if n == 0 || start + n > self.n_ctx {
            candle_core::bail!("{} tokens past {start} exceed the decoder's context", n);
        }
        let input = Tensor::new(tokens, &dev)?.unsqueeze(0)?;
        let mut x = self
            .token_embedding
            .forward(&input)?
            .broadcast_add(&self.positional_embedding.narrow(0, start, n)?)?;
        // a new token sees every earlier one and those before it among the new
        let mask = (n > 1)
            .then(|| {
                let total = start + n;
                let m: Vec<f32> = (0..n)
                    .flat_map(|i| {
                        (0..total).map(move |j| {
                            if j > start + i {
                                f32::NEG_INFINITY
                            } else {
                                0.0
                            }
                        })
                    })
                    .collect();
                Tensor::from_vec(m, (n, total), &dev)
            })
            .transpose()?;
        let heads = Heads(self.n_head);
        for (i, layer) in self.layers.iter().enumerate() {
            let h = layer.block.attn_ln.forward(&x)?;
            let (q, k, v) = layer.block.attn.split_qkv(&heads, &h)?;
            let (k, v) = match steps.past[i].take() {
                Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
                None => (k, v),
            };
            let a = heads.attend(&q, &k.transpose(2, 3)?.contiguous()?, &v, mask.as_ref())?;
            steps.past[i] = Some((k, v));
            x = (x + layer.block.attn.out.forward(&a)?)?;

            let h = layer.cross_ln.forward(&x)?;
            let q = heads.scale(&heads.split(&layer.cross.query.forward(&h)?)?)?;
            let (ck, cv) = &steps.cross[i];
            let a = heads.attend(&q, ck, cv, None)?;
            x = (x + layer.cross.out.forward(&a)?)?;

            x = layer.block.mlp(&x)?;
        }
        steps.len += n;
        self.ln.forward(&x)
    }

    /// Logits over the vocabulary for the decoder's outputs `hidden` (batch 1), exactly.
    pub(super) fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        hidden.broadcast_matmul(&self.token_embedding.embeddings().t()?)
    }

    /// Logits over the vocabulary for one decoder output `hidden` (1, 1, state), for choosing
    /// among them ([`projection`](super::projection)): `mask` sets those no choice may take to
    /// −∞; then, for each selector in `among`, every logit that may be the largest of those it
    /// selects is exact, and so the choice and its logit are; the others are within a small bound.
    pub(super) fn logits_for_choice(
        &self,
        hidden: &Tensor,
        mask: impl FnOnce(&mut [f32]),
        among: &[Among],
    ) -> Result<Vec<f32>> {
        let x: Vec<f32> = hidden.flatten_all()?.to_vec1()?;
        let Approx { mut values, bound } = self.vocabulary.project(&x);
        mask(&mut values);
        let embedding = self.token_embedding.embeddings();
        let (storage, layout) = embedding.storage_and_layout();
        let (Storage::Cpu(cpu), Some((start, end))) = (&*storage, layout.contiguous_offsets())
        else {
            candle_core::bail!("the token embedding is not one f32 block in memory");
        };
        refine(
            &cpu.as_slice::<f32>()?[start..end],
            &x,
            &mut values,
            bound,
            among,
        );
        Ok(values)
    }
}

/// Attention split over heads.
struct Heads(usize);

impl Heads {
    /// (1, n, state) → (1, heads, n, state / heads).
    fn split(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, s) = x.dims3()?;
        x.reshape((b, n, self.0, s / self.0))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// Whisper scales queries and keys each by (state / heads)^-¼.
    fn scale(&self, x: &Tensor) -> Result<Tensor> {
        let head = x.dim(D::Minus1)?;
        x * (head as f64).powf(-0.25)
    }

    /// Attention of queries `q` over keys `kt` (transposed) and values `v`, heads joined again.
    fn attend(&self, q: &Tensor, kt: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let mut qk = q.matmul(kt)?;
        if let Some(mask) = mask {
            qk = qk.broadcast_add(mask)?;
        }
        let w = candle_nn::ops::softmax_last_dim(&qk)?;
        w.matmul(v)?.transpose(1, 2)?.flatten_from(2)
    }
}

/// Whisper's audio encoder, with a GELU that costs a fraction of candle's: candle computes the
/// tanh form element by element through `tanhf`, which took about a tenth of a whole decode. The
/// same function, written as `x · σ(2u)` (`0.5 · (1 + tanh u) = σ(2u)`), needs one `expf`.
pub(super) struct Encoder {
    conv1: Conv1d,
    conv2: Conv1d,
    positional_embedding: Tensor,
    layers: Vec<Block>,
    ln_post: LayerNorm,
    n_head: usize,
}

impl Encoder {
    /// The encoder under `vb` (`model.encoder` of candle's Whisper variable names).
    pub(super) fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let n_state = cfg.d_model;
        let conv = |inputs: usize, stride: usize, vb: VarBuilder| -> Result<Conv1d> {
            Ok(Conv1d::new(
                vb.get((n_state, inputs, 3), "weight")?,
                Some(vb.get(n_state, "bias")?),
                Conv1dConfig {
                    padding: 1,
                    stride,
                    groups: 1,
                    dilation: 1,
                    cudnn_fwd_algo: None,
                },
            ))
        };
        let layers = (0..cfg.encoder_layers)
            .map(|i| Block::load(n_state, &vb.pp(format!("layers.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            conv1: conv(cfg.num_mel_bins, 1, vb.pp("conv1"))?,
            conv2: conv(n_state, 2, vb.pp("conv2"))?,
            positional_embedding: sinusoids(cfg.max_source_positions, n_state)?,
            layers,
            ln_post: layer_norm(n_state, vb.pp("layer_norm"))?,
            n_head: cfg.encoder_attention_heads,
        })
    }

    /// The features of a log-mel spectrogram `mel` (1, mels, frames): (1, frames / 2, state).
    pub(super) fn forward(&self, mel: &Tensor) -> Result<Tensor> {
        let x = gelu(&self.conv1.forward(mel)?)?;
        let x = gelu(&self.conv2.forward(&x)?)?.transpose(1, 2)?;
        let seq = x.dim(1)?;
        let mut x = x.broadcast_add(&self.positional_embedding.narrow(0, 0, seq)?)?;
        let heads = Heads(self.n_head);
        for layer in &self.layers {
            let h = layer.attn_ln.forward(&x)?;
            let (q, k, v) = layer.attn.split_qkv(&heads, &h)?;
            let a = heads.attend(&q, &k.transpose(2, 3)?.contiguous()?, &v, None)?;
            x = (x + layer.attn.out.forward(&a)?)?;
            x = layer.mlp(&x)?;
        }
        self.ln_post.forward(&x)
    }
}

/// Whisper's sinusoidal positions for the encoder: (positions, channels), sines then cosines.
fn sinusoids(positions: usize, channels: usize) -> Result<Tensor> {
    let half = channels / 2;
    let step = 10_000f32.ln() / (half - 1) as f32;
    let rates: Vec<f32> = (0..half).map(|i| (i as f32 * -step).exp()).collect();
    let mut table = Vec::with_capacity(positions * channels);
    for t in 0..positions {
        table.extend(rates.iter().map(|r| (t as f32 * r).sin()));
        table.extend(rates.iter().map(|r| (t as f32 * r).cos()));
    }
    Tensor::from_vec(table, (positions, channels), &Device::Cpu)
}

/// GELU, tanh approximation, as `x · σ(2u)` with `u = √(2/π) (x + 0.044715 x³)`.
fn gelu(x: &Tensor) -> Result<Tensor> {
    x.apply_op1_no_bwd(&Gelu)
}

struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "whisper-gelu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("whisper-gelu: f32 only");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("whisper-gelu: contiguous tensors only");
        };
        // 2 · √(2/π)
        const K: f32 = 2.0 * std::f32::consts::FRAC_2_SQRT_PI * std::f32::consts::FRAC_1_SQRT_2;
        let out = data[start..end]
            .iter()
            .map(|&x| x / (1.0 + (-K * (x + 0.044_715 * x * x * x)).exp()))
            .collect();
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}
