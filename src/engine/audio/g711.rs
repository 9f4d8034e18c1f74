//! G.711 µ-law (PCMU), the codec of every carrier media stream, and A-law (PCMA), which Telnyx and
//! SignalWire can send instead.
//!
//! Decoding is a 256-entry table computed at compile time; it is bit-identical to SoX and to the
//! ITU-T G.711 reference (`0x00` → -32124, `0x80` → 32124, `0xFF` and `0x7F` → 0). Encoding is the
//! Sun/CCITT `14linear2ulaw` (bias 0x21, clip 8159) fed with the sample rounded to 14 bits, as
//! SoX does, done with bit operations: bit-identical to `sox -D` for all 65536 inputs, and
//! `ulaw_encode(ulaw_decode(b)) == b` for every code word except the "negative zero" `0x7F`,
//! which encodes back to `0xFF`.
//!
//! A-law is the same construction on 13 bits (G.711 §A): decoding is a compile-time table
//! (`0xD5` → 8, `0x55` → -8, `0xAA` → 32256), encoding rounds to 13 bits and clips as SoX does;
//! both are bit-identical to SoX, and every A-law code word round-trips. [`ULAW_TO_ALAW`] and
//! [`ALAW_TO_ULAW`] transcode through the linear value, one table look-up per sample.

/// µ-law bias, in 16-bit sample units.
const BIAS: i32 = 0x84;
/// Largest 14-bit magnitude that still encodes inside the code space.
const CLIP: i32 = 8159;

const fn decode_one(b: u8) -> i16 {
    let u = !b;
    let exponent = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn build_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = decode_one(i as u8);
        i += 1;
    }
    table
}

/// µ-law code word → linear 16-bit sample.
pub static ULAW_TO_LINEAR: [i16; 256] = build_table();

/// Decodes one µ-law byte.
#[inline]
pub fn ulaw_decode(b: u8) -> i16 {
    ULAW_TO_LINEAR[b as usize]
}

/// Encodes one linear 16-bit sample as µ-law.
#[inline]
pub const fn ulaw_encode(s: i16) -> u8 {
    // Round to 14 bits (as SoX does), then sign and magnitude.
    let mut v = ((s as i32) + 2) >> 2;
    let mask: u8 = if v < 0 {
        v = -v;
        0x7F
    } else {
        0xFF
    };
    if v > CLIP {
        v = CLIP;
    }
    v += BIAS >> 2;
    // Segment: 0 for v <= 0x3F, 1 for v <= 0x7F, ... 8 (out of range) for v >= 0x2000.
    let seg = 32 - ((v as u32) >> 6).leading_zeros();
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let uval = ((seg << 4) as u8) | (((v >> (seg + 1)) & 0x0F) as u8);
    uval ^ mask
}

/// Decodes `src` into the first `src.len()` samples of `dst`. If `dst` is shorter, only
/// `dst.len()` bytes are decoded (never panics).
#[inline]
pub fn decode_into(src: &[u8], dst: &mut [i16]) {
    for (d, &b) in dst.iter_mut().zip(src) {
        *d = ULAW_TO_LINEAR[b as usize];
    }
}

/// Encodes `src` into the first `src.len()` bytes of `dst`. If `dst` is shorter, only
/// `dst.len()` samples are encoded (never panics).
#[inline]
pub fn encode_into(src: &[i16], dst: &mut [u8]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = ulaw_encode(s);
    }
}

// ---- A-law ------------------------------------------------------------------------------------

const fn alaw_decode_one(a: u8) -> i16 {
    // Even bits are inverted on the wire.
    let a = a ^ 0x55;
    let segment = ((a >> 4) & 0x07) as i32;
    let mantissa = (a & 0x0F) as i32;
    // Segment 0 is linear (step 2 in 13-bit units); segment n >= 1 has an implicit leading one
    // and step 2^n. Values are the segment's mid-points, scaled to 16 bits.
    let magnitude = if segment == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (segment - 1)
    };
    if a & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

