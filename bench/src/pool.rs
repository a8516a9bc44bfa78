//! `pool`: one interval over the throughput rounds of several saved runs of the same build.
//!
//! A round pairs a configuration's JVM with the baseline's JVM of the same round, so rounds
//! from different runs are independent pairs and their paired differences can be pooled: each
//! file's rounds are paired within that file, then one bootstrap runs over all the pairs. That
//! is only sound when the runs measured the same thing, so every file must describe each
//! workload, each configuration's flags and the warm-up rule identically, and every file that
//! records its agent build (`build.agent`, a CRC-32 of `libjvmwatch.so`; files from before
//! 2026-11-27 07:50 UTC lack it) must record the same one. For files without it, the caller
//! vouches that the agent was the same, and the output says so.

use std::path::PathBuf;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use crate::stats::{bootstrap_mean, summarize, Ci, RESAMPLES};
use crate::throughput::{gain_pct, loss_pct};

/// Seed of the pooled bootstraps (fixed, so the output is reproducible).
const SEED: u64 = 0x9001;

/// One configuration of one workload, pooled over the files.
#[derive(Debug, PartialEq)]
pub struct Pooled {
    pub workload: String,
    pub config: String,
    /// Paired rounds per file, in the files' order.
    pub rounds: Vec<usize>,
    /// (1 − x / baseline) × 100 over every pair.
    pub loss: Ci,
    /// (CPU per op / baseline's − 1) × 100 over every pair that has both.
    pub cpu_added: Option<Ci>,
    /// The baseline's (max − min) / median over all its runs, %.
    pub baseline_spread_pct: f64,
}

/// The pooled figures of every configuration, and how the build is known.
#[derive(Debug)]
pub struct Pool {
    /// One sentence: whether the files record the same agent, or the caller vouches.
    pub build: String,
    pub rows: Vec<Pooled>,
}

/// Checks that the files that record their agent build record the same one, and says how the
/// build is known: one sentence for the output.
fn same_build(runs: &[(PathBuf, Value)]) -> Result<String> {
    let mut known: Option<(&PathBuf, &str)> = None;
    let mut unrecorded = Vec::new();
    for (path, v) in runs {
        match v["build"]["agent"].as_str().filter(|a| a.starts_with("crc32 ")) {
            None => unrecorded.push(format!("`{}`", path.display())),
            Some(agent) => match known {
                Some((first, id)) if id != agent => {
                    bail!(
                        "{} measured another agent ({agent}) than {} ({id}): not the same build",
                        path.display(),
                        first.display()
                    )
                }
                Some(_) => {}
                None => known = Some((path, agent)),
            },
        }
    }
    Ok(match (known, unrecorded.is_empty()) {
        (Some((_, id)), true) => format!("Every file measured the same agent ({id})."),
        (Some((_, id)), false) => format!(
            "The agent ({id}) is recorded in some files; {} do(es) not record it: the caller vouches it was the same.",
            unrecorded.join(", ")
        ),
        (None, _) => "No file records its agent build: the caller vouches it was the same.".to_string(),
    })
}

