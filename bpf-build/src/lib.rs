//! Ship a compiled BPF object with a crate, so that its users need no clang.
//!
//! A crate that embeds a BPF program keeps three files under version
//! control: the C sources (a directory), the object compiled from them, and
//! a small *digest file* next to the object that records which sources it was
//! compiled from. Its build script calls [`BpfObject::build`], which puts the
//! object at `$OUT_DIR/<name>` for `include_bytes!`:
//!
//! * **Default**: the sources' digest matches the digest file, so the
//!   prebuilt object is copied. No compiler is run; this is what every user
//!   of a published crate (and docs.rs) gets.
//! * **Sources changed** (a developer edited the C): the object is compiled
//!   from source with clang and a `cargo:warning` says the prebuilt object is
//!   stale. Without clang the build fails and says so; it never embeds an
//!   object that does not match its sources.
//! * **`PODNET_BPF_REBUILD=1`** (or the consuming crate's `rebuild-bpf`
//!   feature, which calls [`BpfObject::force_rebuild`]): always compile.
//! * **`PODNET_BPF_UPDATE=1`**: compile, then write the object and its digest
//!   file back into the source tree, so they can be committed.
//! * **`PODNET_BPF_CHECK=1`**: compile, and fail unless the result is
//!   byte-identical to the prebuilt object (what CI runs).
//!
//! The compiler is `$BPF_CLANG`, else `$CLANG`, else `clang` on `PATH`; the
//! debug sections are stripped with the `llvm-strip` next to it (or
//! `$LLVM_STRIP`), keeping BTF. Compilation is deterministic: the same clang on
//! the same sources gives the same bytes in any checkout directory, so CI can
//! rebuild and compare (see [`BpfObject::build`]).
//!
//! ```no_run
//! // build.rs of a crate with src/bpf/prog.bpf.c and prebuilt/prog.bpf.o
//! let obj = podnet_bpf_build::BpfObject::new("src/bpf", "prog.bpf.c", "prebuilt/prog.bpf.o")
//!     .clang_arg("-Wall");
//! if let Err(e) = obj.build() {
//!     eprintln!("{e}");
//!     std::process::exit(1);
//! }
//! ```

#![warn(
    clippy::missing_errors_doc,
    clippy::must_use_candidate,
    clippy::doc_markdown
)]

use std::env;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One BPF object: its C sources, the compilation unit, and where the
/// prebuilt copy lives (paths relative to the crate's manifest directory).
///
/// ```
/// let obj = podnet_bpf_build::BpfObject::new("src/bpf", "prog.bpf.c", "prebuilt/prog.bpf.o")
///     .clang_arg("-DDEBUG=0");
/// assert_eq!(obj.digest_path().to_str(), Some("prebuilt/prog.bpf.o.digest"));
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct BpfObject {
    source_dir: PathBuf,
    unit: String,
    prebuilt: PathBuf,
    clang_args: Vec<String>,
    force: bool,
}

