//! The agent's own voice coming back on the caller's line (a line's hybrid, a speakerphone):
//! talk over the agent that is only its echo must not stop it, nor become the caller's turn.
//!
//! An echo is the agent's audio as it played, delayed and filtered; a caller's voice is not. So
//! when a sound over the agent is to decide something (a barge-in, or a turn that began while
//! the agent spoke or just after), its last [`WINDOW`] of audio is correlated, sample by sample,
//! with the agent's audio that played up to [`MAX_LAG_MS`] before it. Measured on flite's voice
//! echoed through a dispersive path at 10-25 dB of loss, 40-320 ms late, with line noise and
//! µ-law both ways (a Python sketch of this function over 200 ms windows): the best normalised
//! correlation of an echo was 0.76-0.98 (a tenth of the windows below 0.85); of four espeak-ng
//! and flite callers talking over the agent without echo, at most 0.52 (medians 0.10-0.23).
//! Hence [`ECHO_CORRELATION`]; and only a window weaker than the agent's audio it matches can be
//! its echo (a line loses some of what it echoes), which keeps a caller's loud tone or hum from
//! matching a harmonic of the agent's voice. A caller talking over the agent's echo is heard as
//! the caller once their voice is the louder part of the window.
//!
//! The correlation is one FFT product (three real FFTs of [`FFT_LEN`]), asked only at those
//! decisions (a few times a second at most), never per frame; per frame the caller's window is
//! fed (a copy of 160 bytes). The agent's audio is not copied: the recording keeps the spans of
//! synthesised audio it shares with the play-out for [`AGENT_FRAMES`] after they played
//! (`Recording::agent_played`), and a decision reads them there.

use std::sync::{Arc, OnceLock};

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use crate::engine::audio::{SAMPLES_8K, g711};

/// The caller's audio a decision reads: the last 160 ms.
pub(super) const WINDOW: usize = 8 * SAMPLES_8K;
/// How late after it played (as the engine schedules it) the agent's echo may come back: the
/// carrier's play-out and the network both ways, and the echo path's own delay.
pub(super) const MAX_LAG_MS: u64 = 480;
/// The agent's audio kept: the window and the lags before it, in 20 ms frames.
pub(super) const AGENT_FRAMES: usize = WINDOW / SAMPLES_8K + (MAX_LAG_MS / 20) as usize;
const AGENT_LEN: usize = AGENT_FRAMES * SAMPLES_8K;
/// A power of two at least the window and the agent's audio together (no circular wrap).
const FFT_LEN: usize = 8192;
/// The normalised correlation above which the window is the agent's echo.
pub(super) const ECHO_CORRELATION: f32 = 0.7;
/// Windows quieter than this (mean square of 16-bit samples; about -50 dBFS) are no echo to
/// decide about.
const QUIET: f32 = 33.0 * 33.0;

const _: () = assert!(FFT_LEN >= AGENT_LEN + WINDOW);

/// How much louder than the agent's audio an echo of it may come back (1 dB: the line's own
/// gain, rounding), above which the window is the caller's.
const LOUDER: f32 = 1.26;

/// µ-law's zero.
const SILENCE: u8 = 0xFF;

/// The caller's last frames, and when the agent's audio last played, for [`Echo::is_echo`].
pub struct Echo {
    /// The caller's µ-law, a ring of [`WINDOW`] samples; `caller_at` is the next write.
    caller: [u8; WINDOW],
    caller_at: usize,
    /// The last slot (20 ms of call time) that held agent audio, if any.
    agent_last: Option<u64>,
}

impl Default for Echo {
    fn default() -> Self {
        Self::new()
    }
}

impl Echo {
    pub fn new() -> Self {
        Self {
            caller: [SILENCE; WINDOW],
            caller_at: 0,
            agent_last: None,
        }
    }

    /// One caller frame (µ-law, at most [`SAMPLES_8K`]).
    pub fn push_caller(&mut self, mulaw: &[u8]) {
        let mulaw = &mulaw[mulaw.len().saturating_sub(WINDOW)..];
        let first = mulaw.len().min(WINDOW - self.caller_at);
        let (head, tail) = mulaw.split_at(first);
        self.caller[self.caller_at..self.caller_at + first].copy_from_slice(head);
        self.caller[..tail.len()].copy_from_slice(tail);
        self.caller_at = (self.caller_at + mulaw.len()) % WINDOW;
    }

    /// Agent audio plays in `slot` (the frame being heard now).
    pub(super) fn agent_plays(&mut self, slot: u64) {
        self.agent_last = Some(slot);
    }

    /// Whether agent audio played at or after `slot` less the longest echo delay: a sound
    /// heard now may be its echo.
    pub(super) fn agent_recent(&self, slot: u64) -> bool {
        self.agent_last
            .is_some_and(|last| last + (MAX_LAG_MS / 20) >= slot)
    }

