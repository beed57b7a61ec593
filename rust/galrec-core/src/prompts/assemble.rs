//! Batch assembly: sampler output in, padded token arrays out, by copying cached segments.

use std::sync::Arc;

use rayon::prelude::*;

use crate::memory::{bytes_for, check_fits, try_zeroed};
use crate::parallel::{with_threads, MAX_THREADS};

use super::template::{Part, Slot, Templates};
use super::{PromptError, PromptTokenizer, Side, TextStore};

/// Prompts per unit of parallel work.
const CHUNK: usize = 32;

/// Fewer jobs than this run inline on the calling thread: waking a pool worker costs more than
/// a few chunks of copying (measured: a 64-prompt batch took 3x longer split over 2 threads).
const MIN_PARALLEL_JOBS: usize = 8;

/// The largest `max_length` accepted (tokens per prompt).
const MAX_LENGTH_LIMIT: usize = 1 << 20;

/// Where padding goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaddingSide {
    Left,
    Right,
}

impl PaddingSide {
    /// Parse `"left"` or `"right"`.
    pub fn parse(name: &str) -> Result<Self, PromptError> {
        match name {
            "left" => Ok(PaddingSide::Left),
            "right" => Ok(PaddingSide::Right),
            other => Err(PromptError::invalid(
                "padding_side",
                format!("must be \"left\" or \"right\", got {other:?}"),
            )),
        }
    }
}

/// Length, padding and threading of an assembler.
#[derive(Clone, Debug)]
pub struct AssembleOptions {
    /// Cap on a prompt's tokens, special tokens included.
    pub max_length: usize,
    pub padding_side: PaddingSide,
    /// Pad every batch to `max_length` instead of to its longest prompt.
    pub pad_to_max_length: bool,
    /// Drop repeated neighbours in a list, and the node itself from its 2-hop list.
    pub dedupe: bool,
    /// Worker threads, from galrec's fork-safe pools (`crate::parallel`); `None`: one per core.
    pub threads: Option<usize>,
}

impl Default for AssembleOptions {
    fn default() -> Self {
        AssembleOptions {
            max_length: 256,
            padding_side: PaddingSide::Right,
            pad_to_max_length: false,
            dedupe: true,
            threads: None,
        }
    }
}

/// One hop of the sampler's output: `nodes[offsets[p]..offsets[p + 1]]` are parent `p`'s neighbours.
#[derive(Clone, Copy, Debug)]
pub struct HopInput<'a> {
    pub offsets: &'a [i64],
    pub nodes: &'a [u32],
}

/// An assembled batch, row-major `[batch, length]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub batch: usize,
    pub length: usize,
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
    /// Global node id at ID-token positions, -1 elsewhere.
    pub node_ids: Vec<i64>,
    /// Per prompt: the position of its last token before the tokenizer's closing specials
    /// (the closing phrase's last token).
    pub pool_index: Vec<i64>,
}

/// A template piece with its text tokenised.
enum Piece {
    Text { ids: Vec<u32>, text: String },
    Node,
    Title,
    Neighbors { level: usize },
}

/// A compiled template: pieces plus the token count of its fixed part.
struct Compiled {
    pieces: Vec<Piece>,
    /// Tokens of the fixed text pieces plus one for `{node}`.
    fixed_len: usize,
    has_title: bool,
}

impl Compiled {
    fn new(parts: &[Part], tokenizer: &PromptTokenizer) -> Result<Self, PromptError> {
        let mut pieces = Vec::with_capacity(parts.len());
        let mut fixed_len = 0;
        let mut has_title = false;
        for part in parts {
            pieces.push(match part {
                Part::Text(text) => {
                    let ids = tokenizer.encode(text)?;
                    fixed_len += ids.len();
                    Piece::Text {
                        ids,
                        text: text.clone(),
                    }
                }
                Part::Slot(Slot::Node) => {
                    fixed_len += 1;
                    Piece::Node
                }
                Part::Slot(Slot::Title) => {
                    has_title = true;
                    Piece::Title
                }
                Part::Slot(Slot::Neighbors) => Piece::Neighbors { level: 1 },
                Part::Slot(Slot::Neighbors2) => Piece::Neighbors { level: 2 },
            });
        }
        Ok(Compiled {
            pieces,
            fixed_len,
            has_title,
        })
    }
}

