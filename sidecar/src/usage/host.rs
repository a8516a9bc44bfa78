//! What the host and a process were given: processor, class, hypervisor, cgroup limits,
//! affinity, and what the process used (`/proc/PID/stat`, `statm`, `io`).

/// The host's processor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cpu {
    /// `vendor_id`.
    pub vendor: String,
    /// `model name`.
    pub model_name: String,
    /// `family/model/stepping` (decimal).
    pub fms: String,
    /// Normalised class.
    pub class: String,
    /// `hypervisor` flag present.
    pub hypervisor_flag: bool,
    /// Logical processors.
    pub cores: i64,
}

/// Parses `/proc/cpuinfo` text.
pub fn parse_cpuinfo(text: &str) -> Cpu {
    let mut c = Cpu::default();
    let (mut family, mut model, mut stepping) = (None::<u32>, None::<u32>, None::<u32>);
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else { continue };
        let (k, v) = (k.trim(), v.trim());
        match k {
            "processor" => c.cores += 1,
            "vendor_id" if c.vendor.is_empty() => c.vendor = v.to_string(),
            "model name" if c.model_name.is_empty() => c.model_name = v.to_string(),
            "cpu family" if family.is_none() => family = v.parse().ok(),
            "model" if model.is_none() => model = v.parse().ok(),
            "stepping" if stepping.is_none() => stepping = v.parse().ok(),
            "flags" if !c.hypervisor_flag => c.hypervisor_flag = v.split_whitespace().any(|f| f == "hypervisor"),
            // arm64: `CPU implementer` / `CPU part`.
            "CPU implementer" if c.vendor.is_empty() => c.vendor = format!("arm-implementer-{v}"),
            "CPU part" if model.is_none() => model = u32::from_str_radix(v.trim_start_matches("0x"), 16).ok(),
            _ => {}
        }
    }
    let f = |x: Option<u32>| x.map_or("?".to_string(), |x| x.to_string());
    c.fms = format!("{}/{}/{}", f(family), f(model), f(stepping));
    c.class = proc_class(&c.vendor, &c.model_name, family, model).to_string();
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

/// The host's processor, from `/proc/cpuinfo`.
pub fn cpu() -> Cpu {
    parse_cpuinfo(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default())
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
    let dmi = std::fs::read_to_string("/sys/class/dmi/id/sys_vendor").unwrap_or_default().to_lowercase();
    let product = std::fs::read_to_string("/sys/class/dmi/id/product_name").unwrap_or_default().to_lowercase();
    let both = format!("{dmi} {product}");
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
            return name.into();
        }
    }
    "unknown-hypervisor".into()
}

/// Parses a CPU list such as `0-3,6` into its count.
pub fn cpulist_count(s: &str) -> i64 {
    s.trim()
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('-') {
            Some((a, b)) => b.trim().parse::<i64>().unwrap_or(0) - a.trim().parse::<i64>().unwrap_or(0) + 1,
            None => i64::from(p.trim().parse::<i64>().is_ok()),
        })
        .sum()
}

/// What a process was given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Given {
    /// `Cpus_allowed_list` of the process.
    pub cpuset: String,
    /// Its count.
    pub affinity: i64,
    /// cgroup v2 `cpu.max` as millicores, -1 unlimited.
    pub quota_milli: i64,
    /// cgroup v2 `memory.max`, -1 unlimited.
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
    match (it.next(), it.next().and_then(|p| p.parse::<i64>().ok())) {
        (Some(q), Some(p)) if p > 0 => q.parse::<i64>().map_or(-1, |q| q * 1000 / p),
        _ => -1,
    }
}

/// `-XX:ActiveProcessorCount=N` in a NUL-separated command line.
pub fn active_processor_count(cmdline: &[u8]) -> i64 {
    cmdline
        .split(|b| *b == 0)
        .filter_map(|a| std::str::from_utf8(a).ok())
        .filter_map(|a| a.strip_prefix("-XX:ActiveProcessorCount="))
        .filter_map(|n| n.parse().ok())
        .next_back()
        .unwrap_or(0)
}

