//! Every reader of a file a user hands over, fed thousands of seeded mutations of a
//! valid file: truncations, bit flips, random bytes, header fields set to 0, 1, the
//! largest and overflowing values, numbers in JSON replaced by extreme ones, inserted,
//! deleted and repeated ranges. Each must return (an error or a value); none may panic,
//! abort, or allocate more than [`LIMIT`] bytes at once.
//!
//! The allocator of this test binary records the largest request; one past
//! [`HARD_CAP`] is refused, which aborts the binary with the size ("memory allocation
//! of N bytes failed") instead of taking the machine's memory. All cases run in one
//! test, one after another, so the record belongs to the case that made it (the
//! Tiny-ImageNet reader's rayon workers included).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use sparta::data::idx;
use sparta::data::svhn::mat5::writer::{MatWriter, Numeric};
use sparta::data::{cifar10, svhn, tiny_imagenet, Split};
use sparta::nn::resnet::{ResNet, ResNetConfig};
use sparta::nn::sparta::{SpartaConfig, SpartaLayer};
use sparta::train::checkpoint::{load_state, TrainState, STATE_FILE};
use sparta::train::TrainConfig;

/// The most any case may ask for at once: far above what these small files need.
const LIMIT: usize = 64 << 20;
/// Requests above this are refused (the binary aborts, naming the size).
const HARD_CAP: usize = 2 << 30;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

struct Bounded;

