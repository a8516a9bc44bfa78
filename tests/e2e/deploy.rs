//! Offline checks of the deployment files under deploy/kubernetes: the manifests validate
//! against the Kubernetes schemas (`kubernetes-validate`, bundled schemas, no cluster), the
//! ConfigMap's rules file is accepted by the real `jvmwatch serve --rules`, and every HTTP path
//! a probe or a Prometheus monitor uses is a route of the real sidecar — reached the way the pod
//! reaches it (bearer token from a file, exec probes run through `/bin/sh` and wget).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use jvmwatch_tests::http::{get, request};
use jvmwatch_tests::*;

/// The Kubernetes version whose schemas the manifests are checked against (kubernetes-validate
/// ships the schemas of several versions; no network is used).
const K8S_VERSION: &str = "1.30.0";
/// Custom resources: not in the Kubernetes schemas. They are parsed, their schema is skipped.
const CRD_KINDS: &[&str] = &["PodMonitor", "ServiceMonitor", "ScaledObject"];
/// The sidecar's address in the pod, as the manifests write it.
const POD_ADDR: &str = "127.0.0.1:7457";
/// Where the pod mounts the token.
const POD_TOKEN: &str = "/etc/jvmwatch/token";

fn k8s_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

/// Every YAML file under deploy/kubernetes with its text, sorted by name.
fn manifests() -> Vec<(PathBuf, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(k8s_dir())
        .expect("deploy/kubernetes")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "expected the manifests in {}: {files:?}", k8s_dir().display());
    files.into_iter().map(|p| (p.clone(), std::fs::read_to_string(&p).unwrap())).collect()
}

/// The `kind:` of each document of a manifest (top-level keys only).
fn kinds(text: &str) -> Vec<String> {
    text.lines().filter_map(|l| l.strip_prefix("kind:")).map(|k| k.trim().to_string()).collect()
}

fn have_validator() -> bool {
    let have = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        assert_ne!(std::env::var("JVMWATCH_REQUIRE_K8S_VALIDATE").as_deref(), Ok("1"), "kubernetes-validate missing");
        eprintln!("skipped: kubernetes-validate not installed (scripts/test.sh installs it with pip)");
    }
    have
}

#[test]
fn kubernetes_manifests_validate_against_the_schemas() {
    if !have_validator() {
        return;
    }
    for (path, text) in manifests() {
        let out = Command::new("python3")
            .args(["-m", "kubernetes_validate"])
            .args(["-k", K8S_VERSION, "--strict"])
            .arg(&path)
            .output()
            .expect("run kubernetes-validate");
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        eprintln!("{}", said.trim_end());
        // A YAML error or a schema violation is exit status 1, for custom kinds too.
        assert!(out.status.success(), "{} does not validate:\n{said}", path.display());
        let kinds = kinds(&text);
        assert!(!kinds.is_empty(), "{}: no kind", path.display());
        for kind in &kinds {
            if CRD_KINDS.contains(&kind.as_str()) {
                // Parsed, but no schema: the only thing the validator may warn about.
                assert!(said.contains(&format!("Couldn't find schema for kind {kind}")), "{kind}: {said}");
            } else {
                assert!(said.contains(" passed for resource "), "{kind} in {} not checked:\n{said}", path.display());
            }
        }
        for line in said.lines().filter(|l| l.starts_with("WARN") || l.starts_with("ERROR")) {
            assert!(
                line.contains("Couldn't find schema for kind")
                    && CRD_KINDS.iter().any(|k| line.contains(&format!("kind {k} "))),
                "unexpected: {line}"
            );
        }
    }
}

/// The `rules.toml` of configmap.yaml: the block scalar after `rules.toml: |`, de-indented.
fn configmap_rules() -> String {
    let text = std::fs::read_to_string(k8s_dir().join("configmap.yaml")).unwrap();
    let mut lines = text.lines().skip_while(|l| l.trim() != "rules.toml: |").skip(1).peekable();
    let indent = lines.peek().map(|l| l.len() - l.trim_start().len()).expect("rules.toml block");
    assert!(indent > 0);
    let mut out = String::new();
    for l in lines {
        if !l.trim().is_empty() && l.len() - l.trim_start().len() < indent {
            break;
        }
        out.push_str(l.get(indent..).unwrap_or(""));
        out.push('\n');
    }
    assert!(out.contains("[[rule]]"), "{out}");
    out
}

