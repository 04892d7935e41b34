//! Deterministic token counting and generated text.
//!
//! The simulator has no real tokenizer: it counts tokens with a fixed rule (S.1) and emits one
//! word of a built-in lexicon per token. Every lexicon word is a space plus at most three ASCII
//! letters, so re-tokenising generated text with any of our rules gives back the same count.

pub(crate) use crate::lexicon::LEXICON;
use crate::sim::config::Tokenizer;

/// Tokens in a piece of text under the given rule.
pub(crate) fn count(text: &str, rule: Tokenizer) -> u32 {
    let n = match rule {
        Tokenizer::Words => text.split_whitespace().count(),
        Tokenizer::Chars => text.chars().count(),
        Tokenizer::Bytes4 => text.len().div_ceil(4).max(text.split_whitespace().count()),
    };
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Hashes of the prompt's full KV blocks, chained so that equal hashes mean equal prefixes.
///
/// Block boundaries depend only on the text before them (every `block_size` words, characters,
/// or 4·`block_size` bytes), so prompts that share a prefix share its block hashes.
pub(crate) fn block_hashes_text(text: &str, rule: Tokenizer, block_size: u32, tokens: u32) -> Vec<u64> {
    let full_blocks = (tokens / block_size.max(1)) as usize;
    let mut hashes = Vec::with_capacity(full_blocks);
    let mut h = FNV_OFFSET;
    match rule {
        Tokenizer::Bytes4 => {
            for chunk in text.as_bytes().chunks_exact(4 * block_size as usize).take(full_blocks) {
                h = fnv(h, chunk);
                hashes.push(h);
            }
        }
        Tokenizer::Words | Tokenizer::Chars => {
            let mut in_block = 0;
            let units: Box<dyn Iterator<Item = &str>> = if rule == Tokenizer::Words {
                Box::new(text.split_whitespace())
            } else {
                Box::new(text.char_indices().map(|(i, c)| &text[i..i + c.len_utf8()]))
            };
            for unit in units {
                h = fnv(fnv(h, unit.as_bytes()), b" ");
                in_block += 1;
                if in_block == block_size {
                    hashes.push(h);
                    in_block = 0;
                    if hashes.len() == full_blocks {
                        break;
                    }
                }
            }
        }
    }
    hashes
}

/// Block hashes of a token-id prompt (exact).
pub(crate) fn block_hashes_ids(ids: &[u64], block_size: u32) -> Vec<u64> {
    let mut h = FNV_OFFSET;
    ids.chunks_exact(block_size.max(1) as usize)
        .map(|block| {
            for id in block {
                h = fnv(h, &id.to_le_bytes());
            }
            h
        })
        .collect()
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_rules() {
        assert_eq!(count("hello world", Tokenizer::Words), 2);
        assert_eq!(count("hello world", Tokenizer::Bytes4), 3); // 11 bytes
        assert_eq!(count("a b c d e", Tokenizer::Bytes4), 5); // words win
        assert_eq!(count("héllo", Tokenizer::Chars), 5);
        assert_eq!(count("", Tokenizer::Bytes4), 0);
    }

    #[test]
    fn lexicon_text_recounts_exactly() {
        let text: String = (0..50).map(|i| LEXICON[i * 7 % LEXICON.len()]).collect();
        for rule in [Tokenizer::Bytes4, Tokenizer::Words] {
            assert_eq!(count(&text, rule), 50, "{rule:?}");
        }
        assert!(LEXICON.iter().all(|w| w.len() <= 4 && w.starts_with(' ')));
    }

    #[test]
    fn shared_prefixes_share_leading_block_hashes() {
        let prefix = "x".repeat(64 * 3);
        let a = format!("{prefix}{}", "a".repeat(64 * 2));
        let b = format!("{prefix}{}", "b".repeat(64 * 2));
        let ha = block_hashes_text(&a, Tokenizer::Bytes4, 16, count(&a, Tokenizer::Bytes4));
        let hb = block_hashes_text(&b, Tokenizer::Bytes4, 16, count(&b, Tokenizer::Bytes4));
        assert_eq!(ha.len(), 5);
        assert_eq!(ha[..3], hb[..3]);
        assert_ne!(ha[3], hb[3]);
        let ids: Vec<u64> = (0..40).collect();
        assert_eq!(block_hashes_ids(&ids, 16).len(), 2);
        let words = "w ".repeat(40);
        assert_eq!(block_hashes_text(&words, Tokenizer::Words, 16, 40).len(), 2);
    }
}