// SAFETY: every call is forwarded to the system allocator with the same arguments, or
// refused with a null pointer, which the `GlobalAlloc` contract allows.
unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        if layout.size() > HARD_CAP {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        if layout.size() > HARD_CAP {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        if new_size > HARD_CAP {
            return std::ptr::null_mut();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Bounded = Bounded;

/// Where in a valid file a header field sits, for setting it to extreme values.
#[derive(Clone, Copy)]
struct Field {
    at: usize,
    width: usize,
    big_endian: bool,
}

/// Draws mutations of a valid file.
struct Mutator {
    rng: ChaCha8Rng,
}

/// Numbers that break readers that trust them.
const EXTREME_NUMBERS: [&str; 9] = [
    "0",
    "1",
    "-1",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999",
    "1e309",
    "-0.5",
];

impl Mutator {
    fn new(seed: u64) -> Self {
        Mutator {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// One to three mutations of `valid`; `fields` are its header fields, and with
    /// `text` its digit runs are replaced by extreme numbers too.
    fn mutate(&mut self, valid: &[u8], fields: &[Field], text: bool) -> Vec<u8> {
        let mut b = valid.to_vec();
        for _ in 0..self.rng.random_range(1..=3) {
            let len = b.len().max(1);
            match self.rng.random_range(0..8) {
                0 => b.truncate(self.rng.random_range(0..len)),
                1 => {
                    for _ in 0..self.rng.random_range(1..=8) {
                        if !b.is_empty() {
                            let i = self.rng.random_range(0..b.len());
                            b[i] ^= 1 << self.rng.random_range(0..8);
                        }
                    }
                }
                2 => {
                    if !b.is_empty() {
                        let i = self.rng.random_range(0..b.len());
                        b[i] = self.rng.random();
                    }
                }
                3 | 4 if !fields.is_empty() => {
                    let f = *fields.choose(&mut self.rng).unwrap();
                    self.set_field(&mut b, f);
                }
                5 => {
                    let at = self.rng.random_range(0..=b.len());
                    let n = self.rng.random_range(1..16);
                    let bytes: Vec<u8> = (0..n).map(|_| self.rng.random()).collect();
                    b.splice(at..at, bytes);
                }
                6 => {
                    let r = self.range(b.len());
                    b.drain(r);
                }
                _ if text => self.replace_number(&mut b),
                _ => {
                    let r = self.range(b.len());
                    let copy = b[r.clone()].to_vec();
                    b.splice(r.end..r.end, copy);
                }
            }
        }
        b
    }

    fn range(&mut self, len: usize) -> Range<usize> {
        let start = self.rng.random_range(0..=len);
        let end = (start + self.rng.random_range(0..64)).min(len);
        start..end
    }

    /// `f` set to 0, 1, the largest value, the sign bit alone, or a random value.
    fn set_field(&mut self, b: &mut [u8], f: Field) {
        if f.at + f.width > b.len() {
            return;
        }
        let max = if f.width == 8 {
            u64::MAX
        } else {
            (1u64 << (8 * f.width)) - 1
        };
        let v = match self.rng.random_range(0..7) {
            0 => 0,
            1 => 1,
            2 => max,
            3 => max / 2,
            4 => max / 2 + 1,
            5 => max - 1,
            _ => self.rng.random::<u64>() & max,
        };
        for (k, &byte) in v.to_le_bytes().iter().enumerate().take(f.width) {
            let at = if f.big_endian {
                f.at + f.width - 1 - k
            } else {
                f.at + k
            };
            b[at] = byte;
        }
    }

    /// A size for a structured file: small ones mostly (0 and 1 among them), the
    /// largest signed and unsigned 32-bit values sometimes.
    fn size(&mut self) -> u32 {
        match self.rng.random_range(0..10) {
            0 => 0,
            1 => 1,
            2 => i32::MAX as u32,
            3 => u32::MAX,
            4 => 1 << self.rng.random_range(8..31),
            _ => self.rng.random_range(2..6),
        }
    }

    /// `count` bytes when that is small, else a few: a file whose header may or may
    /// not match its data.
    fn data(&mut self, count: Option<usize>) -> Vec<u8> {
        let n = match count {
            Some(n) if n <= 4096 && self.rng.random_bool(0.8) => n,
            _ => self.rng.random_range(0..64),
        };
        (0..n).map(|_| self.rng.random()).collect()
    }

    /// A run of digits (an ASCII number in JSON or text) replaced by an extreme one.
    fn replace_number(&mut self, b: &mut Vec<u8>) {
        let runs: Vec<Range<usize>> = {
            let mut runs = Vec::new();
            let mut i = 0;
            while i < b.len() {
                if b[i].is_ascii_digit() {
                    let start = i;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    runs.push(start..i);
                } else {
                    i += 1;
                }
            }
            runs
        };
        if let Some(r) = runs.choose(&mut self.rng) {
            let with = EXTREME_NUMBERS.choose(&mut self.rng).unwrap();
            b.splice(r.clone(), with.bytes());
        }
    }
}

/// Runs `cases` mutations made by `make` through `parse` (which says whether the input
/// was accepted); returns the faults found (panics and oversized allocations), each
/// with its case.
fn fuzz(
    name: &str,
    cases: usize,
    seed: u64,
    mut make: impl FnMut(&mut Mutator, usize) -> Vec<u8>,
    mut parse: impl FnMut(&[u8]) -> bool,
) -> Vec<String> {
    let mut faults = Vec::new();
    let mut mutator = Mutator::new(seed);
    let (mut accepted, start) = (0, Instant::now());
    for case in 0..cases {
        let bytes = make(&mut mutator, case);
        LARGEST.store(0, Ordering::Relaxed);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parse(&bytes)));
        let largest = LARGEST.load(Ordering::Relaxed);
        match outcome {
            Err(payload) => {
                let what = payload
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| payload.downcast_ref::<&str>().copied())
                    .unwrap_or("?");
                faults.push(format!(
                    "{name} case {case} (seed {seed}): panicked: {what}"
                ));
            }
            Ok(ok) => accepted += ok as usize,
        }
        if largest > LIMIT {
            faults.push(format!(
                "{name} case {case} (seed {seed}): allocated {largest} bytes at once"
            ));
        }
    }
    eprintln!(
        "{name}: {cases} mutations in {:.1} s, {accepted} still read as valid",
        start.elapsed().as_secs_f64()
    );
    faults
}

/// A fresh folder of its own, deleted with everything in it when the returned guard
/// drops (a failing test's too).
fn temp_dir(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::Builder::new()
        .prefix(&format!("sparta-fuzz-{name}-"))
        .tempdir()
        .unwrap();
    let dir = tmp.path().to_path_buf();
    (tmp, dir)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend(d.to_be_bytes());
    }
    out.extend(data);
    out
}

/// Every 4-byte word of the first `n` bytes of `bytes`, as fields in its byte order.
fn words(bytes: &[u8], n: usize, big_endian: bool) -> Vec<Field> {
    (0..n.min(bytes.len()) / 4)
        .map(|i| Field {
            at: 4 * i,
            width: 4,
            big_endian,
        })
        .collect()
}

fn idx_faults(cases: usize) -> Vec<String> {
    let (_tmp, dir) = temp_dir("idx");
    let pixels: Vec<u8> = (0..3 * 5 * 4).map(|i| (i * 7) as u8).collect();
    let images = idx_bytes(&[3, 5, 4], &pixels);
    let labels = idx_bytes(&[3], &[9, 0, 4]);
    let mut fields = vec![
        Field {
            at: 2,
            width: 1,
            big_endian: true,
        },
        Field {
            at: 3,
            width: 1,
            big_endian: true,
        },
    ];
    fields.extend((0..3).map(|i| Field {
        at: 4 + 4 * i,
        width: 4,
        big_endian: true,
    }));
    std::fs::write(dir.join("train-labels-idx1-ubyte"), &labels).unwrap();
    let raw = dir.join("train-images-idx3-ubyte");
    let gz = dir.join("train-images-idx3-ubyte.gz");
    let mut faults = Vec::new();
    // Raw files, through the whole loader (image and label files together).
    faults.extend(fuzz(
        "IDX",
        cases,
        1,
        |m, _| m.mutate(&images, &fields, false),
        |bytes| {
            std::fs::write(&raw, bytes).unwrap();
            idx::load_fashion_mnist(&dir, Split::Train).is_ok()
        },
    ));
    std::fs::remove_file(&raw).unwrap();
    // Gzip: the compressed bytes mutated, and valid streams of mutated contents (so
    // that the header a decompressor trusts is the mutated one).
    faults.extend(fuzz(
        "IDX.gz",
        cases,
        2,
        |m, case| match case % 2 {
            0 => m.mutate(&gzip(&images), &[], false),
            _ => gzip(&m.mutate(&images, &fields, false)),
        },
        |bytes| {
            std::fs::write(&gz, bytes).unwrap();
            idx::read_idx(&gz).is_ok()
        },
    ));
    // Well-formed files of any dimensions (zero and huge ones among them), whose data
    // matches the header when it is small: the shapes byte mutations rarely reach.
    faults.extend(fuzz(
        "IDX, any dimensions",
        cases,
        3,
        |m, _| {
            let dims: Vec<u32> = (0..m.rng.random_range(0..5)).map(|_| m.size()).collect();
            let count = dims
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d as usize));
            let bytes = idx_bytes(&dims, &m.data(count));
            if m.rng.random_bool(0.5) {
                gzip(&bytes)
            } else {
                bytes
            }
        },
        |bytes| {
            std::fs::write(&gz, bytes).unwrap();
            let dataset = idx::load_pair("fuzz", &gz, &dir.join("train-labels-idx1-ubyte"), 10);
            dataset.is_ok()
        },
    ));
    // A header that declares far more than its compressed bytes can hold, and a bomb:
    // a header declaring one byte ahead of a stream that inflates past LIMIT.
    let claims = gzip(&idx_bytes(&[1 << 20, 1 << 12], &[]));
    let bomb = gzip(&[idx_bytes(&[1], &[]), vec![0; LIMIT + (32 << 20)]].concat());
    for (bytes, want) in [
        (claims, "compressed bytes can hold"),
        (bomb, "trailing bytes"),
    ] {
        std::fs::write(&gz, &bytes).unwrap();
        LARGEST.store(0, Ordering::Relaxed);
        let msg = idx::read_idx(&gz).unwrap_err().to_string();
        assert!(msg.contains(want), "{msg}");
        let largest = LARGEST.load(Ordering::Relaxed);
        eprintln!("IDX.gz, {want}: largest allocation {largest} bytes");
        if largest > LIMIT {
            faults.push(format!("IDX.gz, {want}: allocated {largest} bytes at once"));
        }
    }
    faults
}

