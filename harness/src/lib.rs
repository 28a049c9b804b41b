//! Runs sparta's CUDA kernels' exact sources on the CPU, for tests.
//!
//! `build.rs` compiles every `kernels/*.cu` with the host C++ compiler against
//! `include/cuda_emu.h` (a small CUDA emulation) and registers each
//! `extern "C" __global__` entry point by name. A [`Harness`] owns global buffers and
//! launches any registered kernel with the same argument list as the CUDA launch:
//!
//! ```
//! use sparta_harness::{Arg, Dims, Harness};
//!
//! let mut h = Harness::new();
//! let x = h.input("x", &[1.0f32, -2.0, 3.0]);
//! let y = h.output::<f32>("y", 3);
//! let dims = Dims { grid: (1, 1, 1), block: (32, 1, 1), shared_bytes: 0 };
//! let args = [Arg::Buf(x), Arg::Buf(y), Arg::F32(2.0), Arg::I32(3), Arg::I32(1)];
//! let report = h.launch("check_gather_f32", dims, &args).unwrap();
//! assert_eq!(h.read::<f32>(y), vec![2.0, -4.0, 6.0]);
//! assert_eq!(report.buffer("x").load_sectors, 1);
//! ```
//!
//! What a launch checks: every global access is bounds-checked (an out-of-bounds read
//! or write fails the launch, naming buffer, index and thread); `__syncthreads()` is a
//! real barrier (threads that skip it, or exit while others wait, fail the launch);
//! warp collectives check their masks; every element of every [`Harness::output`]
//! buffer must be written (they are poisoned with NaN bytes before each launch);
//! [`Harness::launch`] runs three thread schedules and requires identical results, so
//! a race fails it. The report counts global memory traffic per buffer as the hardware
//! coalesces it (see [`BufferTraffic`]). docs/harness.md says what this proves and what
//! only a GPU can.

mod ffi;

use std::ffi::{c_char, CStr, CString};
use std::fmt;

/// A buffer element type the kernels can take (`GLOBAL(T)` or a scalar).
pub trait Element: Copy + 'static {
    /// The harness's name of the type, as in the kernel registry (`f32`, `bf16`, …).
    const DTYPE: &'static str;
}

macro_rules! element {
    ($($t:ty => $name:literal),* $(,)?) => {
        $(impl Element for $t { const DTYPE: &'static str = $name; })*
    };
}
element!(f32 => "f32", f64 => "f64", half::f16 => "f16", half::bf16 => "bf16", i32 => "i32",
         u32 => "u32", i64 => "i64", u64 => "u64", i16 => "i16", u16 => "u16", i8 => "i8",
         u8 => "u8");

/// Handle of a buffer owned by a [`Harness`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buf(usize);

/// One kernel argument, in the order of the kernel's parameters.
#[derive(Clone, Copy, Debug)]
pub enum Arg {
    /// A `GLOBAL(T)` parameter: the whole buffer.
    Buf(Buf),
    /// A `GLOBAL(T)` parameter: `len` elements of the buffer from element `offset` (a
    /// sub-view, as a wrapper that slices per sample passes). The kernel sees only that
    /// range: an access outside it fails the launch, and an output buffer is poisoned
    /// and checked for writes only there. Traffic is reported under the buffer's name,
    /// sized to the view, with sectors at the buffer's alignment.
    View {
        buf: Buf,
        offset: usize,
        len: usize,
    },
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    F32(f32),
    F64(f64),
}

/// Grid, block and dynamic shared memory of a launch (mirrors `sparta::ops::LaunchDims`;
/// this crate cannot depend on sparta).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    pub shared_bytes: u32,
}

/// The order in which the harness runs the threads of a block (and the blocks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Threads in index order each round, blocks in index order.
    Forward,
    /// Threads and blocks in reverse index order.
    Reverse,
    /// Threads in a fresh seeded random order each round, blocks in reverse order.
    Shuffled(u64),
}

/// The schedules [`Harness::launch`] runs.
pub const SCHEDULES: [Schedule; 3] = [
    Schedule::Forward,
    Schedule::Reverse,
    Schedule::Shuffled(0x5EED),
];

