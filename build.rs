//! Compiles the Java side that is not embedded in the agent:
//! - `java/api` → the `io.jvmwatch` application API, packed as `jvmwatch-api.jar` beside the
//!   agent (`target/<profile>/jvmwatch-api.jar`);
//! - `java/scenarios` → the end-to-end test programs (they use the API); their class directory
//!   reaches the tests as SCENARIO_CLASSES, the API jar as API_JAR.
use std::path::{Path, PathBuf};

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let api_classes = out.join("api-classes");
    javac_build::compile(&[&root.join("java/api")], &api_classes);
    // OUT_DIR is target/<profile>/build/<pkg>-<hash>/out: the jar goes to target/<profile>.
    let profile_dir = out.ancestors().nth(3).expect("target/<profile>");
    let jar = profile_dir.join("jvmwatch-api.jar");
    let _ = std::fs::remove_file(&jar);
    javac_build::jar(&api_classes, &jar);
    let scenarios = out.join("scenarios");
    javac_build::compile_with(&[&root.join("java/scenarios")], &[&api_classes], &scenarios);
    println!("cargo:rustc-env=SCENARIO_CLASSES={}", scenarios.display());
    println!("cargo:rustc-env=API_JAR={}", jar.display());
    println!("cargo:rustc-env=API_CLASSES={}", api_classes.display());
}