fn cifar_faults(cases: usize) -> Vec<String> {
    let (_tmp, dir) = temp_dir("cifar");
    let path = dir.join("data_batch_1.bin");
    let mut valid = Vec::new();
    for label in [3u8, 9, 0] {
        valid.push(label);
        valid.extend((0..3072).map(|i| (i % 251) as u8));
    }
    let fields: Vec<Field> = (0..3)
        .map(|i| Field {
            at: 3073 * i,
            width: 1,
            big_endian: true,
        })
        .collect();
    fuzz(
        "CIFAR-10",
        cases,
        3,
        |m, _| m.mutate(&valid, &fields, false),
        |bytes| {
            std::fs::write(&path, bytes).unwrap();
            cifar10::load_files("cifar10/train", std::slice::from_ref(&path)).is_ok()
        },
    )
}

/// The uncompressed matrix elements of a MAT-file, and its compressed form.
fn svhn_files(big_endian: bool) -> (Vec<u8>, Vec<u8>) {
    let x: Vec<u8> = (0..4 * 3 * 3 * 2).map(|i| (i * 5) as u8).collect();
    let file = |compressed: bool| {
        let mut f = MatWriter::new(big_endian);
        f.variable("X", &[4, 3, 3, 2], Numeric::U8(x.clone()), compressed);
        f.variable("y", &[2, 1], Numeric::DoubleAsU8(vec![10, 3]), compressed);
        f.finish()
    };
    (file(false), file(true))
}

