//! Fuzzing, in stable Rust, of the three readers of untrusted input: the graph file reader
//! ([`crate::storage::open`]), the text store reader ([`crate::prompts::TextStore`]) and the
//! prompt template parser ([`crate::prompts::Templates`]).
//!
//! The contract checked: every input ends in `Ok` or `Err`, never in a panic, an abort or a
//! hang; and an input that is accepted is safe to use (every accessor, sampling over a graph).
//!
//! Most inputs are mutations of valid files the library itself writes: bit flips, random and
//! boundary bytes, boundary values written over length and offset fields, truncations,
//! extensions, splices between seed files, deleted and repeated ranges, inserted template
//! syntax; usually with the checksums re-sealed afterwards, so that the mutations reach the
//! checks behind them. The rest are random bytes. Inputs are generated, not stored: input `i`
//! of a run with seed `s` depends on (target, `s`, `i`) alone, so any of them can be
//! regenerated ([`Fuzzer::input`]). `cargo test` runs a short slice of every target; the
//! `fuzz` example runs long ones (see docs/reliability.md).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::graph::{BipartiteGraph, EdgeList, Side, Timestamps};
use crate::prompts::{self, PromptTokenizer, Templates, TextStore};
use crate::rng::mix64;
use crate::sample::{sample, SampleSpec, Strategy};
use crate::storage;

/// A reader under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// [`storage::open`] on a file of the input's bytes.
    GraphFile,
    /// [`TextStore`] decoding of the input's bytes.
    TextStore,
    /// [`Templates::validate`] on templates cut from the input (NUL-separated, lossy UTF-8).
    Templates,
}

impl Target {
    pub const ALL: [Target; 3] = [Target::GraphFile, Target::TextStore, Target::Templates];

    /// The name used on the command line and in file names.
    pub fn name(self) -> &'static str {
        match self {
            Target::GraphFile => "graph-file",
            Target::TextStore => "text-store",
            Target::Templates => "templates",
        }
    }

    /// The target called `name`.
    pub fn parse(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// What the reader made of one input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Rejected,
}

/// The counts of a fuzzing run.
#[derive(Clone, Debug)]
pub struct Report {
    pub inputs: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// The saved inputs that panicked.
    pub panics: Vec<PathBuf>,
    pub elapsed: Duration,
    /// The longest any single input took.
    pub slowest: Duration,
}

/// A small, fast generator (SplitMix64): fuzz inputs need speed and reproducibility only.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % (n as u64).max(1)) as usize
    }

    /// True with probability `1 / n`.
    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// Template syntax worth inserting into template inputs.
const TEMPLATE_TOKENS: [&[u8]; 12] = [
    b"{",
    b"}",
    b"{{",
    b"}}",
    b"{node}",
    b"{title}",
    b"{neighbors}",
    b"{neighbors2}",
    b"{nodes}",
    b"\0",
    "\u{e9}".as_bytes(),
    "\u{65e5}\u{672c}".as_bytes(),
];

/// Values worth writing over length, count and offset fields.
fn boundary_values(len: usize) -> [u64; 12] {
    let len = len as u64;
    [
        0,
        1,
        7,
        8,
        255,
        u64::from(u32::MAX),
        u64::from(u32::MAX) + 1,
        u64::MAX,
        i64::MAX as u64,
        len,
        len.wrapping_sub(1),
        len + 8,
    ]
}

/// Generates and runs the inputs of one target.
pub struct Fuzzer {
    target: Target,
    seed: u64,
    /// Valid inputs written by the library, the starting points of mutation.
    corpus: Vec<Vec<u8>>,
    /// The file the graph-file target writes each input to (the reader opens a path).
    scratch: PathBuf,
    /// The tokenizer the text store seeds were built with.
    tokenizer: Arc<PromptTokenizer>,
}

/// A minimal WordLevel tokenizer, enough to build text stores to mutate.
const TOKENIZER_JSON: &str = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
"normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
"model":{"type":"WordLevel","vocab":{"[UNK]":0,"a":1,"b":2,"\"":3,"title":4,"<":5,">":6},"unk_token":"[UNK]"}}"#;

