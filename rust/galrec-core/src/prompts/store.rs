//! The node text store: every node's title segment tokenised once, kept as flat arrays.

use std::path::Path;

use rayon::prelude::*;

use super::template::parse_title_format;
use super::tokenizer::fnv1a64;
use super::{ErrorKind, PromptError, PromptTokenizer, Side};

const MAGIC: &[u8; 8] = b"GALRECTS";
const FORMAT_VERSION: u32 = 1;

/// Variable-length rows stored flat: row `i` is `values[offsets[i]..offsets[i + 1]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ragged<T> {
    offsets: Vec<u64>,
    values: Vec<T>,
}

impl<T: Copy> Ragged<T> {
    fn from_rows<R: AsRef<[T]>>(rows: &[R]) -> Self {
        let total: usize = rows.iter().map(|r| r.as_ref().len()).sum();
        let mut offsets = Vec::with_capacity(rows.len() + 1);
        let mut values = Vec::with_capacity(total);
        offsets.push(0);
        for row in rows {
            values.extend_from_slice(row.as_ref());
            offsets.push(values.len() as u64);
        }
        Ragged { offsets, values }
    }

    fn row(&self, i: usize) -> &[T] {
        // Offsets are monotone and end at values.len(): checked at build and on open.
        &self.values[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    fn len(&self) -> usize {
        self.offsets.len() - 1
    }
}

/// The texts of one side and their tokenised title segments.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SideTexts {
    tokens: Ragged<u32>,
    texts: Ragged<u8>,
}

impl SideTexts {
    fn text(&self, i: usize) -> &str {
        // Valid UTF-8: built from &str, checked on open.
        std::str::from_utf8(self.texts.row(i)).unwrap_or("")
    }
}

/// Node texts tokenised once: item titles (required), user texts (optional).
///
/// A node's *title segment* is its text put into the title format (default ` "{title}"`, leading
/// space included, so that byte-level BPE tokenises it as it would after a word); its ids are
/// what the tokenizer gives for that segment alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextStore {
    title_format: String,
    title_before: String,
    title_after: String,
    vocab_size: u32,
    fingerprint: u64,
    num_users: u32,
    items: SideTexts,
    users: Option<SideTexts>,
}

fn count_u32(what: &str, n: usize) -> Result<u32, PromptError> {
    u32::try_from(n)
        .map_err(|_| PromptError::out_of_range(what, format!("{n} nodes do not fit 32-bit ids")))
}

impl TextStore {
    /// Tokenise every title segment (in parallel on the current rayon pool).
    pub fn build<S: AsRef<str> + Sync>(
        tokenizer: &PromptTokenizer,
        item_texts: &[S],
        num_users: usize,
        user_texts: Option<&[S]>,
        title_format: &str,
    ) -> Result<Self, PromptError> {
        let (before, after) = parse_title_format(title_format)?;
        let num_users_u32 = count_u32("num_users", num_users)?;
        let num_items = count_u32("item_texts", item_texts.len())?;
        if u64::from(num_users_u32) + u64::from(num_items) > u64::from(u32::MAX) {
            return Err(PromptError::out_of_range(
                "num_users + num_items",
                "global node ids must fit 32 bits",
            ));
        }
        if let Some(users) = user_texts {
            if users.len() != num_users {
                return Err(PromptError::invalid(
                    "user_texts",
                    format!("has {} entries but num_users is {num_users}", users.len()),
                ));
            }
        }
        let side = |texts: &[S]| -> Result<SideTexts, PromptError> {
            let tokens: Vec<Vec<u32>> = texts
                .par_iter()
                .map(|t| tokenizer.encode(&format!("{before}{}{after}", t.as_ref())))
                .collect::<Result<_, _>>()?;
            let bytes: Vec<&[u8]> = texts.iter().map(|t| t.as_ref().as_bytes()).collect();
            Ok(SideTexts {
                tokens: Ragged::from_rows(&tokens),
                texts: Ragged::from_rows(&bytes),
            })
        };
        Ok(TextStore {
            title_format: title_format.to_string(),
            title_before: before.clone(),
            title_after: after.clone(),
            vocab_size: tokenizer.vocab_size(),
            fingerprint: tokenizer.fingerprint(),
            num_users: num_users_u32,
            items: side(item_texts)?,
            users: user_texts.map(side).transpose()?,
        })
    }

    pub fn num_users(&self) -> u32 {
        self.num_users
    }

    pub fn num_items(&self) -> u32 {
        self.items.tokens.len() as u32
    }

    /// Number of nodes of a side.
    pub fn count(&self, side: Side) -> u32 {
        match side {
            Side::User => self.num_users,
            Side::Item => self.num_items(),
        }
    }

    pub fn has_user_texts(&self) -> bool {
        self.users.is_some()
    }

    pub fn title_format(&self) -> &str {
        &self.title_format
    }

