//! A Hugging Face `tokenizer.json` loaded with the `tokenizers` crate, set up for segment encoding.

use std::path::{Path, PathBuf};

use super::{ErrorKind, PromptError};

/// Token names tried, in order, when the tokenizer.json sets no padding token.
const PAD_CANDIDATES: [&str; 7] = [
    "[PAD]",
    "<pad>",
    "<|pad|>",
    "<|padding|>",
    "</s>",
    "<|endoftext|>",
    "<eos>",
];

/// Texts encoded with and without special tokens to learn where the post-processor puts them.
const PROBES: [&str; 3] = ["a", "hello", "0"];

/// A tokenizer that encodes segments (no truncation, no padding, no special tokens) and knows the
/// special tokens its post-processor wraps a single sequence in.
pub struct PromptTokenizer {
    inner: tokenizers::Tokenizer,
    vocab_size: u32,
    prefix: Vec<u32>,
    suffix: Vec<u32>,
    pad_id: Option<u32>,
    fingerprint: u64,
    source: String,
}

impl PromptTokenizer {
    /// Load `tokenizer.json` from a file, or from a folder that holds one.
    pub fn from_path(path: &Path, pad_id: Option<u32>) -> Result<Self, PromptError> {
        let file: PathBuf = if path.is_dir() {
            path.join("tokenizer.json")
        } else {
            path.to_path_buf()
        };
        let bytes = std::fs::read(&file).map_err(|e| PromptError::io(&file, &e))?;
        Self::from_json(&bytes, &file.display().to_string(), pad_id)
    }

