//! Carrier audio ⇄ the engine's µ-law 8 kHz. A call's codec comes from its carrier's start
//! message ([`AudioCodec`]); an [`InboundTranscoder`] turns each media payload into µ-law 8 kHz
//! for the engine, an [`OutboundTranscoder`] turns the engine's µ-law 8 kHz frames into the
//! carrier's codec.
//!
//! | codec | inbound | outbound |
//! | --- | --- | --- |
//! | µ-law 8 kHz | copied | copied |
//! | A-law 8 kHz | one table look-up per byte | one table look-up per byte |
//! | L16 8 kHz (either byte order) | µ-law encoded | µ-law decoded |
//! | L16 16/24/32/48 kHz | low-passed and decimated to 8 kHz ([`Decimator`]) | interpolated ([`Interpolator`]) |
//! | Opus | decoded straight to 8 kHz by libopus (`opus` feature) | not supported: no encoder |
//!
//! Buffers are allocated in the constructors (and grow to the largest payload once); converting
//! a payload only appends to the caller's reused `Vec`.

use std::fmt;

use super::g711::{ALAW_TO_ULAW, ULAW_TO_ALAW, ULAW_TO_LINEAR, ulaw_encode};
use super::rate::{Decimator, Interpolator};

#[cfg(feature = "opus")]
use super::opus::{OpusDecoder, OpusError};

/// Byte order of 16-bit linear PCM on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ByteOrder {
    /// Vonage, Exotel (and, as assumed here, Plivo and SignalWire).
    Little,
    /// Network byte order (RFC 2586 `audio/L16`): Telnyx.
    Big,
}

/// The audio encoding of one direction of a call's media stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioCodec {
    /// G.711 µ-law (PCMU), 8 kHz: the engine's own format.
    Mulaw,
    /// G.711 A-law (PCMA), 8 kHz.
    Alaw,
    /// 16-bit signed linear PCM, mono, at `rate` Hz.
    L16 { rate: u32, order: ByteOrder },
    /// Opus, one packet per media message. `rate` is the stream's nominal rate; decoding is
    /// always straight to 8 kHz.
    Opus { rate: u32 },
}

impl AudioCodec {
    /// Sample rate on the wire, in Hz.
    pub fn sample_rate(self) -> u32 {
        match self {
            AudioCodec::Mulaw | AudioCodec::Alaw => 8000,
            AudioCodec::L16 { rate, .. } | AudioCodec::Opus { rate } => rate,
        }
    }

    /// The codec's usual name (RTP payload format name).
    pub fn name(self) -> &'static str {
        match self {
            AudioCodec::Mulaw => "PCMU",
            AudioCodec::Alaw => "PCMA",
            AudioCodec::L16 { .. } => "L16",
            AudioCodec::Opus { .. } => "OPUS",
        }
    }

    /// Bytes of 20 ms of audio; `None` for Opus (variable bit rate).
    pub fn bytes_per_20ms(self) -> Option<usize> {
        match self {
            AudioCodec::Mulaw | AudioCodec::Alaw => Some(160),
            AudioCodec::L16 { rate, .. } => Some(rate as usize / 50 * 2),
            AudioCodec::Opus { .. } => None,
        }
    }

    /// A byte that, repeated, is silence in this codec (Opus has none).
    pub fn silence_byte(self) -> u8 {
        match self {
            AudioCodec::Mulaw => 0xFF,
            AudioCodec::Alaw => 0xD5,
            AudioCodec::L16 { .. } | AudioCodec::Opus { .. } => 0,
        }
    }

    /// Whether this build can turn the carrier's audio in this codec into the engine's.
    pub fn check_inbound(self) -> Result<(), AudioError> {
        match self {
            AudioCodec::Mulaw | AudioCodec::Alaw => Ok(()),
            AudioCodec::L16 { rate, .. } => l16_factor(rate).map(|_| ()),
            AudioCodec::Opus { .. } => {
                if cfg!(feature = "opus") {
                    Ok(())
                } else {
                    Err(AudioError::Unsupported(Unsupported::OpusNotBuilt))
                }
            }
        }
    }

    /// Whether this build can turn the engine's audio into this codec for the carrier.
    pub fn check_outbound(self) -> Result<(), AudioError> {
        match self {
            AudioCodec::Mulaw | AudioCodec::Alaw => Ok(()),
            AudioCodec::L16 { rate, .. } => l16_factor(rate).map(|_| ()),
            AudioCodec::Opus { .. } => Err(AudioError::Unsupported(Unsupported::OpusOutbound)),
        }
    }
}