/// Global memory traffic of one buffer in one launch.
///
/// For each warp, the k-th access of every lane to this buffer (per kind: load, store,
/// atomic) is taken together as one instruction, which the hardware coalesces, and the
/// distinct 32-byte sectors it touches are counted; the counts are summed over warps
/// and accesses. A buffer read
/// once, coalesced, costs `bytes / 32` load sectors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufferTraffic {
    pub name: String,
    /// Size of the buffer in bytes.
    pub bytes: u64,
    pub load_sectors: u64,
    pub store_sectors: u64,
    pub atomic_sectors: u64,
    /// Accesses by single threads (element loads, stores, atomics).
    pub loads: u64,
    pub stores: u64,
    pub atomics: u64,
}

impl BufferTraffic {
    /// Sectors a single coalesced pass over the buffer needs: `ceil(bytes / 32)`.
    pub fn min_sectors(&self) -> u64 {
        self.bytes.div_ceil(32)
    }
    /// Load sectors over [`Self::min_sectors`] (1.0 = read once, coalesced).
    pub fn load_ratio(&self) -> f64 {
        self.load_sectors as f64 / self.min_sectors() as f64
    }
    /// Store sectors over [`Self::min_sectors`] (1.0 = written once, coalesced).
    pub fn store_ratio(&self) -> f64 {
        self.store_sectors as f64 / self.min_sectors() as f64
    }
}

/// What one launch did, per buffer argument (in argument order).
#[derive(Clone, Debug)]
pub struct LaunchReport {
    pub kernel: String,
    pub buffers: Vec<BufferTraffic>,
}

impl LaunchReport {
    /// The traffic of the buffer with this name; panics if no argument had it.
    pub fn buffer(&self, name: &str) -> &BufferTraffic {
        self.buffers
            .iter()
            .find(|b| b.name == name)
            .unwrap_or_else(|| panic!("{}: no buffer named `{name}`", self.kernel))
    }
}

impl fmt::Display for LaunchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: buffer, bytes, load sectors (x min), store sectors (x min), atomic sectors",
            self.kernel
        )?;
        for b in &self.buffers {
            writeln!(
                f,
                "  {:<12} {:>10} {:>8} ({:.3}) {:>8} ({:.3}) {:>6}",
                b.name,
                b.bytes,
                b.load_sectors,
                b.load_ratio(),
                b.store_sectors,
                b.store_ratio(),
                b.atomic_sectors
            )?;
        }
        Ok(())
    }
}

/// Why a launch failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HarnessError {
    /// No kernel of this name in kernels/, test_kernels/ or broken/.
    UnknownKernel(String),
    /// The kernel's parameters are not ones the harness can pass.
    Unsupported { kernel: String, reason: String },
    /// The arguments do not match the kernel's parameters.
    Arguments { kernel: String, detail: String },
    /// A global read, write or atomic outside its buffer.
    OutOfBounds { kernel: String, detail: String },
    /// `__syncthreads()` not reached by every thread of the block.
    Barrier { kernel: String, detail: String },
    /// A warp shuffle, vote or `__syncwarp` with inconsistent masks or absent lanes.
    Warp { kernel: String, detail: String },
    /// Threads wait for each other forever.
    Deadlock { kernel: String, detail: String },
    /// A write past the end of dynamic shared memory.
    SharedBounds { kernel: String, detail: String },
    /// Anything else the emulation refuses (e.g. a bad shuffle width).
    Usage { kernel: String, detail: String },
    /// Elements of an output buffer no thread wrote.
    Unwritten {
        kernel: String,
        buffer: String,
        count: usize,
        first: usize,
    },
    /// Two thread schedules gave different results: a race or a missing barrier.
    ScheduleDependent {
        kernel: String,
        buffer: String,
        index: usize,
        schedules: (Schedule, Schedule),
    },
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKernel(k) => write!(f, "no kernel named `{k}` in the harness"),
            Self::Unsupported { kernel, reason } => {
                write!(f, "{kernel}: the harness cannot run it: {reason}")
            }
            Self::Arguments { kernel, detail } => write!(f, "{kernel}: arguments: {detail}"),
            Self::OutOfBounds { kernel, detail }
            | Self::Barrier { kernel, detail }
            | Self::Warp { kernel, detail }
            | Self::Deadlock { kernel, detail }
            | Self::SharedBounds { kernel, detail }
            | Self::Usage { kernel, detail } => write!(f, "{kernel}: {detail}"),
            Self::Unwritten {
                kernel,
                buffer,
                count,
                first,
            } => write!(
                f,
                "{kernel}: {count} elements of output `{buffer}` never written (first: {first})"
            ),
            Self::ScheduleDependent {
                kernel,
                buffer,
                index,
                schedules,
            } => write!(
                f,
                "{kernel}: `{buffer}`[{index}] differs between schedules {:?} and {:?} (a race?)",
                schedules.0, schedules.1
            ),
        }
    }
}

