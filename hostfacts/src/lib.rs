//! What the host and a process were given: the processor and its normalised class, the
//! hypervisor, the cgroup CPU quota and memory limit (v2 and v1), the cpuset (affinity), and
//! `-XX:ActiveProcessorCount`. Pure parsers plus small readers of `/proc` and `/sys`; the
//! agent records these facts in its ring, the sidecar falls back to them for rings that do
//! not have them. `docs/usage.md` repeats the class table.

use std::io::Read;
use std::path::{Path, PathBuf};

/// The host's processor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cpu {
    /// `vendor_id` (x86) or `arm-implementer-0x41` (arm64).
    pub vendor: String,
    /// `model name`.
    pub model_name: String,
    /// `cpu family`.
    pub family: Option<u32>,
    /// `model` (x86) or `CPU part` (arm64).
    pub model: Option<u32>,
    /// `stepping`.
    pub stepping: Option<u32>,
    /// Normalised class ([`CLASS_TABLE`]).
    pub class: String,
    /// `hypervisor` flag present (the CPUID hypervisor bit).
    pub hypervisor_flag: bool,
    /// Logical processors of the host (online).
    pub cores: i64,
}

impl Cpu {
    /// `family/model/stepping` in decimal, `?` for what is unknown.
    pub fn fms(&self) -> String {
        fms(self.family, self.model, self.stepping)
    }
}

/// `family/model/stepping` in decimal, `?` for what is unknown.
pub fn fms(family: Option<u32>, model: Option<u32>, stepping: Option<u32>) -> String {
    let f = |x: Option<u32>| x.map_or("?".to_string(), |x| x.to_string());
    format!("{}/{}/{}", f(family), f(model), f(stepping))
}

/// Parses `/proc/cpuinfo` text: the first processor's identity, and `cores` = the
/// `processor` lines in `text`.
pub fn parse_cpuinfo(text: &str) -> Cpu {
    let mut c = Cpu::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else { continue };
        let (k, v) = (k.trim(), v.trim());
        match k {
            "processor" => c.cores += 1,
            "vendor_id" if c.vendor.is_empty() => c.vendor = v.to_string(),
            "model name" if c.model_name.is_empty() => c.model_name = v.to_string(),
            "cpu family" if c.family.is_none() => c.family = v.parse().ok(),
            "model" if c.model.is_none() => c.model = v.parse().ok(),
            "stepping" if c.stepping.is_none() => c.stepping = v.parse().ok(),
            "flags" if !c.hypervisor_flag => c.hypervisor_flag = v.split_whitespace().any(|f| f == "hypervisor"),
            // arm64: `CPU implementer` / `CPU part`.
            "CPU implementer" if c.vendor.is_empty() => c.vendor = format!("arm-implementer-{v}"),
            "CPU part" if c.model.is_none() => c.model = u32::from_str_radix(v.trim_start_matches("0x"), 16).ok(),
            _ => {}
        }
    }
    c.class = proc_class(&c.vendor, &c.model_name, c.family, c.model).to_string();
    c
}

/// The processor-class mapping table (docs/usage.md repeats it): vendor, family, model →
/// class. Matched top to bottom; anything else is `unknown`.
pub const CLASS_TABLE: &[(&str, u32, &[u32], &str)] = &[
    ("GenuineIntel", 6, &[0x55], "intel-xeon-skylake"), // Skylake-SP, Cascade Lake, Cooper Lake
    ("GenuineIntel", 6, &[0x6a, 0x6c], "intel-xeon-icelake"),
    ("GenuineIntel", 6, &[0x8f], "intel-xeon-sapphirerapids"),
    ("GenuineIntel", 6, &[0xcf], "intel-xeon-emeraldrapids"),
    ("GenuineIntel", 6, &[0xad, 0xae], "intel-xeon-graniterapids"),
    ("GenuineIntel", 6, &[0x4f, 0x56], "intel-xeon-broadwell"),
    ("GenuineIntel", 6, &[0x3f], "intel-xeon-haswell"),
    ("AuthenticAMD", 0x17, &[0x01, 0x08], "amd-epyc-zen1"),
    ("AuthenticAMD", 0x17, &[0x31], "amd-epyc-zen2"),
    ("AuthenticAMD", 0x19, &[0x01], "amd-epyc-zen3"),
    ("AuthenticAMD", 0x19, &[0x11, 0xa0], "amd-epyc-zen4"),
    ("AuthenticAMD", 0x1a, &[0x02, 0x11], "amd-epyc-zen5"),
];