fn svhn_faults(cases: usize) -> Vec<String> {
    let (_tmp, dir) = temp_dir("svhn");
    let path = dir.join("train_32x32.mat");
    let mut faults = Vec::new();
    for (seed, big_endian) in [(4, false), (5, true)] {
        let (plain, compressed) = svhn_files(big_endian);
        // Words of the header's end and of every element tag, dims and count.
        let mut fields = words(&plain, plain.len(), big_endian);
        fields.retain(|f| f.at >= 120);
        faults.extend(fuzz(
            "SVHN MAT",
            cases,
            seed,
            |m, case| match case % 3 {
                0 => m.mutate(&plain, &fields, false),
                1 => m.mutate(&compressed, &fields, false),
                // A valid zlib stream around a mutated matrix: the inner tag's size is
                // the one the reader must not trust.
                _ => {
                    let inner = m.mutate(&plain[128..], &[], false);
                    let mut z =
                        flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
                    z.write_all(&inner).unwrap();
                    let z = z.finish().unwrap();
                    let mut file = plain[..128].to_vec();
                    let word = |v: u32| {
                        if big_endian {
                            v.to_be_bytes()
                        } else {
                            v.to_le_bytes()
                        }
                    };
                    file.extend(word(15));
                    file.extend(word(z.len() as u32));
                    file.extend(z);
                    file
                }
            },
            |bytes| {
                std::fs::write(&path, bytes).unwrap();
                svhn::load_file("svhn/train", &path).is_ok()
            },
        ));
    }
    // Well-formed files with variables of any dimensions (zero and huge ones among
    // them), data matching them when small, labels as doubles.
    faults.extend(fuzz(
        "SVHN MAT, any dimensions",
        cases,
        6,
        |m, _| {
            let mut f = MatWriter::new(m.rng.random_bool(0.5));
            let compressed = m.rng.random_bool(0.5);
            let x_dims: Vec<usize> = (0..m.rng.random_range(1..6))
                .map(|_| m.size() as usize)
                .collect();
            let count = x_dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            f.variable("X", &x_dims, Numeric::U8(m.data(count)), compressed);
            let y_dims = match m.rng.random_bool(0.6) {
                true => vec![x_dims.get(3).copied().unwrap_or(1), 1],
                false => vec![m.size() as usize, m.size() as usize],
            };
            let count = y_dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            let labels = m.data(count).iter().map(|&b| (b % 12) as f64).collect();
            f.variable("y", &y_dims, Numeric::F64(labels), compressed);
            f.finish()
        },
        |bytes| {
            std::fs::write(&path, bytes).unwrap();
            svhn::load_file("svhn/train", &path).is_ok()
        },
    ));
    // A bomb: a compressed element whose matrix tag declares its true size, followed
    // in the same stream by more than LIMIT bytes of zeros.
    let (plain, _) = svhn_files(false);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(&plain[128..]).unwrap();
    z.write_all(&vec![0; LIMIT + (32 << 20)]).unwrap();
    let z = z.finish().unwrap();
    let mut bomb = plain[..128].to_vec();
    bomb.extend(15u32.to_le_bytes());
    bomb.extend((z.len() as u32).to_le_bytes());
    bomb.extend(z);
    std::fs::write(&path, &bomb).unwrap();
    LARGEST.store(0, Ordering::Relaxed);
    assert!(svhn::load_file("svhn/train", &path).is_err());
    let largest = LARGEST.load(Ordering::Relaxed);
    eprintln!("SVHN MAT bomb: largest allocation {largest} bytes");
    if largest > LIMIT {
        faults.push(format!("SVHN MAT bomb: allocated {largest} bytes at once"));
    }
    faults
}

