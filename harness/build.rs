//! Compiles every CUDA kernel source the harness runs with the host C++ compiler.
//!
//! Sources: `../kernels/*.cu` (sparta's kernels), `test_kernels/*.cu` (the harness's own
//! checks) and `broken/*.cu` (deliberately broken copies of real kernels). Each is built
//! with `SPARTA_HOST_HARNESS` defined, so `kernels/common.cuh` pulls in
//! `include/cuda_emu.h` instead of CUDA's headers.
//!
//! Per source file:
//! 1. a copy goes to `OUT_DIR/src/<dir>/` with each shared-memory declaration
//!    rewritten to a macro that takes type and name apart (`__shared__ T name[N];` →
//!    `EMU_STATIC_SHARED(T, name, [N]);`, `extern __shared__ T name[];` →
//!    `EMU_DYNAMIC_SHARED(T, name);`), which no `#define __shared__` could do; nothing
//!    else changes, line numbers included;
//! 2. the preprocessor runs once over it (`EMU_SCAN_PASS`) to find every
//!    `extern "C" __global__` entry point and its parameters, macros expanded;
//! 3. a wrapper translation unit includes the copy and adds, per kernel, a trampoline
//!    `void(const EmuArg*, const emu::Buffer*)` that builds `GLOBAL(T)` pointers from
//!    buffer arguments and reads scalars; a registry lists them by name for Rust.
//!
//! A kernel whose parameters the harness cannot map is still registered, with an
//! `unsupported:` reason and no trampoline: launching it fails, and so does the coverage
//! test that launches everything in `kernels/`.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Source {
    /// Folder tag in OUT_DIR (`kernels`, `test_kernels`, `broken`).
    tag: &'static str,
    dir: PathBuf,
}

struct Kernel {
    /// Source folder tag.
    dir: &'static str,
    module: String,
    name: String,
    /// `name:kind` per parameter, or `unsupported: reason`.
    params: Result<Vec<Param>, String>,
}

struct Param {
    name: String,
    /// Buffer element type (dtype, C++ type, const) or scalar (dtype, C++ type).
    kind: ParamKind,
}

enum ParamKind {
    Buffer {
        dtype: &'static str,
        cpp: String,
        is_const: bool,
    },
    Scalar {
        dtype: &'static str,
        cpp: String,
    },
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let sources = [
        Source {
            tag: "kernels",
            dir: manifest.join("../kernels"),
        },
        Source {
            tag: "test_kernels",
            dir: manifest.join("test_kernels"),
        },
        Source {
            tag: "broken",
            dir: manifest.join("broken"),
        },
    ];
    for p in [
        "include",
        "csrc",
        "test_kernels",
        "broken",
        "mutants",
        "../kernels",
    ] {
        println!("cargo:rerun-if-changed={}", manifest.join(p).display());
    }

    let include = manifest.join("include");
    let csrc = manifest.join("csrc");
    let kernels_copy = out.join("src").join("kernels");
    let tools = Tools {
        compiler: cc::Build::new().cpp(true).get_compiler(),
        include: include.clone(),
        csrc: csrc.clone(),
        kernels: kernels_copy.clone(),
        out: out.clone(),
    };

    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .opt_level(2)
        .define("SPARTA_HOST_HARNESS", None)
        .include(&include)
        .include(&csrc)
        .include(&kernels_copy)
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-unused-function")
        // nvcc (--Werror all-warnings) is the judge of kernel warnings; g++ -Wextra
        // would flag int/unsigned comparisons that are idiomatic with threadIdx.
        .flag_if_supported("-Wno-sign-compare")
        .flag_if_supported("-Wno-unknown-pragmas")
        .file(csrc.join("runtime.cpp"));

