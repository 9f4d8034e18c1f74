//! Opus decoding for carriers and clients that send Opus (Telnyx, browser audio): one packet in,
//! mono PCM out, at 8, 16 or 48 kHz. Wraps the `opus` crate (which bundles libopus); compiled only
//! with the `opus` feature (`cargo build --features opus`; building libopus needs `cmake` and a C
//! compiler, which `.ci/setup` installs).
//!
//! No allocation per packet: libopus keeps its state in the decoder created once, and decodes
//! into the caller's buffer. Untrusted packets never panic: anything libopus rejects is an
//! [`OpusError`].

/// Longest audio one Opus packet can carry (RFC 6716 §3.2.5).
pub const MAX_PACKET_MS: usize = 120;

/// Why a packet could not be decoded, or a decoder not created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpusError {
    /// Only 8, 16 and 48 kHz are supported here (libopus also does 12 and 24 kHz).
    #[error("unsupported Opus output rate: {0} Hz")]
    UnsupportedRate(u32),
    /// An empty packet: a lost packet is concealed with [`OpusDecoder::conceal`] instead.
    #[error("empty Opus packet")]
    Empty,
    /// The packet holds more audio than the output buffer has room for.
    #[error("Opus output buffer too small: the packet holds {needed} samples, room for {room}")]
    BufferTooSmall { needed: usize, room: usize },
    /// libopus rejected the packet as corrupt.
    #[error("invalid Opus packet")]
    InvalidPacket,
    /// Any other libopus failure (bad argument, internal error).
    #[error("Opus {function} failed: {description}")]
    Codec {
        function: &'static str,
        description: &'static str,
    },
}

impl From<opus::Error> for OpusError {
    fn from(e: opus::Error) -> Self {
        match e.code() {
            opus::ErrorCode::InvalidPacket => Self::InvalidPacket,
            _ => Self::Codec {
                function: e.function(),
                description: e.description(),
            },
        }
    }
}

/// A mono Opus decoder (stereo packets are downmixed by libopus).
pub struct OpusDecoder {
    decoder: opus::Decoder,
    sample_rate: u32,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder")
            .field("sample_rate", &self.sample_rate)
            .finish_non_exhaustive()
    }
}

impl OpusDecoder {
    /// A decoder producing mono PCM at `sample_rate` (8000, 16000 or 48000).
    pub fn new(sample_rate: u32) -> Result<Self, OpusError> {
        if !matches!(sample_rate, 8000 | 16000 | 48000) {
            return Err(OpusError::UnsupportedRate(sample_rate));
        }
        let decoder = opus::Decoder::new(sample_rate, opus::Channels::Mono)?;
        Ok(Self {
            decoder,
            sample_rate,
        })
    }

    /// The output rate.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Output samples a buffer needs to hold any packet: 120 ms at the output rate.
    pub fn max_samples(&self) -> usize {
        self.sample_rate as usize * MAX_PACKET_MS / 1000
    }

    /// Decodes one packet into `out` and returns the number of samples written. `out` must have
    /// room for the packet's duration (a 20 ms packet: 960 samples at 48 kHz, 320 at 16 kHz;
    /// [`Self::max_samples`] fits any packet).
    pub fn decode(&mut self, packet: &[u8], out: &mut [i16]) -> Result<usize, OpusError> {
        if packet.is_empty() {
            return Err(OpusError::Empty);
        }
        // Checks the packet's framing (TOC byte, frame count) without decoding, so that a
        // too-small buffer is told apart from a corrupt packet.
        let needed = opus::packet::get_nb_samples(packet, self.sample_rate)?;
        if needed > out.len() {
            return Err(OpusError::BufferTooSmall {
                needed,
                room: out.len(),
            });
        }
        Ok(self.decoder.decode(packet, out, false)?)
    }

    /// Conceals one lost packet of `out.len()` samples (a multiple of 2.5 ms; typically the
    /// previous packet's duration) and returns the number of samples written.
    pub fn conceal(&mut self, out: &mut [i16]) -> Result<usize, OpusError> {
        Ok(self.decoder.decode(&[], out, false)?)
    }

