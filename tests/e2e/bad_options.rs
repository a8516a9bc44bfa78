//! A bad agent option: one clear line, and the JVM runs its program without the agent —
//! unless strict=true, which refuses to start.

use jvmwatch_tests::*;

fn jvmwatch_lines(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr).lines().filter(|l| l.contains("jvmwatch")).map(str::to_string).collect()
}

#[test]
fn bad_option_warns_once_and_program_runs() {
    for jdk in jdks() {
        let dir = tempdir();
        for (opts, needle) in
            [("size=abc", "size=abc"), ("bogus=1", "unknown option 'bogus'"), ("interval=1ms", "interval=1ms")]
        {
            let out = run(java_cmd(&jdk, opts, &[], "Hello", &[], dir.path()));
            assert!(out.status.success(), "JDK {} {opts}", jdk.label);
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "program ran");
            let lines = jvmwatch_lines(&out.stderr);
            assert_eq!(lines.len(), 1, "JDK {} {opts}: {lines:?}", jdk.label);
            assert!(lines[0].contains(needle) && lines[0].contains("continues without jvmwatch"), "{}", lines[0]);
        }
        // Nothing was written anywhere in the working directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}

#[test]
fn strict_refuses_to_start() {
    let jdk = &jdks()[0];
    let dir = tempdir();
    let out = run(java_cmd(jdk, "size=abc,strict=true", &[], "Hello", &[], dir.path()));
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("program ran"));
    let lines = jvmwatch_lines(&out.stderr);
    assert!(lines.iter().any(|l| l.contains("size=abc") && l.contains("will not start")), "{lines:?}");
}

#[test]
fn unwritable_directory_warns_and_program_runs() {
    let jdk = &jdks()[0];
    let dir = tempdir();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let out = run(java_cmd(jdk, &format!("dir={}", file.display()), &[], "Hello", &[], dir.path()));
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "program ran");
    let lines = jvmwatch_lines(&out.stderr);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("cannot start"), "{}", lines[0]);
}

#[test]
fn existing_path_is_never_overwritten() {
    let jdk = &jdks()[0];
    let dir = tempdir();
    let ring = dir.path().join("taken.ring");
    std::fs::write(&ring, b"precious").unwrap();
    let out = run(java_cmd(jdk, &format!("path={}", ring.display()), &[], "Hello", &[], dir.path()));
    assert!(out.status.success());
    assert_eq!(std::fs::read(&ring).unwrap(), b"precious");
    assert!(jvmwatch_lines(&out.stderr)[0].contains("File exists"));
}

#[test]
fn a_full_ring_filesystem_warns_once_and_the_program_runs() {
    // A 64 KiB tmpfs cannot hold a ring (they are megabytes): ENOSPC at agent start.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a tiny tmpfs needs root");
        return;
    }
    let jdk = &jdks()[0];
    let dir = tempdir();
    let mnt = dir.path().join("tiny");
    std::fs::create_dir(&mnt).unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs"])
        .arg(&mnt)
        .status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let out = run(java_cmd(jdk, &format!("dir={}", mnt.display()), &[], "Hello", &[], dir.path()));
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "program ran");
    let lines = jvmwatch_lines(&out.stderr);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("cannot start") && lines[0].contains("No space left"), "{}", lines[0]);
    // Nothing half-made is left behind (the temporary file is removed).
    assert_eq!(std::fs::read_dir(&mnt).unwrap().count(), 0);
}