    /// The tokenizer fingerprint the store was built with.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    fn side(&self, side: Side) -> Option<&SideTexts> {
        match side {
            Side::User => self.users.as_ref(),
            Side::Item => Some(&self.items),
        }
    }

    /// Title-segment ids of a node; `None` when its side has no texts. `id` must be in range.
    pub fn tokens(&self, side: Side, id: u32) -> Option<&[u32]> {
        self.side(side).map(|s| s.tokens.row(id as usize))
    }

    /// The raw text of a node (without the title format); `None` when its side has no texts.
    pub fn text(&self, side: Side, id: u32) -> Option<&str> {
        self.side(side).map(|s| s.text(id as usize))
    }

    /// The full title-segment text of a node, as tokenised.
    pub fn segment_text(&self, side: Side, id: u32) -> Option<String> {
        self.text(side, id)
            .map(|t| format!("{}{t}{}", self.title_before, self.title_after))
    }

    /// Check that the store was built with this tokenizer.
    pub fn check_tokenizer(&self, tokenizer: &PromptTokenizer) -> Result<(), PromptError> {
        if self.fingerprint != tokenizer.fingerprint() || self.vocab_size != tokenizer.vocab_size()
        {
            return Err(PromptError::invalid(
                "text store",
                format!(
                    "was built with another tokenizer than {} (fingerprint {:016x}, store has {:016x}); rebuild it",
                    tokenizer.source(),
                    tokenizer.fingerprint(),
                    self.fingerprint
                ),
            ));
        }
        Ok(())
    }

    /// Write the store to `path` (written to a temporary file, then renamed).
    pub fn save(&self, path: &Path) -> Result<(), PromptError> {
        let out = self.encode();
        // A per-process temporary name: concurrent writers (e.g. DDP ranks) never share one.
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = std::path::PathBuf::from(tmp);
        std::fs::write(&tmp, &out).map_err(|e| PromptError::io(&tmp, &e))?;
        std::fs::rename(&tmp, path).map_err(|e| PromptError::io(path, &e))
    }

    /// The file image of the store: its fields, then the checksum of all of them.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        put_u32(&mut out, FORMAT_VERSION);
        put_u32(&mut out, u32::from(self.users.is_some()));
        put_u32(&mut out, self.vocab_size);
        put_u32(&mut out, self.num_users);
        put_u64(&mut out, self.fingerprint);
        put_u64(&mut out, self.title_format.len() as u64);
        out.extend_from_slice(self.title_format.as_bytes());
        for side in std::iter::once(&self.items).chain(self.users.as_ref()) {
            put_ragged(&mut out, &side.tokens, |o, v| put_u32(o, *v));
            put_ragged(&mut out, &side.texts, |o, v| o.push(*v));
        }
        put_u64(&mut out, 0);
        reseal(&mut out);
        out
    }

    /// Read a store written by [`save`](Self::save), validating it completely, and check that it
    /// was built with `tokenizer`.
    pub fn open(path: &Path, tokenizer: &PromptTokenizer) -> Result<Self, PromptError> {
        let bytes = std::fs::read(path).map_err(|e| PromptError::io(path, &e))?;
        let store = Self::decode(&bytes).map_err(|msg| PromptError {
            kind: ErrorKind::Invalid,
            message: format!("{}: not a valid galrec text store: {msg}", path.display()),
        })?;
        store.check_tokenizer(tokenizer).map_err(|e| PromptError {
            kind: e.kind,
            message: format!("{}: {}", path.display(), e.message),
        })?;
        Ok(store)
    }

    /// The store in a file image, validated completely; the error says what is wrong.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < MAGIC.len() + 8 || &bytes[..MAGIC.len()] != MAGIC {
            return Err("wrong magic bytes".into());
        }
        let (body, tail) = bytes.split_at(bytes.len() - 8);
        let mut r = Reader { bytes: body, at: 0 };
        r.at = MAGIC.len();
        let version = r.u32()?;
        if version != FORMAT_VERSION {
            return Err(format!(
                "format version {version}, this galrec reads {FORMAT_VERSION}"
            ));
        }
        let stored_sum = u64::from_le_bytes(tail.try_into().map_err(|_| "short checksum")?);
        if fnv1a64(body) != stored_sum {
            return Err("checksum mismatch (file damaged or truncated)".into());
        }
        let has_users = match r.u32()? {
            0 => false,
            1 => true,
            f => return Err(format!("bad flags {f}")),
        };
        let vocab_size = r.u32()?;
        let num_users = r.u32()?;
        let fingerprint = r.u64()?;
        let format_len = r.len()?;
        let title_format = String::from_utf8(r.take(format_len)?.to_vec())
            .map_err(|_| "title format is not UTF-8")?;
        let (title_before, title_after) =
            parse_title_format(&title_format).map_err(|e| e.message)?;
        let mut read_side = |name: &str| -> Result<SideTexts, String> {
            let tokens = r.ragged(4, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))?;
            if let Some(bad) = tokens.values.iter().find(|&&t| t >= vocab_size) {
                return Err(format!(
                    "{name} token id {bad} >= vocabulary size {vocab_size}"
                ));
            }
            let texts = r.ragged(1, |b| b[0])?;
            if texts.len() != tokens.len() {
                return Err(format!(
                    "{name}: {} texts for {} token rows",
                    texts.len(),
                    tokens.len()
                ));
            }
            for i in 0..texts.len() {
                std::str::from_utf8(texts.row(i))
                    .map_err(|_| format!("{name} text {i} is not UTF-8"))?;
            }
            Ok(SideTexts { tokens, texts })
        };
        let items = read_side("item")?;
        let users = if has_users {
            Some(read_side("user")?)
        } else {
            None
        };
        if r.at != body.len() {
            return Err(format!("{} unexpected trailing bytes", body.len() - r.at));
        }
        if let Some(u) = &users {
            if u.tokens.len() != num_users as usize {
                return Err(format!(
                    "{} user texts but num_users is {num_users}",
                    u.tokens.len()
                ));
            }
        }
        if u64::from(num_users) + items.tokens.len() as u64 > u64::from(u32::MAX) {
            return Err("too many nodes for 32-bit global ids".into());
        }
        Ok(TextStore {
            title_format,
            title_before,
            title_after,
            vocab_size,
            fingerprint,
            num_users,
            items,
            users,
        })
    }
}

