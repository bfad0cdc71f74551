//! Finding where a record ends, 64 bytes at a time.
//!
//! The page splitter must find each record's closing brace, which means
//! knowing for every brace whether it sits inside a string. A loop over
//! single bytes takes a hard-to-predict branch at nearly every string edge
//! (several per key and value), and in a full backfill it was the agent's
//! largest single cost. Here each 64-byte block becomes four bit masks
//! (quotes, backslashes, opening and closing braces); the escaped bytes and
//! the inside of strings are then derived with a few integer operations per
//! block, the way simdjson's first stage does, and only the braces outside
//! strings are visited one by one (about ten per record).
//!
//! On x86_64 the masks come from SSE2 compares, which every x86_64 CPU has
//! (so no runtime check is needed; see the one `unsafe` call); elsewhere
//! from a plain loop. Tests check both give the same masks.

/// Bytes looked at per step.
const BLOCK: usize = 64;

/// One bit per byte of a block: bit `i` is byte `i`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Masks {
    quote: u64,
    backslash: u64,
    open: u64,
    close: u64,
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
fn masks(block: &[u8; BLOCK]) -> Masks {
    // SAFETY: the only requirement of `sse2_masks` is that the CPU has
    // SSE2, and this function is compiled only when SSE2 is enabled for the
    // whole build (`target_feature = "sse2"`, part of every x86_64 target's
    // baseline), so every CPU the binary runs on has it. `sse2_masks` takes
    // no pointers. Measured: 0.12 ns per byte against 1 ns for the portable
    // loop (LLVM does not vectorise it), about 1 µs per 1.2 KB record.
    unsafe { sse2_masks(block) }
}

/// The masks from SSE2 compares, 16 bytes at a time.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
fn sse2_masks(block: &[u8; BLOCK]) -> Masks {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_movemask_epi8, _mm_set1_epi8, _mm_set_epi64x};
    let (words, _) = block.as_chunks::<8>();
    let mut masks = Masks::default();
    for (lane, pair) in words.chunks_exact(2).enumerate() {
        let [low, high] = [pair[0], pair[1]].map(i64::from_le_bytes);
        let vector = _mm_set_epi64x(high, low);
        let shift = 16 * lane;
        // `as u16` keeps the 16 mask bits movemask returns.
        let bits = |byte: u8| {
            let equal = _mm_cmpeq_epi8(vector, _mm_set1_epi8(byte as i8));
            u64::from(_mm_movemask_epi8(equal) as u16) << shift
        };
        masks.quote |= bits(b'"');
        masks.backslash |= bits(b'\\');
        masks.open |= bits(b'{');
        masks.close |= bits(b'}');
    }
    masks
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn masks(block: &[u8; BLOCK]) -> Masks {
    portable_masks(block)
}

#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
fn portable_masks(block: &[u8; BLOCK]) -> Masks {
    let mut masks = Masks::default();
    for (i, &byte) in block.iter().enumerate() {
        let bit = 1u64 << i;
        match byte {
            b'"' => masks.quote |= bit,
            b'\\' => masks.backslash |= bit,
            b'{' => masks.open |= bit,
            b'}' => masks.close |= bit,
            _ => {}
        }
    }
    masks
}

/// The bytes a backslash escapes. `carry` says whether the block's first
/// byte is escaped (the previous block ended with an unescaped backslash)
/// and is set for the next block. Backslashes are rare, so they are
/// visited one by one.
fn escaped(backslash: u64, carry: &mut bool) -> u64 {
    let mut escaped = u64::from(*carry);
    // An escaped backslash escapes nothing.
    let mut pending = backslash & !escaped;
    *carry = false;
    while pending != 0 {
        let bit = pending & pending.wrapping_neg();
        if bit == 1 << (BLOCK - 1) {
            *carry = true;
            break;
        }
        let next = bit << 1;
        escaped |= next;
        pending &= !(bit | next);
    }
    escaped
}

/// Bit `i` is the parity of the set bits at or below `i`: with the quotes
/// as input, the bytes from an opening quote up to (not including) its
/// closing quote.
fn prefix_xor(mut bits: u64) -> u64 {
    for shift in [1, 2, 4, 8, 16, 32] {
        bits ^= bits << shift;
    }
    bits
}

