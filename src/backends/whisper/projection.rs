//! The decoder's last step, the projection of its output onto the vocabulary (51,864 tokens for
//! the English models), made cheap without changing a choice.
//!
//! Each greedy step multiplies one output by the whole token embedding: 51,864 × 384 f32 for
//! tiny.en, 80 MB read from memory a step, a third of a decode's time. Here the embedding is kept a
//! second time as 8-bit integers with a scale per token (20 MB), the output is rounded to 16-bit
//! integers, and the products are integer sums: a fraction of the time. That gives every logit to
//! within a bound the rounding fixes (`Approx::bound`), so only the tokens whose rounded logit is
//! within twice that bound of the best can be the best; those few are computed again exactly
//! (in f32, from the f32 embedding). So the token a step chooses is the one the exact projection
//! chooses, with its exact logit; the other tokens keep values within the bound, which move a
//! decode's log-probability (the softmax's denominator) by far less than any threshold reads.

/// A matrix's rows as 8-bit integers, each with its scale.
pub(super) struct QuantizedRows {
    cols: usize,
    q: Vec<i8>,
    scale: Vec<f32>,
    /// The largest row scale.
    max_scale: f32,
    /// The largest `scale × Σ|q|` of a row.
    max_l1: f32,
    /// The largest `|w|` of the matrix.
    max_abs: f32,
}

/// A projection's values, approximate, with the bound of their error.
pub(super) struct Approx {
    pub values: Vec<f32>,
    pub bound: f32,
}

impl QuantizedRows {
    /// `w`: `rows × cols`, row-major.
    pub(super) fn new(w: &[f32], cols: usize) -> Self {
        assert!(cols > 0 && w.len().is_multiple_of(cols));
        let rows = w.len() / cols;
        let mut q = Vec::with_capacity(w.len());
        let mut scale = Vec::with_capacity(rows);
        let (mut max_scale, mut max_l1, mut max_abs) = (0f32, 0f32, 0f32);
        for row in w.chunks_exact(cols) {
            let top = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let s = if top > 0.0 { top / 127.0 } else { 1.0 };
            let mut l1 = 0f32;
            q.extend(row.iter().map(|v| {
                let r = (v / s).round().clamp(-127.0, 127.0);
                l1 += r.abs();
                r as i8
            }));
            scale.push(s);
            max_scale = max_scale.max(s);
            max_l1 = max_l1.max(s * l1);
            max_abs = max_abs.max(top);
        }
        Self {
            cols,
            q,
            scale,
            max_scale,
            max_l1,
            max_abs,
        }
    }

    pub(super) fn rows(&self) -> usize {
        self.scale.len()
    }

    /// `W · x` for every row, each within `bound` of the exact product in real arithmetic.
    pub(super) fn project(&self, x: &[f32]) -> Approx {
        assert_eq!(x.len(), self.cols);
        let top = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let sx = if top > 0.0 { top / 32767.0 } else { 1.0 };
        let xq: Vec<i16> = x
            .iter()
            .map(|v| (v / sx).round().clamp(-32767.0, 32767.0) as i16)
            .collect();
        let mut sums = vec![0i32; self.rows()];
        integer_dots(&self.q, &xq, &mut sums);
        let values = sums
            .iter()
            .zip(&self.scale)
            .map(|(&acc, &s)| acc as f32 * (s * sx))
            .collect();
        let l1: f32 = x.iter().map(|v| v.abs()).sum();
        // |Σ w·x − s·sx·Σ q·p| ≤ (sx / 2)·s·Σ|q| + (s / 2)·Σ|x|, and f32's rounding of either
        // side, a few units in the last place of Σ|w·x| times the row's length
        let rounding = self.cols as f32 * f32::EPSILON * self.max_abs * l1;
        Approx {
            values,
            bound: sx / 2.0 * self.max_l1 + self.max_scale / 2.0 * l1 + 4.0 * rounding,
        }
    }
}

