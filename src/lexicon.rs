//! The lexicon of generated text: the words the simulator emits one per token, and the words
//! synthetic prompts are made of, so that both sides count tokens the same way.

/// One generated token each; all 4 bytes or fewer, so `bytes4`, `words` and a word-level
/// tokenizer built from this list agree on the count.
pub(crate) const LEXICON: [&str; 64] = [
    " the", " of", " and", " to", " in", " is", " for", " on", " it", " as", " at", " by", " an", " be",
    " or", " we", " can", " all", " one", " has", " but", " not", " you", " its", " may", " new", " use",
    " two", " now", " way", " how", " out", " see", " day", " get", " set", " run", " key", " map", " top",
    " end", " low", " big", " old", " few", " own", " any", " far", " sum", " max", " min", " log", " job",
    " pod", " gpu", " cpu", " net", " api", " bus", " bit", " row", " col", " tag", " sky",
];