/// Encodes one linear 16-bit sample as A-law.
#[inline]
pub const fn alaw_encode(s: i16) -> u8 {
    // Round to 13 bits and clip, as SoX does.
    let mut v = ((s as i32) + 4) >> 3;
    if v > 4095 {
        v = 4095;
    }
    let mask: u8 = if v >= 0 {
        0xD5
    } else {
        // One's complement of the magnitude: -1 → 0, -4096 → 4095.
        v = -v - 1;
        0x55
    };
    // Segment: 0 for v <= 0x1F, then one per doubling, up to 7 for v <= 0xFFF.
    let segment = 32 - ((v as u32) >> 5).leading_zeros();
    let mantissa = if segment < 2 {
        (v >> 1) & 0x0F
    } else {
        (v >> segment) & 0x0F
    };
    (((segment << 4) as u8) | mantissa as u8) ^ mask
}

const fn build_alaw_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = alaw_decode_one(i as u8);
        i += 1;
    }
    table
}

/// A-law code word → linear 16-bit sample.
pub static ALAW_TO_LINEAR: [i16; 256] = build_alaw_table();

/// Decodes one A-law byte.
#[inline]
pub fn alaw_decode(b: u8) -> i16 {
    ALAW_TO_LINEAR[b as usize]
}

const fn build_ulaw_to_alaw() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = alaw_encode(decode_one(i as u8));
        i += 1;
    }
    table
}

const fn build_alaw_to_ulaw() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = ulaw_encode(alaw_decode_one(i as u8));
        i += 1;
    }
    table
}

