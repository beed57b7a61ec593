//! The graph file: one versioned little-endian binary file, memory-mapped on open.
//!
//! Layout (all integers little-endian):
//!
//! | bytes     | field                                                        |
//! |-----------|--------------------------------------------------------------|
//! | 0..8      | magic `GALRECBG`                                             |
//! | 8..12     | format version (u32, currently 1)                            |
//! | 12..16    | flags (u32): 1 timestamps, 2 timestamps are f64, 4 weights   |
//! | 16..40    | num_users, num_items, num_edges (u64 each)                   |
//! | 40..168   | 8 sections as (byte offset, byte length) u64 pairs           |
//! | 168..176  | checksum of bytes 192..end (sections and their padding)      |
//! | 176..184  | reserved, zero                                               |
//! | 184..192  | checksum of bytes 0..184                                     |
//!
//! Sections, in file order, each starting at a multiple of 8 so it can be viewed in place as
//! `u64`/`u32`/`f32`: user offsets (u64, num_users + 1), user neighbours (u32, num_edges),
//! user timestamps (u64 bit patterns, num_edges or absent), user weights (f32, num_edges or
//! absent), then the same four for items. Zero padding precedes a section that would start
//! off a multiple of 8; the file ends where the last section ends.
//!
//! Opening validates the header, its checksum, its reserved bytes (zero), every section's
//! place and length, every offset
//! array (starts at 0, never decreases, ends at num_edges) and every neighbour id, so a corrupt
//! file is an error, never an out-of-bounds read. The section checksum is O(file) and checked
//! only on request (`verify`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use rayon::prelude::*;

use crate::error::{GraphError, Result};
use crate::graph::{BipartiteGraph, CsrView, GraphMeta, Side, TimeKind, MAX_NODES};
use crate::parallel::first_index;
use crate::rng::mix64;

/// The first eight bytes of every graph file.
pub const MAGIC: [u8; 8] = *b"GALRECBG";
/// The file format version this build writes and reads.
pub const VERSION: u32 = 1;
/// Size of the fixed header; the first section starts here.
pub const HEADER_LEN: usize = 192;

const FLAG_TIMESTAMPS: u32 = 1;
const FLAG_FLOAT_TIMESTAMPS: u32 = 2;
const FLAG_WEIGHTS: u32 = 4;
const KNOWN_FLAGS: u32 = FLAG_TIMESTAMPS | FLAG_FLOAT_TIMESTAMPS | FLAG_WEIGHTS;
const NUM_SECTIONS: usize = 8;
const SECTIONS_AT: usize = 40;
const DATA_CHECKSUM_AT: usize = 168;
/// Eight bytes kept zero for a future version; a file with others is not one this build reads.
const RESERVED_AT: usize = 176;
const HEADER_CHECKSUM_AT: usize = 184;
const ZERO_PAD: [u8; 8] = [0; 8];
const SECTION_NAMES: [&str; NUM_SECTIONS] = [
    "user offsets",
    "user neighbours",
    "user timestamps",
    "user weights",
    "item offsets",
    "item neighbours",
    "item timestamps",
    "item weights",
];

/// The hash of one byte string: four xxHash64-style lanes over 8-byte words. Every round is a
/// bijection of the lane state, so any change of a single word changes the result.
fn hash_bytes(bytes: &[u8]) -> u64 {
    const P1: u64 = 0x9e37_79b1_85eb_ca87;
    const P2: u64 = 0xc2b2_ae3d_27d4_eb4f;
    let mut lanes = [P1, P2, !P1, !P2];
    let mut blocks = bytes.chunks_exact(32);
    for block in &mut blocks {
        for (lane, word) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            *lane = lane
                .wrapping_add(u64::from_le_bytes(w).wrapping_mul(P2))
                .rotate_left(31)
                .wrapping_mul(P1);
        }
    }
    let mut tail = [0u8; 32];
    let rest = blocks.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    let mut h = bytes.len() as u64;
    for (lane, word) in lanes.iter().zip(tail.chunks_exact(8)) {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        h = mix64(h ^ mix64(*lane) ^ u64::from_le_bytes(w));
    }
    h
}

/// The checksum of a sequence of byte strings, hashed in 1 MiB blocks in parallel.
pub fn checksum(parts: &[&[u8]]) -> u64 {
    const BLOCK: usize = 1 << 20;
    let mut h = 0x243f_6a88_85a3_08d3u64;
    for part in parts {
        let blocks: Vec<u64> = part.par_chunks(BLOCK).map(hash_bytes).collect();
        h = mix64(h ^ part.len() as u64);
        for b in blocks {
            h = mix64(h ^ b);
        }
    }
    h
}

