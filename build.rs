//! Compiles the Java test scenarios (java/scenarios) for the end-to-end tests; their class
//! directory reaches the tests as the SCENARIO_CLASSES environment variable.
use std::path::{Path, PathBuf};

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("scenarios");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("java/scenarios");
    javac_build::compile(&[&src], &out);
    println!("cargo:rustc-env=SCENARIO_CLASSES={}", out.display());
}