    let mut all = Vec::new();
    for src in &sources {
        let copy_dir = out.join("src").join(src.tag);
        fs::create_dir_all(&copy_dir).unwrap();
        let mut files: Vec<PathBuf> = fs::read_dir(&src.dir)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        for file in files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "cu" || e == "cuh"))
        {
            let text = fs::read_to_string(file)
                .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
            fs::write(
                copy_dir.join(file.file_name().unwrap()),
                rewrite_shared(&text, file),
            )
            .unwrap();
        }
        for file in files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "cu"))
        {
            let stem = file.file_stem().unwrap().to_str().unwrap().to_string();
            let copy = copy_dir.join(file.file_name().unwrap());
            let kernels = compile_unit(&mut build, &tools, &copy, src.tag, &stem);
            all.extend(kernels);
        }
    }

    // Mutants: real kernels with one planted bug each, entry points renamed.
    let mutants_dir = manifest.join("mutants");
    let mutant_copies = out.join("src").join("mutants");
    fs::create_dir_all(&mutant_copies).unwrap();
    let mut mutants: Vec<PathBuf> = fs::read_dir(&mutants_dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    mutants.retain(|p| p.extension().is_some_and(|e| e == "mutant"));
    mutants.sort();
    for spec_path in &mutants {
        let stem = spec_path.file_stem().unwrap().to_str().unwrap().to_string();
        let spec = Mutant::parse(spec_path);
        let original_path = kernels_copy.join(&spec.source);
        let original = fs::read_to_string(&original_path)
            .unwrap_or_else(|e| panic!("mutant {stem}: source kernels/{}: {e}", spec.source));
        let hits = original.matches(&spec.find).count();
        if hits != 1 {
            panic!(
                "mutant {}: its `find` text occurs {hits} times in kernels/{} (must be once): \
                 update the mutant to the kernel's current source",
                spec_path.display(),
                spec.source
            );
        }
        let module = spec.source.trim_end_matches(".cu");
        let mut text = String::new();
        for k in all
            .iter()
            .filter(|k| k.dir == "kernels" && k.module == module)
        {
            writeln!(text, "#define {} {stem}__{}", k.name, k.name).unwrap();
        }
        text.push_str("#line 1\n");
        text.push_str(&original.replacen(&spec.find, &spec.replace, 1));
        let copy = mutant_copies.join(format!("{stem}.cu"));
        fs::write(&copy, text).unwrap();
        let kernels = compile_unit(&mut build, &tools, &copy, "mutants", &stem);
        all.extend(kernels);
    }
    let registry = out.join("registry.cpp");
    fs::write(&registry, registry_source(&all)).unwrap();
    build.file(&registry);
    build.compile("sparta_harness_kernels");
}

struct Tools {
    compiler: cc::Tool,
    include: PathBuf,
    csrc: PathBuf,
    kernels: PathBuf,
    out: PathBuf,
}

/// Scans one kernel file and adds its wrapper (trampolines) to the build.
fn compile_unit(
    build: &mut cc::Build,
    tools: &Tools,
    copy: &Path,
    dir: &'static str,
    stem: &str,
) -> Vec<Kernel> {
    let pre = preprocess(
        &tools.compiler,
        copy,
        &tools.include,
        &tools.csrc,
        &tools.kernels,
    );
    let kernels = scan_kernels(&pre, dir, stem);
    let wrapper = tools.out.join(format!("wrap_{dir}_{stem}.cpp"));
    fs::write(&wrapper, wrapper_source(copy, dir, stem, &kernels)).unwrap();
    build.file(&wrapper);
    kernels
}

/// A planted bug: in kernels/<source>, the text `find` (exactly one occurrence)
/// becomes `replace`. File format (harness/mutants/<name>.mutant):
/// comment lines starting with `#`, then `source: <file>.cu`, then a line `find:`
/// followed by the text, then a line `replace:` followed by the text.
struct Mutant {
    source: String,
    find: String,
    replace: String,
}

impl Mutant {
    fn parse(path: &Path) -> Mutant {
        let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let bad = || {
            panic!(
                "{}: expected `source:`, `find:`, `replace:`",
                path.display()
            )
        };
        let body: String = text
            .lines()
            .skip_while(|l| l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        let Some(rest) = body.strip_prefix("source:") else {
            bad()
        };
        let (source, rest) = rest.split_once('\n').unwrap_or_else(|| bad());
        let Some(rest) = rest.strip_prefix("find:\n") else {
            bad()
        };
        let Some((find, replace)) = rest.split_once("\nreplace:\n") else {
            bad()
        };
        Mutant {
            source: source.trim().to_string(),
            find: find.to_string(),
            replace: replace.trim_end_matches('\n').to_string(),
        }
    }
}

/// Rewrites shared-memory declarations, one per line, keeping line numbers:
/// `extern __shared__ [__align__(n)] T name[];` → `EMU_DYNAMIC_SHARED(T, name);` and
/// `__shared__ [__align__(n)] T name[D1][D2];` → `EMU_STATIC_SHARED(T, name, [D1][D2]);`.
/// Any other use of `__shared__` is left alone and fails to compile (cuda_emu.h), so a
/// declaration the harness cannot give per-block, poisoned storage is never missed.
fn rewrite_shared(text: &str, file: &Path) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let (is_extern, rest) = if let Some(r) = trimmed.strip_prefix("extern __shared__ ") {
            (true, r)
        } else if let Some(r) = trimmed.strip_prefix("__shared__ ") {
            (false, r)
        } else {
            out.push_str(line);
            continue;
        };
        let Some(semi) = rest.find(';') else {
            out.push_str(line);
            continue;
        };
        let decl = strip_align(rest[..semi].trim());
        let tail = &rest[semi + 1..];
        let (head, dims) = match decl.find('[') {
            Some(at) => (decl[..at].trim_end(), decl[at..].trim()),
            None => (decl.trim_end(), ""),
        };
        if head.contains([',', '=', '(']) {
            panic!(
                "{}: `{}`: declare one __shared__ variable per line, without initializer",
                file.display(),
                line.trim()
            );
        }
        let split = head
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        let (ty, name) = head.split_at(split);
        let ty = ty.trim();
        let decl = if is_extern {
            format!("EMU_DYNAMIC_SHARED({ty}, {name});")
        } else {
            format!("EMU_STATIC_SHARED({ty}, {name}, {dims});")
        };
        out.push_str(indent);
        out.push_str(&decl);
        out.push_str(tail);
    }
    out
}