impl fmt::Display for AudioCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AudioCodec::L16 { rate, order } => {
                let order = match order {
                    ByteOrder::Little => "LE",
                    ByteOrder::Big => "BE",
                };
                write!(f, "L16 {rate} Hz {order}")
            }
            other => write!(f, "{} {} Hz", other.name(), other.sample_rate()),
        }
    }
}

/// Why a codec cannot be used by this build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsupported {
    /// L16 at a rate that is not 8 kHz times 1 to 6.
    L16Rate(u32),
    /// Opus towards the engine without the `opus` feature.
    OpusNotBuilt,
    /// Opus towards the carrier: there is no encoder.
    OpusOutbound,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unsupported::L16Rate(rate) => write!(
                f,
                "L16 at {rate} Hz (supported: 8000, 16000, 24000, 32000, 48000)"
            ),
            Unsupported::OpusNotBuilt => f.write_str("OPUS (build with --features opus)"),
            Unsupported::OpusOutbound => f.write_str(
                "OPUS towards the carrier (no encoder; ask the carrier for PCMU, PCMA or L16)",
            ),
        }
    }
}

/// Why audio could not be converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AudioError {
    #[error("unsupported codec: {0}")]
    Unsupported(Unsupported),
    /// 16-bit PCM with half a sample.
    #[error("L16 payload of odd length ({0} bytes)")]
    OddLength(usize),
    /// libopus rejected the packet.
    #[cfg(feature = "opus")]
    #[error(transparent)]
    Opus(#[from] OpusError),
}

/// The decimation/interpolation factor for L16 at `rate`.
fn l16_factor(rate: u32) -> Result<usize, AudioError> {
    let factor = (rate / 8000) as usize;
    if rate.is_multiple_of(8000) && matches!(factor, 1 | 2 | 3 | 4 | 6) {
        Ok(factor)
    } else {
        Err(AudioError::Unsupported(Unsupported::L16Rate(rate)))
    }
}

#[inline]
fn read_sample(b: &[u8], order: ByteOrder) -> i16 {
    match order {
        ByteOrder::Little => i16::from_le_bytes([b[0], b[1]]),
        ByteOrder::Big => i16::from_be_bytes([b[0], b[1]]),
    }
}

#[inline]
fn sample_bytes(s: i16, order: ByteOrder) -> [u8; 2] {
    match order {
        ByteOrder::Little => s.to_le_bytes(),
        ByteOrder::Big => s.to_be_bytes(),
    }
}

enum InState {
    Mulaw,
    Alaw,
    L16 {
        order: ByteOrder,
        /// `None` at 8 kHz.
        down: Option<Decimator>,
    },
    #[cfg(feature = "opus")]
    Opus(OpusDecoder),
}

/// The carrier's audio → the engine's µ-law 8 kHz, for one call.
pub struct InboundTranscoder {
    codec: AudioCodec,
    state: InState,
    /// Linear samples at the wire rate (L16) or decoded (Opus).
    wire: Vec<i16>,
    /// Linear samples at 8 kHz.
    pcm8k: Vec<i16>,
    /// The µ-law of the last payload, for codecs that transcode (µ-law itself is lent back).
    out: Vec<u8>,
}

