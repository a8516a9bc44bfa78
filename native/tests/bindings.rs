//! The checked-in JVMTI bindings are what `native/scripts/regen-bindings.sh` generates from
//! JDK 17's `jvmti.h`. Needs bindgen-cli and libclang; without them the check says so and
//! passes, since the bindings are checked in precisely so that builds do not need them.

use std::path::Path;
use std::process::Command;

#[test]
fn checked_in_bindings_match_the_generator() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let header = Path::new("/usr/lib/jvm/java-17-openjdk-amd64/include/jvmti.h");
    let have_bindgen = Command::new("bindgen").arg("--version").output().is_ok_and(|o| o.status.success());
    if !have_bindgen || !header.exists() {
        eprintln!("skipped: bindgen-cli or JDK 17 headers not installed (see native/scripts/regen-bindings.sh)");
        return;
    }
    let out = std::env::temp_dir().join(format!("jvmwatch-bindings-{}.rs", std::process::id()));
    let status = Command::new(here.join("scripts/regen-bindings.sh"))
        .arg(&out)
        .env("JAVA_HOME", "/usr/lib/jvm/java-17-openjdk-amd64")
        .status()
        .unwrap();
    assert!(status.success());
    let fresh = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    let checked_in = std::fs::read_to_string(here.join("src/bindings.rs")).unwrap();
    assert!(fresh == checked_in, "native/src/bindings.rs is stale: run native/scripts/regen-bindings.sh");
}