fn strip_align(decl: &str) -> String {
    let mut s = decl.to_string();
    while let Some(at) = s.find("__align__(") {
        let end = s[at..].find(')').map_or(s.len(), |i| at + i + 1);
        s.replace_range(at..end, "");
    }
    s
}

fn preprocess(
    compiler: &cc::Tool,
    file: &Path,
    include: &Path,
    csrc: &Path,
    kernels: &Path,
) -> String {
    let output = Command::new(compiler.path())
        .args(["-E", "-P", "-x", "c++", "-std=c++17"])
        .args(["-DSPARTA_HOST_HARNESS", "-DEMU_SCAN_PASS"])
        .arg(format!("-I{}", include.display()))
        .arg(format!("-I{}", csrc.display()))
        .arg(format!("-I{}", kernels.display()))
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("running the C++ preprocessor: {e}"));
    if !output.status.success() {
        panic!(
            "preprocessing {} failed:\n{}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Finds `extern "C" __global__ void name(params)` in preprocessed source.
fn scan_kernels(pre: &str, dir: &'static str, module: &str) -> Vec<Kernel> {
    let mut kernels: Vec<Kernel> = Vec::new();
    let mut rest = pre;
    while let Some(at) = rest.find("extern \"C\"") {
        rest = &rest[at + "extern \"C\"".len()..];
        let Some(after) = rest.trim_start().strip_prefix("__emu_global__") else {
            continue;
        };
        let after = after.trim_start();
        let Some(after) = after.strip_prefix("void") else {
            continue;
        };
        let Some(open) = after.find('(') else {
            continue;
        };
        let name = after[..open].trim().to_string();
        let mut depth = 0;
        let mut close = open;
        for (i, c) in after[open..].char_indices() {
            match c {
                '(' | '<' => depth += 1,
                ')' | '>' => {
                    depth -= 1;
                    if depth == 0 {
                        close = open + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let params = parse_params(&after[open + 1..close]);
        if !kernels.iter().any(|k| k.name == name) {
            kernels.push(Kernel {
                dir,
                module: module.to_string(),
                name,
                params,
            });
        }
    }
    kernels
}

fn split_top_level(s: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut depth = 0i32;
    for c in s.chars() {
        match c {
            '(' | '<' => depth += 1,
            ')' | '>' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(String::new());
                continue;
            }
            _ => {}
        }
        parts.last_mut().unwrap().push(c);
    }
    parts.retain(|p| !p.trim().is_empty());
    parts
}

fn parse_params(list: &str) -> Result<Vec<Param>, String> {
    split_top_level(list)
        .iter()
        .map(|p| {
            let p = p.split_whitespace().collect::<Vec<_>>().join(" ");
            if let Some(inner) = p.strip_prefix("::emu::GlobalPtr<") {
                let close = inner
                    .rfind('>')
                    .ok_or_else(|| format!("cannot parse parameter `{p}`"))?;
                let name = inner[close + 1..].trim().to_string();
                let ty = inner[..close].trim();
                let (is_const, base) = match ty.strip_prefix("const ") {
                    Some(b) => (true, b.trim()),
                    None => (false, ty),
                };
                let dtype = dtype_of(base)
                    .ok_or_else(|| format!("buffer element type `{base}` in `{p}`"))?;
                Ok(Param {
                    name,
                    kind: ParamKind::Buffer {
                        dtype,
                        cpp: base.to_string(),
                        is_const,
                    },
                })
            } else {
                if p.contains('*') || p.contains('&') {
                    return Err(format!(
                        "raw pointer or reference parameter `{p}` (use GLOBAL(T))"
                    ));
                }
                let words: Vec<&str> = p
                    .split(' ')
                    .filter(|w| *w != "const" && *w != "__restrict")
                    .collect();
                let (name, ty) = words
                    .split_last()
                    .ok_or_else(|| format!("empty parameter in `{list}`"))?;
                let ty = ty.join(" ");
                let dtype = dtype_of(&ty).ok_or_else(|| format!("scalar type `{ty}` in `{p}`"))?;
                Ok(Param {
                    name: name.to_string(),
                    kind: ParamKind::Scalar { dtype, cpp: ty },
                })
            }
        })
        .collect()
}

fn dtype_of(ty: &str) -> Option<&'static str> {
    Some(match ty {
        "float" => "f32",
        "double" => "f64",
        "__half" => "f16",
        "__nv_bfloat16" => "bf16",
        "int" | "signed" | "signed int" | "int32_t" => "i32",
        "unsigned" | "unsigned int" | "uint32_t" => "u32",
        "long" | "long int" | "long long" | "long long int" | "int64_t" => "i64",
        "unsigned long" | "unsigned long long" | "uint64_t" | "size_t" => "u64",
        "short" | "int16_t" => "i16",
        "unsigned short" | "uint16_t" => "u16",
        "signed char" | "int8_t" | "char" => "i8",
        "unsigned char" | "uint8_t" | "bool" => "u8",
        _ => return None,
    })
}

fn namespace(dir: &str, stem: &str) -> String {
    format!("emu_{dir}_{stem}")
}

fn trampoline_name(k: &Kernel) -> String {
    format!("emu_tramp_{}", k.name)
}

/// Each source is included inside its own namespace, so helpers of the same name in two
/// kernel files (or a real kernel and its mutant) never meet at link time, as on the GPU
/// where every file is its own module.
fn wrapper_source(copy: &Path, dir: &str, stem: &str, kernels: &[Kernel]) -> String {
    let ns = namespace(dir, stem);
    let mut s = String::from("#include \"emu_abi.h\"\n");
    writeln!(
        s,
        "namespace {ns} {{\n#include {:?}\n}}\n",
        copy.display().to_string()
    )
    .unwrap();
    for k in kernels {
        let Ok(params) = &k.params else { continue };
        writeln!(
            s,
            "void {}(const EmuArg* a, const ::emu::Buffer* b) {{\n    {ns}::{}(",
            trampoline_name(k),
            k.name
        )
        .unwrap();
        for (i, p) in params.iter().enumerate() {
            let sep = if i + 1 < params.len() { "," } else { "" };
            match &p.kind {
                ParamKind::Buffer { cpp, is_const, .. } => {
                    let c = if *is_const { "const " } else { "" };
                    writeln!(
                        s,
                        "        ::emu::GlobalPtr<{c}{cpp}>(&b[a[{i}].bits], 0){sep}"
                    )
                    .unwrap();
                }
                ParamKind::Scalar { cpp, .. } => {
                    writeln!(s, "        ::emu::scalar<{cpp}>(a[{i}]){sep}").unwrap();
                }
            }
        }
        s.push_str("    );\n}\n");
    }
    s
}

fn registry_source(kernels: &[Kernel]) -> String {
    let mut s = String::from("#include \"emu_abi.h\"\n\n");
    for k in kernels.iter().filter(|k| k.params.is_ok()) {
        writeln!(
            s,
            "void {}(const EmuArg* a, const ::emu::Buffer* b);",
            trampoline_name(k)
        )
        .unwrap();
    }
    s.push_str("\nstatic const EmuKernel kernels[] = {\n");
    for k in kernels {
        let (params, tramp) = match &k.params {
            Ok(ps) => (
                ps.iter()
                    .map(|p| match &p.kind {
                        ParamKind::Buffer {
                            dtype, is_const, ..
                        } => format!(
                            "{}:{}{dtype}*",
                            p.name,
                            if *is_const { "const " } else { "" }
                        ),
                        ParamKind::Scalar { dtype, .. } => format!("{}:{dtype}", p.name),
                    })
                    .collect::<Vec<_>>()
                    .join(";"),
                trampoline_name(k),
            ),
            Err(reason) => (format!("unsupported: {reason}"), "nullptr".to_string()),
        };
        writeln!(
            s,
            "    {{{:?}, {:?}, {:?}, {:?}, {tramp}}},",
            k.dir, k.module, k.name, params
        )
        .unwrap();
    }
    s.push_str("    {nullptr, nullptr, nullptr, nullptr, nullptr},\n};\n\n");
    writeln!(
        s,
        "extern \"C\" size_t emu_kernel_count(void) {{ return {}; }}",
        kernels.len()
    )
    .unwrap();
    s.push_str("extern \"C\" const EmuKernel* emu_kernel_at(size_t i) { return &kernels[i]; }\n");
    s
}