/// `sums[r] = Σ q[r, k] · x[k]`: exact in i32 (|q| ≤ 127, |x| ≤ 32767, 2^31 / (127 · 32767) =
/// 516 products per row at the worst, and Whisper's rows have 384 to 1,280; longer rows would
/// need i64).
fn integer_dots(q: &[i8], x: &[i16], sums: &mut [i32]) {
    assert!(x.len() <= 516, "rows of {} overflow i32 sums", x.len());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        unsafe { integer_dots_avx2(q, x, sums) };
        return;
    }
    integer_dots_portable(q, x, sums);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn integer_dots_avx2(q: &[i8], x: &[i16], sums: &mut [i32]) {
    use std::arch::x86_64::*;
    let cols = x.len();
    let whole = cols - cols % 16;
    for (row, sum) in q.chunks_exact(cols).zip(sums.iter_mut()) {
        let mut acc = _mm256_setzero_si256();
        for k in (0..whole).step_by(16) {
            // SAFETY: k + 16 ≤ cols = row.len() = x.len(): 16 bytes of the row and 32 of `x`
            unsafe {
                let w = _mm256_cvtepi8_epi16(_mm_loadu_si128(row.as_ptr().add(k).cast()));
                let v = _mm256_loadu_si256(x.as_ptr().add(k).cast());
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(w, v));
            }
        }
        let half = _mm_add_epi32(
            _mm256_castsi256_si128(acc),
            _mm256_extracti128_si256::<1>(acc),
        );
        let quad = _mm_add_epi32(half, _mm_shuffle_epi32::<0b01_00_11_10>(half));
        let pair = _mm_add_epi32(quad, _mm_shuffle_epi32::<0b10_11_00_01>(quad));
        let tail: i32 = row[whole..]
            .iter()
            .zip(&x[whole..])
            .map(|(&w, &v)| i32::from(w) * i32::from(v))
            .sum();
        *sum = _mm_cvtsi128_si32(pair) + tail;
    }
}

fn integer_dots_portable(q: &[i8], x: &[i16], sums: &mut [i32]) {
    for (row, sum) in q.chunks_exact(x.len()).zip(sums.iter_mut()) {
        *sum = row
            .iter()
            .zip(x)
            .map(|(&w, &v)| i32::from(w) * i32::from(v))
            .sum();
    }
}

/// Which tokens a choice is made among.
pub(super) enum Among<'a> {
    /// Every token.
    All,
    /// One token.
    Token(usize),
    /// The tokens `allowed` marks, and one more.
    Allowed(&'a [bool], usize),
}

impl Among<'_> {
    fn takes(&self, id: usize) -> bool {
        match *self {
            Among::All => true,
            Among::Token(t) => id == t,
            Among::Allowed(allowed, also) => {
                id == also || allowed.get(id).copied().unwrap_or(false)
            }
        }
    }

    /// Where the largest of `values` this selects is (`None` when all are −∞).
    fn argmax(&self, values: &[f32]) -> Option<usize> {
        match *self {
            Among::Token(t) => values
                .get(t)
                .is_some_and(|v| *v > f32::NEG_INFINITY)
                .then_some(t),
            _ => values
                .iter()
                .enumerate()
                .filter(|&(id, v)| *v > f32::NEG_INFINITY && self.takes(id))
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(id, _)| id),
        }
    }
}

/// Recompute exactly, from `weights` (`rows × cols`, f32, row-major) and `x` (`cols`), the entries
/// of `values` (approximate within `bound`, masked entries −∞) that may be the largest of those
/// a selector in `among` takes. The entry with the largest approximate value is computed first:
/// the largest exact value is at least its exact value, and an entry whose approximate value is
/// more than `bound` below that is below it exactly, so only the entries within `bound` of it are
/// computed. (Computing every entry within `2 × bound` of the largest approximate value, as
/// before, is as exact; Whisper's logits crowd below the best, so that window held about 5,000
/// tokens a choice in a barge-in check's decode, and this one holds about 50.)
pub(super) fn refine(weights: &[f32], x: &[f32], values: &mut [f32], bound: f32, among: &[Among]) {
    let cols = x.len();
    let row = |id: usize| &weights[id * cols..(id + 1) * cols];
    for select in among {
        let Some(top) = select.argmax(values) else {
            continue;
        };
        values[top] = dot(row(top), x);
        let floor = values[top] - bound;
        for (id, v) in values.iter_mut().enumerate() {
            // a value already exact is within the bound as well: computing it again gives it again
            if *v >= floor && id != top && select.takes(id) {
                *v = dot(row(id), x);
            }
        }
    }
}