fn jpeg(side: u16, colour: [u8; 3]) -> Vec<u8> {
    let mut out = Vec::new();
    let encoder = jpeg_encoder::Encoder::new(&mut out, 90);
    let n = side as usize * side as usize;
    encoder
        .encode(&colour.repeat(n), side, side, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    out
}

fn tiny_imagenet_faults(cases: usize) -> Vec<String> {
    let (_tmp, root) = temp_dir("tiny");
    let root = root.join("tiny-imagenet-200");
    for (i, wnid) in ["n01", "n02"].iter().enumerate() {
        let folder = root.join(format!("train/{wnid}/images"));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(
            folder.join(format!("{wnid}_0.JPEG")),
            jpeg(64, [40 * i as u8, 90, 200]),
        )
        .unwrap();
    }
    std::fs::create_dir_all(root.join("val/images")).unwrap();
    let image = jpeg(64, [200, 30, 30]);
    let wnids = b"n01\nn02\n".to_vec();
    let annotations = b"val_0.JPEG\tn01\t0\t0\t63\t63\nval_1.JPEG\tn02\t1\t2\t3\t4\n".to_vec();
    std::fs::write(root.join("val/images/val_1.JPEG"), &image).unwrap();
    let write_all = |img: &[u8], ids: &[u8], ann: &[u8]| {
        std::fs::write(root.join("val/images/val_0.JPEG"), img).unwrap();
        std::fs::write(root.join("wnids.txt"), ids).unwrap();
        std::fs::write(root.join("val/val_annotations.txt"), ann).unwrap();
    };
    // The frame header's height and width (big-endian u16 after an SOF marker).
    let sof = image
        .windows(2)
        .position(|w| w[0] == 0xff && (0xc0..=0xc2).contains(&w[1]))
        .expect("an SOF marker");
    let fields = [
        Field {
            at: sof + 5,
            width: 2,
            big_endian: true,
        },
        Field {
            at: sof + 7,
            width: 2,
            big_endian: true,
        },
        Field {
            at: sof + 9,
            width: 1,
            big_endian: true,
        },
    ];
    let mut faults = fuzz(
        "Tiny-ImageNet",
        cases,
        6,
        |m, case| {
            // Which file is mutated is encoded in the bytes' first byte.
            let (which, bytes) = match case % 4 {
                0 | 1 => (0, m.mutate(&image, &fields, false)),
                2 => (1, m.mutate(&wnids, &[], true)),
                _ => (2, m.mutate(&annotations, &[], true)),
            };
            let mut out = vec![which];
            out.extend(bytes);
            out
        },
        |bytes| {
            let (which, bytes) = (bytes[0], &bytes[1..]);
            match which {
                0 => write_all(bytes, &wnids, &annotations),
                1 => write_all(&image, bytes, &annotations),
                _ => write_all(&image, &wnids, bytes),
            }
            let split = if which == 1 {
                Split::Train
            } else {
                Split::Test
            };
            tiny_imagenet::load(&root, split).is_ok()
        },
    );
    // Frame headers that claim other sizes, huge ones among them: refused before
    // anything of that size is allocated.
    for (h, w) in [
        (0, 64),
        (64, 0),
        (65535, 65535),
        (16384, 16384),
        (64, 65535),
        (65, 64),
    ] {
        let mut claimed = image.clone();
        claimed[sof + 5..sof + 7].copy_from_slice(&(h as u16).to_be_bytes());
        claimed[sof + 7..sof + 9].copy_from_slice(&(w as u16).to_be_bytes());
        write_all(&claimed, &wnids, &annotations);
        LARGEST.store(0, Ordering::Relaxed);
        let refused = tiny_imagenet::load(&root, Split::Test).is_err();
        let largest = LARGEST.load(Ordering::Relaxed);
        if !refused || largest > LIMIT {
            faults.push(format!(
                "Tiny-ImageNet frame {h}×{w}: refused {refused}, largest allocation {largest} bytes"
            ));
        }
    }
    faults
}

/// The 8-byte header length as fields (the JSON header's numbers are mutated as text).
fn safetensors_fields() -> Vec<Field> {
    vec![
        Field {
            at: 0,
            width: 8,
            big_endian: false,
        },
        Field {
            at: 0,
            width: 4,
            big_endian: false,
        },
        Field {
            at: 4,
            width: 4,
            big_endian: false,
        },
    ]
}

/// A safetensors file with its JSON header replaced by `edit` of it, the header's length
/// prefix made to match: mutations a reader cannot dismiss by the length alone.
fn with_header(file: &[u8], edit: impl FnOnce(&str) -> String) -> Vec<u8> {
    let n = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    let header = edit(std::str::from_utf8(&file[8..8 + n]).unwrap());
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header.as_bytes());
    out.extend(&file[8 + n..]);
    out
}

