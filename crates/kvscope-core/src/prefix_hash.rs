//! Content keys for full KV blocks. A block's key chains its parent's key
//! with its own tokens, so equal keys mean equal *prefixes*, not just equal
//! blocks. The hash is deterministic across runs (no random seed), so event
//! streams and probes are reproducible.

use crate::ids::TokenId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockHash(pub u64);

const ROOT: u64 = 0x6b76_7363_6f70_6521; // "kvscope!": the parent of block 0

/// splitmix64's finaliser: a cheap, well-mixing step.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Key of a full block whose tokens are `tokens`, following `parent`.
///
/// Every admission and every filled block hashes its tokens, so this runs
/// over every token a simulation of a million-token workload sees. Pairs of
/// tokens go round-robin into four independent lanes, so the multiplies of
/// one block overlap instead of each waiting for the last; the lanes, the
/// parent and the length meet in one final mix. A collision can only cost a
/// missed hit, never a wrong one: a hit also compares the parent and the
/// tokens.
pub fn block_hash(parent: Option<BlockHash>, tokens: &[TokenId]) -> BlockHash {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let absorb = |lane: u64, word: u64| (lane.rotate_left(23) ^ word).wrapping_mul(K);
    // The parent is already a mixed key (only the root is not).
    let seed = parent.map_or(ROOT, |p| p.0);
    let mut lanes = [seed, seed ^ 0x243f_6a88_85a3_08d3, seed ^ 0x1319_8a2e_0370_7344, seed ^ 0xa409_3822_299f_31d0];
    let mut groups = tokens.chunks_exact(8);
    for group in &mut groups {
        for (lane, pair) in lanes.iter_mut().zip(group.chunks_exact(2)) {
            *lane = absorb(*lane, u64::from(pair[0]) | (u64::from(pair[1]) << 32));
        }
    }
    for &token in groups.remainder() {
        lanes[0] = absorb(lanes[0], u64::from(token));
    }
    let [a, b, c, d] = lanes;
    BlockHash(mix(a ^ b.rotate_left(16) ^ c.rotate_left(32) ^ d.rotate_left(48) ^ tokens.len() as u64))
}

/// Keys of every full block of `tokens`, in order.
pub fn chain(tokens: &[TokenId], block_size: usize) -> Vec<BlockHash> {
    let mut parent = None;
    tokens
        .chunks_exact(block_size)
        .map(|block| {
            let h = block_hash(parent, block);
            parent = Some(h);
            h
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_block_after_different_prefixes_gets_different_keys() {
        let a = chain(&[1, 2, 3, 4, 5, 6], 3);
        let b = chain(&[9, 9, 9, 4, 5, 6], 3);
        assert_ne!(a[1], b[1]);
        assert_eq!(chain(&[1, 2, 3, 7], 3)[0], a[0]);
    }

    #[test]
    fn token_order_and_pairing_matter() {
        let key = |t: &[TokenId]| block_hash(None, t);
        assert_ne!(key(&[1, 2, 3, 4]), key(&[2, 1, 3, 4]));
        assert_ne!(key(&[1, 2, 3, 4]), key(&[3, 4, 1, 2]));
        assert_ne!(key(&[1, 2, 3]), key(&[1, 2, 3, 0]));
        assert_ne!(key(&[0, 1]), key(&[1 << 16, 0]));
    }

    #[test]
    fn partial_blocks_have_no_key() {
        assert_eq!(chain(&[1, 2, 3, 4], 3).len(), 1);
    }
}