/// A fixed text with its ids.
struct Fixed {
    ids: Vec<u32>,
    text: String,
}

impl Fixed {
    fn new(text: &str, tokenizer: &PromptTokenizer) -> Result<Self, PromptError> {
        Ok(Fixed {
            ids: tokenizer.encode(text)?,
            text: text.to_string(),
        })
    }
}

/// One segment of a prompt, in order.
enum Segment<'a> {
    Text(&'a [u32], &'a str),
    Node(Side, u32),
    /// A node's title segment; `cut` when only its first tokens were kept.
    Title {
        side: Side,
        id: u32,
        ids: &'a [u32],
        cut: bool,
    },
}

/// How much of a prompt fits: the kept own-title tokens and neighbour counts.
#[derive(Clone, Copy, Debug, Default)]
struct Plan {
    own_title: usize,
    kept: [usize; 2],
    /// Total tokens, special tokens included.
    len: usize,
}

/// Writes one output row left to right.
struct RowWriter<'a> {
    ids: &'a mut [i64],
    nodes: &'a mut [i64],
    at: usize,
}

impl RowWriter<'_> {
    fn tokens(&mut self, t: &[u32]) {
        let span = self.at..self.at + t.len();
        for (dst, &src) in self.ids[span.clone()].iter_mut().zip(t) {
            *dst = i64::from(src);
        }
        self.nodes[span].fill(-1);
        self.at += t.len();
    }

    /// `n` padding positions: pad token, no node.
    fn padding(&mut self, n: usize, pad: i64) {
        self.ids[self.at..self.at + n].fill(pad);
        self.nodes[self.at..self.at + n].fill(-1);
        self.at += n;
    }

    fn node(&mut self, token: i64, global: i64) {
        self.ids[self.at] = token;
        self.nodes[self.at] = global;
        self.at += 1;
    }
}

/// The neighbour lists of one prompt (reused buffers).
#[derive(Default)]
struct Lists {
    levels: [Vec<u32>; 2],
}

/// Assembles prompts of all hops and both sides for one tokenizer, store and template set.
pub struct PromptAssembler {
    tokenizer: Arc<PromptTokenizer>,
    store: Arc<TextStore>,
    user: [Compiled; 3],
    item: [Compiled; 3],
    neighbor: Compiled,
    separator: Fixed,
    closing: Fixed,
    pad_id: u32,
    options: AssembleOptions,
}

impl PromptAssembler {
    /// Validate and tokenise the templates once; check the store matches the tokenizer.
    pub fn new(
        tokenizer: Arc<PromptTokenizer>,
        store: Arc<TextStore>,
        templates: &Templates,
        options: AssembleOptions,
    ) -> Result<Self, PromptError> {
        store.check_tokenizer(&tokenizer)?;
        let pad_id = tokenizer.pad_id().ok_or_else(|| {
            PromptError::invalid(
                tokenizer.source(),
                "the tokenizer has no padding token; pass pad_token_id when loading it",
            )
        })?;
        let parsed = templates.parse()?;
        let compile3 = |parts: &[Vec<Part>; 3]| -> Result<[Compiled; 3], PromptError> {
            Ok([
                Compiled::new(&parts[0], &tokenizer)?,
                Compiled::new(&parts[1], &tokenizer)?,
                Compiled::new(&parts[2], &tokenizer)?,
            ])
        };
        if !(1..=MAX_LENGTH_LIMIT).contains(&options.max_length) {
            return Err(PromptError::invalid(
                "max_length",
                format!(
                    "must be between 1 and {MAX_LENGTH_LIMIT}, got {}",
                    options.max_length
                ),
            ));
        }
        match options.threads {
            Some(0) => return Err(PromptError::invalid("threads", "must be at least 1")),
            Some(n) if n > MAX_THREADS => {
                return Err(PromptError::invalid(
                    "threads",
                    format!("must be at most {MAX_THREADS}, got {n}"),
                ))
            }
            _ => {}
        }
        let assembler = PromptAssembler {
            user: compile3(&parsed.user)?,
            item: compile3(&parsed.item)?,
            neighbor: Compiled::new(&parsed.neighbor, &tokenizer)?,
            separator: Fixed::new(&templates.separator, &tokenizer)?,
            closing: Fixed::new(&templates.closing, &tokenizer)?,
            tokenizer,
            store,
            pad_id,
            options,
        };
        Ok(assembler)
    }