/// `a · b` in f32, over eight running sums (as a vectorised matrix product adds).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0f32; 8];
    let (whole_a, tail_a) = a.split_at(a.len() - a.len() % 8);
    for (ca, cb) in whole_a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for i in 0..8 {
            sums[i] += ca[i] * cb[i];
        }
    }
    let tail: f32 = tail_a
        .iter()
        .zip(&b[whole_a.len()..])
        .map(|(p, q)| p * q)
        .sum();
    sums.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, IndexOp, Tensor};

    fn noise(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }

    #[test]
    fn the_vector_and_portable_integer_products_agree() {
        let mut seed = 3;
        for cols in [16, 37, 384, 516] {
            let rows = 50;
            let q: Vec<i8> = (0..rows * cols)
                .map(|_| (noise(&mut seed) * 254.0) as i8)
                .collect();
            let mut x: Vec<i16> = (0..cols)
                .map(|_| (noise(&mut seed) * 65534.0) as i16)
                .collect();
            // the worst case: every product at its largest
            x[0] = i16::MAX;
            let mut fast = vec![0; rows];
            let mut portable = vec![0; rows];
            integer_dots(&q, &x, &mut fast);
            integer_dots_portable(&q, &x, &mut portable);
            assert_eq!(fast, portable, "{cols} columns");
        }
        let full_q = vec![127i8; 516];
        let full_x = vec![i16::MAX; 516];
        let mut sum = [0];
        integer_dots(&full_q, &full_x, &mut sum);
        assert_eq!(i64::from(sum[0]), 516 * 127 * i64::from(i16::MAX));
    }

    /// A `rows × cols` matrix and a vector of noise, of the sizes and ranges of Whisper's.
    fn a_projection(mut seed: u64, rows: usize, cols: usize) -> (Vec<f32>, Vec<f32>) {
        let w = (0..rows * cols).map(|_| noise(&mut seed) * 0.2).collect();
        let x = (0..cols).map(|_| noise(&mut seed) * 4.0).collect();
        (w, x)
    }

    /// How many of `values` refining changed from their approximations.
    fn recomputed(values: &[f32], approx: &[f32]) -> usize {
        values.iter().zip(approx).filter(|(v, a)| v != a).count()
    }

    #[test]
    fn integer_products_are_within_their_bound_and_refining_gives_the_exact_best() {
        let (rows, cols) = (3000, 384);
        let (w, x) = a_projection(7, rows, cols);
        let q = QuantizedRows::new(&w, cols);
        let approx = q.project(&x);
        let exact: Vec<f64> = w
            .chunks_exact(cols)
            .map(|r| r.iter().zip(&x).map(|(a, b)| f64::from(a * b)).sum())
            .collect();
        let worst = approx
            .values
            .iter()
            .zip(&exact)
            .map(|(a, e)| (f64::from(*a) - e).abs())
            .fold(0.0, f64::max);
        assert!(worst > 0.0, "the integers are an approximation");
        assert!(
            worst <= f64::from(approx.bound),
            "error {worst} over the bound {}",
            approx.bound
        );

        let dev = Device::Cpu;
        let weights = Tensor::from_vec(w.clone(), (rows, cols), &dev).unwrap();
        let hidden = Tensor::from_vec(x.clone(), (1, 1, cols), &dev).unwrap();
        let full: Vec<f32> = hidden
            .broadcast_matmul(&weights.t().unwrap())
            .unwrap()
            .i((0, 0))
            .unwrap()
            .to_vec1()
            .unwrap();
        let mut values = approx.values.clone();
        values[5] = f32::NEG_INFINITY;
        let even: Vec<bool> = (0..rows).map(|id| id % 2 == 0).collect();
        refine(
            &w,
            &x,
            &mut values,
            approx.bound,
            &[Among::All, Among::Allowed(&even, 1)],
        );
        let argmax = |v: &[f32], take: &dyn Fn(usize) -> bool| {
            v.iter()
                .enumerate()
                .filter(|&(id, x)| x.is_finite() && take(id))
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(id, _)| id)
                .unwrap()
        };
        let mut masked = full.clone();
        masked[5] = f32::NEG_INFINITY;
        assert_eq!(argmax(&values, &|_| true), argmax(&masked, &|_| true));
        let odd_or_even = |id: usize| id == 1 || even[id];
        assert_eq!(argmax(&values, &odd_or_even), argmax(&masked, &odd_or_even));
        let best = argmax(&masked, &|_| true);
        assert!((values[best] - full[best]).abs() <= 1e-4 * full[best].abs().max(1.0));
        let refined = recomputed(&values, &approx.values);
        assert!(
            refined < rows / 10,
            "only the few near the best are recomputed, not {refined}"
        );
    }

    #[test]
    fn refining_recomputes_only_what_may_beat_the_exact_value_of_the_approximate_best() {
        let cols = 384;
        let (w, x) = a_projection(11, 3000, cols);
        let approx = QuantizedRows::new(&w, cols).project(&x);
        let mut values = approx.values.clone();
        refine(&w, &x, &mut values, approx.bound, &[Among::All]);
        let exact: Vec<f32> = w.chunks_exact(cols).map(|row| dot(row, &x)).collect();
        let top = Among::All.argmax(&approx.values).unwrap();
        let floor = exact[top] - approx.bound;
        let mut within_twice = 0;
        let best = approx.values[top];
        for (id, ((a, v), &exact)) in approx.values.iter().zip(&values).zip(&exact).enumerate() {
            if id == top || *a >= floor {
                assert_eq!(*v, exact, "token {id} is recomputed");
            } else {
                assert_eq!(v, a, "token {id} keeps its approximate value");
                assert!(exact < values[top], "token {id} cannot be the best");
            }
            within_twice += usize::from(*a >= best - 2.0 * approx.bound);
        }
        // never more than the window of twice the bound around the approximate best
        let refined = recomputed(&values, &approx.values);
        assert!(
            refined <= within_twice,
            "{refined} recomputed, {within_twice} within twice the bound"
        );
    }
}
