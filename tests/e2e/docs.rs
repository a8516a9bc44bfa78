//! The docs a newcomer starts from: the README's first screen (the value, the two commands, the
//! console screenshot), the docs index covering every document, and no broken relative link.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn readme_first_screen_has_the_value_the_two_commands_and_the_screenshot() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    // A first screen: about 30 lines of a terminal or a repository page.
    let first: String = readme.lines().take(30).collect::<Vec<_>>().join("\n");
    assert!(first.contains("-agentpath:$(jvmwatch agent-path)"), "the first command");
    assert!(first.contains("jvmwatch serve"), "the second command");
    assert!(first.contains("](docs/img/console.png)"), "the screenshot");
    let png = std::fs::read(root().join("docs/img/console.png")).expect("docs/img/console.png");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "the screenshot is a PNG (tests/e2e/console.rs takes it)");
}

/// Relative link targets (`](path)` and `](path#anchor)`) of a Markdown text.
fn links(text: &str) -> Vec<String> {
    text.split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .filter(|l| !l.contains("://") && !l.starts_with('#') && !l.starts_with("mailto:"))
        .map(|l| l.split('#').next().unwrap().to_string())
        .collect()
}

#[test]
fn docs_index_lists_every_document_and_links_resolve() {
    let docs = root().join("docs");
    let index = std::fs::read_to_string(docs.join("README.md")).expect("docs/README.md");
    let listed = links(&index);
    let mut md: Vec<PathBuf> = std::fs::read_dir(&docs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    md.sort();
    for p in &md {
        let name = p.file_name().unwrap().to_str().unwrap();
        if name != "README.md" {
            assert!(listed.iter().any(|l| l == name), "docs/README.md does not list {name}");
        }
    }
    md.push(root().join("README.md"));
    md.push(root().join("deploy/kubernetes/README.md"));
    for p in &md {
        let text = std::fs::read_to_string(p).unwrap();
        for l in links(&text) {
            let target = p.parent().unwrap_or(Path::new(".")).join(&l);
            assert!(target.exists(), "{}: broken link {l}", p.display());
        }
    }
}