fn align8(x: usize) -> usize {
    x.div_ceil(8) * 8
}

fn read_u32(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

fn read_u64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

fn csr_sections(csr: CsrView<'_>) -> [&[u8]; 4] {
    [
        bytemuck::cast_slice(csr.offsets),
        bytemuck::cast_slice(csr.neighbors),
        csr.timestamps.map_or(&[][..], bytemuck::cast_slice),
        csr.weights.map_or(&[][..], bytemuck::cast_slice),
    ]
}

fn temp_path_for(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "graph".into(), |n| n.to_string_lossy().into_owned());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    path.with_file_name(format!(".{name}.tmp-{}-{nanos}", std::process::id()))
}

/// Writes `graph` to `path` atomically: a temporary file in the same directory, flushed to
/// disk, then renamed over `path`, so readers see the old file or the new one, never a part.
pub fn save(graph: &BipartiteGraph, path: &Path) -> Result<()> {
    if cfg!(target_endian = "big") {
        return Err(GraphError::format(
            path,
            "graph files are little-endian only",
        ));
    }
    let meta = graph.meta();
    let (user, item) = (
        csr_sections(graph.csr(Side::User)),
        csr_sections(graph.csr(Side::Item)),
    );
    let sections: Vec<&[u8]> = user.into_iter().chain(item).collect();

    let mut header = vec![0u8; HEADER_LEN];
    header[..8].copy_from_slice(&MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    let flags = match meta.time_kind {
        None => 0,
        Some(TimeKind::Int) => FLAG_TIMESTAMPS,
        Some(TimeKind::Float) => FLAG_TIMESTAMPS | FLAG_FLOAT_TIMESTAMPS,
    } | if meta.has_weights { FLAG_WEIGHTS } else { 0 };
    header[12..16].copy_from_slice(&flags.to_le_bytes());
    header[16..24].copy_from_slice(&u64::from(meta.num_users).to_le_bytes());
    header[24..32].copy_from_slice(&u64::from(meta.num_items).to_le_bytes());
    header[32..40].copy_from_slice(&meta.num_edges.to_le_bytes());
    let mut cursor = HEADER_LEN;
    let mut starts = Vec::with_capacity(NUM_SECTIONS);
    for (k, bytes) in sections.iter().enumerate() {
        cursor = align8(cursor);
        starts.push(cursor);
        let at = SECTIONS_AT + 16 * k;
        header[at..at + 8].copy_from_slice(&(cursor as u64).to_le_bytes());
        header[at + 8..at + 16].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
        cursor += bytes.len();
    }
    let header_sum = checksum(&[&header[..HEADER_CHECKSUM_AT]]);
    header[HEADER_CHECKSUM_AT..HEADER_CHECKSUM_AT + 8].copy_from_slice(&header_sum.to_le_bytes());

    let mut body = Vec::with_capacity(2 * NUM_SECTIONS);
    let mut written = HEADER_LEN;
    for (bytes, &start) in sections.iter().zip(&starts) {
        body.push(&ZERO_PAD[..start - written]);
        body.push(*bytes);
        written = start + bytes.len();
    }
    header[DATA_CHECKSUM_AT..DATA_CHECKSUM_AT + 8].copy_from_slice(&checksum(&body).to_le_bytes());
    let header_sum = checksum(&[&header[..HEADER_CHECKSUM_AT]]);
    header[HEADER_CHECKSUM_AT..HEADER_CHECKSUM_AT + 8].copy_from_slice(&header_sum.to_le_bytes());

    let temp = temp_path_for(path);
    let write = || -> std::io::Result<()> {
        let file = File::create_new(&temp)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&header)?;
        for bytes in &body {
            out.write_all(bytes)?;
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| {
        // Best effort: the temporary file is garbage whatever happened.
        let _ = std::fs::remove_file(&temp);
        GraphError::io(path, e)
    })
}

/// A validated memory-mapped graph file.
#[derive(Debug)]
pub(crate) struct MappedGraph {
    map: Mmap,
    sections: [Range<usize>; NUM_SECTIONS],
    has_timestamps: bool,
    has_weights: bool,
}

impl MappedGraph {
    /// The CSR of `side`, viewed in place.
    pub(crate) fn view(&self, side: Side) -> CsrView<'_> {
        let base = 4 * side.index() as usize;
        let bytes = |k: usize| &self.map[self.sections[base + k].clone()];
        // `open` checked that every section starts at a multiple of 8 in the page-aligned
        // map and has a whole number of elements, so these casts cannot fail.
        CsrView {
            offsets: bytemuck::cast_slice(bytes(0)),
            neighbors: bytemuck::cast_slice(bytes(1)),
            timestamps: self.has_timestamps.then(|| bytemuck::cast_slice(bytes(2))),
            weights: self.has_weights.then(|| bytemuck::cast_slice(bytes(3))),
        }
    }
}