    /// Whether the caller's last [`WINDOW`], ending with slot `now`, is the agent's echo: it
    /// correlates with the agent's audio of the last [`MAX_LAG_MS`] (`played(slot)`: what
    /// played in a slot) at some delay by at least [`ECHO_CORRELATION`].
    pub(super) fn is_echo<'a>(&self, now: u64, played: impl Fn(u64) -> Option<&'a [u8]>) -> bool {
        self.correlation(now, played) >= ECHO_CORRELATION
    }

    /// The best normalised correlation of the caller's window with the agent's audio before it
    /// (0 with nothing to compare).
    pub fn correlation<'a>(&self, now: u64, played: impl Fn(u64) -> Option<&'a [u8]>) -> f32 {
        // the caller's window and the agent's audio of the slots up to `now`, oldest first
        let mut y = vec![0f32; FFT_LEN];
        let mut any = false;
        for (i, frame) in y
            .chunks_exact_mut(SAMPLES_8K)
            .take(AGENT_FRAMES)
            .enumerate()
        {
            let Some(slot) = (now + 1 + i as u64).checked_sub(AGENT_FRAMES as u64) else {
                continue;
            };
            if let Some(audio) = played(slot) {
                any = true;
                for (v, &b) in frame.iter_mut().zip(audio) {
                    *v = f32::from(g711::ulaw_decode(b));
                }
            }
        }
        if !any {
            return 0.0;
        }
        let mut x = vec![0f32; FFT_LEN];
        for (i, v) in x.iter_mut().take(WINDOW).enumerate() {
            *v = f32::from(g711::ulaw_decode(
                self.caller[(self.caller_at + i) % WINDOW],
            ));
        }
        let ex: f32 = x[..WINDOW].iter().map(|v| v * v).sum();
        if ex / (WINDOW as f32) < QUIET {
            return 0.0;
        }
        // the agent's energy under the window at each offset
        let mut prefix = Vec::with_capacity(AGENT_LEN + 1);
        prefix.push(0f64);
        let mut sum = 0f64;
        for v in &y[..AGENT_LEN] {
            sum += f64::from(v * v);
            prefix.push(sum);
        }
        let c = cross_correlation(&mut x, &mut y);
        let mut best = 0f32;
        for (k, &ck) in c.iter().enumerate().take(AGENT_LEN - WINDOW + 1) {
            let ey = (prefix[k + WINDOW] - prefix[k]) as f32;
            // an echo is weaker than what it echoes (the line loses some of it): a caller
            // louder than the agent's audio at that delay is not its echo, whatever a tone or
            // a hum of theirs has in common with it
            if ey / (WINDOW as f32) < QUIET || ey * LOUDER < ex {
                continue;
            }
            best = best.max(ck.abs() / (ex * ey).sqrt());
        }
        best
    }
}