/// µ-law code word → the A-law code word nearest its value.
pub static ULAW_TO_ALAW: [u8; 256] = build_ulaw_to_alaw();
/// A-law code word → the µ-law code word nearest its value.
pub static ALAW_TO_ULAW: [u8; 256] = build_alaw_to_ulaw();

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward port of the Sun/CCITT reference encoder (`g711.c`, as used by SoX), with the
    /// segment search done by table, to check the bit-twiddled version against.
    fn reference_encode(pcm: i16) -> u8 {
        const SEG_UEND: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
        // SoX's SOX_SAMPLE_TO_SIGNED(14, ..): round to nearest.
        let mut pcm_val = (pcm as i32 + 2) >> 2;
        let mask = if pcm_val < 0 {
            pcm_val = -pcm_val;
            0x7F
        } else {
            0xFF
        };
        if pcm_val > 8159 {
            pcm_val = 8159;
        }
        pcm_val += 0x84 >> 2;
        let seg = SEG_UEND.iter().position(|&e| pcm_val <= e).unwrap_or(8);
        if seg >= 8 {
            0x7F ^ mask
        } else {
            let uval = ((seg as i32) << 4) | ((pcm_val >> (seg + 1)) & 0xF);
            (uval as u8) ^ mask
        }
    }

    #[test]
    fn decode_known_values() {
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(ulaw_decode(0xFE), 8);
        assert_eq!(ulaw_decode(0x7E), -8);
        assert_eq!(ulaw_decode(0xF0), 120);
        assert_eq!(ulaw_decode(0xEF), 132);
        assert_eq!(ulaw_decode(0x70), -120);
    }

    #[test]
    fn table_is_monotonic_per_sign() {
        // 0x80..=0xFF: positive, decreasing magnitude; 0x00..=0x7F: negative, increasing.
        for b in 0x80u8..0xFF {
            assert!(ulaw_decode(b) > ulaw_decode(b + 1));
        }
        for b in 0x00u8..0x7F {
            assert!(ulaw_decode(b) < ulaw_decode(b + 1));
        }
        for b in 0u8..=0x7F {
            assert_eq!(ulaw_decode(b), -ulaw_decode(b | 0x80));
        }
    }

    fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
        bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        })
    }

    /// Checksums of SoX 14.4's output: the table is `bytes 0..=255` decoded by
    /// `sox -t raw -e mu-law -b 8 all.ul -e signed -b 16 -L all.s16`; the encoder is the ramp
    /// -32768..=32767 encoded by `sox -D -e signed -b 16 -L ramp.s16 -e mu-law ramp.ul`.
    #[test]
    fn bit_identical_to_sox() {
        let table = fnv1a(ULAW_TO_LINEAR.iter().flat_map(|x| x.to_le_bytes()));
        assert_eq!(table, 0xb91e_65d6_8481_a1a8);
        let encoded = fnv1a((i16::MIN..=i16::MAX).map(ulaw_encode));
        assert_eq!(encoded, 0xe1ee_ec5d_0a7b_09f1);
        let abs: i64 = ULAW_TO_LINEAR.iter().map(|&x| (x as i64).abs()).sum();
        assert_eq!(abs, 1_532_928);
    }

    #[test]
    fn encoder_matches_reference_for_every_sample() {
        for s in i16::MIN..=i16::MAX {
            assert_eq!(ulaw_encode(s), reference_encode(s), "sample {s}");
        }
    }

    #[test]
    fn code_words_round_trip() {
        for b in 0u8..=255 {
            let expected = if b == 0x7F { 0xFF } else { b };
            assert_eq!(ulaw_encode(ulaw_decode(b)), expected, "code {b:#04x}");
        }
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
    }

    #[test]
    fn slices_never_panic_on_length_mismatch() {
        let src = [0xFFu8, 0x00, 0x80];
        let mut short = [1i16; 2];
        decode_into(&src, &mut short);
        assert_eq!(short, [0, -32124]);
        let mut long = [1i16; 5];
        decode_into(&src, &mut long);
        assert_eq!(long, [0, -32124, 32124, 1, 1]);
        let mut enc = [0u8; 2];
        encode_into(&[0, 32124, 5], &mut enc);
        assert_eq!(enc, [0xFF, 0x80]);
    }

    // ---- A-law --------------------------------------------------------------------------------

    #[test]
    fn alaw_known_values() {
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
        assert_eq!(alaw_decode(0x80), 5504);
        assert_eq!(alaw_decode(0x00), -5504);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(-8), 0x55);
        assert_eq!(alaw_encode(-1), 0xD5); // rounds to zero on 13 bits
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
    }

    /// Checksums of SoX 14.4's output: bytes `0..=255` decoded by
    /// `sox -t raw -e a-law -b 8 all.al -e signed -b 16 -L all.s16`; the ramp -32768..=32767
    /// encoded by `sox -D -e signed -b 16 -L ramp.s16 -e a-law ramp.al`.
    #[test]
    fn alaw_bit_identical_to_sox() {
        let table = fnv1a(ALAW_TO_LINEAR.iter().flat_map(|x| x.to_le_bytes()));
        assert_eq!(table, 0x693a_40ca_62a3_d2a5);
        let abs: i64 = ALAW_TO_LINEAR.iter().map(|&x| (x as i64).abs()).sum();
        assert_eq!(abs, 1_564_672);
        let encoded = fnv1a((i16::MIN..=i16::MAX).map(alaw_encode));
        assert_eq!(encoded, 0xb3b7_55e1_69a3_5e25);
    }

    #[test]
    fn alaw_code_words_round_trip_and_are_monotonic() {
        for b in 0u8..=255 {
            assert_eq!(alaw_encode(alaw_decode(b)), b, "code {b:#04x}");
            // The sign bit (after un-inverting) is the top bit: 1 positive, 0 negative.
            assert_eq!(alaw_decode(b), -alaw_decode(b ^ 0x80));
        }
        // Sorted by value, the code words of each sign rise with their un-inverted magnitude.
        for m in 0u8..0x7F {
            let (a, b) = ((m ^ 0x55) | 0x80, ((m + 1) ^ 0x55) | 0x80);
            assert!(alaw_decode(a) < alaw_decode(b), "{a:#04x} {b:#04x}");
        }
    }

    #[test]
    fn transcoding_tables_go_through_the_linear_value() {
        for b in 0u8..=255 {
            assert_eq!(ULAW_TO_ALAW[b as usize], alaw_encode(ulaw_decode(b)));
            assert_eq!(ALAW_TO_ULAW[b as usize], ulaw_encode(alaw_decode(b)));
            // µ-law → A-law → µ-law stays within one quantisation step of the original.
            let back = ulaw_decode(ALAW_TO_ULAW[ULAW_TO_ALAW[b as usize] as usize]) as i32;
            let orig = ulaw_decode(b) as i32;
            assert!(
                (back - orig).abs() <= (orig.abs() / 8).max(16),
                "{b:#04x}: {orig} -> {back}"
            );
        }
        // Silence maps to silence.
        assert_eq!(ULAW_TO_ALAW[0xFF], 0xD5);
        assert_eq!(ALAW_TO_ULAW[0xD5], 0xFE);
    }
}
