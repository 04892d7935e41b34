//! The tokenizer benchflow gives external harnesses: word-level, over the simulator's lexicon
//! (plus `unk` for any other word), in the Hugging Face `tokenizers` format, so that the tools
//! load it with `AutoTokenizer.from_pretrained(DIR)` without a model hub. Every word of it is at
//! most three ASCII letters, so each one is one token for the simulator under any of its rules:
//! the tools' token counts and the server's agree exactly.
//!
//! `unk` is an ordinary word, not a special token: tools that build prompts by encoding a text
//! corpus and decoding the first N ids with `skip_special_tokens` (GuideLLM) would otherwise
//! drop every unknown word and send prompts far shorter than asked.

use std::path::Path;

use serde_json::{Map, Value, json};

use crate::lexicon::LEXICON;

/// The word that stands for any word outside the lexicon.
pub(crate) const UNKNOWN: &str = "unk";

/// `tokenizer.json`: a WordLevel model split on whitespace, decoded with single spaces.
pub(crate) fn tokenizer_json() -> Value {
    let mut vocab = Map::new();
    vocab.insert(UNKNOWN.into(), json!(0));
    for word in LEXICON.iter().map(|w| w.trim()) {
        let id = vocab.len();
        vocab.entry(word.to_string()).or_insert(json!(id));
    }
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": { "type": "WhitespaceSplit" },
        "post_processor": null,
        "decoder": { "type": "WordPiece", "prefix": "##", "cleanup": false },
        "model": { "type": "WordLevel", "vocab": vocab, "unk_token": UNKNOWN }
    })
}

/// `tokenizer_config.json`: a fast tokenizer with no special tokens added around prompts.
pub(crate) fn tokenizer_config() -> Value {
    json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": null,
        "eos_token": null,
        "model_max_length": 1_000_000,
        "clean_up_tokenization_spaces": false
    })
}

/// Writes both files into `dir`.
pub(crate) fn write(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let pretty = |v: &Value| serde_json::to_vec_pretty(v).unwrap_or_default();
    std::fs::write(dir.join("tokenizer.json"), pretty(&tokenizer_json()))?;
    std::fs::write(dir.join("tokenizer_config.json"), pretty(&tokenizer_config()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{config::Tokenizer, tokenizer::count};

    #[test]
    fn every_word_is_one_token_for_the_simulator() {
        let t = tokenizer_json();
        let vocab = t["model"]["vocab"].as_object().unwrap();
        assert_eq!(vocab.len(), LEXICON.len() + 1);
        // Ids are dense from 0, so a tool sampling ids in [0, len) always decodes to a word.
        let mut ids: Vec<u64> = vocab.values().map(|v| v.as_u64().unwrap()).collect();
        ids.sort();
        assert_eq!(ids, (0..vocab.len() as u64).collect::<Vec<_>>());
        // A decoded prompt (words joined by single spaces) counts as many tokens as words.
        let words: Vec<&str> = vocab.keys().map(String::as_str).collect();
        let text = words.join(" ");
        for rule in [Tokenizer::Bytes4, Tokenizer::Words] {
            assert_eq!(count(&text, rule) as usize, words.len(), "{rule:?}");
        }
    }
}