/// Paths (with query) of the sidecar that the manifests use: `http://127.0.0.1:7457/...` in exec
/// probes, `path:` of the Prometheus monitors' endpoints.
fn used_paths() -> Vec<String> {
    let mut paths = Vec::new();
    for (_, text) in manifests() {
        let prefix = format!("http://{POD_ADDR}");
        for (i, _) in text.match_indices(&prefix) {
            let rest = &text[i + prefix.len()..];
            let end = rest.find(|c: char| c == '"' || c == '\'' || c.is_whitespace()).unwrap_or(rest.len());
            paths.push(rest[..end].to_string());
        }
        if kinds(&text).iter().any(|k| k == "PodMonitor" || k == "ServiceMonitor") {
            for l in text.lines().map(str::trim) {
                if let Some(p) = l.strip_prefix("path:").or_else(|| l.strip_prefix("- path:")) {
                    paths.push(p.trim().trim_matches('"').to_string());
                }
            }
        }
    }
    paths.sort();
    paths.dedup();
    paths
}

/// The `/bin/sh -c` strings of the exec probes in deployment.yaml (YAML plain or single-quoted).
fn exec_probe_commands() -> Vec<String> {
    let text = std::fs::read_to_string(k8s_dir().join("deployment.yaml")).unwrap();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut out = Vec::new();
    for w in lines.windows(3) {
        if w[0] == "- /bin/sh" && w[1] == "- -c" {
            let cmd = w[2].strip_prefix("- ").expect("a list item");
            let cmd = match cmd.strip_prefix('\'').and_then(|c| c.strip_suffix('\'')) {
                Some(quoted) => quoted.replace("''", "'"),
                None => cmd.to_string(),
            };
            out.push(cmd);
        }
    }
    out
}