fn check_offsets(path: &Path, name: &str, offsets: &[u64], num_edges: u64) -> Result<()> {
    let bad = |message: String| Err(GraphError::format(path, format!("{name}: {message}")));
    if offsets.first() != Some(&0) {
        return bad(format!("must start at 0, found {:?}", offsets.first()));
    }
    if offsets.last() != Some(&num_edges) {
        return bad(format!(
            "must end at num_edges={num_edges}, found {:?}",
            offsets.last()
        ));
    }
    if let Some(i) = offsets.par_windows(2).position_first(|w| w[0] > w[1]) {
        return bad(format!(
            "decreases at node {i} ({} > {})",
            offsets[i],
            offsets[i + 1]
        ));
    }
    Ok(())
}

fn check_neighbors(path: &Path, name: &str, neighbors: &[u32], bound: u32) -> Result<()> {
    if let Some(i) = first_index(neighbors, |&v| v >= bound) {
        return Err(GraphError::format(
            path,
            format!(
                "{name}: entry {i} is node {} but there are only {bound}",
                neighbors[i]
            ),
        ));
    }
    Ok(())
}

/// The pieces of a file's body that `save` hashed: each section preceded by its padding.
fn body_pieces<'a>(file: &'a [u8], sections: &[Range<usize>]) -> Vec<&'a [u8]> {
    let mut body = Vec::with_capacity(2 * sections.len());
    let mut written = HEADER_LEN;
    for range in sections {
        body.push(&file[written..range.start]);
        body.push(&file[range.clone()]);
        written = range.end;
    }
    body
}

/// Rewrites the checksums of a graph file image so they match its bytes: the data checksum
/// where the header's sections lie in order inside the file, the header checksum always. For
/// the fuzzer (`crate::fuzz`), whose mutations would otherwise rarely get past the checksums.
pub(crate) fn reseal(file: &mut [u8]) {
    if file.len() < HEADER_LEN {
        return;
    }
    let mut sections = Vec::with_capacity(NUM_SECTIONS);
    let mut previous_end = HEADER_LEN;
    for k in 0..NUM_SECTIONS {
        let at = SECTIONS_AT + 16 * k;
        let (start, len) = (read_u64(file, at), read_u64(file, at + 8));
        let range = usize::try_from(start).ok().and_then(|start| {
            let end = start.checked_add(usize::try_from(len).ok()?)?;
            (start >= previous_end && end <= file.len()).then_some(start..end)
        });
        match range {
            Some(range) => {
                previous_end = range.end;
                sections.push(range);
            }
            None => break,
        }
    }
    if sections.len() == NUM_SECTIONS {
        let data_sum = checksum(&body_pieces(file, &sections));
        file[DATA_CHECKSUM_AT..DATA_CHECKSUM_AT + 8].copy_from_slice(&data_sum.to_le_bytes());
    }
    let header_sum = checksum(&[&file[..HEADER_CHECKSUM_AT]]);
    file[HEADER_CHECKSUM_AT..HEADER_LEN].copy_from_slice(&header_sum.to_le_bytes());
}

