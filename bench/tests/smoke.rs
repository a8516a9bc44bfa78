//! Runs the harness end to end with tiny sizes (`all --smoke --json`) against the built agent
//! and sidecar, and checks that every section is there with sane values. No timing assertions:
//! figures must exist and be positive, and no committed event may be lost.

use std::process::Command;

use serde_json::Value;

fn f(v: &Value, what: &str) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

fn positive(v: &Value, what: &str) {
    let x = f(v, what);
    assert!(x > 0.0 && x.is_finite(), "{what} = {x}, expected > 0");
}

fn status_ok_or_skipped(c: &Value, skippable: &[&str]) -> bool {
    let name = c["name"].as_str().unwrap_or("?");
    let status = c["status"].as_str().unwrap_or("?");
    if status == "ok" {
        return true;
    }
    assert!(
        skippable.contains(&name) && status.starts_with("skipped: serve not available"),
        "{name}: status {status:?} (errors: {})",
        c["errors"]
    );
    false
}

#[test]
fn all_smoke_produces_every_section_with_sane_values() {
    let out = Command::new(env!("CARGO_BIN_EXE_jvmwatch-bench"))
        .args(["all", "--smoke", "--json", "--no-save"])
        .output()
        .expect("run jvmwatch-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "jvmwatch-bench all --smoke failed:\n{stderr}");
    let r: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(r["mode"], "smoke");
    positive(&r["machine"]["cpus"], "machine.cpus");
    for part in ["agent", "sidecar"] {
        let id = r["build"][part].as_str().unwrap_or("");
        assert!(id.starts_with("crc32 ") && id.ends_with(" bytes"), "build.{part} is {id:?}");
    }

    // 1. Throughput: two workloads, twelve configurations, baseline ratio 1.
    let workloads = r["throughput"]["workloads"].as_array().expect("throughput.workloads");
    assert_eq!(workloads.len(), 2);
    for w in workloads {
        let configs = w["configs"].as_array().expect("configs");
        let names: Vec<&str> = configs.iter().map(|c| c["name"].as_str().unwrap_or("?")).collect();
        assert_eq!(
            names,
            [
                "none",
                "hsperfdata",
                "jvmwatch",
                "jvmwatch-monitor-off",
                "jvmwatch-gc-notify",
                "jvmwatch-gc-poll-100ms",
                "jvmwatch+sidecar",
                "jfr-default",
                "jfr-profile",
                "gc-log",
                "mxbean-10hz",
                "none+waker"
            ]
        );
        assert_eq!(f(&configs[0]["ratio"], "baseline ratio"), 1.0);
        for c in configs {
            if !status_ok_or_skipped(c, &["jvmwatch+sidecar"]) {
                continue;
            }
            let what = format!("{} {}", w["name"], c["name"]);
            positive(&c["summary"]["median"], &format!("{what} median"));
            positive(&c["ratio"], &format!("{what} ratio"));
            positive(&c["cpu_per_op_ns"]["median"], &format!("{what} CPU per op"));
            let ci = &c["paired_overhead_pct"];
            assert!(
                f(&ci["lo"], "ci lo") <= f(&ci["mean"], "ci mean")
                    && f(&ci["mean"], "ci mean") <= f(&ci["hi"], "ci hi")
            );
            for run in c["runs"].as_array().expect("runs") {
                assert!(["settled", "cap"].contains(&run["warmup_end"].as_str().unwrap_or("?")), "{what}: {run}");
                if w["name"] == "gc-alloc" && c["name"] == "jvmwatch" {
                    assert!(f(&run["monitor_cpu_ns_per_gc"], "monitor CPU per GC") >= 0.0);
                }
            }
            if c["name"].as_str().is_some_and(|n| n.starts_with("jvmwatch")) {
                for run in c["runs"].as_array().expect("runs") {
                    positive(&run["agent"]["events"], &format!("{what} agent events"));
                    positive(&run["agent_cpu_pct"], &format!("{what} agent threads' CPU"));
                    assert_eq!(run["agent"]["lost"], 0, "{what}: events lost in the ring");
                }
            }
        }
    }

    // Sampler cost: one JVM per thread count, a positive cost per sample.
    let rows = r["sampler"]["rows"].as_array().expect("sampler.rows");
    assert_eq!(rows.len(), 2, "sampler rows: {rows:?} (errors: {})", r["sampler"]["errors"]);
    for row in rows {
        positive(&row["us_per_sample"]["median"], &format!("sampler µs per sample at {} threads", row["threads"]));
    }
    // Short-lived JVMs: two lives, four configurations each, every figure measured.
    let lives = r["short_lived"]["lives"].as_array().expect("short_lived.lives");
    assert_eq!(lives.len(), 2, "short-lived lives (errors: {})", r["short_lived"]["errors"]);
    for life in lives {
        let rows = life["rows"].as_array().expect("rows");
        let names: Vec<&str> = rows.iter().map(|c| c["config"].as_str().unwrap_or("?")).collect();
        assert_eq!(names, ["none", "jvmwatch", "jvmwatch-monitor-off", "jfr-default"]);
        for row in rows {
            let what = format!("short-lived {} ms {}", life["life_ms"], row["config"]);
            for k in ["start_ms", "cpu_ms", "rss_mib"] {
                positive(&row["median"][k], &format!("{what} {k}"));
            }
            assert!(f(&row["median"]["exit_ms"], &what) >= 0.0, "{what}: {}", row["median"]);
        }
    }
    // Tomcat is left out of smoke runs, and says so.
    assert!(r["tomcat"]["status"].as_str().is_some_and(|s| s.starts_with("skipped: --smoke")), "{}", r["tomcat"]);

    // 2. Micro costs.
    let m = &r["micro"];
    for k in [
        "clock_read_ns",
        "event_write_1_writer_ns",
        "event_write_2_writers_ns",
        "snapshot_update_ns",
        "host_facts_recheck_us",
    ] {
        positive(&m[k]["median"], k);
    }
    positive(&m["scan"]["events"], "scan.events");
    positive(&m["scan"]["scan_ms"]["median"], "scan.scan_ms");
    positive(&m["scan"]["inspect_ms"]["median"], "scan.inspect_ms");
    positive(&m["gc_callback"]["callbacks"], "gc_callback.callbacks");
    positive(&m["gc_callback"]["mean_ns"]["median"], "gc_callback.mean_ns");
    positive(&m["gc_callback"]["finish"]["count"], "gc_callback.finish.count");
    positive(&m["gc_callback"]["finish"]["p99_ns"], "gc_callback.finish.p99_ns");
    positive(&m["gc_callback"]["start"]["count"], "gc_callback.start.count");

    // 3. Visibility latency: the ring reader and the JFR anchor always; SSE when serve exists.
    let methods = r["latency"]["methods"].as_array().expect("latency.methods");
    assert_eq!(methods.len(), 3);
    for meth in methods {
        if !status_ok_or_skipped(meth, &["jvmwatch-sse"]) {
            continue;
        }
        let what = meth["name"].as_str().unwrap_or("?");
        positive(&meth["latency_ms"]["n"], &format!("{what} samples"));
        assert!(
            f(&meth["latency_ms"]["p99"], what) >= f(&meth["latency_ms"]["p50"], what)
                && f(&meth["latency_ms"]["p50"], what) >= 0.0
        );
    }

    // 4. Crash survival: nothing committed is lost.
    let c = &r["crash"];
    assert_eq!(c["runs"], 5);
    assert_eq!(c["errors"].as_array().map(Vec::len), Some(0), "crash runs failed: {}", c["errors"]);
    positive(&c["rings"], "crash.rings");
    positive(&c["events_committed"], "crash.events_committed");
    assert_eq!(c["committed_lost"], 0, "committed events lost after SIGKILL");
    assert_eq!(c["torn_committed"], 0);
    assert!(f(&c["last_record_age_ms"]["p99"], "last_record_age p99") >= 0.0);

    // 5. The sidecar following JVMs (3 in smoke size).
    let l = &r["serve_load"];
    assert_eq!(l["jvms"], 3);
    assert!(f(&l["cpu_percent_of_core"], "sidecar cpu") >= 0.0);
    positive(&l["rss_mib"], "sidecar rss");
    positive(&l["metrics_bytes"], "metrics bytes");
    assert_eq!(l["metrics_latency_ms"]["n"], 50);

    // 6. The Java API: every variant at 1 and 8 threads, with the agent active.
    let a = &r["api_cost"];
    assert_eq!(a["agent_active"], true);
    let rows = a["rows"].as_array().expect("api rows");
    assert_eq!(rows.len(), 8, "4 variants at 1 and 8 threads");
    for row in rows {
        positive(&row["ops_per_s"], "api ops/s");
        positive(&row["ns_per_op"], "api ns/op");
    }
}
