//! The buffer digest a recording carries instead of the data: `fnv4x64`,
//! four FNV-1a-64 lanes over little-endian 64-bit words (word `i` goes to
//! lane `i % 4`), the tail bytes folded into lane 0 one byte at a time,
//! then the lanes folded in order into one FNV-1a-64 state as eight
//! little-endian bytes each, and the byte length last. Not cryptographic:
//! it tells whether two runs moved the same bytes, cheaply (four
//! independent multiplies per 32 bytes).

/// The bytes `fnv4x64-sample` takes from each end of a buffer.
pub const SAMPLE: usize = 4096;

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
pub(crate) const PRIME: u64 = 0x0000_0100_0000_01b3;

/// The digest of `data`.
pub fn fnv4x64(data: &[u8]) -> u64 {
    let mut lanes = [OFFSET; 4];
    let rest = absorb(&mut lanes, data);
    finish(lanes, rest, data.len())
}

/// Folds the whole 32-byte chunks of `data` into the lanes; the rest.
fn absorb<'a>(lanes: &mut [u64; 4], data: &'a [u8]) -> &'a [u8] {
    let mut chunks = data.chunks_exact(32);
    for c in &mut chunks {
        for (i, lane) in lanes.iter_mut().enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(&c[i * 8..i * 8 + 8]);
            *lane = (*lane ^ u64::from_le_bytes(w)).wrapping_mul(PRIME);
        }
    }
    chunks.remainder()
}

/// Folds the last `rest` (< 32 bytes) in, then the lanes and `len`.
fn finish(mut lanes: [u64; 4], rest: &[u8], len: usize) -> u64 {
    let rest = absorb_words(&mut lanes, rest);
    for b in rest {
        lanes[0] = (lanes[0] ^ u64::from(*b)).wrapping_mul(PRIME);
    }
    let mut h = OFFSET;
    for lane in lanes {
        for b in lane.to_le_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(PRIME);
        }
    }
    for b in (len as u64).to_le_bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(PRIME);
    }
    h
}

/// Folds the whole words of `rest` into lanes 0, 1, 2; the bytes left.
fn absorb_words<'a>(lanes: &mut [u64; 4], rest: &'a [u8]) -> &'a [u8] {
    let mut words = rest.chunks_exact(8);
    for (i, c) in (&mut words).enumerate() {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        lanes[i] = (lanes[i] ^ u64::from_le_bytes(w)).wrapping_mul(PRIME);
    }
    words.remainder()
}

/// `fnv4x64-sample`: the buffer itself when it is at most `2 × SAMPLE`
/// bytes, else its first and last [`SAMPLE`] bytes; then the buffer's
/// length folded in as eight little-endian bytes. Cheap at any size; tells
/// apart streams that differ at the ends of their buffers or in length.
pub fn fnv4x64_sample(data: &[u8]) -> u64 {
    let mut h = if data.len() <= 2 * SAMPLE {
        fnv4x64(data)
    } else {
        // As `fnv4x64` of the two ends put together (SAMPLE is a whole
        // number of 32-byte chunks), without copying them.
        let mut lanes = [OFFSET; 4];
        absorb(&mut lanes, &data[..SAMPLE]);
        let rest = absorb(&mut lanes, &data[data.len() - SAMPLE..]);
        finish(lanes, rest, 2 * SAMPLE)
    };
    for b in (data.len() as u64).to_le_bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(PRIME);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::fnv4x64;

    #[test]
    fn differs_by_content_length_and_position() {
        let a = vec![7u8; 100];
        let mut b = a.clone();
        b[99] = 8;
        let mut c = a.clone();
        c[3] = 8;
        let d = vec![7u8; 101];
        let all = [
            fnv4x64(&a),
            fnv4x64(&b),
            fnv4x64(&c),
            fnv4x64(&d),
            fnv4x64(&[]),
        ];
        for i in 0..all.len() {
            for j in i + 1..all.len() {
                assert_ne!(all[i], all[j], "{i} {j}");
            }
        }
        assert_eq!(fnv4x64(&a), fnv4x64(&a.clone()));
        // Words in different lanes swapped give a different digest.
        let mut e = vec![0u8; 32];
        e[0] = 1;
        let mut f = vec![0u8; 32];
        f[8] = 1;
        assert_ne!(fnv4x64(&e), fnv4x64(&f));
    }

    #[test]
    fn the_sample_sees_the_ends_and_the_length_only() {
        use super::{SAMPLE, fnv4x64_sample};
        let a = vec![1u8; 4 * SAMPLE];
        let mut mid = a.clone();
        mid[2 * SAMPLE] = 2;
        let mut end = a.clone();
        end[4 * SAMPLE - 1] = 2;
        assert_eq!(fnv4x64_sample(&a), fnv4x64_sample(&mid));
        assert_ne!(fnv4x64_sample(&a), fnv4x64_sample(&end));
        assert_ne!(fnv4x64_sample(&a), fnv4x64_sample(&a[..4 * SAMPLE - 8]));
        let small = vec![3u8; 100];
        assert_ne!(fnv4x64_sample(&small), fnv4x64(&small));
        // The documented definition: fnv4x64 of the two ends together,
        // then the length.
        let big: Vec<u8> = (0..3 * SAMPLE + 5).map(|i| (i * 7 % 251) as u8).collect();
        let mut ends = big[..SAMPLE].to_vec();
        ends.extend_from_slice(&big[big.len() - SAMPLE..]);
        let mut h = fnv4x64(&ends);
        for b in (big.len() as u64).to_le_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(super::PRIME);
        }
        assert_eq!(fnv4x64_sample(&big), h);
    }

    /// The digest of a known input, so that the format (docs/RECORDING.md)
    /// does not drift.
    #[test]
    fn known_value() {
        let data: Vec<u8> = (0u8..=99).collect();
        assert_eq!(format!("{:016x}", fnv4x64(&data)), "a22cfcce94461b01");
    }
}