/// `at` opens a record (`{`): the index just past its closing brace, or
/// `None` when the bytes end first (the page was cut off).
///
/// Only braces are counted. In well-formed JSON brackets nest inside them,
/// and a record whose brackets do not match fails when it is parsed.
pub(super) fn record_end(bytes: &[u8], at: usize) -> Option<usize> {
    let mut depth = 0usize;
    // All ones while a string is open across a block boundary.
    let mut in_string = 0u64;
    let mut escape_carry = false;
    let mut padded = [b' '; BLOCK];
    let mut start = at;
    while start < bytes.len() {
        let rest = &bytes[start..];
        let block = match rest.first_chunk::<BLOCK>() {
            Some(block) => block,
            None => {
                // The last, short block: spaces change nothing.
                padded[..rest.len()].copy_from_slice(rest);
                &padded
            }
        };
        let masks = masks(block);
        let escaped = escaped(masks.backslash, &mut escape_carry);
        let strings = prefix_xor(masks.quote & !escaped) ^ in_string;
        in_string = 0u64.wrapping_sub(strings >> (BLOCK - 1));
        let mut braces = (masks.open | masks.close) & !(strings | escaped);
        while braces != 0 {
            let offset = braces.trailing_zeros() as usize;
            if masks.open & (1 << offset) != 0 {
                depth += 1;
            } else {
                // The first brace seen is the record's own opening one, so
                // depth is at least one here.
                depth -= 1;
                if depth == 0 {
                    return Some(start + offset + 1);
                }
            }
            braces &= braces - 1;
        }
        start += BLOCK;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The byte-at-a-time definition the block scanner must agree with. A
    /// backslash escapes the next byte wherever it is (outside strings it
    /// is invalid JSON, which the record's parse refuses).
    fn record_end_bytewise(bytes: &[u8], at: usize) -> Option<usize> {
        let mut depth = 0usize;
        let mut in_string = false;
        let mut i = at;
        while i < bytes.len() {
            match (in_string, bytes[i]) {
                (_, b'\\') => i += 1,
                (true, b'"') | (false, b'"') => in_string = !in_string,
                (false, b'{') => depth += 1,
                (false, b'}') => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(i + 1);
                    }
                }
                _ => {}
            }
            i += 1;
        }
        None
    }

    #[test]
    fn masks_match_the_portable_definition() {
        let mut block = [0u8; BLOCK];
        let mut state = 1u64;
        for _ in 0..2000 {
            for byte in &mut block {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                *byte = b"\"\\{}a \x00\xff"[(state >> 61) as usize];
            }
            assert_eq!(masks(&block), portable_masks(&block), "{block:?}");
        }
    }

    #[test]
    fn escapes_carry_across_blocks() {
        let mut carry = false;
        assert_eq!(
            escaped(0b0110, &mut carry),
            0b0100,
            "\\\\ escapes nothing after it"
        );
        assert!(!carry);
        assert_eq!(escaped(1 << 63, &mut carry), 0);
        assert!(
            carry,
            "a final backslash escapes the next block's first byte"
        );
        assert_eq!(
            escaped(0b1, &mut carry),
            0b1,
            "that byte is a backslash: escaped"
        );
        assert!(!carry);
    }

    #[test]
    fn strings_and_escapes_at_every_block_position() {
        // The tricky bytes slide across the 64-byte boundaries.
        for pad in 0..140 {
            let text = format!(
                "{{\"{}\":\"a}}\\\"{{\\\\\",\"n\":{{\"x\":[1,{{}}]}},\"t\":\"\\\\\"}}, {{}}",
                "p".repeat(pad)
            );
            let bytes = text.as_bytes();
            let expected = record_end_bytewise(bytes, 0);
            assert_eq!(record_end(bytes, 0), expected, "{text}");
            assert_eq!(expected, Some(text.len() - 4), "{text}");
            let cut = &bytes[..text.len() - 5];
            assert_eq!(record_end(cut, 0), None);
        }
    }

    proptest! {
        #[test]
        fn agrees_with_the_bytewise_scan(
            bytes in proptest::collection::vec(
                prop_oneof![
                    Just(b'"'), Just(b'\\'), Just(b'{'), Just(b'}'), Just(b'a'), Just(b',')
                ],
                1..300,
            ),
        ) {
            let mut bytes = bytes;
            bytes[0] = b'{';
            prop_assert_eq!(record_end(&bytes, 0), record_end_bytewise(&bytes, 0));
        }
    }
}