/// The normalised processor class.
pub fn proc_class(vendor: &str, model_name: &str, family: Option<u32>, model: Option<u32>) -> &'static str {
    if let (Some(fam), Some(m)) = (family, model) {
        for (v, f, models, class) in CLASS_TABLE {
            if *v == vendor && *f == fam && models.contains(&m) {
                // Family 6 model 0x55 etc. are also sold as Core i9-X; name the server parts only.
                if vendor == "GenuineIntel" && !model_name.contains("Xeon") {
                    return "intel-other";
                }
                if vendor == "AuthenticAMD" && !model_name.contains("EPYC") {
                    return "amd-other";
                }
                return class;
            }
        }
    }
    match vendor {
        "GenuineIntel" if model_name.contains("Xeon") => "intel-xeon-other",
        "GenuineIntel" => "intel-other",
        "AuthenticAMD" if model_name.contains("EPYC") => "amd-epyc-other",
        "AuthenticAMD" => "amd-other",
        v if v.starts_with("arm-implementer-0x41") => "arm-neoverse",
        _ => "unknown",
    }
}

/// Bytes of `/proc/cpuinfo` read: the first processor's block and then some. A host with
/// hundreds of processors has hundreds of KiB there, and the kernel makes each block on read.
const CPUINFO_PREFIX: u64 = 8192;

/// The host's processor: the identity from the start of `/proc/cpuinfo`, the core count from
/// `/sys/devices/system/cpu/online` (else the `processor` lines of the whole file).
pub fn cpu() -> Cpu {
    let mut text = String::new();
    if let Ok(f) = std::fs::File::open("/proc/cpuinfo") {
        let _ = f.take(CPUINFO_PREFIX).read_to_string(&mut text);
    }
    let mut c = parse_cpuinfo(&text);
    c.cores = match std::fs::read_to_string("/sys/devices/system/cpu/online") {
        Ok(s) if cpulist_count(&s) > 0 => cpulist_count(&s),
        _ => parse_cpuinfo(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default()).cores,
    };
    c
}

/// The hypervisor: `/sys/hypervisor/type` (xen, ...), else the `hypervisor` cpu flag with
/// the DMI vendor when readable, else `none`.
pub fn hypervisor(flag: bool) -> String {
    if let Ok(t) = std::fs::read_to_string("/sys/hypervisor/type") {
        let t = t.trim();
        if !t.is_empty() {
            return t.to_string();
        }
    }
    if !flag {
        return "none".into();
    }
    let dmi = std::fs::read_to_string("/sys/class/dmi/id/sys_vendor").unwrap_or_default();
    let product = std::fs::read_to_string("/sys/class/dmi/id/product_name").unwrap_or_default();
    hypervisor_from_dmi(&dmi, &product).into()
}

/// The hypervisor named by the DMI vendor and product of a machine with the hypervisor flag.
pub fn hypervisor_from_dmi(sys_vendor: &str, product: &str) -> &'static str {
    let both = format!("{sys_vendor} {product}").to_lowercase();
    for (needle, name) in [
        ("qemu", "kvm"),
        ("kvm", "kvm"),
        ("vmware", "vmware"),
        ("microsoft", "hyperv"),
        ("xen", "xen"),
        ("amazon", "kvm"),
        ("google", "kvm"),
        ("virtualbox", "virtualbox"),
    ] {
        if both.contains(needle) {
            return name;
        }
    }
    "unknown-hypervisor"
}

/// Parses a CPU list such as `0-3,6` into its count.
pub fn cpulist_count(s: &str) -> i64 {
    s.trim()
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('-') {
            Some((a, b)) => {
                (b.trim().parse::<i64>().unwrap_or(0) - a.trim().parse::<i64>().unwrap_or(0) + 1).clamp(0, 1 << 20)
            }
            None => i64::from(p.trim().parse::<i64>().is_ok()),
        })
        .sum()
}

/// What a process was given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Given {
    /// `Cpus_allowed_list` of the process (its affinity; a cgroup cpuset limits it too).
    pub cpuset: String,
    /// Its count.
    pub affinity: i64,
    /// The cgroup CPU quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us` ÷ `cpu.cfs_period_us`) as
    /// millicores, the smallest along the cgroup path; -1 unlimited.
    pub quota_milli: i64,
    /// The cgroup memory limit (v2 `memory.max`, v1 `memory.limit_in_bytes`), the smallest
    /// along the path, bytes; -1 unlimited.
    pub mem_limit: i64,
    /// `-XX:ActiveProcessorCount=N` on its command line, 0 when absent.
    pub active_processor_count: i64,
}

impl Given {
    /// What `Runtime.availableProcessors()` returns (HotSpot's rule): the
    /// ActiveProcessorCount flag when set, else the affinity count limited by the cgroup
    /// quota (rounded up).
    pub fn cores_told(&self) -> i64 {
        if self.active_processor_count > 0 {
            return self.active_processor_count;
        }
        let mut n = self.affinity.max(1);
        if self.quota_milli > 0 {
            n = n.min((self.quota_milli + 999) / 1000).max(1);
        }
        n
    }
}