impl fmt::Debug for InboundTranscoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundTranscoder")
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl InboundTranscoder {
    /// A transcoder for a stream in `codec`; fails for codecs this build cannot decode.
    pub fn new(codec: AudioCodec) -> Result<Self, AudioError> {
        codec.check_inbound()?;
        let state = match codec {
            AudioCodec::Mulaw => InState::Mulaw,
            AudioCodec::Alaw => InState::Alaw,
            AudioCodec::L16 { rate, order } => {
                let factor = l16_factor(rate)?;
                InState::L16 {
                    order,
                    down: (factor > 1).then(|| Decimator::new(factor)),
                }
            }
            #[cfg(feature = "opus")]
            AudioCodec::Opus { .. } => InState::Opus(OpusDecoder::new(8000)?),
            #[cfg(not(feature = "opus"))]
            AudioCodec::Opus { .. } => {
                return Err(AudioError::Unsupported(Unsupported::OpusNotBuilt));
            }
        };
        // 120 ms at 48 kHz: the longest Opus packet, or a large L16 packet, without growing.
        // µ-law, A-law and 8 kHz L16 go straight to the output and need no scratch (11 KiB
        // saved per call).
        let scratch = match &state {
            InState::L16 { down: Some(_), .. } => true,
            #[cfg(feature = "opus")]
            InState::Opus(_) => true,
            _ => false,
        };
        Ok(Self {
            codec,
            state,
            wire: Vec::with_capacity(if scratch { 5760 } else { 0 }),
            pcm8k: Vec::with_capacity(if scratch { 960 } else { 0 }),
            // grows to the largest payload's µ-law once; never used for µ-law
            out: Vec::new(),
        })
    }

    /// The codec it decodes.
    pub fn codec(&self) -> AudioCodec {
        self.codec
    }

    /// The µ-law 8 kHz of one media payload: the payload itself when the carrier's codec is
    /// µ-law 8 kHz (no copy), else the transcoder's own buffer, valid until the next call. An
    /// empty payload gives nothing. With a decimating codec the output lags the input by the
    /// filter's delay (3 ms), so a payload's output may be one sample shorter or longer than its
    /// share.
    pub fn decode<'a>(&'a mut self, payload: &'a [u8]) -> Result<&'a [u8], AudioError> {
        let out = &mut self.out;
        out.clear();
        if payload.is_empty() {
            return Ok(&[]);
        }
        match &mut self.state {
            InState::Mulaw => return Ok(payload),
            InState::Alaw => out.extend(payload.iter().map(|&b| ALAW_TO_ULAW[b as usize])),
            InState::L16 { order, down } => {
                if !payload.len().is_multiple_of(2) {
                    return Err(AudioError::OddLength(payload.len()));
                }
                let order = *order;
                let samples = payload.chunks_exact(2).map(|b| read_sample(b, order));
                match down {
                    None => out.extend(samples.map(ulaw_encode)),
                    Some(down) => {
                        self.wire.clear();
                        self.wire.extend(samples);
                        self.pcm8k.clear();
                        down.process(&self.wire, &mut self.pcm8k);
                        out.extend(self.pcm8k.iter().map(|&s| ulaw_encode(s)));
                    }
                }
            }
            #[cfg(feature = "opus")]
            InState::Opus(dec) => {
                let room = dec.max_samples();
                self.wire.resize(room, 0);
                let n = dec.decode(payload, &mut self.wire[..room])?;
                out.extend(self.wire[..n].iter().map(|&s| ulaw_encode(s)));
            }
        }
        Ok(&self.out)
    }
}

enum OutState {
    Mulaw,
    Alaw,
    L16 {
        order: ByteOrder,
        /// `None` at 8 kHz.
        up: Option<Interpolator>,
    },
}

/// The engine's µ-law 8 kHz → the carrier's codec, for one call.
pub struct OutboundTranscoder {
    codec: AudioCodec,
    state: OutState,
    pcm8k: Vec<i16>,
    wire: Vec<i16>,
    /// The last frame in the carrier's codec, for codecs that transcode (µ-law is lent back).
    out: Vec<u8>,
}