/// Numbers scratch files apart, for fuzzers of one seed in one process.
static SCRATCH_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Fuzzer {
    /// A fuzzer of `target` whose inputs are determined by `seed`.
    pub fn new(target: Target, seed: u64) -> Result<Self, String> {
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let scratch = dir.join(format!(
            "galrec-fuzz-{}-{}-{}.bin",
            std::process::id(),
            target.name(),
            SCRATCH_COUNTER.fetch_add(1, Relaxed)
        ));
        let tokenizer = Arc::new(
            PromptTokenizer::from_json(TOKENIZER_JSON.as_bytes(), "fuzz tokenizer", Some(0))
                .map_err(|e| e.message)?,
        );
        let mut fuzzer = Fuzzer {
            target,
            seed,
            corpus: Vec::new(),
            scratch,
            tokenizer,
        };
        fuzzer.corpus = match target {
            Target::GraphFile => fuzzer.graph_corpus().map_err(|e| e.to_string())?,
            Target::TextStore => fuzzer.store_corpus().map_err(|e| e.message)?,
            Target::Templates => template_corpus(),
        };
        Ok(fuzzer)
    }

    /// Graph files of every layout: attributes or not, empty, isolated nodes, duplicates.
    fn graph_corpus(&self) -> crate::error::Result<Vec<Vec<u8>>> {
        let edges = EdgeList::plain;
        let (users, items): (&[u32], &[u32]) = (&[0, 1, 1, 2, 3, 3, 3], &[1, 0, 2, 2, 0, 1, 2]);
        let int_times = [5i64, -3, 9, 0, 7, 7, 1];
        let float_times = [0.5, -1.0, 2.0, 1e300, 3.0, 3.5, -0.0];
        let weights = [1.0f32, 0.5, 2.0, 4.0, 1e-3, 3.0, 1.0];
        let plain = EdgeList {
            num_users: Some(5),
            ..edges(users, items)
        };
        let graphs = [
            plain,
            EdgeList {
                timestamps: Some(Timestamps::Int(&int_times)),
                weights: Some(&weights),
                ..plain
            },
            EdgeList {
                timestamps: Some(Timestamps::Float(&float_times)),
                ..plain
            },
            EdgeList {
                weights: Some(&weights),
                dedupe: false,
                ..edges(&[0, 0, 1, 1, 1, 2, 0], &[0, 0, 1, 1, 2, 0, 1])
            },
            EdgeList {
                num_users: Some(2),
                num_items: Some(1),
                ..edges(&[], &[])
            },
        ];
        graphs
            .into_iter()
            .map(|edges| {
                storage::save(&BipartiteGraph::from_edges(edges)?, &self.scratch)?;
                std::fs::read(&self.scratch)
                    .map_err(|e| crate::error::GraphError::io(&self.scratch, e))
            })
            .collect()
    }

    /// Text stores with and without user texts, in several title formats.
    fn store_corpus(&self) -> Result<Vec<Vec<u8>>, prompts::PromptError> {
        let items = ["a b", "", "title \"a\"", "\u{e9}\u{65e5}"];
        let users = ["a", "b b b"];
        Ok(vec![
            TextStore::build(&self.tokenizer, &items, 2, Some(&users), " \"{title}\"")?.encode(),
            TextStore::build(&self.tokenizer, &items, 3, None, "{title}")?.encode(),
            TextStore::build(&self.tokenizer, &items[..1], 2, Some(&users), "<{title}>")?.encode(),
        ])
    }

    /// Input `index` of this fuzzer's run: a mutated seed file, or (one in eight) random bytes.
    pub fn input(&self, index: u64) -> Vec<u8> {
        let mut rng = Rng(mix64(
            self.seed ^ mix64(index ^ ((self.target as u64) << 56)),
        ));
        let largest = self.corpus.iter().map(Vec::len).max().unwrap_or(64);
        let mut bytes = if rng.one_in(8) {
            let len = rng.below(2 * largest);
            match self.target {
                Target::Templates => random_template(&mut rng, len),
                _ => (0..len).map(|_| rng.next() as u8).collect(),
            }
        } else {
            let mut bytes = self.corpus[rng.below(self.corpus.len())].clone();
            for _ in 0..1 + rng.below(4) {
                self.mutate(&mut rng, &mut bytes);
            }
            bytes
        };
        if !rng.one_in(4) {
            match self.target {
                Target::GraphFile => storage::reseal(&mut bytes),
                Target::TextStore => prompts::reseal_store(&mut bytes),
                Target::Templates => {}
            }
        }
        bytes
    }

    /// Applies one random mutation to `bytes`.
    fn mutate(&self, rng: &mut Rng, bytes: &mut Vec<u8>) {
        let len = bytes.len();
        let at = rng.below(len);
        match rng.below(11) {
            0 if len > 0 => bytes[at] ^= 1 << rng.below(8),
            1 if len > 0 => bytes[at] = rng.next() as u8,
            2 if len > 0 => bytes[at] = [0, 1, 0x7f, 0x80, 0xff][rng.below(5)],
            3 | 4 if len >= 8 => {
                // Over a length or offset field: 8-aligned (graph files) or anywhere.
                let word = if rng.one_in(2) {
                    rng.below(len / 8) * 8
                } else {
                    rng.below(len - 7)
                };
                let values = boundary_values(len);
                let value = values[rng.below(values.len())].wrapping_add(rng.below(3) as u64);
                let width = if rng.one_in(2) { 8 } else { 4 };
                bytes[word..word + width].copy_from_slice(&value.to_le_bytes()[..width]);
            }
            5 => bytes.truncate(at),
            6 => bytes.extend((0..1 + rng.below(64)).map(|_| rng.next() as u8)),
            7 => {
                let donor = &self.corpus[rng.below(self.corpus.len())];
                let from = rng.below(donor.len());
                let chunk = &donor[from..from + rng.below(donor.len() - from + 1)];
                let end = (at + chunk.len()).min(len);
                bytes.splice(at..end, chunk.iter().copied());
            }
            8 => {
                let end = at + rng.below(len - at + 1);
                bytes.drain(at..end);
            }
            9 => {
                let end = at + rng.below((len - at).min(64) + 1);
                let repeated = bytes[at..end].to_vec();
                bytes.splice(at..at, repeated);
            }
            _ => {
                let token = TEMPLATE_TOKENS[rng.below(TEMPLATE_TOKENS.len())];
                bytes.splice(at..at, token.iter().copied());
            }
        }
    }

    /// Runs one input; a broken contract panics (a reader that panics, or an accepted input
    /// that is not safe to use).
    pub fn run_one(&self, bytes: &[u8]) -> Outcome {
        let accepted = match self.target {
            Target::GraphFile => self.run_graph_file(bytes),
            Target::TextStore => self.run_text_store(bytes),
            Target::Templates => run_templates(bytes),
        };
        if accepted {
            Outcome::Accepted
        } else {
            Outcome::Rejected
        }
    }

    fn run_graph_file(&self, bytes: &[u8]) -> bool {
        if let Err(e) = std::fs::write(&self.scratch, bytes) {
            panic!(
                "cannot write the scratch file {}: {e}",
                self.scratch.display()
            );
        }
        let Ok(graph) = storage::open(&self.scratch, false) else {
            return false;
        };
        use_graph(&graph);
        if let Ok(verified) = storage::open(&self.scratch, true) {
            assert_eq!(verified.meta(), graph.meta(), "verify changed the graph");
        }
        true
    }

    fn run_text_store(&self, bytes: &[u8]) -> bool {
        let Ok(store) = TextStore::decode(bytes) else {
            return false;
        };
        for side in [prompts::Side::Item, prompts::Side::User] {
            if side == prompts::Side::User && !store.has_user_texts() {
                continue;
            }
            for id in 0..store.count(side) {
                let tokens = store.tokens(side, id).map(<[u32]>::len);
                let text = store.text(side, id).map(str::len);
                let segment = store.segment_text(side, id).map(|s| s.len());
                assert!(
                    tokens.is_some() && text.is_some() && segment >= text,
                    "{side:?} {id} of an accepted store is unreadable"
                );
            }
        }
        // Mutated seeds were built with this tokenizer; either answer is fine, no panic is.
        let _ = store.check_tokenizer(&self.tokenizer);
        true
    }

    /// Runs inputs `0..count` (or until `time_limit`), on the calling thread; `current` holds
    /// the index of the input running (for a hang watchdog or an abort handler). An input that
    /// panics is saved to `crash_dir` as `<target>-seed<seed>-input<index>.bin`.
    pub fn run(
        &self,
        count: u64,
        time_limit: Option<Duration>,
        crash_dir: &Path,
        current: &AtomicU64,
    ) -> Report {
        let start = Instant::now();
        let mut report = Report {
            inputs: 0,
            accepted: 0,
            rejected: 0,
            panics: Vec::new(),
            elapsed: Duration::ZERO,
            slowest: Duration::ZERO,
        };
        // One pool thread runs everything, so the readers' parallel scans stay on it.
        let mut run_all = || {
            for index in 0..count {
                if time_limit.is_some_and(|limit| start.elapsed() >= limit) {
                    break;
                }
                current.store(index, Relaxed);
                let bytes = self.input(index);
                let began = Instant::now();
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    crate::parallel::with_threads(Some(1), || self.run_one(&bytes))
                }));
                report.slowest = report.slowest.max(began.elapsed());
                report.inputs += 1;
                match outcome {
                    Ok(Ok(Outcome::Accepted)) => report.accepted += 1,
                    Ok(Ok(Outcome::Rejected)) | Ok(Err(_)) => report.rejected += 1,
                    Err(_) => report
                        .panics
                        .push(self.save_crash(crash_dir, index, &bytes)),
                }
            }
        };
        match rayon::ThreadPoolBuilder::new().num_threads(1).build() {
            Ok(pool) => pool.install(run_all),
            Err(_) => run_all(),
        }
        report.elapsed = start.elapsed();
        report
    }

    /// Saves a crashing input; returns where (or where it should have gone).
    fn save_crash(&self, crash_dir: &Path, index: u64, bytes: &[u8]) -> PathBuf {
        let path = crash_dir.join(format!(
            "{}-seed{}-input{index}.bin",
            self.target.name(),
            self.seed
        ));
        if let Err(e) =
            std::fs::create_dir_all(crash_dir).and_then(|()| std::fs::write(&path, bytes))
        {
            eprintln!("fuzz: cannot save {}: {e}", path.display());
        }
        path
    }
}