/// What process `pid` was given (None when it is gone).
pub fn given(pid: u32) -> Option<Given> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let cpuset = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mut g = Given { affinity: cpulist_count(&cpuset), cpuset, quota_milli: -1, mem_limit: -1, ..Given::default() };
    if let Ok(cg) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) {
        if let Some(path) = cg.lines().find_map(|l| l.strip_prefix("0::")) {
            // The limit in force is the smallest along the path.
            let mut dir = std::path::PathBuf::from(format!("/sys/fs/cgroup{}", path.trim()));
            loop {
                if let Ok(s) = std::fs::read_to_string(dir.join("cpu.max")) {
                    let q = parse_cpu_max(&s);
                    if q > 0 && (g.quota_milli < 0 || q < g.quota_milli) {
                        g.quota_milli = q;
                    }
                }
                if let Ok(s) = std::fs::read_to_string(dir.join("memory.max")) {
                    if let Ok(m) = s.trim().parse::<i64>() {
                        if g.mem_limit < 0 || m < g.mem_limit {
                            g.mem_limit = m;
                        }
                    }
                }
                if !dir.pop() || dir.as_os_str().len() <= "/sys/fs/cgroup".len() {
                    break;
                }
            }
        }
    }
    if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
        g.active_processor_count = active_processor_count(&cmd);
    }
    Some(g)
}

/// CPU time (user + system) of process `pid`, nanoseconds.
pub fn cpu_ns(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the state field (3).
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks * (1_000_000_000 / clk_tck()))
}

fn clk_tck() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Resident set size of `pid`, bytes.
pub fn rss(pid: u32) -> Option<i64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: i64 = s.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as i64;
    Some(pages * page)
}

/// (read_bytes, write_bytes) of `pid` from `/proc/PID/io` (None when not permitted).
pub fn io(pid: u32) -> Option<(i64, i64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let get = |k: &str| s.lines().find_map(|l| l.strip_prefix(k)).and_then(|v| v.trim().parse::<i64>().ok());
    Some((get("read_bytes:")?, get("write_bytes:")?))
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
            (c.class.as_str(), c.fms.as_str(), c.cores, c.hypervisor_flag),
            ("intel-xeon-icelake", "6/106/6", 2, true)
        );
        let milan = "processor : 0\nvendor_id : AuthenticAMD\ncpu family : 25\nmodel : 1\n\
                     model name : AMD EPYC 7R13 Processor\nstepping : 1\nflags : fpu\n";
        let c = parse_cpuinfo(milan);
        assert_eq!((c.class.as_str(), c.hypervisor_flag), ("amd-epyc-zen3", false));
        assert_eq!(proc_class("GenuineIntel", "Intel(R) Core(TM) i7", Some(6), Some(0x55)), "intel-other");
        assert_eq!(proc_class("AuthenticAMD", "AMD EPYC 9999", Some(0x30), Some(1)), "amd-epyc-other");
        assert_eq!(proc_class("", "", None, None), "unknown");
    }

    #[test]
    fn limits() {
        assert_eq!(cpulist_count("0-3,6"), 5);
        assert_eq!(cpulist_count("0"), 1);
        assert_eq!(parse_cpu_max("max 100000"), -1);
        assert_eq!(parse_cpu_max("150000 100000"), 1500);
        assert_eq!(active_processor_count(b"java\0-XX:ActiveProcessorCount=3\0-cp\0x"), 3);
        let g = Given { affinity: 8, quota_milli: 1500, ..Given::default() };
        assert_eq!(g.cores_told(), 2);
        let g = Given { affinity: 8, quota_milli: -1, active_processor_count: 1, ..Given::default() };
        assert_eq!(g.cores_told(), 1);
    }
}
