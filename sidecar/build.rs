//! Compiles the bundled demo workload (java/demo) that `jvmwatch demo` runs.
use std::path::{Path, PathBuf};

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../java/demo");
    javac_build::compile(&[&src], &out.join("demo-classes"));
}