/// Case `case` of a safetensors file's four kinds of mutation, in turn: the raw bytes
/// (length prefix as fields), the JSON header as text, one metadata field set to an
/// extreme value by `extreme`, and the tensors' bytes behind an intact header.
fn mutate_safetensors(
    m: &mut Mutator,
    case: usize,
    valid: &[u8],
    fields: &[Field],
    extreme: fn(&mut Mutator, &str) -> String,
) -> Vec<u8> {
    match case % 4 {
        0 => m.mutate(valid, fields, true),
        1 => with_header(valid, |h| {
            String::from_utf8_lossy(&m.mutate(h.as_bytes(), &[], true)).into_owned()
        }),
        2 => with_header(valid, |h| extreme(m, h)),
        _ => {
            let n = 8 + u64::from_le_bytes(valid[..8].try_into().unwrap()) as usize;
            let mut tail = m.mutate(&valid[n..], &[], false);
            tail.resize(valid.len() - n, 0);
            [&valid[..n], &tail[..]].concat()
        }
    }
}

/// The header with one field of the model configuration in its metadata set to an
/// extreme value: a width, the input channels or classes, a normalization constant, or
/// the activation spec.
fn extreme_config(m: &mut Mutator, header: &str) -> String {
    let mut h: serde_json::Value = serde_json::from_str(header).unwrap();
    let text = h["__metadata__"]["config"].as_str().unwrap().to_string();
    let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
    let number = *[
        "0",
        "1",
        "3",
        "1000000000",
        "4294967296",
        "18446744073709551615",
        "-1",
        "2.5",
        "1e40",
    ]
    .choose(&mut m.rng)
    .unwrap();
    let value: serde_json::Value = serde_json::from_str(number).unwrap();
    match m.rng.random_range(0..6) {
        0 => config["widths"][m.rng.random_range(0..4)] = value,
        1 => config["in_channels"] = value,
        2 => config["classes"] = value,
        3 => config["mean"][0] = value,
        4 => {
            config["depth"] = ["R18", "R34", "Small", "R50"]
                .choose(&mut m.rng)
                .unwrap()
                .to_string()
                .into()
        }
        _ => {
            config["activation"] = [
                "G1-18446744073709551615.B1",
                "G1-64.B64",
                "all block=1000000000",
                "all nodpnet",
                "G1.B1 base=tanh",
                "relu",
                "",
            ]
            .choose(&mut m.rng)
            .unwrap()
            .to_string()
            .into()
        }
    }
    h["__metadata__"]["config"] = config.to_string().into();
    h.to_string()
}