impl Drop for Fuzzer {
    fn drop(&mut self) {
        // Best effort: a leftover scratch file is harmless.
        let _ = std::fs::remove_file(&self.scratch);
    }
}

/// Reads everything an accepted graph offers and samples over it, as a user would.
fn use_graph(graph: &BipartiteGraph) {
    for side in [Side::User, Side::Item] {
        let degrees = graph.degrees(side);
        assert_eq!(degrees.iter().sum::<u64>(), graph.num_edges(), "degree sum");
        for node in 0..u64::from(graph.num_nodes(side)) {
            let neighbors = graph.neighbors(side, node).map(<[u32]>::len);
            let times = graph
                .neighbor_timestamps(side, node)
                .map(|t| t.map(<[u64]>::len));
            let weights = graph
                .neighbor_weights(side, node)
                .map(|w| w.map(<[f32]>::len));
            assert!(
                neighbors.is_ok() && times.is_ok() && weights.is_ok(),
                "node {node} of an accepted graph is unreadable"
            );
        }
        let seeds: Vec<u32> = (0..graph.num_nodes(side).min(8)).collect();
        let meta = graph.meta();
        let strategies = [
            Some(Strategy::Uniform),
            meta.time_kind.map(|_| Strategy::Recent),
            meta.has_weights.then_some(Strategy::Weighted),
        ];
        for strategy in strategies.into_iter().flatten() {
            let spec = SampleSpec {
                seeds: &seeds,
                side,
                fanouts: &[2, -1, 3],
                strategy,
                seed: 7,
                epoch: 0,
                exclude: None,
            };
            if let Err(e) = sample(graph, &spec) {
                panic!("sampling an accepted graph failed: {e}");
            }
        }
    }
    if graph.num_users() > 0 && graph.num_items() > 0 {
        assert!(
            graph.has_edge(0, 0).is_ok(),
            "has_edge on an accepted graph"
        );
    }
}