/// Why [`BpfObject::build`] failed. The build script prints it and stops.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// Reading or writing a file failed.
    Io {
        /// What was being done, naming the file.
        what: String,
        /// The cause.
        source: io::Error,
    },
    /// The sources differ from what the prebuilt object was compiled from,
    /// and no compiler could be run to rebuild it.
    Stale {
        /// The prebuilt object.
        prebuilt: PathBuf,
        /// Why clang could not be run.
        reason: String,
    },
    /// `PODNET_BPF_CHECK=1`: the object compiled from the sources differs
    /// from the prebuilt one (or its digest file is out of date).
    Mismatch {
        /// The prebuilt object.
        prebuilt: PathBuf,
    },
    /// clang or llvm-strip ran and failed.
    Compile {
        /// The command line.
        command: String,
        /// Its standard error.
        stderr: String,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Io { what, .. } => f.write_str(what),
            BuildError::Stale { prebuilt, reason } => write!(
                f,
                "the BPF sources changed since {} was compiled, and {reason}; install clang \
                 (or name it with BPF_CLANG=...), or restore the sources",
                prebuilt.display()
            ),
            BuildError::Mismatch { prebuilt } => write!(
                f,
                "{} is not what its sources compile to; run `PODNET_BPF_UPDATE=1 cargo build` \
                 and commit the object with its digest file",
                prebuilt.display()
            ),
            BuildError::Compile { command, stderr } => {
                write!(f, "`{command}` failed:\n{stderr}")
            }
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> BuildError {
    let what = what.into();
    move |source| BuildError::Io { what, source }
}

impl BpfObject {
    /// `source_dir` holds every file the object is compiled from (all of them
    /// count for the digest); `unit` is the file in it that clang compiles;
    /// `prebuilt` is the committed object. Its digest file is `prebuilt` with
    /// `.digest` appended.
    pub fn new(source_dir: impl Into<PathBuf>, unit: &str, prebuilt: impl Into<PathBuf>) -> Self {
        BpfObject {
            source_dir: source_dir.into(),
            unit: unit.to_string(),
            prebuilt: prebuilt.into(),
            clang_args: Vec::new(),
            force: false,
        }
    }

    /// One more clang argument (they count for the digest too).
    pub fn clang_arg(mut self, arg: impl Into<String>) -> Self {
        self.clang_args.push(arg.into());
        self
    }

    /// Compile from source even when the prebuilt object is current.
    pub fn force_rebuild(mut self, yes: bool) -> Self {
        self.force = yes;
        self
    }

    /// The digest file next to the prebuilt object.
    #[must_use]
    pub fn digest_path(&self) -> PathBuf {
        let mut p = self.prebuilt.clone().into_os_string();
        p.push(".digest");
        PathBuf::from(p)
    }

    /// The digest of the sources and clang arguments, as written in the
    /// digest file (`fnv1a64 <16 hex digits>`).
    ///
    /// # Errors
    /// [`BuildError::Io`] when the source directory cannot be read.
    pub fn digest(&self) -> Result<String, BuildError> {
        let mut names: Vec<PathBuf> = Vec::new();
        collect(&self.source_dir, &mut names)?;
        names.sort();
        let mut h = Fnv::new();
        for arg in &self.clang_args {
            h.write(arg.as_bytes());
            h.write(&[0]);
        }
        for name in &names {
            let rel = name.strip_prefix(&self.source_dir).unwrap_or(name);
            h.write(rel.to_string_lossy().as_bytes());
            h.write(&[0]);
            let bytes = fs::read(name).map_err(io_err(format!("reading {}", name.display())))?;
            h.write(&bytes);
            h.write(&[0]);
        }
        Ok(format!("fnv1a64 {:016x}", h.0))
    }

    /// Whether the digest file matches the sources.
    ///
    /// # Errors
    /// [`BuildError::Io`] when the sources cannot be read.
    pub fn is_current(&self) -> Result<bool, BuildError> {
        let recorded = fs::read_to_string(self.digest_path()).unwrap_or_default();
        Ok(recorded.lines().next() == Some(self.digest()?.as_str()))
    }

    /// Run from a build script: put the object at `$OUT_DIR/<file name of
    /// prebuilt>` and return that path (see the crate docs for the modes).
    ///
    /// # Errors
    /// [`BuildError`] when the object cannot be produced.
    pub fn build(self) -> Result<PathBuf, BuildError> {
        for var in [
            "PODNET_BPF_REBUILD",
            "PODNET_BPF_UPDATE",
            "PODNET_BPF_CHECK",
            "BPF_CLANG",
            "CLANG",
            "LLVM_STRIP",
        ] {
            println!("cargo:rerun-if-env-changed={var}");
        }
        println!("cargo:rerun-if-changed={}", self.source_dir.display());
        println!("cargo:rerun-if-changed={}", self.prebuilt.display());
        println!("cargo:rerun-if-changed={}", self.digest_path().display());

        let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_else(|| "target/bpf".into()));
        let file_name = self
            .prebuilt
            .file_name()
            .map_or_else(|| "bpf.o".into(), std::borrow::ToOwned::to_owned);
        let out = out_dir.join(file_name);
        let update = flag("PODNET_BPF_UPDATE");
        let check = flag("PODNET_BPF_CHECK");
        let rebuild = update || check || self.force || flag("PODNET_BPF_REBUILD");

        if !rebuild && self.is_current()? {
            fs::copy(&self.prebuilt, &out).map_err(io_err(format!(
                "copying {} to {}",
                self.prebuilt.display(),
                out.display()
            )))?;
            return Ok(out);
        }
        let clang = compiler();
        if !rebuild {
            if let Err(reason) = probe(&clang) {
                return Err(BuildError::Stale {
                    prebuilt: self.prebuilt.clone(),
                    reason,
                });
            }
            println!(
                "cargo:warning={} is stale (its sources changed): compiled from source instead; \
                 run `PODNET_BPF_UPDATE=1 cargo build` to refresh it",
                self.prebuilt.display()
            );
        }
        self.compile(&clang, &out)?;
        if check && !update {
            let built = fs::read(&out).map_err(io_err(format!("reading {}", out.display())))?;
            let committed = fs::read(&self.prebuilt)
                .map_err(io_err(format!("reading {}", self.prebuilt.display())))?;
            if built != committed || !self.is_current()? {
                return Err(BuildError::Mismatch {
                    prebuilt: self.prebuilt.clone(),
                });
            }
        }
        if update {
            fs::copy(&out, &self.prebuilt)
                .map_err(io_err(format!("writing {}", self.prebuilt.display())))?;
            let digest = format!("{}\n{}\n", self.digest()?, clang_version(&clang));
            fs::write(self.digest_path(), digest)
                .map_err(io_err(format!("writing {}", self.digest_path().display())))?;
        }
        Ok(out)
    }

    fn compile(&self, clang: &Path, out: &Path) -> Result<(), BuildError> {
        let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| env::consts::ARCH.into());
        let (kernel_arch, multiarch) = match arch.as_str() {
            "x86_64" => ("x86", "x86_64-linux-gnu"),
            "aarch64" => ("arm64", "aarch64-linux-gnu"),
            "riscv64" => ("riscv", "riscv64-linux-gnu"),
            "powerpc64" => ("powerpc", "powerpc64le-linux-gnu"),
            "s390x" => ("s390", "s390x-linux-gnu"),
            other => (other, other),
        };
        let mut cmd = Command::new(clang);
        cmd.args(["-g", "-O2", "-target", "bpf", "-fno-stack-protector"])
            .arg(format!("-D__TARGET_ARCH_{kernel_arch}"))
            .arg(format!("-I/usr/include/{multiarch}"))
            // Relative paths and a fixed compilation dir keep the bytes the
            // same in every checkout.
            .arg("-fdebug-compilation-dir=.");
        // libbpf-sys exports its bpf/*.h headers to the build scripts of
        // crates that depend on it directly.
        if let Some(inc) = env::var_os("DEP_BPF_INCLUDE") {
            let inc = PathBuf::from(inc);
            cmd.arg(format!("-fdebug-prefix-map={}=/libbpf", inc.display()));
            cmd.arg("-I").arg(inc);
        }
        cmd.args(&self.clang_args)
            .arg("-c")
            .arg(self.source_dir.join(&self.unit))
            .arg("-o")
            .arg(out);
        run(&mut cmd)?;
        let mut strip = Command::new(llvm_strip(clang));
        strip.arg("-g").arg(out);
        run(&mut strip)
    }
}