#[test]
fn probe_and_monitor_paths_are_routes_of_the_sidecar_with_the_configmaps_rules() {
    let work = tempdir();
    let rings = work.path().join("rings");
    let rules = work.path().join("rules.toml");
    std::fs::write(&rules, configmap_rules()).unwrap();
    let token = "k8s-test-token-0123456789abcdef";
    let token_file = work.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap(); // a Secret's value may end in a newline
    let state = work.path().join("state");
    // The pod's sidecar listens beyond loopback, where every route but /healthz needs the token;
    // --token-for-reads gives the same rule on the loopback address a test can use. A rules file
    // serve refuses makes it exit 2 before it prints its address, and start() fails.
    let mut svc = Service::start(
        &rings,
        &[
            "--token-file",
            token_file.to_str().unwrap(),
            "--token-for-reads",
            "--rules",
            rules.to_str().unwrap(),
            "--state-dir",
            state.to_str().unwrap(),
        ],
    );
    assert!(svc.running(), "serve refused the ConfigMap's rules.toml");
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str())];
    let with_token = |p: &str| request(svc.addr, "GET", p, &auth);
    assert_eq!(with_token("/api/v1/decisions").status, 200, "the controller runs");

    let paths = used_paths();
    eprintln!("paths used by probes and monitors: {paths:?}");
    for want in ["/healthz", "/metrics", "/api/v1/live?app=shop", "/api/v1/ready?app=shop"] {
        assert!(paths.iter().any(|p| p == want), "{want} not used by the manifests: {paths:?}");
    }

    let answer = |label: &str| -> Vec<(String, u16, String)> {
        paths
            .iter()
            .map(|p| {
                let r = with_token(p);
                eprintln!("{label}: GET {p} -> {} {}", r.status, r.text().chars().take(160).collect::<String>());
                (p.clone(), r.status, r.text())
            })
            .collect()
    };
    for (p, status, body) in answer("no JVM") {
        assert_ne!(status, 404, "{p} is not a route of the sidecar: {body}");
        match p.as_str() {
            "/healthz" | "/metrics" => assert_eq!(status, 200, "{p}: {body}"),
            // No JVM of the app: live (nothing to restart), not ready.
            "/api/v1/live?app=shop" => assert_eq!(status, 200, "{p}: {body}"),
            "/api/v1/ready?app=shop" => assert_eq!(status, 503, "{p}: {body}"),
            _ => assert!(status == 200 || status == 503, "{p}: {status} {body}"),
        }
        if p != "/healthz" {
            assert_eq!(get(svc.addr, &p).status, 401, "{p} without the token");
        }
    }
    // The series the autoscaler manifests query exist.
    let metrics = with_token("/metrics").text();
    for family in ["jvmwatch_scale_recommendation", "jvmwatch_rule_active"] {
        assert!(metrics.contains(&format!("# TYPE {family} gauge")), "{family} missing:\n{metrics}");
    }
    for f in ["keda-scaledobject.yaml", "hpa.yaml"] {
        let t = std::fs::read_to_string(k8s_dir().join(f)).unwrap();
        assert!(t.contains("jvmwatch_scale_recommendation"), "{f}");
    }

    // A JVM of the app "shop", started the way the Deployment starts it (dir=, -Djvmwatch.app).
    let jdk = &jdks()[0];
    let mut jvm = spawn(java_cmd(
        jdk,
        &format!("dir={}", rings.display()),
        &["-Xmx64m", "-Djvmwatch.app=shop"],
        "Sleeper",
        &[],
        work.path(),
    ));
    let ready =
        wait_for(Duration::from_secs(60), || (with_token("/api/v1/ready?app=shop").status == 200).then_some(()));
    assert!(ready.is_some(), "never ready: {}", with_token("/api/v1/ready?app=shop").text());
    for (p, status, body) in answer("JVM of shop running") {
        assert_eq!(status, 200, "{p}: {body}");
    }
    // The recommendation: 1 JVM, no scale rule holding (the rules' windows are still warming up).
    let scale = wait_for(Duration::from_secs(30), || {
        let r = with_token("/api/v1/apps/shop/scale");
        (r.status == 200).then(|| r.json())
    })
    .unwrap_or_else(|| {
        let m = with_token("/metrics").text();
        let lines: Vec<&str> = m.lines().filter(|l| l.starts_with("jvmwatch_scale_recommendation")).collect();
        panic!("/api/v1/apps/shop/scale: {} (exports: {lines:?})", with_token("/api/v1/apps/shop/scale").text())
    });
    eprintln!("GET /api/v1/apps/shop/scale -> {scale}");
    assert_eq!((scale["current"].as_u64(), scale["desired"].as_u64()), (Some(1), Some(1)), "{scale}");
    let metrics = with_token("/metrics").text();
    assert!(metrics.contains("jvmwatch_scale_recommendation{app=\"shop\"} 1"), "{metrics}");
    for rule in ["slow", "quiet", "hung"] {
        assert!(
            metrics.contains(&format!("jvmwatch_rule_active{{app=\"shop\",rule=\"{rule}\"}} 0")),
            "{rule}:\n{metrics}"
        );
    }

    // The exec probes themselves, as the kubelet runs them (token read from the file by the
    // shell), pointed at this service.
    let have_wget = Command::new("wget").arg("--version").output().is_ok_and(|o| o.status.success());
    let probes = exec_probe_commands();
    assert_eq!(probes.len(), 3, "{probes:?}");
    if have_wget {
        let addr = svc.addr.to_string();
        for cmd in &probes {
            let local = cmd.replace(POD_ADDR, &addr).replace(POD_TOKEN, token_file.to_str().unwrap());
            let st = Command::new("/bin/sh").args(["-c", &local]).status().unwrap();
            eprintln!("exec probe `{local}` -> {st}");
            assert!(st.success(), "{cmd}");
        }
        // Once the JVM is gone the readiness probe fails (liveness stays 200: in the pod a dead
        // JVM ends its container by itself).
        let _ = jvm.kill();
        let _ = jvm.wait();
        let ready_cmd = probes.iter().find(|c| c.contains("/api/v1/ready")).unwrap();
        let local = ready_cmd.replace(POD_ADDR, &addr).replace(POD_TOKEN, token_file.to_str().unwrap());
        let failed = wait_for(Duration::from_secs(30), || {
            (!Command::new("/bin/sh").args(["-c", &local]).status().unwrap().success()).then_some(())
        });
        assert!(failed.is_some(), "the readiness probe still passes after the JVM was killed");
    } else {
        eprintln!("skipped running the exec probes: wget not installed");
        let _ = jvm.kill();
    }
    assert!(svc.running());
}