impl fmt::Debug for OutboundTranscoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundTranscoder")
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl OutboundTranscoder {
    /// A transcoder towards a carrier that expects `codec`; fails for Opus (no encoder).
    pub fn new(codec: AudioCodec) -> Result<Self, AudioError> {
        codec.check_outbound()?;
        let state = match codec {
            AudioCodec::Mulaw => OutState::Mulaw,
            AudioCodec::Alaw => OutState::Alaw,
            AudioCodec::L16 { rate, order } => {
                let factor = l16_factor(rate)?;
                OutState::L16 {
                    order,
                    up: (factor > 1).then(|| Interpolator::new(factor)),
                }
            }
            AudioCodec::Opus { .. } => {
                return Err(AudioError::Unsupported(Unsupported::OpusOutbound));
            }
        };
        // only an interpolating codec needs scratch
        let scratch = matches!(state, OutState::L16 { up: Some(_), .. });
        Ok(Self {
            codec,
            state,
            pcm8k: Vec::with_capacity(if scratch { 160 } else { 0 }),
            wire: Vec::with_capacity(if scratch { 960 } else { 0 }),
            // grows to the largest frame once; never used for µ-law
            out: Vec::new(),
        })
    }

    /// The codec it encodes.
    pub fn codec(&self) -> AudioCodec {
        self.codec
    }

    /// `mulaw` (the engine's 8 kHz audio) in the carrier's codec: `mulaw` itself when the
    /// carrier's codec is µ-law 8 kHz (no copy), else the transcoder's own buffer, valid until
    /// the next call.
    pub fn encode<'a>(&'a mut self, mulaw: &'a [u8]) -> &'a [u8] {
        let out = &mut self.out;
        out.clear();
        match &mut self.state {
            OutState::Mulaw => return mulaw,
            OutState::Alaw => out.extend(mulaw.iter().map(|&b| ULAW_TO_ALAW[b as usize])),
            OutState::L16 { order, up: None } => {
                let order = *order;
                for &b in mulaw {
                    out.extend_from_slice(&sample_bytes(ULAW_TO_LINEAR[b as usize], order));
                }
            }
            OutState::L16 {
                order,
                up: Some(up),
            } => {
                self.pcm8k.clear();
                self.pcm8k
                    .extend(mulaw.iter().map(|&b| ULAW_TO_LINEAR[b as usize]));
                self.wire.clear();
                up.process(&self.pcm8k, &mut self.wire);
                for &s in &self.wire {
                    out.extend_from_slice(&sample_bytes(s, *order));
                }
            }
        }
        &self.out
    }

    /// Forgets the interpolator's history: call after a clear, so that the next utterance does
    /// not start with the tail of the cleared one.
    pub fn reset(&mut self) {
        if let OutState::L16 { up: Some(up), .. } = &mut self.state {
            up.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::g711::{alaw_encode, ulaw_decode};
    use super::*;

    fn tone(rate: u32, hz: f64, amplitude: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = i as f64 / rate as f64;
                (amplitude * (2.0 * std::f64::consts::PI * hz * t).sin()).round() as i16
            })
            .collect()
    }

    fn rms(x: impl Iterator<Item = i16>) -> f64 {
        let (sum, n) = x.fold((0.0, 0usize), |(s, n), v| (s + (v as f64).powi(2), n + 1));
        (sum / n.max(1) as f64).sqrt()
    }

    fn l16_bytes(samples: &[i16], order: ByteOrder) -> Vec<u8> {
        samples
            .iter()
            .flat_map(|&s| sample_bytes(s, order))
            .collect()
    }

    #[test]
    fn codec_properties() {
        let l16 = |rate| AudioCodec::L16 {
            rate,
            order: ByteOrder::Little,
        };
        assert_eq!(AudioCodec::Mulaw.bytes_per_20ms(), Some(160));
        assert_eq!(AudioCodec::Alaw.sample_rate(), 8000);
        assert_eq!(l16(8000).bytes_per_20ms(), Some(320));
        assert_eq!(l16(16000).bytes_per_20ms(), Some(640));
        assert_eq!(l16(24000).bytes_per_20ms(), Some(960));
        assert_eq!(AudioCodec::Opus { rate: 16000 }.bytes_per_20ms(), None);
        assert_eq!(AudioCodec::Mulaw.silence_byte(), 0xFF);
        assert_eq!(ulaw_decode(AudioCodec::Mulaw.silence_byte()), 0);
        assert_eq!(
            super::super::g711::alaw_decode(AudioCodec::Alaw.silence_byte()),
            8
        );
        assert_eq!(l16(16000).to_string(), "L16 16000 Hz LE");
        assert_eq!(AudioCodec::Alaw.to_string(), "PCMA 8000 Hz");
        for rate in [8000, 16000, 24000, 32000, 48000] {
            assert!(l16(rate).check_inbound().is_ok() && l16(rate).check_outbound().is_ok());
        }
        for rate in [0, 11025, 22050, 40000, 44100, 56000, 96000, u32::MAX] {
            let err = l16(rate).check_inbound().unwrap_err();
            assert_eq!(err, AudioError::Unsupported(Unsupported::L16Rate(rate)));
            assert!(InboundTranscoder::new(l16(rate)).is_err());
            assert!(OutboundTranscoder::new(l16(rate)).is_err());
        }
    }

    #[test]
    fn opus_support_is_explicit() {
        let opus = AudioCodec::Opus { rate: 16000 };
        let out = OutboundTranscoder::new(opus).unwrap_err();
        assert!(out.to_string().contains("no encoder"), "{out}");
        if cfg!(feature = "opus") {
            assert!(InboundTranscoder::new(opus).is_ok());
        } else {
            let err = InboundTranscoder::new(opus).unwrap_err();
            assert_eq!(
                err.to_string(),
                "unsupported codec: OPUS (build with --features opus)"
            );
        }
    }

    #[test]
    fn g711_both_ways() {
        let all: Vec<u8> = (0..=255).collect();
        let mut t = InboundTranscoder::new(AudioCodec::Mulaw).unwrap();
        let out = t.decode(&all).unwrap();
        assert_eq!(out, &all[..], "µ-law lent back as it is");
        assert!(std::ptr::eq(out, &all[..]), "no copy");

        let mut t = InboundTranscoder::new(AudioCodec::Alaw).unwrap();
        let out = t.decode(&all).unwrap();
        assert_eq!(out.len(), all.len());
        for (a, u) in all.iter().zip(out) {
            let (a, u) = (
                super::super::g711::alaw_decode(*a) as i32,
                ulaw_decode(*u) as i32,
            );
            assert!((a - u).abs() <= (a.abs() / 16).max(8), "{a} vs {u}");
        }

        let mut e = OutboundTranscoder::new(AudioCodec::Alaw).unwrap();
        let expected: Vec<u8> = all.iter().map(|&b| alaw_encode(ulaw_decode(b))).collect();
        assert_eq!(e.encode(&all), expected);
        // a second frame replaces the first
        assert_eq!(e.encode(&all[..3]), &expected[..3]);
        let mut e = OutboundTranscoder::new(AudioCodec::Mulaw).unwrap();
        let out = e.encode(&all);
        assert_eq!(out, all);
        assert!(std::ptr::eq(out, &all[..]), "no copy");
    }

    #[test]
    fn l16_8k_in_both_byte_orders() {
        let samples: Vec<i16> = vec![0, 1, -1, 1000, -1000, i16::MAX, i16::MIN, 0x0102];
        for order in [ByteOrder::Little, ByteOrder::Big] {
            let codec = AudioCodec::L16 { rate: 8000, order };
            let bytes = l16_bytes(&samples, order);
            let mut t = InboundTranscoder::new(codec).unwrap();
            let mulaw = t.decode(&bytes).unwrap();
            let expected: Vec<u8> = samples.iter().map(|&s| ulaw_encode(s)).collect();
            assert_eq!(mulaw, expected, "{order:?}");

            let mut e = OutboundTranscoder::new(codec).unwrap();
            let wire = e.encode(&expected);
            let decoded: Vec<i16> = expected.iter().map(|&b| ulaw_decode(b)).collect();
            assert_eq!(wire, l16_bytes(&decoded, order), "{order:?}");
        }
        // The byte orders differ on the wire.
        assert_eq!(l16_bytes(&[0x0102], ByteOrder::Little), [0x02, 0x01]);
        assert_eq!(l16_bytes(&[0x0102], ByteOrder::Big), [0x01, 0x02]);
    }

    #[test]
    fn l16_at_higher_rates_is_resampled() {
        for (rate, order) in [
            (16000u32, ByteOrder::Little),
            (16000, ByteOrder::Big),
            (24000, ByteOrder::Little),
            (48000, ByteOrder::Big),
        ] {
            let codec = AudioCodec::L16 { rate, order };
            let input = tone(rate, 440.0, 8000.0, rate as usize);
            let bytes = l16_bytes(&input, order);
            let mut t = InboundTranscoder::new(codec).unwrap();
            let mut mulaw = Vec::new();
            // In 20 ms packets, as a carrier sends them.
            for packet in bytes.chunks(codec.bytes_per_20ms().unwrap()) {
                mulaw.extend_from_slice(t.decode(packet).unwrap());
            }
            assert_eq!(mulaw.len(), 8000);
            let level = rms(mulaw[800..].iter().map(|&b| ulaw_decode(b))) / (8000.0 / 2f64.sqrt());
            assert!((0.95..1.05).contains(&level), "{rate} {order:?}: {level}");

            // And back up: 160 µ-law bytes become one 20 ms frame at the carrier's rate.
            let mut e = OutboundTranscoder::new(codec).unwrap();
            let mut wire = Vec::new();
            for frame in mulaw.chunks(160) {
                let frame = e.encode(frame);
                assert_eq!(frame.len(), codec.bytes_per_20ms().unwrap());
                wire.extend_from_slice(frame);
            }
            let back: Vec<i16> = wire
                .chunks_exact(2)
                .map(|b| read_sample(b, order))
                .collect();
            let level = rms(back[rate as usize / 10..].iter().copied()) / (8000.0 / 2f64.sqrt());
            assert!(
                (0.93..1.07).contains(&level),
                "{rate} {order:?} out: {level}"
            );
            e.reset();
        }
    }

    #[test]
    fn odd_and_empty_payloads() {
        let codec = AudioCodec::L16 {
            rate: 16000,
            order: ByteOrder::Little,
        };
        let mut t = InboundTranscoder::new(codec).unwrap();
        assert_eq!(t.decode(&[0; 640]).unwrap().len(), 160);
        assert_eq!(t.decode(&[0; 641]), Err(AudioError::OddLength(641)));
        assert_eq!(
            t.decode(&[]).unwrap(),
            &[] as &[u8],
            "nothing left of the last payload"
        );
        assert_eq!(t.codec(), codec);
        let mut t = InboundTranscoder::new(AudioCodec::Mulaw).unwrap();
        assert!(t.decode(&[]).unwrap().is_empty());
    }

    #[cfg(feature = "opus")]
    #[test]
    fn opus_packets_decode_to_mulaw_8k() {
        for rate in [8000u32, 16000, 48000] {
            let mut enc =
                opus::Encoder::new(rate, opus::Channels::Mono, opus::Application::Voip).unwrap();
            let input = tone(rate, 440.0, 8000.0, rate as usize);
            let mut t = InboundTranscoder::new(AudioCodec::Opus { rate }).unwrap();
            let mut mulaw = Vec::new();
            for frame in input.chunks_exact(rate as usize / 50) {
                let packet = enc.encode_vec(frame, 4000).unwrap();
                let out = t.decode(&packet).unwrap();
                assert_eq!(out.len(), 160);
                mulaw.extend_from_slice(out);
            }
            let level = rms(mulaw[1600..].iter().map(|&b| ulaw_decode(b))) / (8000.0 / 2f64.sqrt());
            assert!((0.8..1.25).contains(&level), "{rate}: {level}");
        }
        // Garbage is an error, not a panic, and the transcoder keeps working.
        let mut t = InboundTranscoder::new(AudioCodec::Opus { rate: 16000 }).unwrap();
        assert!(matches!(
            t.decode(&[0x03, 0x00]),
            Err(AudioError::Opus(OpusError::InvalidPacket))
        ));
        let mut x = 0x9E37_79B9u32;
        for len in 1..200 {
            let packet: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = t.decode(&packet);
        }
    }
}