    pub fn options(&self) -> &AssembleOptions {
        &self.options
    }

    /// Tokens every prompt of a template needs: specials, fixed text, node token, closing phrase.
    fn base_length(&self, side: Side, hop: usize) -> usize {
        self.template(side, hop).fixed_len
            + self.closing.ids.len()
            + self.tokenizer.prefix().len()
            + self.tokenizer.suffix().len()
    }

    fn template(&self, side: Side, hop: usize) -> &Compiled {
        match side {
            Side::User => &self.user[hop],
            Side::Item => &self.item[hop],
        }
    }

    /// Run `f` over `items`: inline when one thread is asked for or there are fewer than
    /// [`MIN_PARALLEL_JOBS`] items (no cross-thread hand-off for small batches), else in
    /// parallel on galrec's pool of that size, which a forked child (a DataLoader worker)
    /// starts afresh rather than waiting on its parent's threads.
    fn map_jobs<T: Send, R: Send>(
        &self,
        items: Vec<T>,
        f: impl Fn(T) -> R + Sync + Send,
    ) -> Result<Vec<R>, PromptError> {
        if self.options.threads == Some(1) || items.len() < MIN_PARALLEL_JOBS {
            return Ok(items.into_iter().map(f).collect());
        }
        with_threads(self.options.threads, || {
            items.into_par_iter().map(f).collect()
        })
        .map_err(|e| PromptError::invalid("threads", e))
    }

    /// Prompt index ranges of [`CHUNK`] prompts: the unit of parallel work.
    fn chunks(n: usize) -> Vec<std::ops::Range<usize>> {
        (0..n)
            .step_by(CHUNK)
            .map(|s| s..(s + CHUNK).min(n))
            .collect()
    }