/// The templates and title format of a templates input, NUL-separated, in the order of
/// [`template_fields`]; missing ones keep their defaults.
fn run_templates(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let mut fields = text.split('\0');
    let mut templates = Templates::default();
    let mut title_format = String::from(" \"{title}\"");
    for slot in template_fields(&mut templates)
        .into_iter()
        .chain([&mut title_format])
    {
        if let Some(field) = fields.next() {
            *slot = field.to_string();
        }
    }
    let title_ok = prompts::parse_title_format(&title_format).is_ok();
    templates.validate().is_ok() && title_ok
}

/// Every template of `templates`, in a fixed order.
fn template_fields(templates: &mut Templates) -> Vec<&mut String> {
    let Templates {
        user,
        item,
        neighbor,
        separator,
        closing,
    } = templates;
    user.iter_mut()
        .chain(item.iter_mut())
        .chain([neighbor, separator, closing])
        .collect()
}

/// Default and text-only templates, as templates inputs.
fn template_corpus() -> Vec<Vec<u8>> {
    let mut text_only = Templates::default();
    text_only.item[1] = "{title} was chosen by {neighbors}".into();
    text_only.neighbor = "{title}".into();
    [
        (Templates::default(), " \"{title}\""),
        (text_only, "{{{title}}}"),
    ]
    .into_iter()
    .map(|(mut templates, title_format)| {
        let mut fields: Vec<String> = template_fields(&mut templates)
            .into_iter()
            .map(|f| f.clone())
            .collect();
        fields.push(title_format.into());
        fields.join("\0").into_bytes()
    })
    .collect()
}