/// `c[k] = Σ x[i]·y[i + k]` for every k (x and y zero-padded to [`FFT_LEN`]); `x` and `y` are
/// used as scratch.
fn cross_correlation(x: &mut [f32], y: &mut [f32]) -> Vec<f32> {
    struct Plans {
        forward: Arc<dyn RealToComplex<f32>>,
        inverse: Arc<dyn ComplexToReal<f32>>,
    }
    static PLANS: OnceLock<Plans> = OnceLock::new();
    let plans = PLANS.get_or_init(|| {
        let mut planner = RealFftPlanner::<f32>::new();
        Plans {
            forward: planner.plan_fft_forward(FFT_LEN),
            inverse: planner.plan_fft_inverse(FFT_LEN),
        }
    });
    let mut fx = plans.forward.make_output_vec();
    let mut fy = plans.forward.make_output_vec();
    plans
        .forward
        .process(x, &mut fx)
        .expect("buffers of the plan's length");
    plans
        .forward
        .process(y, &mut fy)
        .expect("buffers of the plan's length");
    for (a, b) in fx.iter_mut().zip(&fy) {
        *a = a.conj() * b / FFT_LEN as f32;
    }
    // the inverse's input must be real at 0 and at the Nyquist bin
    if let Some(first) = fx.first_mut() {
        *first = Complex::new(first.re, 0.0);
    }
    if let Some(last) = fx.last_mut() {
        *last = Complex::new(last.re, 0.0);
    }
    let mut c = plans.inverse.make_output_vec();
    plans
        .inverse
        .process(&mut fx, &mut c)
        .expect("buffers of the plan's length");
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Speech-like audio: a buzz with a wandering pitch, in syllables, and noise.
    fn voice(seed: u32, f0: f32, n: usize) -> Vec<i16> {
        let mut s = seed;
        (0..n)
            .map(|i| {
                let t = i as f32 / 8000.0;
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                let noise = (s as f32 / u32::MAX as f32) * 2.0 - 1.0;
                let f = f0 * (1.0 + 0.08 * (2.0 * std::f32::consts::PI * 1.3 * t).sin());
                let ph = 2.0 * std::f32::consts::PI * f * t;
                let v = ph.sin() + 0.6 * (2.0 * ph).sin() + 0.4 * (3.0 * ph + 0.5).sin();
                let syl = (std::f32::consts::PI * 3.3 * t).sin().abs();
                ((0.8 * v + 0.3 * noise) * syl * 6000.0) as i16
            })
            .collect()
    }

    fn mulaw(pcm: &[i16]) -> Vec<u8> {
        pcm.iter().map(|&s| g711::ulaw_encode(s)).collect()
    }

    /// The agent's 20 ms frame `slot` of `agent`, if it has one.
    fn frame(agent: &[u8], slot: u64) -> Option<&[u8]> {
        let at = slot as usize * SAMPLES_8K;
        agent.get(at..at + SAMPLES_8K)
    }

    /// The agent plays `agent` from slot 0; the caller's line carries `line(i)` per sample; the
    /// correlation after `frames` frames.
    fn run(agent: &[i16], line: impl Fn(usize) -> f32, frames: usize) -> f32 {
        let mut echo = Echo::new();
        let agent = mulaw(agent);
        for slot in 0..frames {
            let frame: Vec<i16> = (slot * SAMPLES_8K..(slot + 1) * SAMPLES_8K)
                .map(|i| line(i).clamp(-32768.0, 32767.0) as i16)
                .collect();
            echo.push_caller(&mulaw(&frame));
        }
        echo.correlation(frames as u64 - 1, |s| frame(&agent, s))
    }

    #[test]
    fn the_agents_echo_correlates_and_a_callers_voice_does_not() {
        let agent = voice(7, 140.0, 8000 * 3);
        let caller = voice(99, 210.0, 8000 * 3);
        // a filtered echo 10 dB down, 150 ms late (1200 samples), with line noise
        let echo_at = |i: usize| -> f32 {
            let tap = |d: usize| {
                i.checked_sub(1200 + d)
                    .and_then(|j| agent.get(j))
                    .map_or(0.0, |&v| f32::from(v))
            };
            (tap(0) - 0.5 * tap(3) + 0.3 * tap(9)) * 0.316
        };
        let noise = |i: usize| ((i as f32 * 12.9898).sin() * 43758.547).fract() * 60.0;
        let heard = run(&agent, |i| echo_at(i) + noise(i), 100);
        assert!(heard >= ECHO_CORRELATION, "an echo correlated {heard}");
        // the same, 400 ms late (the longest delay kept is 480 ms)
        let late = run(
            &agent,
            |i| {
                i.checked_sub(3200)
                    .and_then(|j| agent.get(j))
                    .map_or(0.0, |&v| f32::from(v) * 0.2)
            },
            100,
        );
        assert!(late >= ECHO_CORRELATION, "a late echo correlated {late}");
        // a caller talking over the agent, with no echo
        let talk = run(&agent, |i| f32::from(caller[i]) + noise(i), 100);
        assert!(talk < 0.5 * ECHO_CORRELATION, "a caller correlated {talk}");
        // a caller talking over a weaker echo is the caller
        let both = run(&agent, |i| f32::from(caller[i]) + 0.3 * echo_at(i), 100);
        assert!(
            both < ECHO_CORRELATION,
            "a caller over an echo correlated {both}"
        );
        // line noise is no echo; a silent line, or no agent audio, nothing to decide
        let hiss = run(&agent, noise, 100);
        assert!(
            hiss < 0.5 * ECHO_CORRELATION,
            "line noise correlated {hiss}"
        );
        assert_eq!(run(&agent, |_| 0.0, 100), 0.0);
        assert_eq!(run(&[], |i| f32::from(caller[i]), 100), 0.0);
    }

    #[test]
    fn the_callers_window_keeps_the_last_frames_in_order() {
        let mut echo = Echo::new();
        for n in 0..11u8 {
            echo.push_caller(&[n; SAMPLES_8K]);
        }
        echo.push_caller(&[200; 100]);
        let window: Vec<u8> = (0..WINDOW)
            .map(|i| echo.caller[(echo.caller_at + i) % WINDOW])
            .collect();
        let mut expected = vec![3u8; 100];
        for n in 4..11u8 {
            expected.extend([n; SAMPLES_8K]);
        }
        expected.extend([200; 100]);
        let expected = expected[expected.len() - WINDOW..].to_vec();
        assert_eq!(window, expected);
    }

    #[test]
    fn agent_audio_is_recent_for_as_long_as_its_echo_may_come_back() {
        let mut echo = Echo::new();
        assert!(!echo.agent_recent(0));
        echo.agent_plays(12);
        assert!(echo.agent_recent(12 + MAX_LAG_MS / 20));
        assert!(!echo.agent_recent(13 + MAX_LAG_MS / 20));
        // the agent's audio early in the call, placed where it played
        let agent = mulaw(&voice(7, 140.0, 8000));
        let mut echo = Echo::new();
        for slot in 0..10 {
            echo.push_caller(frame(&agent, slot).unwrap());
        }
        assert!(echo.correlation(9, |s| frame(&agent, s)) > 0.99);
    }
}