impl std::error::Error for HarnessError {}

/// A kernel parameter as the registry lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    /// Element or scalar type (`f32`, `i64`, …).
    pub dtype: String,
    /// A `GLOBAL(T)` buffer (else a scalar).
    pub buffer: bool,
    /// `GLOBAL(const T)`.
    pub is_const: bool,
}

/// An `extern "C" __global__` kernel the harness compiled.
#[derive(Clone, Debug)]
pub struct KernelInfo {
    /// Source folder: `kernels` (sparta's kernels/), `test_kernels` or `broken` (the
    /// harness's own checks and deliberately broken copies).
    pub dir: String,
    /// Source file stem (`gate` for kernels/gate.cu).
    pub module: String,
    pub name: String,
    /// Its parameters, or why the harness cannot pass them.
    pub params: Result<Vec<Param>, String>,
    trampoline: ffi::EmuTrampoline,
}

fn c_str(p: *const c_char) -> String {
    // SAFETY: the registry holds NUL-terminated string literals that live forever.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// Every kernel the harness compiled: kernels/ (module = file stem), then the harness's
/// own test and broken kernels.
pub fn kernels() -> Vec<KernelInfo> {
    // SAFETY: the registry is a static array of emu_kernel_count() entries.
    let count = unsafe { ffi::emu_kernel_count() };
    (0..count)
        .map(|i| {
            // SAFETY: i < count.
            let k = unsafe { &*ffi::emu_kernel_at(i) };
            let params = c_str(k.params);
            let params = match params.strip_prefix("unsupported: ") {
                Some(reason) => Err(reason.to_string()),
                None => Ok(params
                    .split(';')
                    .filter(|p| !p.is_empty())
                    .map(parse_param)
                    .collect()),
            };
            KernelInfo {
                dir: c_str(k.dir),
                module: c_str(k.module),
                name: c_str(k.name),
                params,
                trampoline: k.trampoline,
            }
        })
        .collect()
}

fn parse_param(p: &str) -> Param {
    let (name, kind) = p.split_once(':').unwrap_or((p, ""));
    let buffer = kind.ends_with('*');
    let is_const = kind.starts_with("const ");
    let dtype = kind.trim_start_matches("const ").trim_end_matches('*');
    Param {
        name: name.to_string(),
        dtype: dtype.to_string(),
        buffer,
        is_const,
    }
}

struct Buffer {
    name: CString,
    dtype: &'static str,
    elem_bytes: usize,
    len: usize,
    /// u64 words keep every element type aligned.
    data: Vec<u64>,
    /// Created by [`Harness::output`]: poisoned before and checked after each launch
    /// that passes it to a non-const parameter.
    output: bool,
}

impl Buffer {
    fn bytes(&self) -> &[u8] {
        // SAFETY: data holds at least len * elem_bytes initialised bytes.
        unsafe { std::slice::from_raw_parts(self.data.as_ptr().cast(), self.len * self.elem_bytes) }
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and &mut self gives exclusive access.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.data.as_mut_ptr().cast(),
                self.len * self.elem_bytes,
            )
        }
    }
    /// Fills elements `offset .. offset + len` with 0xFF bytes.
    fn poison(&mut self, offset: usize, len: usize) {
        let e = self.elem_bytes;
        self.bytes_mut()[offset * e..(offset + len) * e].fill(0xFF);
    }
    /// Element `i` as f64, when the buffer holds f32 or f64 (else `None`).
    fn float_at(bytes: &[u8], dtype: &str, i: usize) -> Option<f64> {
        match dtype {
            "f32" => Some(f64::from(f32::from_le_bytes(
                bytes[i * 4..i * 4 + 4].try_into().ok()?,
            ))),
            "f64" => Some(f64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().ok()?)),
            _ => None,
        }
    }
}