/// Pools the throughput sections of `runs` (parsed results files, named for errors).
pub fn pool(runs: &[(PathBuf, Value)]) -> Result<Pool> {
    ensure!(runs.len() >= 2, "pool needs at least two results files");
    let build = same_build(runs)?;
    let first = section(&runs[0])?;
    let rule = &first["warmup_rule"];
    for r in &runs[1..] {
        ensure!(
            &section(r)?["warmup_rule"] == rule,
            "{} used another warm-up rule than {}: not the same measurement",
            r.0.display(),
            runs[0].0.display()
        );
    }
    let base_name = first["baseline"].as_str().context("no baseline named")?;
    let mut out = Vec::new();
    for w in first["workloads"].as_array().into_iter().flatten() {
        let wname = w["name"].as_str().context("a workload without a name")?;
        let base_first = find(w["configs"].as_array(), base_name).context("no baseline runs")?;
        for c in w["configs"].as_array().into_iter().flatten() {
            let cname = c["name"].as_str().context("a configuration without a name")?;
            if cname == base_name {
                continue;
            }
            let (mut losses, mut cpu, mut bases, mut rounds) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for r in runs {
                let wl = find(section(r)?["workloads"].as_array(), wname)
                    .with_context(|| format!("{}: no workload {wname}", r.0.display()))?;
                ensure!(
                    wl["description"] == w["description"],
                    "{}: workload {wname} is described otherwise: not the same workload",
                    r.0.display()
                );
                let cfg = |name: &str| {
                    find(wl["configs"].as_array(), name)
                        .with_context(|| format!("{}: {wname} has no configuration {name}", r.0.display()))
                };
                let (mine, base) = (cfg(cname)?, cfg(base_name)?);
                for (got, want) in [(mine, c), (base, base_first)] {
                    if got["flags"] != want["flags"] {
                        bail!("{}: {wname}/{} ran with other flags", r.0.display(), got["name"]);
                    }
                }
                let base_runs = runs_of(base);
                bases.extend(base_runs.iter().map(|b| b.1));
                let mut n = 0;
                for (round_no, value, cpu_op) in runs_of(mine) {
                    let Some(&(_, bv, bcpu)) = base_runs.iter().find(|b| b.0 == round_no) else { continue };
                    if bv <= 0.0 {
                        continue;
                    }
                    losses.push(loss_pct(value, bv));
                    if let (Some(x), Some(y)) = (cpu_op, bcpu.filter(|y| *y > 0.0)) {
                        cpu.push(gain_pct(x, y));
                    }
                    n += 1;
                }
                rounds.push(n);
            }
            let (Some(loss), Some(base_summary)) = (bootstrap_mean(&losses, SEED, RESAMPLES), summarize(&bases)) else {
                continue;
            };
            out.push(Pooled {
                workload: wname.to_string(),
                config: cname.to_string(),
                rounds,
                loss: loss.rounded(3),
                cpu_added: bootstrap_mean(&cpu, SEED ^ 1, RESAMPLES).map(|c| c.rounded(3)),
                baseline_spread_pct: base_summary.spread_pct(),
            });
        }
    }
    ensure!(!out.is_empty(), "no configuration has paired rounds in every file");
    Ok(Pool { build, rows: out })
}

fn find<'a>(items: Option<&'a Vec<Value>>, name: &str) -> Option<&'a Value> {
    items?.iter().find(|x| x["name"].as_str() == Some(name))
}

/// A results file's throughput section.
fn section((path, v): &(PathBuf, Value)) -> Result<&Value> {
    v.get("throughput").filter(|t| !t.is_null()).with_context(|| format!("{}: no throughput section", path.display()))
}