/// Rewrites the trailing checksum of a store file image (of at least 8 bytes) to match it.
pub(crate) fn reseal(file: &mut [u8]) {
    if let Some(body_len) = file.len().checked_sub(8) {
        let checksum = fnv1a64(&file[..body_len]);
        file[body_len..].copy_from_slice(&checksum.to_le_bytes());
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_ragged<T: Copy>(out: &mut Vec<u8>, r: &Ragged<T>, put: impl Fn(&mut Vec<u8>, &T)) {
    put_u64(out, r.len() as u64);
    for &o in &r.offsets {
        put_u64(out, o);
    }
    for v in &r.values {
        put(out, v);
    }
}

/// A bounds-checked little-endian reader.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| format!("truncated at byte {}", self.at))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A length that must fit in what is left of the file.
    fn len(&mut self) -> Result<usize, String> {
        let n = self.u64()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.bytes.len() - self.at)
            .ok_or_else(|| format!("length {n} at byte {} exceeds the file", self.at - 8))
    }

    fn ragged<T>(&mut self, width: usize, read: impl Fn(&[u8]) -> T) -> Result<Ragged<T>, String> {
        let rows = self.len()?;
        let mut offsets = Vec::with_capacity(rows + 1);
        for _ in 0..=rows {
            offsets.push(self.u64()?);
        }
        if offsets[0] != 0 || offsets.windows(2).any(|w| w[0] > w[1]) {
            return Err("offsets do not start at 0 or decrease".into());
        }
        let total = usize::try_from(offsets[rows]).map_err(|_| "offset overflow")?;
        let raw = self.take(total.checked_mul(width).ok_or("size overflow")?)?;
        let values = raw.chunks_exact(width).map(read).collect();
        Ok(Ragged { offsets, values })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tokenizer::tests::wordlevel;
    use super::*;

    fn store() -> TextStore {
        let t = wordlevel();
        TextStore::build(
            &t,
            &["title one", "", "a \"b\" c"],
            2,
            Some(&["one", "two"]),
            " \"{title}\"",
        )
        .unwrap()
    }

    #[test]
    fn tokenises_title_segments_once() {
        let s = store();
        assert_eq!(s.num_items(), 3);
        assert_eq!(s.num_users(), 2);
        // ' "title one"' -> " title one "
        assert_eq!(s.tokens(Side::Item, 0).unwrap(), &[8, 15, 16, 8]);
        assert_eq!(s.tokens(Side::Item, 1).unwrap(), &[8, 8]);
        assert_eq!(s.tokens(Side::User, 1).unwrap(), &[8, 17, 8]);
        assert_eq!(s.text(Side::Item, 2).unwrap(), "a \"b\" c");
        assert_eq!(s.segment_text(Side::Item, 0).unwrap(), " \"title one\"");
    }

    #[test]
    fn save_open_round_trip_and_validation() {
        let dir = std::env::temp_dir().join(format!("galrec_store_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("texts.bin");
        let s = store();
        s.save(&path).unwrap();
        let t = wordlevel();
        assert_eq!(TextStore::open(&path, &t).unwrap(), s);

        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let e = TextStore::open(&path, &t).unwrap_err();
        assert!(e.message.contains("checksum"), "{}", e.message);
        std::fs::write(&path, &bytes[..10]).unwrap();
        assert!(TextStore::open(&path, &t).is_err());
        std::fs::write(&path, b"not a store at all").unwrap();
        assert!(TextStore::open(&path, &t)
            .unwrap_err()
            .message
            .contains("magic"));
        let e = TextStore::open(&dir.join("missing.bin"), &t).unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotFound);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn user_text_count_must_match() {
        let t = wordlevel();
        let e = TextStore::build(&t, &["a"], 3, Some(&["a"]), "{title}").unwrap_err();
        assert!(e.message.contains("user_texts"));
    }
}