fn checkpoint_faults(cases: usize) -> Vec<String> {
    let (_tmp, dir) = temp_dir("checkpoint");
    let path = dir.join("model.safetensors");
    let config = ResNetConfig {
        widths: [2, 2, 2, 3],
        ..ResNetConfig::small(1, 3).with_activation("G3-4.Blast")
    };
    sparta::classifier::Trainable::save(&ResNet::<f32>::new(config, 1).unwrap(), &path).unwrap();
    let valid = std::fs::read(&path).unwrap();
    let fields = safetensors_fields();
    let layer_path = dir.join("layer.safetensors");
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    SpartaLayer::<f32>::new(SpartaConfig::new(3), &mut rng)
        .save(&layer_path)
        .unwrap();
    let layer = std::fs::read(&layer_path).unwrap();
    let mut faults = fuzz(
        "checkpoint",
        cases,
        7,
        // Tensor bytes: NaN, infinities, a negative variance.
        |m, case| mutate_safetensors(m, case, &valid, &fields, extreme_config),
        |bytes| {
            std::fs::write(&path, bytes).unwrap();
            ResNet::<f32>::from_checkpoint(&path).is_ok()
        },
    );
    faults.extend(fuzz(
        "SPARTA layer",
        cases / 4,
        8,
        |m, _| m.mutate(&layer, &fields, true),
        |bytes| {
            std::fs::write(&layer_path, bytes).unwrap();
            SpartaLayer::<f32>::new(SpartaConfig::new(3), &mut ChaCha8Rng::seed_from_u64(1))
                .load(&layer_path)
                .is_ok()
        },
    ));
    faults
}

/// The header of a file of adversarial images with one value of its metadata set to an
/// extreme one: a field of the attack's settings (its kind, ε, iterations, queries,
/// restarts, target classes), the seed or the format.
fn extreme_attack(m: &mut Mutator, header: &str) -> String {
    let mut h: serde_json::Value = serde_json::from_str(header).unwrap();
    let text = h["__metadata__"]["attack"].as_str().unwrap().to_string();
    let mut attack: serde_json::Value = serde_json::from_str(&text).unwrap();
    let value: serde_json::Value = serde_json::from_str(
        [
            "0",
            "1",
            "-1",
            "2.5",
            "1e40",
            "-1e40",
            "4294967296",
            "18446744073709551615",
            "\"pgd\"",
            "\"apgd\"",
            "null",
        ]
        .choose(&mut m.rng)
        .unwrap(),
    )
    .unwrap();
    let field = *[
        "kind",
        "epsilon",
        "queries",
        "iterations",
        "restarts",
        "target_classes",
        "step",
    ]
    .choose(&mut m.rng)
    .unwrap();
    match m.rng.random_range(0..4) {
        0 => h["__metadata__"]["seed"] = value.to_string().into(),
        1 => {
            h["__metadata__"]["format"] = ["sparta-adversarial-images/2", "", "sparta-checkpoint"]
                .choose(&mut m.rng)
                .unwrap()
                .to_string()
                .into()
        }
        _ => {
            attack[field] = value;
            h["__metadata__"]["attack"] = attack.to_string().into();
        }
    }
    h.to_string()
}

