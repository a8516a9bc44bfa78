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

/// Every command's `--help` ends with examples, and every option of the command (but
/// `--help`) is used in one of them.
#[test]
fn every_command_and_option_has_an_example() {
    let help = |args: &[&str]| {
        let out = std::process::Command::new(jvmwatch()).args(args).arg("--help").output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let top = help(&[]);
    let subs: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|s| s != "help")
        .collect();
    let mut cmds: Vec<Vec<&str>> = vec![vec![]];
    cmds.extend(subs.iter().map(|s| vec![s.as_str()]));
    for cmd in cmds {
        let h = help(&cmd);
        let name = format!("jvmwatch {}", cmd.join(" ")).trim().to_string();
        let examples: Vec<&str> = h.lines().skip_while(|l| *l != "Examples:").skip(1).collect();
        assert!(!examples.is_empty(), "`{name} --help` has no examples:\n{h}");
        if let Some(sub) = cmd.first() {
            assert!(examples.iter().any(|e| e.contains(&format!("jvmwatch {sub}"))), "{name}: no example runs it");
        }
        let options = h.lines().skip_while(|l| *l != "Options:").skip(1).take_while(|l| !l.is_empty());
        for line in options {
            let long = line.split_whitespace().find(|w| w.starts_with("--")).expect("a long option");
            let long = long.trim_end_matches(',');
            if long == "--help" {
                continue;
            }
            assert!(
                examples.iter().any(|e| e.split_whitespace().any(|w| w == long || w.starts_with(&format!("{long}=")))),
                "`{name}`: option {long} is in no example:\n{h}"
            );
        }
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