/// The first element where `got` and `want` (a buffer's bytes after two schedules)
/// differ: bitwise, or for f32 / f64 buffers with `tolerance = Some(rel)` by more than
/// `rel · max |want|` (NaN against a number always differs).
fn first_difference(
    got: &[u8],
    want: &[u8],
    dtype: &str,
    elem_bytes: usize,
    tolerance: Option<f64>,
) -> Option<usize> {
    if got == want {
        return None;
    }
    let bitwise = || {
        got.iter()
            .zip(want)
            .position(|(g, w)| g != w)
            .map(|byte| byte / elem_bytes)
    };
    let Some(rel) = tolerance else {
        return bitwise();
    };
    let len = want.len() / elem_bytes;
    let mut scale = 0.0f64;
    for i in 0..len {
        match Buffer::float_at(want, dtype, i) {
            Some(w) => scale = scale.max(w.abs()),
            None => return bitwise(),
        }
    }
    (0..len).find(|&i| {
        let g = Buffer::float_at(got, dtype, i).unwrap_or(f64::NAN);
        let w = Buffer::float_at(want, dtype, i).unwrap_or(f64::NAN);
        let same_bits =
            got[i * elem_bytes..(i + 1) * elem_bytes] == want[i * elem_bytes..(i + 1) * elem_bytes];
        let within = (g - w).abs() <= rel * scale; // false for NaN
        !same_bits && !within
    })
}

/// Global buffers and kernel launches on the CPU.
#[derive(Default)]
pub struct Harness {
    buffers: Vec<Buffer>,
}

impl Harness {
    pub fn new() -> Self {
        Self::default()
    }

    fn add<T: Element>(&mut self, name: &str, len: usize, output: bool) -> Buf {
        let elem_bytes = std::mem::size_of::<T>();
        self.buffers.push(Buffer {
            name: CString::new(name).expect("buffer name without NUL"),
            dtype: T::DTYPE,
            elem_bytes,
            len,
            data: vec![u64::MAX; (len * elem_bytes).div_ceil(8)],
            output,
        });
        Buf(self.buffers.len() - 1)
    }

    /// A buffer holding a copy of `data` (the kernel may still write it, e.g. atomics).
    pub fn input<T: Element>(&mut self, name: &str, data: &[T]) -> Buf {
        let b = self.add::<T>(name, data.len(), false);
        self.write(b, data);
        b
    }

    /// An output buffer of `len` elements: filled with 0xFF bytes (NaN for floats)
    /// before every launch that takes it as a writable (`GLOBAL(T)`, not const)
    /// parameter; that launch fails unless it writes every element. Passed to a const
    /// parameter, it is an ordinary input (e.g. a scratch buffer the next kernel reads).
    pub fn output<T: Element>(&mut self, name: &str, len: usize) -> Buf {
        self.add::<T>(name, len, true)
    }