/// Opens and validates a graph file written by [`save`]; `verify` also checks the checksum of
/// all data (reads the whole file).
pub fn open(path: &Path, verify: bool) -> Result<BipartiteGraph> {
    let bad = |message: String| GraphError::format(path, message);
    if cfg!(target_endian = "big") {
        return Err(bad("graph files are little-endian only".into()));
    }
    let file = File::open(path).map_err(|e| GraphError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| GraphError::io(path, e))?.len();
    if file_len < HEADER_LEN as u64 {
        return Err(bad(format!(
            "truncated: {file_len} bytes, shorter than the {HEADER_LEN}-byte header"
        )));
    }
    // SAFETY: the map is read-only and lives as long as the graph. galrec never modifies a
    // graph file in place (`save` writes a new file and renames it), so the bytes cannot
    // change under us unless another program truncates or rewrites the file in place, which
    // the format's contract forbids (as for every memory-mapped file format).
    let map = unsafe { Mmap::map(&file) }.map_err(|e| GraphError::io(path, e))?;
    let header = &map[..HEADER_LEN];
    if header[..8] != MAGIC {
        return Err(bad("not a galrec graph file (bad magic bytes)".into()));
    }
    let version = read_u32(header, 8);
    if version != VERSION {
        return Err(bad(format!(
            "unsupported graph file version {version} (this galrec reads version {VERSION})"
        )));
    }
    let stored_header_sum = read_u64(header, HEADER_CHECKSUM_AT);
    if checksum(&[&header[..HEADER_CHECKSUM_AT]]) != stored_header_sum {
        return Err(bad("corrupted header (checksum mismatch)".into()));
    }
    if read_u64(header, RESERVED_AT) != 0 {
        return Err(bad(format!(
            "reserved header bytes {RESERVED_AT}..{HEADER_CHECKSUM_AT} are not zero (a newer or foreign format)"
        )));
    }
    let flags = read_u32(header, 12);
    if flags & !KNOWN_FLAGS != 0
        || (flags & FLAG_FLOAT_TIMESTAMPS != 0 && flags & FLAG_TIMESTAMPS == 0)
    {
        return Err(bad(format!("unknown flags {flags:#x}")));
    }
    let (num_users, num_items, num_edges) = (
        read_u64(header, 16),
        read_u64(header, 24),
        read_u64(header, 32),
    );
    if num_users > MAX_NODES || num_items > MAX_NODES {
        return Err(bad(format!(
            "node counts {num_users} users / {num_items} items exceed {MAX_NODES}"
        )));
    }
    let has_timestamps = flags & FLAG_TIMESTAMPS != 0;
    let has_weights = flags & FLAG_WEIGHTS != 0;
    let edges_times = |bytes: u64, present: bool| {
        if present {
            num_edges.checked_mul(bytes)
        } else {
            Some(0)
        }
    };
    let expected: [Option<u64>; NUM_SECTIONS] = [
        (num_users + 1).checked_mul(8),
        num_edges.checked_mul(4),
        edges_times(8, has_timestamps),
        edges_times(4, has_weights),
        (num_items + 1).checked_mul(8),
        num_edges.checked_mul(4),
        edges_times(8, has_timestamps),
        edges_times(4, has_weights),
    ];
    let mut sections: [Range<usize>; NUM_SECTIONS] = Default::default();
    let mut previous_end = HEADER_LEN as u64;
    for k in 0..NUM_SECTIONS {
        let name = SECTION_NAMES[k];
        let (start, len) = (
            read_u64(header, SECTIONS_AT + 16 * k),
            read_u64(header, SECTIONS_AT + 16 * k + 8),
        );
        if Some(len) != expected[k] {
            return Err(bad(format!(
                "{name}: length {len} bytes, expected {:?}",
                expected[k]
            )));
        }
        let end = start.checked_add(len).filter(|&end| end <= file_len).ok_or_else(|| {
            bad(format!(
                "{name}: bytes {start}+{len} lie beyond the end of the file ({file_len} bytes; truncated?)"
            ))
        })?;
        if start % 8 != 0 || start < previous_end {
            return Err(bad(format!("{name}: misplaced at byte {start}")));
        }
        previous_end = end;
        sections[k] = start as usize..end as usize;
    }
    let meta = GraphMeta {
        num_users: num_users as u32,
        num_items: num_items as u32,
        num_edges,
        time_kind: has_timestamps.then_some(if flags & FLAG_FLOAT_TIMESTAMPS != 0 {
            TimeKind::Float
        } else {
            TimeKind::Int
        }),
        has_weights,
    };
    let mapped = MappedGraph {
        map,
        sections,
        has_timestamps,
        has_weights,
    };
    if previous_end != file_len {
        return Err(bad(format!(
            "{file_len} bytes, but the sections end at byte {previous_end}"
        )));
    }
    if verify
        && checksum(&body_pieces(&mapped.map, &mapped.sections))
            != read_u64(&mapped.map, DATA_CHECKSUM_AT)
    {
        return Err(bad("corrupted data (checksum mismatch)".into()));
    }
    let (user, item) = (mapped.view(Side::User), mapped.view(Side::Item));
    check_offsets(path, SECTION_NAMES[0], user.offsets, num_edges)?;
    check_offsets(path, SECTION_NAMES[4], item.offsets, num_edges)?;
    check_neighbors(path, SECTION_NAMES[1], user.neighbors, meta.num_items)?;
    check_neighbors(path, SECTION_NAMES[5], item.neighbors, meta.num_users)?;
    Ok(BipartiteGraph::from_mapped(meta, mapped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{EdgeList, Timestamps};

    fn small_graph() -> Result<BipartiteGraph> {
        let ts = [3.0, 1.0, 2.0, 5.0];
        let w = [0.5f32, 1.0, 2.0, 4.0];
        BipartiteGraph::from_edges(EdgeList {
            users: &[0, 1, 1, 2],
            items: &[1, 0, 1, 2],
            num_users: Some(4),
            num_items: None,
            timestamps: Some(Timestamps::Float(&ts)),
            weights: Some(&w),
            dedupe: true,
        })
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("galrec-storage-{tag}-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        dir
    }

    #[test]
    fn round_trip_preserves_everything() -> Result<()> {
        let g = small_graph()?;
        let path = temp_dir("rt").join("g.galrec");
        save(&g, &path)?;
        let h = open(&path, true)?;
        assert!(h.is_mapped());
        assert_eq!(g.meta(), h.meta());
        for side in [Side::User, Side::Item] {
            let (a, b) = (g.csr(side), h.csr(side));
            assert_eq!(a.offsets, b.offsets);
            assert_eq!(a.neighbors, b.neighbors);
            assert_eq!(a.timestamps, b.timestamps);
            assert_eq!(a.weights, b.weights);
        }
        // Saving a mapped graph works too (and replaces the file atomically).
        save(&h, &path)?;
        assert_eq!(open(&path, true)?.meta(), g.meta());
        Ok(())
    }

    #[test]
    fn every_truncation_and_byte_flip_is_rejected_with_verify() -> Result<()> {
        let g = small_graph()?;
        let dir = temp_dir("fuzz");
        let path = dir.join("g.galrec");
        save(&g, &path)?;
        let bytes = std::fs::read(&path).map_err(|e| GraphError::io(&path, e))?;
        let bad = dir.join("bad.galrec");
        for cut in [0, 7, HEADER_LEN - 1, HEADER_LEN, bytes.len() - 1] {
            std::fs::write(&bad, &bytes[..cut]).map_err(|e| GraphError::io(&bad, e))?;
            assert!(
                open(&bad, false).is_err(),
                "truncation to {cut} bytes accepted"
            );
        }
        for at in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x10;
            std::fs::write(&bad, &flipped).map_err(|e| GraphError::io(&bad, e))?;
            assert!(open(&bad, true).is_err(), "flip at byte {at} accepted");
        }
        Ok(())
    }

    #[test]
    fn wrong_version_is_named() -> Result<()> {
        let g = small_graph()?;
        let path = temp_dir("ver").join("g.galrec");
        save(&g, &path)?;
        let mut bytes = std::fs::read(&path).map_err(|e| GraphError::io(&path, e))?;
        bytes[8] = 9;
        std::fs::write(&path, &bytes).map_err(|e| GraphError::io(&path, e))?;
        let err = open(&path, false)
            .map(|_| ())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("unsupported graph file version 9"), "{err}");
        Ok(())
    }

    #[test]
    fn nonzero_reserved_bytes_are_rejected() -> Result<()> {
        let path = temp_dir("reserved").join("g.galrec");
        save(&small_graph()?, &path)?;
        let mut bytes = std::fs::read(&path).map_err(|e| GraphError::io(&path, e))?;
        bytes[RESERVED_AT + 3] = 1;
        // Valid checksums, so only the reserved bytes are wrong.
        reseal(&mut bytes);
        std::fs::write(&path, &bytes).map_err(|e| GraphError::io(&path, e))?;
        let err = open(&path, true)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("reserved header bytes 176..184 are not zero"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn checksum_sees_single_word_changes() {
        let a = vec![7u8; 1000];
        let mut b = a.clone();
        b[999] = 8;
        assert_ne!(checksum(&[&a]), checksum(&[&b]));
        assert_ne!(checksum(&[&a[..500], &a[500..]]), checksum(&[&a]));
    }
}
