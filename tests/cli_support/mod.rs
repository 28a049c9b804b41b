//! What the command-line tests share: the `sparta` binary, temporary folders, and small
//! data sets in the published file formats, written here.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_sparta");

/// A folder that lasts as long as this value: a fresh directory under the system's
/// temporary one, deleted with everything in it when the value drops, at the end of a
/// failing test too. Derefs to its path.
pub struct TempFolder(tempfile::TempDir);

impl std::ops::Deref for TempFolder {
    type Target = Path;

    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for TempFolder {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}

/// A fresh, empty folder of its own.
pub fn temp_dir(name: &str) -> TempFolder {
    let dir = tempfile::Builder::new()
        .prefix(&format!("sparta-cli-{name}-"))
        .tempdir()
        .unwrap();
    TempFolder(dir)
}

/// An IDX file of u8: magic `00 00 08 <ndims>`, big-endian sizes, data.
pub fn write_idx(path: &Path, dims: &[u32], data: &[u8]) {
    let mut bytes = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        bytes.extend(d.to_be_bytes());
    }
    bytes.extend(data);
    std::fs::write(path, bytes).unwrap();
}

/// `n` images of `side`×`side` pixels and `channels` channels whose class is a bright
/// band at rows `2·label + 4 ..+2` over noise, and their labels (0–9), NCHW.
pub fn banded_images(n: usize, channels: usize, side: usize, seed: u32) -> (Vec<u8>, Vec<u8>) {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let mut noise = || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state % 60) as u8
    };
    let mut images = Vec::with_capacity(n * channels * side * side);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let label = i % 10;
        for _ in 0..channels {
            for row in 0..side {
                let band = row >= 2 * label + 4 && row < 2 * label + 6;
                for _ in 0..side {
                    images.push(if band { 180 } else { 0 } + noise());
                }
            }
        }
        labels.push(label as u8);
    }
    (images, labels)
}

/// `n` 28×28 banded images in the file names of Fashion-MNIST's `prefix` split
/// (`train` or `t10k`), uncompressed.
pub fn write_split(dir: &Path, prefix: &str, n: usize, seed: u32) {
    let (images, labels) = banded_images(n, 1, 28, seed);
    write_idx(
        &dir.join(format!("{prefix}-images-idx3-ubyte")),
        &[n as u32, 28, 28],
        &images,
    );
    write_idx(
        &dir.join(format!("{prefix}-labels-idx1-ubyte")),
        &[n as u32],
        &labels,
    );
}

/// A Fashion-MNIST folder with 40 training and 20 test images.
pub fn data_dir(name: &str) -> TempFolder {
    let dir = temp_dir(name);
    write_split(&dir, "train", 40, 1);
    write_split(&dir, "t10k", 20, 2);
    dir
}

/// CIFAR-10 binary batches of banded 32×32 RGB images: five training files of
/// `per_file` images and a test file of `test` images.
pub fn cifar_dir(name: &str, per_file: usize, test: usize) -> TempFolder {
    let dir = temp_dir(name);
    let write = |file: &str, n: usize, seed: u32| {
        let (images, labels) = banded_images(n, 3, 32, seed);
        let mut bytes = Vec::new();
        for (i, &label) in labels.iter().enumerate() {
            bytes.push(label);
            bytes.extend(&images[i * 3072..(i + 1) * 3072]);
        }
        std::fs::write(dir.join(file), bytes).unwrap();
    };
    for i in 1..=5 {
        write(&format!("data_batch_{i}.bin"), per_file, i);
    }
    write("test_batch.bin", test, 9);
    dir
}

/// SVHN `train_32x32.mat` and `test_32x32.mat` of banded 32×32 RGB images, `X` stored
/// column-major as MATLAB does and labels 1–10 (10 for the digit 0).
pub fn svhn_dir(name: &str, train: usize, test: usize) -> TempFolder {
    use sparta::data::svhn::mat5::writer::{MatWriter, Numeric};
    let dir = temp_dir(name);
    for (split, n, seed) in [("train", train, 3), ("test", test, 4)] {
        let (images, labels) = banded_images(n, 3, 32, seed);
        let mut x = vec![0u8; images.len()];
        for i in 0..n {
            for ch in 0..3 {
                for r in 0..32 {
                    for c in 0..32 {
                        x[r + 32 * (c + 32 * (ch + 3 * i))] =
                            images[((i * 3 + ch) * 32 + r) * 32 + c];
                    }
                }
            }
        }
        let y: Vec<u8> = labels
            .iter()
            .map(|&l| if l == 0 { 10 } else { l })
            .collect();
        let mut f = MatWriter::new(false);
        f.variable("X", &[32, 32, 3, n], Numeric::U8(x), true);
        f.variable("y", &[n, 1], Numeric::DoubleAsU8(y), false);
        std::fs::write(dir.join(format!("{split}_32x32.mat")), f.finish()).unwrap();
    }
    dir
}