fn flag(var: &str) -> bool {
    env::var(var).is_ok_and(|v| !v.is_empty() && v != "0")
}

fn compiler() -> PathBuf {
    env::var_os("BPF_CLANG")
        .or_else(|| env::var_os("CLANG"))
        .map_or_else(|| PathBuf::from("clang"), PathBuf::from)
}

/// `llvm-strip` from `$LLVM_STRIP`, else next to a clang named by path, else
/// the versioned name matching `clang-N`, else on `PATH`.
fn llvm_strip(clang: &Path) -> PathBuf {
    if let Some(s) = env::var_os("LLVM_STRIP") {
        return s.into();
    }
    let name = clang
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let strip = match name.strip_prefix("clang") {
        Some(suffix) if suffix.starts_with('-') => format!("llvm-strip{suffix}"),
        _ => "llvm-strip".to_string(),
    };
    match clang.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && dir.join(&strip).exists() => dir.join(strip),
        _ => strip.into(),
    }
}

fn probe(clang: &Path) -> Result<(), String> {
    match Command::new(clang).arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "`{} --version` exited with {}",
            clang.display(),
            o.status
        )),
        Err(e) => Err(format!("`{}` cannot be run ({e})", clang.display())),
    }
}

fn clang_version(clang: &Path) -> String {
    Command::new(clang)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_default()
}

fn run(cmd: &mut Command) -> Result<(), BuildError> {
    let line = format!("{cmd:?}");
    match cmd.output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(BuildError::Compile {
            command: line,
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }),
        Err(e) => Err(BuildError::Compile {
            command: line,
            stderr: e.to_string(),
        }),
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), BuildError> {
    let entries = fs::read_dir(dir).map_err(io_err(format!("reading {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(io_err(format!("reading {}", dir.display())))?;
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// FNV-1a, 64 bits: enough to notice an edit; not a security boundary.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_changes_with_content_and_args() {
        let dir = env::temp_dir().join(format!("podnet-bpf-build-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("a.bpf.c"), "int x;").unwrap();
        let obj = BpfObject::new(&dir, "a.bpf.c", dir.join("a.o"));
        let d1 = obj.digest().unwrap();
        assert_eq!(d1, obj.digest().unwrap());
        assert_ne!(d1, obj.clone().clang_arg("-DX").digest().unwrap());
        fs::write(dir.join("a.bpf.c"), "int y;").unwrap();
        assert_ne!(d1, obj.digest().unwrap());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn strip_follows_clang() {
        assert_eq!(
            llvm_strip(Path::new("clang-14")),
            PathBuf::from("llvm-strip-14")
        );
        assert_eq!(llvm_strip(Path::new("clang")), PathBuf::from("llvm-strip"));
    }
}
