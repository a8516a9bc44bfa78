//! docs/cli.md holds the `--help` output of every subcommand; it must match the binary.

use jvmwatch_tests::*;

#[test]
fn cli_docs_match_help_output() {
    let doc = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cli.md")).unwrap();
    for cmd in [&[][..], &["inspect"][..], &["serve"][..], &["demo"][..]] {
        let out = std::process::Command::new(jvmwatch()).args(cmd).arg("--help").output().unwrap();
        assert!(out.status.success());
        let help = String::from_utf8(out.stdout).unwrap();
        let block = format!("```text\n{help}```");
        assert!(doc.contains(&block), "docs/cli.md is stale for `jvmwatch {}`:\n{help}", cmd.join(" "));
    }
}

#[test]
fn usage_errors_exit_2_with_a_message() {
    for args in [&["inspect"][..], &["serve", "--listen", "not-an-address"][..], &["bogus"][..]] {
        let out = std::process::Command::new(jvmwatch()).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
}
