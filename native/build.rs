//! Compiles the in-VM Java classes (java/agent) that the agent embeds and defines at VM init.
use std::path::{Path, PathBuf};

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../java/agent");
    javac_build::compile(&[&src], &out.join("agent-classes"));
    javac_build::emit_version();
}
