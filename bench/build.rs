//! Compiles the Java workloads (java/bench) and embeds their class files in the harness
//! (`$OUT_DIR/classes.rs`), so the binary runs from anywhere: it writes them to a scratch
//! directory at start.
use std::fmt::Write;
use std::path::{Path, PathBuf};

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let classes = out.join("bench-classes");
    // Start clean so a class whose source was removed is not embedded any more.
    let _ = std::fs::remove_dir_all(&classes);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../java/bench");
    // The workloads use records and JFR streaming: Java 17 (they run on the bench's JDK only).
    javac_build::compile_for("17", &[&src], &[], &classes);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&classes)
        .expect("read class directory")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "class"))
        .collect();
    files.sort();
    let mut rs = String::from(
        "/// The Java workloads' class files: (file name, bytes).\npub static CLASSES: &[(&str, &[u8])] = &[\n",
    );
    for f in &files {
        let name = f.file_name().expect("file name").to_string_lossy();
        writeln!(rs, "    ({name:?}, include_bytes!({:?})),", f.display().to_string()).expect("write to string");
    }
    rs.push_str("];\n");
    std::fs::write(out.join("classes.rs"), rs).expect("write classes.rs");

    // The Java API cost program and the io.jvmwatch API it measures (with package folders).
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let api = out.join("api-classes");
    let _ = std::fs::remove_dir_all(&api);
    javac_build::compile(&[&root.join("java/api"), &root.join("java/apibench")], &api);
    let mut rs = String::from("/// ApiBench and the io.jvmwatch API: (relative path, bytes).\npub static API_CLASSES: &[(&str, &[u8])] = &[\n");
    for f in javac_build::files_with_extension(&api, "class") {
        let rel = f.strip_prefix(&api).expect("inside").to_string_lossy().replace('\\', "/");
        writeln!(rs, "    ({rel:?}, include_bytes!({:?})),", f.display().to_string()).expect("write to string");
    }
    rs.push_str("];\n");
    std::fs::write(out.join("api_classes.rs"), rs).expect("write api_classes.rs");
}
