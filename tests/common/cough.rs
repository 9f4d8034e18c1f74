//! A synthetic cough for the tests that check a cough is no speech (`tests/neural.rs` through a
//! call, `tests/accuracy.rs` through the recogniser alone). A file of its own so that a test can
//! take it without the rest of `common` (`#[path = "common/cough.rs"] mod cough;`).

/// A cough at 8 kHz: a noise burst rising fast and fading, `ms` long, low-passed by `smooth`
/// (0: white noise), from the xorshift `seed`.
pub fn cough(ms: usize, smooth: f32, seed: u32) -> Vec<i16> {
    let mut seed = seed;
    let n = ms * 8;
    let mut prev = 0.0f32;
    (0..n)
        .map(|i| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let noise = (seed as i32 >> 16) as f32 / 32768.0;
            prev = prev * smooth + noise * (1.0 - smooth);
            let t = i as f32 / n as f32;
            let envelope = (t * 20.0).min(1.0) * (1.0 - t).powi(2);
            (prev * envelope * 12_000.0 / (1.0 - smooth).sqrt()) as i16
        })
        .collect()
}