/// A file of adversarial images (`sparta attack --save-adversarial`): its bytes, its
/// header's text, its metadata's values and its tensors' bytes, read and then checked
/// against the clean images.
fn adversarial_faults(cases: usize) -> Vec<String> {
    use sparta::attack::square::SquareConfig;
    use sparta::attack::transfer::{self, TransferSource};
    let (_tmp, dir) = temp_dir("adversarial");
    let path = dir.join("adv.safetensors");
    let data = sparta::data::Dataset {
        name: "noise/test[..3]".into(),
        images: (0..3 * 4).map(|i| (i * 20) as u8).collect(),
        labels: vec![2, 0, 1],
        channels: 1,
        height: 2,
        width: 2,
        classes: 3,
    };
    let source = TransferSource {
        file: String::new(),
        checkpoint: "a.safetensors".into(),
        attack: sparta::attack::Attack::Square(SquareConfig {
            epsilon: 0.1,
            queries: 7,
        }),
        dataset: data.name.clone(),
        seed: 4,
    };
    let images: Vec<f32> = data.images.iter().map(|&b| b as f32 / 255.0).collect();
    transfer::save(&path, &images, [3, 1, 2, 2], &[2, 0, 1], &source).unwrap();
    let valid = std::fs::read(&path).unwrap();
    let fields = safetensors_fields();
    fuzz(
        "adversarial images",
        cases,
        11,
        // Tensor bytes: NaN, infinities, labels that are no class.
        |m, case| mutate_safetensors(m, case, &valid, &fields, extreme_attack),
        |bytes| {
            std::fs::write(&path, bytes).unwrap();
            transfer::load(&path).is_ok_and(|set| {
                // What a report row takes from the file.
                let _ = (set.source.attack.name(), set.source.attack.loss());
                set.check_against(&data, 0.1).is_ok()
            })
        },
    )
}

fn state_faults(cases: usize) -> Vec<String> {
    let (_tmp, dir) = temp_dir("state");
    let state = TrainState {
        config: TrainConfig::paper(90, true, 3),
        train_images: 1000,
        dataset: None,
        epoch: 2,
        step: 3,
        global_step: 2 * 8 + 3,
        running: Default::default(),
        history: vec![
            sparta::train::EpochStats {
                epoch: 0,
                lr: 0.1,
                loss: 2.0,
                accuracy: 0.3,
            },
            sparta::train::EpochStats {
                epoch: 1,
                lr: 0.1,
                loss: 1.5,
                accuracy: 0.5,
            },
        ],
        model_file: "model-step00000019.safetensors".into(),
    };
    let valid = serde_json::to_vec_pretty(&state).unwrap();
    let path = dir.join(STATE_FILE);
    fuzz(
        "state.json",
        cases,
        10,
        |m, _| m.mutate(&valid, &[], true),
        |bytes| {
            std::fs::write(&path, bytes).unwrap();
            let Ok(state) = load_state(&dir) else {
                return false;
            };
            let inside = sparta::train::checkpoint::model_path(&dir, &state)
                .is_none_or(|p| p.parent() == Some(dir.as_path()));
            assert!(inside, "{:?} escapes the folder", state.model_file);
            state.check(&path, 8, 128).is_ok()
        },
    )
}

/// The number of mutations per reader: enough to reach the readers' error paths many
/// times over, in under a minute in CI for all of them.
const CASES: usize = 5000;

#[test]
fn no_reader_panics_aborts_or_allocates_without_bound() {
    // Panics in readers are the faults counted, not messages to print.
    std::panic::set_hook(Box::new(|_| {}));
    let start = Instant::now();
    let mut faults = Vec::new();
    faults.extend(idx_faults(CASES));
    faults.extend(cifar_faults(CASES));
    faults.extend(svhn_faults(CASES));
    faults.extend(tiny_imagenet_faults(CASES));
    faults.extend(checkpoint_faults(CASES));
    faults.extend(state_faults(CASES));
    faults.extend(adversarial_faults(CASES));
    let _ = std::panic::take_hook();
    eprintln!("all readers: {:.1} s", start.elapsed().as_secs_f64());
    assert!(
        faults.is_empty(),
        "{} faults, the first ones:\n{}",
        faults.len(),
        faults[..faults.len().min(20)].join("\n")
    );
    assert!(start.elapsed() < Duration::from_secs(600));
}
