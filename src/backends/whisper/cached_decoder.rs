//! Whisper's text decoder, fed one step's new tokens at a time.
//!
//! candle's `TextDecoder` keeps the cross-attention's keys and values between steps but not the
//! self-attention's, so each greedy step runs every layer over the whole sequence again (the
//! prompt and every token so far). This one keeps each layer's self-attention keys and values
//! for the decode in a [`Steps`], so a step runs the layers over its new token only: the same
//! arithmetic on the same weights (shared with candle's model: the `VarBuilder`'s tensors are
//! not copied), in a fraction of the work once a transcript is a few tokens long.

use candle_core::{D, Device, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, Module, VarBuilder};
use candle_transformers::models::whisper::Config;

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
}

struct Layer {
    attn: Attention,
    attn_ln: LayerNorm,
    cross: Attention,
    cross_ln: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    mlp_ln: LayerNorm,
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
                    attn: Attention::load(n_state, vb.pp("self_attn"))?,
                    attn_ln: layer_norm(n_state, vb.pp("self_attn_layer_norm"))?,
                    cross: Attention::load(n_state, vb.pp("encoder_attn"))?,
                    cross_ln: layer_norm(n_state, vb.pp("encoder_attn_layer_norm"))?,
                    fc1: candle_nn::linear(n_state, 4 * n_state, vb.pp("fc1"))?,
                    fc2: candle_nn::linear(4 * n_state, n_state, vb.pp("fc2"))?,
                    mlp_ln: layer_norm(n_state, vb.pp("final_layer_norm"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            token_embedding: candle_nn::embedding(cfg.vocab_size, n_state, vb.pp("embed_tokens"))?,
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
        let cross = self
            .layers
            .iter()
            .map(|l| {
                let k = self.heads(&l.cross.key.forward(features)?)?;
                let v = self.heads(&l.cross.value.forward(features)?)?;
                Ok((self.scale(&k)?.transpose(2, 3)?.contiguous()?, v))
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
        for (i, layer) in self.layers.iter().enumerate() {
            let h = layer.attn_ln.forward(&x)?;
            let q = self.scale(&self.heads(&layer.attn.query.forward(&h)?)?)?;
            let k = self.scale(&self.heads(&layer.attn.key.forward(&h)?)?)?;
            let v = self.heads(&layer.attn.value.forward(&h)?)?;
            let (k, v) = match steps.past[i].take() {
                Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
                None => (k, v),
            };
            let a = self.attend(&q, &k.transpose(2, 3)?.contiguous()?, &v, mask.as_ref())?;
            steps.past[i] = Some((k, v));
            x = (x + layer.attn.out.forward(&a)?)?;

            let h = layer.cross_ln.forward(&x)?;
            let q = self.scale(&self.heads(&layer.cross.query.forward(&h)?)?)?;
            let (ck, cv) = &steps.cross[i];
            let a = self.attend(&q, ck, cv, None)?;
            x = (x + layer.cross.out.forward(&a)?)?;

            let h = layer.mlp_ln.forward(&x)?;
            x = (&x + layer.fc2.forward(&layer.fc1.forward(&h)?.gelu()?)?)?;
        }
        steps.len += n;
        self.ln.forward(&x)
    }

    /// Logits over the vocabulary for the decoder's outputs `hidden` (batch 1).
    pub(super) fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        hidden.broadcast_matmul(&self.token_embedding.embeddings().t()?)
    }

    /// (1, n, state) → (1, heads, n, state / heads).
    fn heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, s) = x.dims3()?;
        x.reshape((b, n, self.n_head, s / self.n_head))?
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