    /// Overwrites a buffer's contents.
    pub fn write<T: Element>(&mut self, b: Buf, data: &[T]) {
        let buf = &mut self.buffers[b.0];
        assert_eq!(buf.dtype, T::DTYPE, "buffer `{:?}` dtype", buf.name);
        assert_eq!(buf.len, data.len(), "buffer `{:?}` length", buf.name);
        // SAFETY: same length in bytes, T is a plain Copy element type.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr().cast::<u8>(),
                buf.data.as_mut_ptr().cast::<u8>(),
                std::mem::size_of_val(data),
            )
        };
    }

    /// A copy of a buffer's contents.
    pub fn read<T: Element>(&self, b: Buf) -> Vec<T> {
        let buf = &self.buffers[b.0];
        assert_eq!(
            buf.dtype,
            T::DTYPE,
            "buffer `{:?}` read as {}",
            buf.name,
            T::DTYPE
        );
        let mut out = Vec::<T>::with_capacity(buf.len);
        // SAFETY: the buffer holds len elements of T; out has room for them.
        unsafe {
            std::ptr::copy_nonoverlapping(
                buf.data.as_ptr().cast::<u8>(),
                out.as_mut_ptr().cast::<u8>(),
                buf.len * buf.elem_bytes,
            );
            out.set_len(buf.len);
        }
        out
    }

    /// Runs the kernel under each of [`SCHEDULES`], each from the same buffer contents,
    /// and fails unless all leave bitwise identical buffers; returns the report of the
    /// first.
    pub fn launch(
        &mut self,
        kernel: &str,
        dims: Dims,
        args: &[Arg],
    ) -> Result<LaunchReport, HarnessError> {
        self.launch_schedules(kernel, dims, args, None)
    }

    /// [`Self::launch`] for a kernel whose float atomics from several blocks make its
    /// rounding depend on the order of the blocks: each f32 / f64 buffer must agree
    /// between schedules within `rel_tolerance · max |value|` of the first schedule's
    /// contents (other buffers bitwise), and the first schedule's contents are kept. A
    /// race that changes values beyond rounding still fails.
    pub fn launch_within(
        &mut self,
        kernel: &str,
        dims: Dims,
        args: &[Arg],
        rel_tolerance: f64,
    ) -> Result<LaunchReport, HarnessError> {
        self.launch_schedules(kernel, dims, args, Some(rel_tolerance))
    }

    fn launch_schedules(
        &mut self,
        kernel: &str,
        dims: Dims,
        args: &[Arg],
        tolerance: Option<f64>,
    ) -> Result<LaunchReport, HarnessError> {
        let before: Vec<Vec<u64>> = self.buffers.iter().map(|b| b.data.clone()).collect();
        let report = self.launch_with(kernel, dims, args, SCHEDULES[0])?;
        let first: Vec<Vec<u64>> = self.buffers.iter().map(|b| b.data.clone()).collect();
        for &schedule in &SCHEDULES[1..] {
            for (b, saved) in self.buffers.iter_mut().zip(&before) {
                b.data.clone_from(saved);
            }
            self.launch_with(kernel, dims, args, schedule)?;
            for (b, want) in self.buffers.iter().zip(&first) {
                if b.data != *want {
                    let got = b.bytes();
                    // SAFETY: want has the same layout as b.data.
                    let want = unsafe {
                        std::slice::from_raw_parts(want.as_ptr().cast::<u8>(), got.len())
                    };
                    if let Some(index) =
                        first_difference(got, want, b.dtype, b.elem_bytes, tolerance)
                    {
                        return Err(HarnessError::ScheduleDependent {
                            kernel: kernel.to_string(),
                            buffer: b.name.to_string_lossy().into_owned(),
                            index,
                            schedules: (SCHEDULES[0], schedule),
                        });
                    }
                }
            }
        }
        for (b, saved) in self.buffers.iter_mut().zip(first) {
            b.data = saved;
        }
        Ok(report)
    }

    /// Runs the kernel once under one schedule.
    pub fn launch_with(
        &mut self,
        kernel: &str,
        dims: Dims,
        args: &[Arg],
        schedule: Schedule,
    ) -> Result<LaunchReport, HarnessError> {
        let info = kernels()
            .into_iter()
            .find(|k| k.name == kernel)
            .ok_or_else(|| HarnessError::UnknownKernel(kernel.to_string()))?;
        let params = info
            .params
            .clone()
            .map_err(|reason| HarnessError::Unsupported {
                kernel: kernel.to_string(),
                reason,
            })?;
        let trampoline = info.trampoline.ok_or_else(|| HarnessError::Unsupported {
            kernel: kernel.to_string(),
            reason: "no trampoline".into(),
        })?;
        let arg_error = |detail: String| HarnessError::Arguments {
            kernel: kernel.to_string(),
            detail,
        };
        if params.len() != args.len() {
            return Err(arg_error(format!(
                "{} arguments for {} parameters",
                args.len(),
                params.len()
            )));
        }
        check_dims(dims).map_err(arg_error)?;

        // Buffer views (buffer, offset, len) in argument order; each distinct view once,
        // with whether the kernel may write it (a non-const parameter).
        let mut used: Vec<(usize, usize, usize)> = Vec::new();
        let mut writable: Vec<bool> = Vec::new();
        let mut emu_args = Vec::with_capacity(args.len());
        for (p, a) in params.iter().zip(args) {
            let view = match *a {
                Arg::Buf(b) => Some((b, 0, None)),
                Arg::View { buf, offset, len } => Some((buf, offset, Some(len))),
                _ => None,
            };
            let (kind, bits) = match (view, p.buffer) {
                (Some((b, offset, len)), true) => {
                    let buf = self
                        .buffers
                        .get(b.0)
                        .ok_or_else(|| arg_error(format!("`{}`: no such buffer", p.name)))?;
                    let len = len.unwrap_or(buf.len);
                    if offset.checked_add(len).is_none_or(|end| end > buf.len) {
                        return Err(arg_error(format!(
                            "`{}`: view of {len} elements at {offset} of buffer `{}` ({} elements)",
                            p.name,
                            buf.name.to_string_lossy(),
                            buf.len
                        )));
                    }
                    if buf.dtype != p.dtype {
                        return Err(arg_error(format!(
                            "`{}` takes {} elements, buffer `{}` holds {}",
                            p.name,
                            p.dtype,
                            buf.name.to_string_lossy(),
                            buf.dtype
                        )));
                    }
                    let key = (b.0, offset, len);
                    let slot = match used.iter().position(|&u| u == key) {
                        Some(s) => s,
                        None => {
                            used.push(key);
                            writable.push(false);
                            used.len() - 1
                        }
                    };
                    writable[slot] |= !p.is_const;
                    (ffi::ARG_BUFFER, slot as u64)
                }
                (Some(_), false) => {
                    return Err(arg_error(format!(
                        "`{}` is a {} scalar, got a buffer",
                        p.name, p.dtype
                    )))
                }
                (None, false) => (
                    ffi::ARG_SCALAR,
                    scalar_bits(a, &p.dtype).ok_or_else(|| {
                        arg_error(format!("`{}` is {}, got {a:?}", p.name, p.dtype))
                    })?,
                ),
                (None, true) => {
                    return Err(arg_error(format!(
                        "`{}` is a buffer of {}, got {a:?}",
                        p.name, p.dtype
                    )))
                }
            };
            emu_args.push(ffi::EmuArg {
                kind,
                reserved: 0,
                bits,
            });
        }

        // Outputs this kernel writes: poisoned now, checked fully written afterwards.
        let checked: Vec<bool> = used
            .iter()
            .zip(&writable)
            .map(|(&(u, _, _), &w)| w && self.buffers[u].output)
            .collect();
        let mut written: Vec<Vec<u8>> = Vec::with_capacity(used.len());
        for (&(u, offset, len), &check) in used.iter().zip(&checked) {
            if check {
                self.buffers[u].poison(offset, len);
            }
            written.push(vec![0u8; len]);
        }
        let mut descs: Vec<ffi::EmuBufferDesc> = used
            .iter()
            .zip(written.iter_mut())
            .map(|(&(u, offset, len), w)| {
                let b = &mut self.buffers[u];
                let origin_bytes = offset * b.elem_bytes;
                ffi::EmuBufferDesc {
                    // SAFETY (of the add): offset + len ≤ b.len, checked above.
                    data: unsafe { b.data.as_mut_ptr().cast::<u8>().add(origin_bytes) },
                    len: len as u64,
                    elem_bytes: b.elem_bytes as u32,
                    reserved: 0,
                    name: b.name.as_ptr(),
                    written: w.as_mut_ptr(),
                    origin_bytes: origin_bytes as u64,
                    load_sectors: 0,
                    store_sectors: 0,
                    atomic_sectors: 0,
                    loads: 0,
                    stores: 0,
                    atomics: 0,
                }
            })
            .collect();
        let cfg = ffi::EmuLaunchCfg {
            grid: [dims.grid.0, dims.grid.1, dims.grid.2],
            block: [dims.block.0, dims.block.1, dims.block.2],
            shared_bytes: dims.shared_bytes,
            schedule: match schedule {
                Schedule::Forward => 0,
                Schedule::Reverse => 1,
                Schedule::Shuffled(_) => 2,
            },
            seed: match schedule {
                Schedule::Shuffled(s) => s,
                _ => 0,
            },
        };
        let mut error = vec![0 as c_char; 1024];
        // SAFETY: every pointer in descs points into a buffer this &mut self owns and
        // that outlives the call; args match the kernel's parameters (checked above);
        // the runtime serialises launches.
        let rc = unsafe {
            ffi::emu_launch(
                trampoline,
                &cfg,
                emu_args.as_ptr(),
                descs.as_mut_ptr(),
                descs.len() as u32,
                error.as_mut_ptr(),
                error.len(),
            )
        };
        if rc != 0 {
            let detail = c_str(error.as_ptr());
            let kernel = kernel.to_string();
            return Err(match rc {
                ffi::ERR_OUT_OF_BOUNDS => HarnessError::OutOfBounds { kernel, detail },
                ffi::ERR_BARRIER => HarnessError::Barrier { kernel, detail },
                ffi::ERR_WARP => HarnessError::Warp { kernel, detail },
                ffi::ERR_DEADLOCK => HarnessError::Deadlock { kernel, detail },
                ffi::ERR_SHARED_BOUNDS => HarnessError::SharedBounds { kernel, detail },
                _ => HarnessError::Usage { kernel, detail },
            });
        }
        for ((&(u, _, _), w), &check) in used.iter().zip(&written).zip(&checked) {
            let missing = w.iter().filter(|&&f| f == 0).count();
            if check && missing > 0 {
                return Err(HarnessError::Unwritten {
                    kernel: kernel.to_string(),
                    buffer: self.buffers[u].name.to_string_lossy().into_owned(),
                    count: missing,
                    first: w.iter().position(|&f| f == 0).unwrap_or(0),
                });
            }
        }
        Ok(LaunchReport {
            kernel: kernel.to_string(),
            buffers: used
                .iter()
                .zip(&descs)
                .map(|(&(u, _, len), d)| {
                    let b = &self.buffers[u];
                    BufferTraffic {
                        name: b.name.to_string_lossy().into_owned(),
                        bytes: (len * b.elem_bytes) as u64,
                        load_sectors: d.load_sectors,
                        store_sectors: d.store_sectors,
                        atomic_sectors: d.atomic_sectors,
                        loads: d.loads,
                        stores: d.stores,
                        atomics: d.atomics,
                    }
                })
                .collect(),
        })
    }
}