pub fn sparta(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("the sparta binary runs")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Exit status 0, or a failure that shows what the command printed.
pub fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// A failure (not a crash) whose message contains `want`; returns stderr.
pub fn assert_refused(out: &Output, want: &str) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{want}: {:?}\n{stderr}",
        out.status
    );
    assert!(stderr.contains(want), "expected {want:?} in:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

pub fn json(path: &Path) -> serde_json::Value {
    let s = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Flags every subcommand below shares: the data set, the CPU, a seed, batch 10.
pub fn common<'a>(dataset: &'a str, data: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "--dataset",
        dataset,
        "--data-dir",
        data,
        "--device",
        "cpu",
        "--seed",
        "3",
        "--batch-size",
        "10",
        "--out",
        out,
    ]
}

/// Adversarial training of the small preset on Fashion-MNIST with PGD-2 examples.
pub fn train_args<'a>(data: &'a str, out: &'a str, epochs: &'a str) -> Vec<&'a str> {
    let mut a = vec!["train"];
    a.extend(common("fashion-mnist", data, out));
    a.extend([
        "--model",
        "small",
        "--act",
        "sparta",
        "--epochs",
        epochs,
        "--train-pgd",
        "2",
        "--lr",
        "0.05",
        "--checkpoint-every",
        "1",
    ]);
    a
}

/// A Tiny-ImageNet folder of 200 classes: one 64×64 training JPEG for each of the first
/// `with_images` classes (the others' folders empty) and `val` images of classes 0, 1, …
pub fn tiny_imagenet_dir(name: &str, with_images: usize, val: usize) -> TempFolder {
    let tmp = temp_dir(name);
    let root = tmp.join("tiny-imagenet-200");
    let wnids: Vec<String> = (0..200).map(|i| format!("n{i:08}")).collect();
    std::fs::create_dir_all(root.join("val/images")).unwrap();
    std::fs::write(root.join("wnids.txt"), wnids.join("\n")).unwrap();
    let jpeg = |path: &Path, class: usize| {
        let (images, _) = banded_images(1, 3, 64, class as u32 + 1);
        // Interleaved RGB rows for the encoder.
        let rgb: Vec<u8> = (0..64 * 64)
            .flat_map(|p| (0..3).map(move |ch| (ch, p)))
            .map(|(ch, p)| images[ch * 64 * 64 + p])
            .collect();
        let encoder = jpeg_encoder::Encoder::new_file(path, 90).unwrap();
        encoder
            .encode(&rgb, 64, 64, jpeg_encoder::ColorType::Rgb)
            .unwrap();
    };
    for (class, wnid) in wnids.iter().enumerate() {
        let folder = root.join("train").join(wnid).join("images");
        std::fs::create_dir_all(&folder).unwrap();
        if class < with_images {
            jpeg(&folder.join(format!("{wnid}_0.JPEG")), class);
        }
    }
    let mut annotations = String::new();
    for i in 0..val {
        let class = i % with_images.max(1);
        jpeg(&root.join(format!("val/images/val_{i}.JPEG")), class);
        annotations += &format!("val_{i}.JPEG\t{}\t0\t0\t63\t63\n", wnids[class]);
    }
    std::fs::write(root.join("val/val_annotations.txt"), annotations).unwrap();
    tmp
}

/// The model of a checkpoint the binary wrote, through the library.
pub fn load_model(path: &Path) -> sparta::nn::resnet::ResNet<f32> {
    sparta::nn::resnet::ResNet::<f32>::from_checkpoint(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every parameter and buffer value of a model, as bits: equal models, equal vectors.
pub fn model_bits(path: &Path) -> Vec<u32> {
    let model = load_model(path);
    model
        .params()
        .chain(model.buffers())
        .flat_map(|(_, v)| v.iter().map(|v| v.to_bits()))
        .collect()
}