/// (round, value, CPU per op) of a configuration's kept runs.
fn runs_of(config: &Value) -> Vec<(u64, f64, Option<f64>)> {
    config["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| Some((r["round"].as_u64()?, r["value"].as_f64()?, r["cpu_per_op_ns"].as_f64())))
        .collect()
}

/// The pooled figures as a Markdown table, after the sentence on the build.
pub fn markdown(files: &[PathBuf], pool: &Pool) -> String {
    let build = &pool.build;
    let ci = |c: &Ci| format!("{:+.2} % [{:+.2}, {:+.2}]", c.mean, c.lo, c.hi);
    let names: Vec<String> = files.iter().map(|p| format!("`{}`", p.display())).collect();
    let mut s = format!(
        "Pooled over {} (each file's rounds paired within it; one bootstrap, {RESAMPLES} resamples, over all pairs). {build}\n\n\
         | workload | configuration | paired rounds per file | loss, paired (95 % CI) | half-width | CPU added per op (95 % CI) | baseline spread, all runs |\n\
         |---|---|---|---|---:|---|---:|\n",
        names.join(", ")
    );
    for p in &pool.rows {
        let rounds: Vec<String> = p.rounds.iter().map(ToString::to_string).collect();
        s += &format!(
            "| {} | {} | {} | {} | {:.2} % | {} | {:.2} % |\n",
            p.workload,
            p.config,
            rounds.join(" + "),
            ci(&p.loss),
            p.loss.half_width(),
            p.cpu_added.as_ref().map_or_else(|| "—".to_string(), ci),
            p.baseline_spread_pct
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn file(rule: &str, flags: &str, pairs: &[(f64, f64)]) -> Value {
        let runs = |pick: fn(&(f64, f64)) -> f64| {
            pairs
                .iter()
                .enumerate()
                .map(|(i, p)| json!({"round": i, "value": pick(p), "cpu_per_op_ns": 1000.0 / pick(p)}))
                .collect::<Vec<_>>()
        };
        json!({"throughput": {"baseline": "none", "warmup_rule": rule, "workloads": [{
        "name": "gc-alloc", "description": "GcWork",
        "configs": [
            {"name": "none", "flags": "-XX:-UsePerfData", "runs": runs(|p| p.0)},
            {"name": "jvmwatch", "flags": flags, "runs": runs(|p| p.1)},
        ]}]}})
    }

    #[test]
    fn pairs_stay_within_their_file_and_all_pairs_are_pooled() {
        // File a: jvmwatch loses 10 % and 0 %; file b: 20 %. Pairing across files would mix
        // a's baseline of round 0 with b's run of round 0.
        let a = file("r", "-agentpath", &[(100.0, 90.0), (200.0, 200.0)]);
        let b = file("r", "-agentpath", &[(50.0, 40.0)]);
        let pooled = pool(&[("a".into(), a), ("b".into(), b)]).unwrap();
        let p = &pooled.rows;
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].rounds, [2, 1]);
        assert!((p[0].loss.mean - 10.0).abs() < 1e-9, "{:?}", p[0].loss);
        assert!(p[0].loss.lo >= 0.0 && p[0].loss.hi <= 20.0);
        assert_eq!(p[0].baseline_spread_pct, 150.0); // (200 − 50) / 100
        assert!(p[0].cpu_added.unwrap().mean > 0.0, "fewer ops for the same CPU is more CPU per op");
        let md = markdown(&["a".into(), "b".into()], &pooled);
        assert!(md.contains("No file records its agent build"), "{md}");
        assert!(md.contains("| gc-alloc | jvmwatch | 2 + 1 | +10.00 % ["), "{md}");
    }

    #[test]
    fn runs_of_another_measurement_are_refused() {
        let a = file("r", "-agentpath", &[(100.0, 90.0)]);
        let other_rule = file("s", "-agentpath", &[(100.0, 90.0)]);
        let e = pool(&[("a".into(), a.clone()), ("b".into(), other_rule)]).unwrap_err();
        assert!(e.to_string().contains("warm-up rule"), "{e}");
        let other_flags = file("r", "-agentpath,gc=notify", &[(100.0, 90.0)]);
        let e = pool(&[("a".into(), a.clone()), ("b".into(), other_flags)]).unwrap_err();
        assert!(e.to_string().contains("other flags"), "{e}");
        let e = pool(&[("a".into(), a)]).unwrap_err();
        assert!(e.to_string().contains("at least two"), "{e}");
    }

    #[test]
    fn builds_must_match_where_recorded() {
        let with = |agent: &str| {
            let mut v = file("r", "-agentpath", &[(100.0, 90.0)]);
            v["build"] = json!({"agent": agent, "sidecar": "crc32 1, 1 bytes"});
            v
        };
        let (a, b) = (with("crc32 0000abcd, 10 bytes"), with("crc32 0000abcd, 10 bytes"));
        let old = file("r", "-agentpath", &[(100.0, 90.0)]);
        let said = same_build(&[("a".into(), a.clone()), ("b".into(), b)]).unwrap();
        assert_eq!(said, "Every file measured the same agent (crc32 0000abcd, 10 bytes).");
        let said = same_build(&[("a".into(), a.clone()), ("old".into(), old.clone())]).unwrap();
        assert!(said.contains("`old` do(es) not record it"), "{said}");
        let said = same_build(&[("old".into(), old.clone()), ("old2".into(), old)]).unwrap();
        assert!(said.starts_with("No file records"), "{said}");
        let other = with("crc32 00001234, 10 bytes");
        let e = pool(&[("a".into(), a), ("c".into(), other)]).unwrap_err();
        assert!(e.to_string().contains("not the same build"), "{e}");
    }
}