    /// Forgets the stream's history (a new stream, or after a long gap).
    pub fn reset(&mut self) -> Result<(), OpusError> {
        Ok(self.decoder.reset_state()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ms` of a 440 Hz tone at `rate`, amplitude 8000.
    fn tone(rate: u32, ms: usize) -> Vec<i16> {
        let n = rate as usize * ms / 1000;
        (0..n)
            .map(|i| {
                let t = i as f32 / rate as f32;
                ((t * 2.0 * std::f32::consts::PI * 440.0).sin() * 8000.0) as i16
            })
            .collect()
    }

    fn encode_20ms(rate: u32, pcm: &[i16]) -> Vec<Vec<u8>> {
        let mut enc =
            opus::Encoder::new(rate, opus::Channels::Mono, opus::Application::Voip).unwrap();
        let frame = rate as usize / 50;
        pcm.chunks_exact(frame)
            .map(|c| enc.encode_vec(c, 4000).unwrap())
            .collect()
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&s| (s as f64) * (s as f64)).sum::<f64>() / x.len() as f64).sqrt()
    }

    #[test]
    fn a_tone_round_trips_within_tolerance() {
        for rate in [8000u32, 16000, 48000] {
            let input = tone(rate, 1000);
            let packets = encode_20ms(rate, &input);
            let mut dec = OpusDecoder::new(rate).unwrap();
            assert_eq!(dec.sample_rate(), rate);
            let mut out = vec![0i16; dec.max_samples()];
            let mut decoded = Vec::new();
            for p in &packets {
                let n = dec.decode(p, &mut out).unwrap();
                assert_eq!(n, rate as usize / 50);
                decoded.extend_from_slice(&out[..n]);
            }
            assert_eq!(decoded.len(), input.len());
            // The codec delays its output (look-ahead, a few ms); find the delay that matches
            // best, then compare the steady part.
            let skip = rate as usize / 10;
            let (delay, err) = (0..rate as usize / 100)
                .map(|d| {
                    let a = &input[skip..input.len() - skip];
                    let b = &decoded[skip + d..decoded.len() - skip + d];
                    let diff: Vec<i16> = a
                        .iter()
                        .zip(b)
                        .map(|(&x, &y)| x.saturating_sub(y))
                        .collect();
                    (d, rms(&diff))
                })
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap();
            let signal = rms(&input);
            let snr_db = 20.0 * (signal / err.max(1.0)).log10();
            println!("{rate} Hz: SNR {snr_db:.1} dB at a delay of {delay} samples");
            assert!(
                snr_db > 20.0,
                "{rate} Hz: SNR {snr_db:.1} dB at delay {delay} (signal rms {signal:.0})"
            );
            let level = rms(&decoded[skip..]) / signal;
            assert!(
                (0.8..1.25).contains(&level),
                "{rate} Hz: level ratio {level:.2}"
            );
        }
    }

    #[test]
    fn garbage_and_misuse_are_errors_not_panics() {
        let mut dec = OpusDecoder::new(16000).unwrap();
        let mut out = vec![0i16; dec.max_samples()];
        assert_eq!(dec.decode(&[], &mut out), Err(OpusError::Empty));
        // Code 3 (arbitrary frame count) with a count of 0 frames: invalid framing.
        assert_eq!(
            dec.decode(&[0x03, 0x00], &mut out),
            Err(OpusError::InvalidPacket)
        );
        // Code 3 with 63 frames of 20 ms: over the 120 ms limit.
        assert_eq!(
            dec.decode(&[0xFF, 0xFF, 0xFF, 0xFF], &mut out),
            Err(OpusError::InvalidPacket)
        );
        // Code 1 (two frames of equal size) with an odd payload length (3 bytes).
        assert_eq!(
            dec.decode(&[0x01, 0x00, 0x00, 0x00], &mut out),
            Err(OpusError::InvalidPacket)
        );
        // A valid 20 ms packet into a buffer of 10 ms.
        let packets = encode_20ms(16000, &tone(16000, 40));
        let mut small = [0i16; 160];
        assert_eq!(
            dec.decode(&packets[0], &mut small),
            Err(OpusError::BufferTooSmall {
                needed: 320,
                room: 160
            })
        );
        assert!(matches!(
            OpusDecoder::new(44100),
            Err(OpusError::UnsupportedRate(44100))
        ));
        // Random bytes: whatever libopus makes of them, no panic, and never more than the
        // buffer.
        let mut x = 0x1234_5678u32;
        for len in 1..400 {
            let packet: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            if let Ok(n) = dec.decode(&packet, &mut out) {
                assert!(n <= out.len());
            }
        }
        // The decoder still works afterwards.
        dec.reset().unwrap();
        assert_eq!(dec.decode(&packets[1], &mut out), Ok(320));
        assert_eq!(dec.conceal(&mut out[..320]), Ok(320));
    }
}
