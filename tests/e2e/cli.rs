//! docs/cli.md holds the `--help` output of every subcommand; it must match the binary.

use jvmwatch_tests::*;

#[test]
fn cli_docs_match_help_output() {
    let doc = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cli.md")).unwrap();
    let top = std::process::Command::new(jvmwatch()).arg("--help").output().unwrap();
    let top = String::from_utf8(top.stdout).unwrap();
    // Every subcommand `--help` lists (but `help`).
    let subs: Vec<&str> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|s| *s != "help")
        .collect();
    assert!(subs.contains(&"inspect") && subs.contains(&"serve"), "{top}");
    let mut cmds = vec![vec![]];
    cmds.extend(subs.iter().map(|s| vec![*s]));
    for cmd in &cmds {
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
