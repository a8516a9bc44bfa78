//! What the header records about the JVM, gathered in `Agent_OnLoad` without JNI.

use jvmwatch_ring::{Collector, Identity};

use crate::jvmti::Jvmti;

/// Builds the header identity: pid, times, host, JVM version, cwd, command line and the
/// `-XX:ErrorFile=` location (where a crash report would go).
pub fn gather(jvmti: &Jvmti, interval_ns: u64) -> Identity {
    let args = command_line();
    let prop = |n: &std::ffi::CStr| jvmti.system_property(n).unwrap_or_default();
    let vm_name = prop(c"java.vm.name");
    let vendor = prop(c"java.vm.vendor");
    Identity {
        pid: std::process::id(),
        start_ns: jvmwatch_ring::now_ns(),
        interval_ns,
        agent_version: env!("JVMWATCH_VERSION").to_string(),
        hostname: hostname(),
        jvm_version: prop(c"java.vm.version"),
        jvm_vendor: format!("{vendor} / {vm_name}"),
        cwd: std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default(),
        error_file: error_file(&args).unwrap_or_default(),
        command: args.join(" "),
        geometry: Default::default(),
        flags: 0,
    }
}

/// The process arguments from `/proc/self/cmdline`, plus JVM options the launcher takes from
/// the environment (`JAVA_TOOL_OPTIONS`, `JDK_JAVA_OPTIONS`), which flags like
/// `-XX:ErrorFile=` may come from.
pub fn command_line() -> Vec<String> {
    let raw = std::fs::read("/proc/self/cmdline").unwrap_or_default();
    raw.split(|&b| b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
}

/// JVM options the launcher takes from the environment (`JAVA_TOOL_OPTIONS`,
/// `JDK_JAVA_OPTIONS`), split at white space.
pub fn env_jvm_options() -> Vec<String> {
    ["JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .flat_map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect()
}

/// The last `-XX:ErrorFile=` among the environment options and the command line (the
/// command line wins, as in the JVM).
pub fn error_file(args: &[String]) -> Option<String> {
    env_jvm_options()
        .iter()
        .chain(args.iter())
        .filter_map(|a| a.strip_prefix("-XX:ErrorFile="))
        .next_back()
        .map(str::to_string)
}

/// The collector family selected on the command line, if one was.
pub fn collector_from_flags(args: &[String]) -> Collector {
    let mut c = Collector::Unknown;
    for a in env_jvm_options().iter().chain(args.iter()) {
        c = match a.as_str() {
            "-XX:+UseG1GC" => Collector::G1,
            "-XX:+UseParallelGC" => Collector::Parallel,
            "-XX:+UseSerialGC" => Collector::Serial,
            "-XX:+UseZGC" => Collector::Z,
            "-XX:+UseShenandoahGC" => Collector::Shenandoah,
            "-XX:+UseEpsilonGC" => Collector::Other,
            _ => c,
        };
    }
    c
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its length; gethostname NUL-terminates within it or
    // truncates, and we stop at the first NUL or the end.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return String::new();
    }
    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..n]).into_owned()
}
