//! Compiles Java sources from build scripts with the JDK's `javac`.
//!
//! The JDK is found through `JAVA_HOME` (if set) or `javac` on `PATH`. Sources are compiled
//! for Java 17 (`--release 17`), the oldest JDK jvmwatch supports, so the classes load on
//! every newer JVM too.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `javac` to run: `$JAVA_HOME/bin/javac` when that exists, else `javac` from `PATH`.
pub fn javac() -> PathBuf {
    tool("javac")
}

/// A JDK tool (`javac`, `jar`) from `JAVA_HOME`, or the bare name to be found on `PATH`.
pub fn tool(name: &str) -> PathBuf {
    if let Some(home) = std::env::var_os("JAVA_HOME") {
        let p = Path::new(&home).join("bin").join(name);
        if p.exists() {
            return p;
        }
    }
    PathBuf::from(name)
}

/// All `.java` files below `dir`, sorted so builds are reproducible.
pub fn java_sources(dir: &Path) -> Vec<PathBuf> {
    files_with_extension(dir, "java")
}

/// All files below `dir` whose extension is `ext`, sorted.
pub fn files_with_extension(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == ext) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Compiles every `.java` file below each of `src_dirs` into `out_dir` and tells cargo to
/// rerun the build script when any of them changes. Panics with javac's own message on a
/// compile error (this runs in a build script, where a panic is the error report).
pub fn compile(src_dirs: &[&Path], out_dir: &Path) {
    compile_with(src_dirs, &[], out_dir)
}

/// Like [`compile`], with class directories or jars on the class path.
pub fn compile_with(src_dirs: &[&Path], classpath: &[&Path], out_dir: &Path) {
    let mut sources = Vec::new();
    for dir in src_dirs {
        println!("cargo:rerun-if-changed={}", dir.display());
        sources.extend(java_sources(dir));
    }
    for s in &sources {
        println!("cargo:rerun-if-changed={}", s.display());
    }
    println!("cargo:rerun-if-env-changed=JAVA_HOME");
    std::fs::create_dir_all(out_dir).expect("create class output directory");
    if sources.is_empty() {
        return;
    }
    let mut cmd = Command::new(javac());
    cmd.args(["--release", "17", "-encoding", "UTF-8", "-Xlint:-options", "-d"]).arg(out_dir);
    if !classpath.is_empty() {
        let cp = std::env::join_paths(classpath).expect("class path");
        cmd.arg("-cp").arg(cp);
    }
    let status = cmd
        .args(&sources)
        .status()
        .unwrap_or_else(|e| panic!("could not run javac ({e}); install JDK 17+ or set JAVA_HOME"));
    assert!(status.success(), "javac failed for {src_dirs:?}");
}

/// Packs the class tree in `classes` into `jar_path` with the JDK's `jar` tool.
pub fn jar(classes: &Path, jar_path: &Path) {
    let status = Command::new(tool("jar"))
        .arg("--create")
        .arg("--file")
        .arg(jar_path)
        .arg("-C")
        .arg(classes)
        .arg(".")
        .status()
        .unwrap_or_else(|e| panic!("could not run jar ({e})"));
    assert!(status.success(), "jar failed for {}", classes.display());
}

/// Sets the `JVMWATCH_VERSION` environment variable for the crate being built: the workspace
/// version and the git revision, `0.1.0 (git 1a2b3c4)`, or `0.1.0 (git unknown)` outside a git
/// checkout (a source tarball). The agent writes it into the ring header (32 bytes at most) and
/// `jvmwatch --version` prints it, so both sides of one build name the same build. Reruns the
/// build script when the checked-out commit changes.
pub fn emit_version() {
    let pkg = std::env::var("CARGO_PKG_VERSION").expect("CARGO_PKG_VERSION");
    let git = |args: &[&str]| -> Option<String> {
        let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
        let o = Command::new("git").args(args).current_dir(dir).output().ok()?;
        let s = String::from_utf8(o.stdout).ok()?.trim().to_string();
        (o.status.success() && !s.is_empty()).then_some(s)
    };
    let rev = git(&["rev-parse", "--short=7", "HEAD"]);
    // The files that move when HEAD does: HEAD itself, the branch's ref and packed refs.
    let mut watch = vec![git(&["rev-parse", "--path-format=absolute", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["rev-parse", "--symbolic-full-name", "HEAD"]).filter(|b| b.starts_with("refs/")) {
        watch.push(git(&["rev-parse", "--path-format=absolute", "--git-path", &branch]));
    }
    watch.push(git(&["rev-parse", "--path-format=absolute", "--git-path", "packed-refs"]));
    // (A path that does not exist would rerun the script on every build.)
    for p in watch.into_iter().flatten().filter(|p| Path::new(p).exists()) {
        println!("cargo:rerun-if-changed={p}");
    }
    let v = format!("{pkg} (git {})", rev.as_deref().unwrap_or("unknown"));
    assert!(v.len() <= 32, "version string {v:?} is longer than the ring header's 32 bytes");
    println!("cargo:rustc-env=JVMWATCH_VERSION={v}");
}