/// `len` bytes of random template text, heavy in braces and slot names.
fn random_template(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        if rng.one_in(2) {
            bytes.extend_from_slice(TEMPLATE_TOKENS[rng.below(TEMPLATE_TOKENS.len())]);
        } else {
            bytes.push(b" abc,.;:"[rng.below(8)]);
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every target, for a few seconds: no panics, and both outcomes reached (a target that
    /// only ever rejects is not reaching the reader's deeper checks).
    #[test]
    fn every_target_survives_a_seeded_slice() -> Result<(), String> {
        let crash_dir = std::env::temp_dir().join("galrec-fuzz-crashes");
        for target in Target::ALL {
            let fuzzer = Fuzzer::new(target, 0)?;
            let report = fuzzer.run(
                200_000,
                Some(Duration::from_secs(2)),
                &crash_dir,
                &AtomicU64::new(0),
            );
            assert!(report.panics.is_empty(), "{target:?}: {:?}", report.panics);
            assert!(
                report.accepted > 0 && report.rejected > 0,
                "{target:?}: {report:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn inputs_are_reproducible_and_varied() -> Result<(), String> {
        let fuzzer = Fuzzer::new(Target::GraphFile, 3)?;
        assert_eq!(fuzzer.input(12), fuzzer.input(12));
        assert_ne!(fuzzer.input(12), fuzzer.input(13));
        let other_seed = Fuzzer::new(Target::GraphFile, 4)?;
        assert_ne!(fuzzer.input(12), other_seed.input(12));
        Ok(())
    }

    #[test]
    fn seed_files_are_accepted() -> Result<(), String> {
        for target in Target::ALL {
            let fuzzer = Fuzzer::new(target, 0)?;
            for seed_file in &fuzzer.corpus {
                assert_eq!(fuzzer.run_one(seed_file), Outcome::Accepted, "{target:?}");
            }
        }
        Ok(())
    }
}