fn check_dims(d: Dims) -> Result<(), String> {
    let (g, b) = (d.grid, d.block);
    if g.0 == 0 || g.1 == 0 || g.2 == 0 || b.0 == 0 || b.1 == 0 || b.2 == 0 {
        return Err(format!("empty launch: grid {g:?}, block {b:?}"));
    }
    if b.0 * b.1 * b.2 > 1024 || b.2 > 64 {
        return Err(format!("block {b:?}: more than 1024 threads or z > 64"));
    }
    if g.1 > 65535 || g.2 > 65535 {
        return Err(format!("grid {g:?}: y or z above 65535"));
    }
    if d.shared_bytes > 227 * 1024 {
        return Err(format!(
            "{} bytes of dynamic shared memory (sm_90 allows 227 KiB)",
            d.shared_bytes
        ));
    }
    Ok(())
}

/// The scalar's bytes if its type is exactly the parameter's.
fn scalar_bits(a: &Arg, dtype: &str) -> Option<u64> {
    Some(match (a, dtype) {
        (Arg::I32(v), "i32") => *v as u32 as u64,
        (Arg::U32(v), "u32") => *v as u64,
        (Arg::I64(v), "i64") => *v as u64,
        (Arg::U64(v), "u64") => *v,
        (Arg::F32(v), "f32") => v.to_bits() as u64,
        (Arg::F64(v), "f64") => v.to_bits(),
        _ => return None,
    })
}
