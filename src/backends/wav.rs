//! 16-bit PCM WAV in memory: what the OpenAI-compatible transcription endpoint takes, and what
//! some OpenAI-compatible speech servers return.

use super::BackendError;

/// A mono 16-bit PCM WAV file of `pcm` at `sample_rate`.
pub fn encode(pcm: &[i16], sample_rate: u32) -> Vec<u8> {
    let data_len = (pcm.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + pcm.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&(sample_rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in pcm {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// The samples (first channel) and sample rate of a 16-bit PCM WAV file. A streamed WAV's
/// placeholder sizes (0 or 0xFFFFFFFF) are accepted: the data then runs to the end.
pub fn decode(bytes: &[u8]) -> Result<(Vec<i16>, u32), BackendError> {
    let bad = |why: &str| BackendError::Failed(format!("bad WAV: {why}"));
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(bad("no RIFF/WAVE header"));
    }
    let mut pos = 12;
    let mut format: Option<(u16, u32)> = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]) as usize;
        let body_start = pos + 8;
        match id {
            b"fmt " => {
                let body = bytes
                    .get(body_start..body_start + 16)
                    .ok_or_else(|| bad("short fmt chunk"))?;
                let tag = u16::from_le_bytes([body[0], body[1]]);
                let channels = u16::from_le_bytes([body[2], body[3]]);
                let rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
                let bits = u16::from_le_bytes([body[14], body[15]]);
                // 0xFFFE: WAVE_FORMAT_EXTENSIBLE, whose sub-format is PCM for 16-bit audio here
                if !(tag == 1 || tag == 0xFFFE) || bits != 16 {
                    return Err(bad(&format!(
                        "format {tag} with {bits} bits, not 16-bit PCM"
                    )));
                }
                if channels == 0
                    || rate == 0
                    || rate > crate::engine::audio::resample::MAX_SAMPLE_RATE
                {
                    return Err(bad("zero channels or an impossible sample rate"));
                }
                format = Some((channels, rate));
            }
            b"data" => {
                let (channels, rate) = format.ok_or_else(|| bad("data before fmt"))?;
                let end = if len == 0 || len == u32::MAX as usize {
                    bytes.len()
                } else {
                    (body_start + len).min(bytes.len())
                };
                let frame = 2 * channels as usize;
                let pcm = bytes[body_start..end]
                    .chunks_exact(frame)
                    .map(|f| i16::from_le_bytes([f[0], f[1]]))
                    .collect();
                return Ok((pcm, rate));
            }
            _ => {}
        }
        pos = body_start + len + (len & 1);
    }
    Err(bad("no data chunk"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_streamed_sizes() {
        let pcm: Vec<i16> = (0..480).map(|i| (i * 37 % 2000) as i16 - 1000).collect();
        let wav = encode(&pcm, 24_000);
        assert_eq!(wav.len(), 44 + 960);
        assert_eq!(decode(&wav).unwrap(), (pcm.clone(), 24_000));
        // a streamed WAV: sizes unknown
        let mut streamed = wav.clone();
        streamed[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&streamed).unwrap().0, pcm);
        assert!(decode(b"RIFF\0\0\0\0WAVE").is_err());
        assert!(decode(b"not a wav file at all").is_err());
        let mut eight_bit = wav;
        eight_bit[34] = 8;
        assert!(decode(&eight_bit).is_err());
    }
}
