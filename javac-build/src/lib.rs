//! Compiles Java sources from build scripts with the JDK's `javac`.
//!
//! The JDK is found through `JAVA_HOME` (if set) or `javac` on `PATH`. Sources are compiled
//! for Java 11 (`--release 11`), the oldest JDK jvmwatch supports, so the classes load on
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
    compile_for(RELEASE, src_dirs, classpath, out_dir)
}

/// The Java release everything that runs in an application's JVM is compiled for: the agent's
/// embedded classes, the API jar, the test scenarios and the demo.
pub const RELEASE: &str = "11";

/// Like [`compile_with`] for another `--release`: only for programs that never run in an
/// application's JVM (the benchmark workloads use records and JFR streaming, Java 17).
pub fn compile_for(release: &str, src_dirs: &[&Path], classpath: &[&Path], out_dir: &Path) {
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
    cmd.args(["--release", release, "-encoding", "UTF-8", "-Xlint:-options", "-d"]).arg(out_dir);
    if !classpath.is_empty() {
        let cp = std::env::join_paths(classpath).expect("class path");
        cmd.arg("-cp").arg(cp);
    }
    let status = cmd
        .args(&sources)
        .status()
        .unwrap_or_else(|e| panic!("could not run javac ({e}); install JDK 11+ or set JAVA_HOME"));
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
