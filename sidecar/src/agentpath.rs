//! Where the agent library is: `$JVMWATCH_AGENT`, else `libjvmwatch.so` beside the `jvmwatch`
//! executable (a cargo build's `target/release/`), else in `../lib` from it (the release
//! bundle's `bin/` and `lib/`). `jvmwatch agent-path` prints it, so
//! `JAVA_TOOL_OPTIONS="-agentpath:$(jvmwatch agent-path)"` works with any launcher.

use std::path::{Path, PathBuf};

/// The agent's file name.
pub const AGENT_FILE: &str = "libjvmwatch.so";

/// Why the agent was not found.
#[derive(Debug, thiserror::Error)]
pub enum AgentPathError {
    /// `$JVMWATCH_AGENT` names a file that is not there.
    #[error("JVMWATCH_AGENT={0} does not exist")]
    EnvMissing(PathBuf),
    /// The executable's own path is unknown.
    #[error("cannot locate the jvmwatch executable: {0}")]
    NoExe(std::io::Error),
    /// Not in any of the places searched.
    #[error(
        "cannot find {AGENT_FILE}; looked in {}. Build it (`cargo build --release`), unpack the \
         release bundle whole (bin/ and lib/ side by side), or set JVMWATCH_AGENT=/path/to/{AGENT_FILE}",
        .0.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NotFound(Vec<PathBuf>),
}

/// The places searched for the agent, in order, for an executable at `exe`.
pub fn candidates(exe: &Path) -> Vec<PathBuf> {
    let dir = exe.parent().unwrap_or(Path::new("/"));
    vec![dir.join(AGENT_FILE), dir.join("../lib").join(AGENT_FILE)]
}

/// The agent library's absolute path.
pub fn agent_path() -> Result<PathBuf, AgentPathError> {
    if let Some(p) = std::env::var_os("JVMWATCH_AGENT") {
        let p = PathBuf::from(p);
        return std::fs::canonicalize(&p).map_err(|_| AgentPathError::EnvMissing(p));
    }
    // /proc/self/exe: absolute, with symlinks resolved (a `jvmwatch` linked into /usr/local/bin
    // still finds the bundle's lib/).
    let exe = std::env::current_exe().map_err(AgentPathError::NoExe)?;
    let tried = candidates(&exe);
    tried
        .iter()
        .find(|p| p.is_file())
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
        .ok_or(AgentPathError::NotFound(tried))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches_beside_the_binary_then_lib() {
        let c = candidates(Path::new("/opt/jvmwatch/bin/jvmwatch"));
        assert_eq!(c[0], Path::new("/opt/jvmwatch/bin/libjvmwatch.so"));
        assert_eq!(c[1], Path::new("/opt/jvmwatch/bin/../lib/libjvmwatch.so"));
        let e = AgentPathError::NotFound(c).to_string();
        assert!(e.contains("/opt/jvmwatch/bin/libjvmwatch.so") && e.contains("JVMWATCH_AGENT"), "{e}");
    }
}