    /// Load from the bytes of a `tokenizer.json`; `source` names it in error messages.
    pub fn from_json(bytes: &[u8], source: &str, pad_id: Option<u32>) -> Result<Self, PromptError> {
        let mut inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| PromptError {
            kind: ErrorKind::Invalid,
            message: format!("{source}: not a valid tokenizer.json: {e}"),
        })?;
        let configured_pad = inner.get_padding().map(|p| p.pad_id);
        // Segments are encoded whole: the file's own truncation and padding must not apply
        // (transformers also overrides them per call).
        inner
            .with_truncation(None)
            .map_err(|e| PromptError::invalid(source, format!("cannot disable truncation: {e}")))?;
        inner.with_padding(None);
        let vocab_size = inner
            .get_vocab(true)
            .values()
            .copied()
            .max()
            .map_or(0, |m| m + 1)
            .max(inner.get_vocab_size(true) as u32);
        let pad_id = pad_id.or(configured_pad).or_else(|| {
            PAD_CANDIDATES
                .iter()
                .find_map(|name| inner.token_to_id(name))
        });
        if let Some(id) = pad_id {
            if id >= vocab_size {
                return Err(PromptError::out_of_range(
                    "pad_token_id",
                    format!("{id} is not below the vocabulary size {vocab_size} of {source}"),
                ));
            }
        }
        let mut tokenizer = PromptTokenizer {
            inner,
            vocab_size,
            prefix: Vec::new(),
            suffix: Vec::new(),
            pad_id,
            fingerprint: fnv1a64(bytes),
            source: source.to_string(),
        };
        (tokenizer.prefix, tokenizer.suffix) = tokenizer.learn_specials()?;
        Ok(tokenizer)
    }

    /// Find the special tokens the post-processor puts before and after a single sequence.
    fn learn_specials(&self) -> Result<(Vec<u32>, Vec<u32>), PromptError> {
        for probe in PROBES {
            let plain = self.encode(probe)?;
            if plain.is_empty() {
                continue;
            }
            let with = self
                .inner
                .encode(probe, true)
                .map_err(|e| self.encode_error(probe, e))?;
            let with = with.get_ids();
            if let Some(at) = with
                .windows(plain.len())
                .position(|w| w == plain.as_slice())
            {
                return Ok((with[..at].to_vec(), with[at + plain.len()..].to_vec()));
            }
        }
        Err(PromptError::invalid(
            &self.source,
            "its post-processor changes the text's own tokens; galrec cannot place special tokens",
        ))
    }

    fn encode_error(&self, text: &str, e: tokenizers::Error) -> PromptError {
        let shown: String = text.chars().take(60).collect();
        PromptError::invalid(&self.source, format!("cannot encode {shown:?}: {e}"))
    }

    /// Token ids of `text` alone: no special tokens, no truncation.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, PromptError> {
        let enc = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| self.encode_error(text, e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of token ids (special tokens kept), as the tokenizer's decoder writes it.
    pub fn decode(&self, ids: &[u32]) -> Result<String, PromptError> {
        self.inner
            .decode(ids, false)
            .map_err(|e| PromptError::invalid(&self.source, format!("cannot decode: {e}")))
    }

    /// One more than the largest id of the vocabulary (added tokens included): ID tokens start here.
    pub fn vocab_size(&self) -> u32 {
        self.vocab_size
    }

    /// Special tokens before a single sequence (e.g. `[CLS]`, `<s>`).
    pub fn prefix(&self) -> &[u32] {
        &self.prefix
    }

    /// Special tokens after a single sequence (e.g. `[SEP]`, `</s>`).
    pub fn suffix(&self) -> &[u32] {
        &self.suffix
    }

    /// The padding token: the one given, else the file's padding config, else a known name.
    pub fn pad_id(&self) -> Option<u32> {
        self.pad_id
    }

    /// A hash of the tokenizer.json bytes, recorded in text stores built with this tokenizer.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Where the tokenizer came from (the file path), for messages.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// 64-bit FNV-1a: a stable, dependency-free content hash (not cryptographic).
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tiny WordLevel tokenizer with a BERT-style post-processor, built as JSON.
    pub(crate) fn wordlevel_json() -> String {
        let words = [
            "[PAD]",
            "[UNK]",
            "[CLS]",
            "[SEP]",
            "has",
            "interacted",
            "with",
            ",",
            "\"",
            "was",
            "chosen",
            "by",
            "a",
            "b",
            "c",
            "title",
            "one",
            "two",
            ".",
            "in",
            "word",
            ":",
        ];
        let vocab: Vec<String> = words
            .iter()
            .enumerate()
            .map(|(i, w)| format!("{}: {i}", serde_quote(w)))
            .collect();
        format!(
            r#"{{"version":"1.0","truncation":{{"direction":"Right","max_length":4,"strategy":"LongestFirst","stride":0}},"padding":null,
"added_tokens":[{{"id":0,"content":"[PAD]","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}},
{{"id":2,"content":"[CLS]","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}},
{{"id":3,"content":"[SEP]","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}}],
"normalizer":{{"type":"Lowercase"}},
"pre_tokenizer":{{"type":"BertPreTokenizer"}},
"post_processor":{{"type":"TemplateProcessing","single":[{{"SpecialToken":{{"id":"[CLS]","type_id":0}}}},{{"Sequence":{{"id":"A","type_id":0}}}},{{"SpecialToken":{{"id":"[SEP]","type_id":0}}}}],
"pair":[{{"Sequence":{{"id":"A","type_id":0}}}},{{"Sequence":{{"id":"B","type_id":1}}}}],
"special_tokens":{{"[CLS]":{{"id":"[CLS]","ids":[2],"tokens":["[CLS]"]}},"[SEP]":{{"id":"[SEP]","ids":[3],"tokens":["[SEP]"]}}}}}},
"decoder":null,
"model":{{"type":"WordLevel","vocab":{{{}}},"unk_token":"[UNK]"}}}}"#,
            vocab.join(",")
        )
    }

    fn serde_quote(s: &str) -> String {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }

    pub(crate) fn wordlevel() -> PromptTokenizer {
        PromptTokenizer::from_json(wordlevel_json().as_bytes(), "test", None).unwrap()
    }

    #[test]
    fn learns_specials_vocab_and_pad() {
        let t = wordlevel();
        assert_eq!(t.prefix(), &[2]);
        assert_eq!(t.suffix(), &[3]);
        assert_eq!(t.vocab_size(), 22);
        assert_eq!(t.pad_id(), Some(0));
        // The file's truncation (max_length 4) is switched off.
        assert_eq!(
            t.encode("a b c a b c").unwrap(),
            vec![12, 13, 14, 12, 13, 14]
        );
        assert_eq!(t.encode("Has ZZZ").unwrap(), vec![4, 1]);
    }

    #[test]
    fn bad_json_and_missing_file_are_errors() {
        let e = PromptTokenizer::from_json(b"{not json", "x.json", None)
            .err()
            .unwrap();
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert!(e.message.starts_with("x.json"));
        let e = PromptTokenizer::from_path(Path::new("/nonexistent/tok.json"), None)
            .err()
            .unwrap();
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(e.message.contains("/nonexistent/tok.json"));
    }

    #[test]
    fn pad_id_out_of_vocab_is_an_error() {
        let e = PromptTokenizer::from_json(wordlevel_json().as_bytes(), "t", Some(999))
            .err()
            .unwrap();
        assert_eq!(e.kind, ErrorKind::OutOfRange);
        assert!(e.message.contains("pad_token_id"));
    }
}
