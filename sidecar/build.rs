//! Compiles the bundled demo workload (java/demo, which uses the io.jvmwatch API in java/api)
//! for `jvmwatch demo`, and generates `demo_classes.rs`: every class file as
//! `(relative path, bytes)`, embedded in the binary.
use std::fmt::Write;
use std::path::{Path, PathBuf};

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let classes = out.join("demo-classes");
    let _ = std::fs::remove_dir_all(&classes);
    javac_build::compile(&[&root.join("java/demo"), &root.join("java/api")], &classes);
    let files = javac_build::files_with_extension(&classes, "class");
    let mut src = String::from("/// The demo's class files: (path relative to the class directory, bytes).\n");
    src.push_str("pub static DEMO_CLASSES: &[(&str, &[u8])] = &[\n");
    for f in &files {
        let rel = f.strip_prefix(&classes).expect("inside").to_string_lossy().replace('\\', "/");
        let _ = writeln!(src, "    ({rel:?}, include_bytes!({:?})),", f.display().to_string());
    }
    src.push_str("];\n");
    std::fs::write(out.join("demo_classes.rs"), src).expect("write demo_classes.rs");
    javac_build::emit_version();
}