    /// Assemble the hop-`hop` prompts of `seeds` (ids of `side`) into one padded batch.
    ///
    /// `hops[0]` holds the seeds' neighbours, `hops[1]` the neighbours of the flattened
    /// `hops[0].nodes`; only the first `hop` entries are read, so one sampler output serves every
    /// view.
    pub fn assemble(
        &self,
        side: Side,
        hop: usize,
        seeds: &[i64],
        hops: &[HopInput<'_>],
    ) -> Result<Batch, PromptError> {
        self.validate(side, hop, seeds, hops)?;
        self.assemble_valid(side, hop, seeds, hops)
    }

    /// The same prompts as [`assemble`](Self::assemble), as their segment texts (ID tokens written
    /// `<user_u>` / `<item_i>`, special tokens left out). Joining a prompt's segments gives its text.
    pub fn render_segments(
        &self,
        side: Side,
        hop: usize,
        seeds: &[i64],
        hops: &[HopInput<'_>],
    ) -> Result<Vec<Vec<String>>, PromptError> {
        self.validate(side, hop, seeds, hops)?;
        let chunks = self.map_jobs(Self::chunks(seeds.len()), |range| {
            let mut lists = Lists::default();
            range
                .map(|i| {
                    let seed = seeds[i] as u32;
                    self.lists(hop, seed, i, hops, &mut lists);
                    let plan = self.plan(side, hop, seed, &lists);
                    let mut out = Vec::new();
                    let mut failed = None;
                    self.walk(side, hop, seed, &lists, &plan, |seg| {
                        let text = match seg {
                            Segment::Text(_, text) => text.to_string(),
                            Segment::Node(s, id) => format!("<{}_{id}>", s.name()),
                            Segment::Title { ids, cut: true, .. } => {
                                self.tokenizer.decode(ids).unwrap_or_else(|e| {
                                    failed = Some(e);
                                    String::new()
                                })
                            }
                            Segment::Title { side, id, .. } => {
                                self.store.segment_text(side, id).unwrap_or_default()
                            }
                        };
                        out.push(text);
                    });
                    failed.map_or(Ok(out), Err)
                })
                .collect::<Result<Vec<_>, _>>()
        })?;
        let mut prompts = Vec::with_capacity(seeds.len());
        for chunk in chunks {
            prompts.extend(chunk?);
        }
        Ok(prompts)
    }

    fn validate(
        &self,
        side: Side,
        hop: usize,
        seeds: &[i64],
        hops: &[HopInput<'_>],
    ) -> Result<(), PromptError> {
        if hop > 2 {
            return Err(PromptError::invalid(
                "hop",
                format!("must be 0, 1 or 2, got {hop}"),
            ));
        }
        let base = self.base_length(side, hop);
        if self.options.max_length < base {
            return Err(PromptError::invalid(
                "max_length",
                format!(
                    "{} is below {base}, the tokens of template {}_hop{hop} without titles and neighbours",
                    self.options.max_length,
                    side.name()
                ),
            ));
        }
        if hops.len() < hop {
            return Err(PromptError::invalid(
                "hops",
                format!(
                    "hop {hop} prompts need {hop} sampled hops, got {}",
                    hops.len()
                ),
            ));
        }
        let count = self.store.count(side);
        if let Some((at, &bad)) = seeds
            .iter()
            .enumerate()
            .find(|&(_, &s)| s < 0 || s >= i64::from(count))
        {
            return Err(PromptError::out_of_range(
                "seeds",
                format!(
                    "seeds[{at}] = {bad} is not a {} id (0..{count})",
                    side.name()
                ),
            ));
        }
        let mut parents = seeds.len();
        let mut hop_side = side;
        for (k, h) in hops.iter().take(hop).enumerate() {
            hop_side = hop_side.other();
            let what = format!("hops[{k}]");
            if h.offsets.len() != parents + 1 {
                return Err(PromptError::invalid(
                    &what,
                    format!(
                        "offsets has {} entries, expected {} (one more than its {parents} parents)",
                        h.offsets.len(),
                        parents + 1
                    ),
                ));
            }
            if h.offsets[0] != 0 || h.offsets[parents] != h.nodes.len() as i64 {
                return Err(PromptError::invalid(
                    &what,
                    format!(
                        "offsets must run from 0 to len(nodes) = {}, got {} .. {}",
                        h.nodes.len(),
                        h.offsets[0],
                        h.offsets[parents]
                    ),
                ));
            }
            if let Some(p) = h.offsets.windows(2).position(|w| w[0] > w[1]) {
                return Err(PromptError::invalid(
                    &what,
                    format!("offsets decrease at index {}", p + 1),
                ));
            }
            let count = self.store.count(hop_side);
            if let Some(at) = h.nodes.iter().position(|&n| n >= count) {
                return Err(PromptError::out_of_range(
                    &what,
                    format!(
                        "nodes[{at}] = {} is not a {} id (0..{count})",
                        h.nodes[at],
                        hop_side.name()
                    ),
                ));
            }
            parents = h.nodes.len();
        }
        Ok(())
    }

    fn assemble_valid(
        &self,
        side: Side,
        hop: usize,
        seeds: &[i64],
        hops: &[HopInput<'_>],
    ) -> Result<Batch, PromptError> {
        let plans: Vec<Plan> = self
            .map_jobs(Self::chunks(seeds.len()), |range| {
                let mut lists = Lists::default();
                range
                    .map(|i| {
                        let seed = seeds[i] as u32;
                        self.lists(hop, seed, i, hops, &mut lists);
                        self.plan(side, hop, seed, &lists)
                    })
                    .collect::<Vec<_>>()
            })?
            .concat();
        let longest = plans.iter().map(|p| p.len).max().unwrap_or(0);
        let length = if self.options.pad_to_max_length {
            self.options.max_length
        } else {
            longest
        };
        let b = seeds.len();
        // Three i64 arrays of `b * length`, so a padded batch can exceed memory.
        let cells = (b as u64).saturating_mul(length as u64);
        check_fits(
            if self.options.pad_to_max_length {
                "max_length"
            } else {
                "seeds"
            },
            &format!("{b} prompts of {length} tokens"),
            bytes_for(cells, 3 * 8),
        )?;
        let cells = usize::try_from(cells).unwrap_or(usize::MAX);
        // Zeroed allocations are lazy; every row is written in full by its worker.
        let mut input_ids = try_zeroed(cells, "input_ids")?;
        let mut attention_mask = try_zeroed(cells, "attention_mask")?;
        let mut node_ids = try_zeroed(cells, "node_ids")?;
        let mut pool_index = try_zeroed(b, "pool_index")?;
        if length > 0 {
            let jobs: Vec<_> = Self::chunks(b)
                .into_iter()
                .zip(input_ids.chunks_mut(CHUNK * length))
                .zip(attention_mask.chunks_mut(CHUNK * length))
                .zip(node_ids.chunks_mut(CHUNK * length))
                .zip(pool_index.chunks_mut(CHUNK))
                .collect();
            self.map_jobs(jobs, |((((range, ids), mask), nodes), pool)| {
                let mut lists = Lists::default();
                for (r, i) in range.enumerate() {
                    let row = r * length..(r + 1) * length;
                    pool[r] = self.write_row(
                        side,
                        hop,
                        seeds[i] as u32,
                        i,
                        hops,
                        &plans[i],
                        &mut lists,
                        RowWriter {
                            ids: &mut ids[row.clone()],
                            nodes: &mut nodes[row.clone()],
                            at: 0,
                        },
                        &mut mask[row],
                    );
                }
            })?;
        }
        Ok(Batch {
            batch: b,
            length,
            input_ids,
            attention_mask,
            node_ids,
            pool_index,
        })
    }

    /// Write prompt `i` into its row (padding included); returns its pooling position.
    #[allow(clippy::too_many_arguments)]
    fn write_row(
        &self,
        side: Side,
        hop: usize,
        seed: u32,
        i: usize,
        hops: &[HopInput<'_>],
        plan: &Plan,
        lists: &mut Lists,
        mut row: RowWriter<'_>,
        mask: &mut [i64],
    ) -> i64 {
        let length = row.ids.len();
        let pad = i64::from(self.pad_id);
        let start = match self.options.padding_side {
            PaddingSide::Right => 0,
            PaddingSide::Left => length - plan.len,
        };
        row.padding(start, pad);
        mask[start..start + plan.len].fill(1);
        let vocab = i64::from(self.tokenizer.vocab_size());
        let num_users = i64::from(self.store.num_users());
        row.tokens(self.tokenizer.prefix());
        self.lists(hop, seed, i, hops, lists);
        self.walk(side, hop, seed, lists, plan, |seg| match seg {
            Segment::Text(t, _) | Segment::Title { ids: t, .. } => row.tokens(t),
            Segment::Node(s, id) => {
                let global = match s {
                    Side::User => i64::from(id),
                    Side::Item => num_users + i64::from(id),
                };
                row.node(vocab + global, global);
            }
        });
        let pool = row.at as i64 - 1;
        row.tokens(self.tokenizer.suffix());
        debug_assert_eq!(row.at, start + plan.len);
        row.padding(length - row.at, pad);
        pool
    }

    /// Fill `lists` with prompt `i`'s neighbour lists (deduplicated when configured).
    fn lists(&self, hop: usize, seed: u32, i: usize, hops: &[HopInput<'_>], lists: &mut Lists) {
        let [l1, l2] = &mut lists.levels;
        l1.clear();
        l2.clear();
        if hop >= 1 {
            let h = &hops[0];
            let (a, b) = (h.offsets[i] as usize, h.offsets[i + 1] as usize);
            self.push_filtered(l1, &h.nodes[a..b], None);
            if hop >= 2 {
                let h2 = &hops[1];
                let (s, e) = (h2.offsets[a] as usize, h2.offsets[b] as usize);
                // The 2-hop side is the seed's side: the seed itself is not its own neighbour.
                self.push_filtered(l2, &h2.nodes[s..e], Some(seed));
            }
        }
    }

    fn push_filtered(&self, out: &mut Vec<u32>, nodes: &[u32], exclude: Option<u32>) {
        if !self.options.dedupe {
            out.extend_from_slice(nodes);
            return;
        }
        if nodes.len() <= 64 {
            for &n in nodes {
                if Some(n) != exclude && !out.contains(&n) {
                    out.push(n);
                }
            }
            return;
        }
        // Longer lists: keep each id's first occurrence, found by sorting (position, id) pairs.
        let mut order: Vec<(u32, u32)> = nodes
            .iter()
            .enumerate()
            .map(|(p, &n)| (n, p as u32))
            .collect();
        order.sort_unstable();
        let mut keep = vec![false; nodes.len()];
        for (k, &(n, p)) in order.iter().enumerate() {
            if (k == 0 || order[k - 1].0 != n) && Some(n) != exclude {
                keep[p as usize] = true;
            }
        }
        out.extend(
            nodes
                .iter()
                .zip(&keep)
                .filter(|&(_, &k)| k)
                .map(|(&n, _)| n),
        );
    }

    fn title_len(&self, side: Side, id: u32) -> usize {
        self.store.tokens(side, id).map_or(0, <[u32]>::len)
    }

    fn neighbor_cost(&self, side: Side, id: u32) -> usize {
        self.neighbor.fixed_len
            + if self.neighbor.has_title {
                self.title_len(side, id)
            } else {
                0
            }
    }

    /// Decide what fits: the node, fixed text and closing always; then 1-hop neighbours in order,
    /// then 2-hop ones, each whole or not at all. Only when even the node's own title does not fit
    /// is that title cut (its first tokens kept).
    fn plan(&self, side: Side, hop: usize, seed: u32, lists: &Lists) -> Plan {
        let template = self.template(side, hop);
        let base = self.base_length(side, hop);
        let title = if template.has_title {
            self.title_len(side, seed)
        } else {
            0
        };
        let max = self.options.max_length;
        if base + title > max {
            // `validate` checked max_length >= base.
            return Plan {
                own_title: max.saturating_sub(base),
                kept: [0, 0],
                len: max,
            };
        }
        let mut left = max - base - title;
        let mut kept = [0usize; 2];
        let mut level_side = side;
        for (level, list) in lists.levels.iter().enumerate() {
            level_side = level_side.other();
            for &n in list {
                let cost = self.neighbor_cost(level_side, n)
                    + if kept[level] > 0 {
                        self.separator.ids.len()
                    } else {
                        0
                    };
                if cost > left {
                    break;
                }
                left -= cost;
                kept[level] += 1;
            }
            if kept[level] < list.len() {
                break;
            }
        }
        Plan {
            own_title: title,
            kept,
            len: max - left,
        }
    }

    /// Emit a prompt's segments (without special tokens) in order.
    fn walk<'s>(
        &'s self,
        side: Side,
        hop: usize,
        seed: u32,
        lists: &Lists,
        plan: &Plan,
        mut emit: impl FnMut(Segment<'s>),
    ) {
        for piece in &self.template(side, hop).pieces {
            match piece {
                Piece::Text { ids, text } => emit(Segment::Text(ids, text)),
                Piece::Node => emit(Segment::Node(side, seed)),
                Piece::Title => {
                    if let Some(ids) = self.store.tokens(side, seed) {
                        emit(Segment::Title {
                            side,
                            id: seed,
                            ids: &ids[..plan.own_title],
                            cut: plan.own_title < ids.len(),
                        });
                    }
                }
                Piece::Neighbors { level } => {
                    let level_side = if level % 2 == 1 { side.other() } else { side };
                    let list = &lists.levels[level - 1][..plan.kept[level - 1]];
                    for (k, &n) in list.iter().enumerate() {
                        if k > 0 {
                            emit(Segment::Text(&self.separator.ids, &self.separator.text));
                        }
                        self.walk_neighbor(level_side, n, &mut emit);
                    }
                }
            }
        }
        emit(Segment::Text(&self.closing.ids, &self.closing.text));
    }

    fn walk_neighbor<'s>(&'s self, side: Side, id: u32, emit: &mut impl FnMut(Segment<'s>)) {
        for piece in &self.neighbor.pieces {
            match piece {
                Piece::Text { ids, text } => emit(Segment::Text(ids, text)),
                Piece::Node => emit(Segment::Node(side, id)),
                Piece::Title => {
                    if let Some(ids) = self.store.tokens(side, id) {
                        emit(Segment::Title {
                            side,
                            id,
                            ids,
                            cut: false,
                        });
                    }
                }
                // The neighbour template allows only {node} and {title}.
                Piece::Neighbors { .. } => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tokenizer::tests::wordlevel;
    use super::super::ErrorKind;
    use super::*;

    // wordlevel vocabulary: [PAD]0 [UNK]1 [CLS]2 [SEP]3 has4 interacted5 with6 ,7 "8 was9
    // chosen10 by11 a12 b13 c14 title15 one16 two17 .18 in19 word20 :21; ID tokens from 22.
    const CLOSING: [i64; 5] = [18, 19, 16, 20, 21];

    fn assembler(options: AssembleOptions) -> PromptAssembler {
        let tok = Arc::new(wordlevel());
        let store = TextStore::build(
            &tok,
            &["a", "b c", "title one two"],
            2,
            None,
            " \"{title}\"",
        )
        .unwrap();
        PromptAssembler::new(tok, Arc::new(store), &Templates::default(), options).unwrap()
    }

    fn row(b: &Batch, i: usize) -> &[i64] {
        &b.input_ids[i * b.length..(i + 1) * b.length]
    }

    #[test]
    fn hop1_user_prompt_is_the_concatenated_segments() {
        let a = assembler(AssembleOptions::default());
        let hop = HopInput {
            offsets: &[0, 2, 2],
            nodes: &[0, 2],
        };
        let b = a.assemble(Side::User, 1, &[0, 1], &[hop]).unwrap();
        let mut want = vec![2, 22, 4, 5, 6, 24, 8, 12, 8, 7, 26, 8, 15, 16, 17, 8];
        want.extend(CLOSING);
        want.push(3);
        assert_eq!(b.length, want.len());
        assert_eq!(row(&b, 0), want.as_slice());
        let mut short = vec![2, 23, 4, 5, 6];
        short.extend(CLOSING);
        short.push(3);
        let pad = b.length - short.len();
        short.extend(std::iter::repeat_n(0, pad));
        assert_eq!(row(&b, 1), short.as_slice());
        assert_eq!(b.pool_index, vec![want.len() as i64 - 2, 9]);
        let nodes0 = &b.node_ids[..b.length];
        assert_eq!(nodes0[1], 0);
        assert_eq!(nodes0[5], 2);
        assert_eq!(nodes0[10], 4);
        assert_eq!(nodes0.iter().filter(|&&n| n >= 0).count(), 3);
        assert_eq!(b.attention_mask[b.length..].iter().sum::<i64>(), 11);

        let text = a.render_segments(Side::User, 1, &[0, 1], &[hop]).unwrap();
        assert_eq!(
            text[0].concat(),
            "<user_0> has interacted with <item_0> \"a\", <item_2> \"title one two\". In one word:"
        );
    }

    #[test]
    fn a_padded_batch_beyond_memory_is_refused_by_max_length() {
        if crate::memory::ceiling().is_none() {
            return;
        }
        let a = assembler(AssembleOptions {
            max_length: MAX_LENGTH_LIMIT,
            pad_to_max_length: true,
            ..AssembleOptions::default()
        });
        // 2**20 prompts of 2**20 tokens: 24 TiB of output arrays.
        let seeds = vec![0i64; 1 << 20];
        let err = a.assemble(Side::User, 0, &seeds, &[]).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Invalid);
        assert!(
            err.message
                .starts_with("max_length: 1048576 prompts of 1048576 tokens need"),
            "{}",
            err.message
        );
    }

    #[test]
    fn truncation_drops_farthest_whole_neighbours_and_pads_left() {
        // Item 1's hop 1: users 0 and 1; hop 2: items 0, 2 (via user 0), 1 (itself), 0 (again).
        let hops = [
            HopInput {
                offsets: &[0, 2],
                nodes: &[0, 1],
            },
            HopInput {
                offsets: &[0, 2, 4],
                nodes: &[0, 2, 1, 0],
            },
        ];
        let full = assembler(AssembleOptions::default());
        let text = full.render_segments(Side::Item, 2, &[1], &hops).unwrap();
        assert_eq!(
            text[0].concat(),
            "<item_1> \"b c\" was chosen by <user_0>, <user_1>; items chosen by the same users: \
             <item_0> \"a\", <item_2> \"title one two\". In one word:"
        );
        let n_full = full.assemble(Side::Item, 2, &[1], &hops).unwrap().length;
        // Room for everything but the last 2-hop item (7 tokens with its separator).
        let opts = AssembleOptions {
            max_length: n_full - 1,
            padding_side: PaddingSide::Left,
            pad_to_max_length: true,
            ..AssembleOptions::default()
        };
        let a = assembler(opts);
        let text = a.render_segments(Side::Item, 2, &[1], &hops).unwrap();
        assert!(text[0]
            .concat()
            .ends_with("users: <item_0> \"a\". In one word:"));
        let b = a.assemble(Side::Item, 2, &[1], &hops).unwrap();
        assert_eq!(b.length, n_full - 1);
        let kept = n_full - 7;
        assert!(row(&b, 0)[..b.length - kept].iter().all(|&t| t == 0));
        assert_eq!(b.attention_mask.iter().sum::<i64>(), kept as i64);
        assert_eq!(b.pool_index[0], b.length as i64 - 2);
        // Tighter: every 2-hop item and the second user go.
        let a = assembler(AssembleOptions {
            max_length: 25,
            ..AssembleOptions::default()
        });
        let text = a.render_segments(Side::Item, 2, &[1], &hops).unwrap();
        assert_eq!(
            text[0].concat(),
            "<item_1> \"b c\" was chosen by <user_0>; items chosen by the same users: . In one word:"
        );
    }

    #[test]
    fn own_title_is_cut_only_as_a_last_resort() {
        let a = assembler(AssembleOptions {
            max_length: 9,
            ..AssembleOptions::default()
        });
        let b = a.assemble(Side::Item, 0, &[2], &[]).unwrap();
        // [CLS] <item_2> then 1 of 5 title tokens, closing, [SEP].
        let mut want = vec![2, 26, 8];
        want.extend(CLOSING);
        want.push(3);
        assert_eq!(row(&b, 0), want.as_slice());
        let e = a.assemble(Side::Item, 1, &[2], &[]).unwrap_err();
        assert!(
            e.message.contains("max_length: 9 is below"),
            "{}",
            e.message
        );
        assert!(e.message.contains("item_hop1"), "{}", e.message);
    }

    #[test]
    fn bad_inputs_name_the_argument() {
        let a = assembler(AssembleOptions::default());
        let err = |side, hop, seeds: &[i64], hops: &[HopInput<'_>]| {
            a.assemble(side, hop, seeds, hops).unwrap_err()
        };
        let e = err(Side::User, 0, &[0, 2], &[]);
        assert_eq!(e.kind, ErrorKind::OutOfRange);
        assert!(e.message.contains("seeds[1] = 2"), "{}", e.message);
        let bad_node = HopInput {
            offsets: &[0, 1],
            nodes: &[3],
        };
        let e = err(Side::User, 1, &[0], &[bad_node]);
        assert!(e.message.contains("hops[0]: nodes[0] = 3 is not a item id"));
        let bad_offsets = HopInput {
            offsets: &[0, 2],
            nodes: &[0],
        };
        assert!(err(Side::User, 1, &[0], &[bad_offsets])
            .message
            .contains("offsets"));
        assert!(err(Side::User, 2, &[0], &[bad_node])
            .message
            .contains("hops"));
        assert!(err(Side::User, 3, &[0], &[]).message.contains("hop"));
    }
}