/// Parses cgroup v2 `cpu.max` (`max 100000` / `200000 100000`) into millicores.
pub fn parse_cpu_max(s: &str) -> i64 {
    let mut it = s.split_whitespace();
    match it.next() {
        Some(q) => parse_v1_quota(q, it.next().unwrap_or("")),
        None => -1,
    }
}

/// Parses cgroup v1 `cpu.cfs_quota_us` (-1 unlimited) and `cpu.cfs_period_us` into
/// millicores; -1 unlimited.
pub fn parse_v1_quota(quota: &str, period: &str) -> i64 {
    match (quota.trim().parse::<i64>(), period.trim().parse::<i64>()) {
        (Ok(q), Ok(p)) if q > 0 && p > 0 => q.saturating_mul(1000) / p,
        _ => -1,
    }
}

/// Parses a memory limit (v2 `memory.max`, v1 `memory.limit_in_bytes`); -1 unlimited (`max`,
/// or v1's page-counter maximum, anything from 2^62 up).
pub fn parse_mem_limit(s: &str) -> i64 {
    match s.trim().parse::<i64>() {
        Ok(m) if (0..1 << 62).contains(&m) => m,
        _ => -1,
    }
}

/// `-XX:ActiveProcessorCount=N` among JVM arguments (the last one wins), 0 when absent.
pub fn active_processor_count<'a>(args: impl IntoIterator<Item = &'a str>) -> i64 {
    args.into_iter()
        .filter_map(|a| a.strip_prefix("-XX:ActiveProcessorCount="))
        .filter_map(|n| n.parse().ok())
        .last()
        .unwrap_or(0)
}

/// The arguments of a NUL-separated command line (`/proc/PID/cmdline`).
pub fn cmdline_args(cmdline: &[u8]) -> impl Iterator<Item = &str> {
    cmdline.split(|b| *b == 0).filter_map(|a| std::str::from_utf8(a).ok())
}

/// What process `pid` was given (None when it is gone).
pub fn given(pid: u32) -> Option<Given> {
    given_at(Path::new(&format!("/proc/{pid}")))
}

/// What this process was given, but `-XX:ActiveProcessorCount` (0 here: the caller knows
/// its own arguments).
pub fn given_self() -> Option<Given> {
    let mut g = limits_at(Path::new("/proc/self"))?;
    g.active_processor_count = 0;
    Some(g)
}

fn given_at(proc: &Path) -> Option<Given> {
    let mut g = limits_at(proc)?;
    if let Ok(cmd) = std::fs::read(proc.join("cmdline")) {
        g.active_processor_count = active_processor_count(cmdline_args(&cmd));
    }
    Some(g)
}

fn limits_at(proc: &Path) -> Option<Given> {
    let status = std::fs::read_to_string(proc.join("status")).ok()?;
    let cpuset = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mut g = Given { affinity: cpulist_count(&cpuset), cpuset, quota_milli: -1, mem_limit: -1, ..Given::default() };
    if let Ok(cg) = std::fs::read_to_string(proc.join("cgroup")) {
        let root = Path::new("/sys/fs/cgroup");
        for line in cg.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
            let path = path.trim().trim_start_matches('/');
            if controllers.is_empty() {
                // v2 (unified): on a hybrid host it is mounted at /sys/fs/cgroup/unified.
                for mount in [root.to_path_buf(), root.join("unified")] {
                    if mount.join("cgroup.controllers").exists() {
                        g.quota_milli = min_limit(
                            g.quota_milli,
                            walk(&mount, path, |d| read(d, "cpu.max").map(|s| parse_cpu_max(&s))),
                        );
                        g.mem_limit = min_limit(
                            g.mem_limit,
                            walk(&mount, path, |d| read(d, "memory.max").map(|s| parse_mem_limit(&s))),
                        );
                        break;
                    }
                }
                continue;
            }
            // v1: the controller's own hierarchy, mounted as /sys/fs/cgroup/<controllers>.
            let names: Vec<&str> = controllers.split(',').collect();
            if !names.iter().any(|n| matches!(*n, "cpu" | "memory")) {
                continue;
            }
            let mount =
                [controllers].into_iter().chain(names.iter().copied()).map(|c| root.join(c)).find(|m| m.is_dir());
            let Some(mount) = mount else { continue };
            if names.contains(&"cpu") {
                let q = walk(&mount, path, |d| {
                    Some(parse_v1_quota(&read(d, "cpu.cfs_quota_us")?, &read(d, "cpu.cfs_period_us")?))
                });
                g.quota_milli = min_limit(g.quota_milli, q);
            }
            if names.contains(&"memory") {
                let m = walk(&mount, path, |d| read(d, "memory.limit_in_bytes").map(|s| parse_mem_limit(&s)));
                g.mem_limit = min_limit(g.mem_limit, m);
            }
        }
    }
    Some(g)
}

fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok()
}

/// The smaller of two limits where -1 (or any negative) is unlimited.
fn min_limit(a: i64, b: i64) -> i64 {
    match (a < 0, b < 0) {
        (true, _) => b.max(-1),
        (_, true) => a,
        _ => a.min(b),
    }
}

/// The limit in force: the smallest `get` from the cgroup directory `path` up to the mount.
fn walk(mount: &Path, path: &str, get: impl Fn(&Path) -> Option<i64>) -> i64 {
    let mut dir: PathBuf = mount.join(path);
    let mut limit = -1;
    loop {
        if let Some(v) = get(&dir) {
            limit = min_limit(limit, v);
        }
        if dir.as_path() == mount || !dir.pop() || !dir.starts_with(mount) {
            break;
        }
    }
    limit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let icelake = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 106\n\
                       model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz\nstepping\t: 6\n\
                       flags\t\t: fpu vme hypervisor\nprocessor\t: 1\n";
        let c = parse_cpuinfo(icelake);
        assert_eq!(
            (c.class.as_str(), c.fms().as_str(), c.cores, c.hypervisor_flag),
            ("intel-xeon-icelake", "6/106/6", 2, true)
        );
        let milan = "processor : 0\nvendor_id : AuthenticAMD\ncpu family : 25\nmodel : 1\n\
                     model name : AMD EPYC 7R13 Processor\nstepping : 1\nflags : fpu\n";
        let c = parse_cpuinfo(milan);
        assert_eq!((c.class.as_str(), c.hypervisor_flag), ("amd-epyc-zen3", false));
        assert_eq!(proc_class("GenuineIntel", "Intel(R) Core(TM) i7", Some(6), Some(0x55)), "intel-other");
        assert_eq!(proc_class("AuthenticAMD", "AMD EPYC 9999", Some(0x30), Some(1)), "amd-epyc-other");
        assert_eq!(proc_class("", "", None, None), "unknown");
        let graviton = "processor : 0\nCPU implementer : 0x41\nCPU part : 0xd0c\n";
        let c = parse_cpuinfo(graviton);
        assert_eq!((c.class.as_str(), c.fms().as_str()), ("arm-neoverse", "?/3340/?"));
        assert_eq!(parse_cpuinfo("garbage\n:::\nmodel : x\n").class, "unknown");
    }

    #[test]
    fn limits() {
        assert_eq!(cpulist_count("0-3,6"), 5);
        assert_eq!(cpulist_count("0"), 1);
        assert_eq!(cpulist_count("5-1,x"), 0);
        assert_eq!(parse_cpu_max("max 100000"), -1);
        assert_eq!(parse_cpu_max("150000 100000"), 1500);
        assert_eq!(parse_cpu_max(""), -1);
        assert_eq!(parse_v1_quota("-1\n", "100000\n"), -1);
        assert_eq!(parse_v1_quota("50000\n", "100000\n"), 500);
        assert_eq!(parse_mem_limit("max\n"), -1);
        assert_eq!(parse_mem_limit("9223372036854771712\n"), -1);
        assert_eq!(parse_mem_limit("536870912\n"), 512 << 20);
        assert_eq!(min_limit(-1, 5), 5);
        assert_eq!(min_limit(7, -1), 7);
        assert_eq!(min_limit(7, 5), 5);
        assert_eq!(active_processor_count(cmdline_args(b"java\0-XX:ActiveProcessorCount=3\0-cp\0x")), 3);
        assert_eq!(active_processor_count(["-XX:ActiveProcessorCount=2", "-XX:ActiveProcessorCount=1"]), 1);
        let g = Given { affinity: 8, quota_milli: 1500, ..Given::default() };
        assert_eq!(g.cores_told(), 2);
        let g = Given { affinity: 8, quota_milli: -1, active_processor_count: 1, ..Given::default() };
        assert_eq!(g.cores_told(), 1);
        assert_eq!(hypervisor_from_dmi("QEMU", "Standard PC"), "kvm");
        assert_eq!(hypervisor_from_dmi("Acme", "Box"), "unknown-hypervisor");
    }

    #[test]
    fn this_process_has_an_affinity() {
        let g = given_self().expect("/proc/self");
        assert!(g.affinity >= 1, "{g:?}");
        assert!(cpu().cores >= g.affinity, "{g:?}");
    }
}
