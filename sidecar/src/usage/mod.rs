//! Resource and license usage (docs/usage.md): one tamper-evident usage record per JVM per
//! interval, appended to the store's database with a SHA-256 hash chain (and, with a key, an
//! HMAC-signed chain head); license policy and alerts; usage reports.
//!
//! Records are append-only: the ledger has no update or delete path (a test greps this
//! module's source for one), and SQLite triggers refuse UPDATE and DELETE on its tables.

pub mod cli;
pub mod collect;
pub mod host;
pub mod ints;
pub mod ledger;
pub mod policy;
pub mod report;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A usage error.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// SQLite.
    #[error("usage ledger: {0}")]
    Db(#[from] rusqlite::Error),
    /// A file.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A bad file (bundle, policy, key).
    #[error("{0}")]
    Bad(String),
}

/// One usage record: what a JVM was given and what it used during one interval.
///
/// The canonical bytes (hashed) are this struct as compact JSON, fields in declaration
/// order, integers only (cores in millicores), so they are the same on every machine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// Position in the chain, from 1, contiguous.
    pub seq: i64,
    /// End of the interval, ms since the epoch.
    pub at_ms: i64,
    /// Length of the interval, ms.
    pub interval_ms: i64,
    /// Host label.
    pub host: String,
    /// Datacenter label (may be empty).
    pub datacenter: String,
    /// App.
    pub app: String,
    /// Instance id (ring file stem).
    pub instance: String,
    /// Process id.
    pub pid: i64,
    /// Processor vendor (`GenuineIntel`, `AuthenticAMD`, ...).
    pub cpu_vendor: String,
    /// Processor model name.
    pub cpu_model: String,
    /// `family/model/stepping`.
    pub cpu_fms: String,
    /// Normalised processor class (docs/usage.md).
    pub proc_class: String,
    /// Hypervisor (`none`, `kvm`, `xen`, `vmware`, `hyperv`, `unknown-hypervisor`, ...).
    pub hypervisor: String,
    /// Logical processors of the host.
    pub host_cores: i64,
    /// Processors the JVM was told (what `Runtime.availableProcessors()` returns).
    pub cores_told: i64,
    /// `-XX:ActiveProcessorCount`, 0 when not set.
    pub active_processor_count: i64,
    /// cgroup CPU quota in millicores, -1 when unlimited.
    pub cpu_quota_milli: i64,
    /// CPUs the process may run on (`0-3,6`).
    pub cpuset: String,
    /// cgroup memory limit, bytes, -1 when unlimited.
    pub mem_limit: i64,
    /// Cores used, average over the interval, millicores.
    pub cores_avg_milli: i64,
    /// Cores used, peak sub-interval within the interval, millicores.
    pub cores_peak_milli: i64,
    /// Resident set size at the end of the interval, bytes.
    pub rss_bytes: i64,
    /// Heap used (latest agent snapshot), bytes.
    pub heap_bytes: i64,
    /// Bytes read from storage in the interval (`/proc/PID/io`), -1 when not permitted.
    pub io_read_bytes: i64,
    /// Bytes written to storage in the interval, -1 when not permitted.
    pub io_write_bytes: i64,
}

impl UsageRecord {
    /// The canonical bytes that are hashed.
    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// `SHA-256(prev ‖ canonical)`.
    pub fn chain_hash(&self, prev: &[u8; 32]) -> [u8; 32] {
        self.chain_hash_with(prev, &mut Vec::new())
    }

    /// [`Self::chain_hash`], with `buf` for the canonical bytes (reused across records).
    pub fn chain_hash_with(&self, prev: &[u8; 32], buf: &mut Vec<u8>) -> [u8; 32] {
        buf.clear();
        // Serialising plain fields into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *buf, self);
        chain_hash_of(prev, buf)
    }

    /// Its measures.
    pub fn measures(&self) -> Measures {
        [
            self.cores_avg_milli,
            self.cores_peak_milli,
            self.rss_bytes,
            self.heap_bytes,
            self.io_read_bytes,
            self.io_write_bytes,
        ]
    }

    /// The JSON text of its facts (fields `host` through `mem_limit`, which are contiguous in
    /// the canonical bytes), exactly as [`Self::canonical`] writes them: the middle of every
    /// canonical record with these facts (see [`canonical_from_parts`]).
    pub fn facts_fragment(&self) -> Vec<u8> {
        let facts = UsageRecord {
            seq: 0,
            at_ms: 0,
            interval_ms: 0,
            cores_avg_milli: 0,
            cores_peak_milli: 0,
            rss_bytes: 0,
            heap_bytes: 0,
            io_read_bytes: 0,
            io_write_bytes: 0,
            ..self.clone()
        };
        let full = facts.canonical();
        full[CANON_HEAD.len()..full.len() - CANON_TAIL.len()].to_vec()
    }

    /// Cores used, average.
    pub fn cores_avg(&self) -> f64 {
        self.cores_avg_milli as f64 / 1000.0
    }

    /// Cores used, peak.
    pub fn cores_peak(&self) -> f64 {
        self.cores_peak_milli as f64 / 1000.0
    }
}

/// What [`UsageRecord::canonical`] writes before the facts, with zeros.
const CANON_HEAD: &str = r#"{"seq":0,"at_ms":0,"interval_ms":0,"#;
/// And after them.
const CANON_TAIL: &str =
    r#","cores_avg_milli":0,"cores_peak_milli":0,"rss_bytes":0,"heap_bytes":0,"io_read_bytes":0,"io_write_bytes":0}"#;

/// The measures of a record, in canonical order: `cores_avg_milli`, `cores_peak_milli`,
/// `rss_bytes`, `heap_bytes`, `io_read_bytes`, `io_write_bytes`.
pub type Measures = [i64; 6];

/// Writes into `buf` the canonical bytes of the record with these numbers and the facts whose
/// [`UsageRecord::facts_fragment`] is `facts`: the same bytes as [`UsageRecord::canonical`],
/// without serialising (or escaping) the facts' strings again.
pub fn canonical_from_parts(buf: &mut Vec<u8>, seq: i64, at_ms: i64, interval_ms: i64, facts: &[u8], m: &Measures) {
    let mut n = itoa::Buffer::new();
    buf.clear();
    buf.extend_from_slice(br#"{"seq":"#);
    buf.extend_from_slice(n.format(seq).as_bytes());
    buf.extend_from_slice(br#","at_ms":"#);
    buf.extend_from_slice(n.format(at_ms).as_bytes());
    buf.extend_from_slice(br#","interval_ms":"#);
    buf.extend_from_slice(n.format(interval_ms).as_bytes());
    buf.push(b',');
    buf.extend_from_slice(facts);
    for (name, v) in [
        &br#","cores_avg_milli":"#[..],
        br#","cores_peak_milli":"#,
        br#","rss_bytes":"#,
        br#","heap_bytes":"#,
        br#","io_read_bytes":"#,
        br#","io_write_bytes":"#,
    ]
    .into_iter()
    .zip(m)
    {
        buf.extend_from_slice(name);
        buf.extend_from_slice(n.format(*v).as_bytes());
    }
    buf.push(b'}');
}

/// `SHA-256(prev ‖ bytes)`.
pub fn chain_hash_of(prev: &[u8; 32], bytes: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(bytes);
    h.finalize().into()
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Parses lower- or upper-case hex.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() & 1 == 1 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// HMAC-SHA256 of `msg` under `key`.
pub fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(msg);
    m.finalize().into_bytes().into()
}

/// Reads a key file (its bytes, surrounding whitespace trimmed; at least 16 bytes).
pub fn read_key(path: &std::path::Path) -> Result<Vec<u8>, UsageError> {
    let raw = std::fs::read(path).map_err(|e| UsageError::Bad(format!("key file {}: {e}", path.display())))?;
    let key = raw.trim_ascii().to_vec();
    if key.len() < 16 {
        return Err(UsageError::Bad(format!("key file {}: at least 16 bytes expected", path.display())));
    }
    Ok(key)
}

/// The message a chain head's HMAC covers: `jvmwatch-usage-head/1 SEQ HASHHEX`.
pub fn head_message(seq: i64, hash: &[u8]) -> Vec<u8> {
    format!("jvmwatch-usage-head/1 {seq} {}", hex(hash)).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_from_parts_is_the_canonical_bytes() {
        let odd = UsageRecord {
            seq: i64::MAX,
            at_ms: -5,
            interval_ms: 60_000,
            host: "h\"1\\ \u{1} é ☃".into(),
            datacenter: String::new(),
            app: "a,b\n".into(),
            instance: "i</script>".into(),
            pid: -1,
            cpu_model: "Intel(R) Xeon(R) \t".into(),
            host_cores: 32,
            cpu_quota_milli: -1,
            mem_limit: i64::MIN,
            cores_avg_milli: 1234,
            cores_peak_milli: -7,
            rss_bytes: 1 << 40,
            io_read_bytes: -1,
            io_write_bytes: 0,
            ..UsageRecord::default()
        };
        for r in [UsageRecord::default(), odd] {
            let mut buf = Vec::new();
            canonical_from_parts(&mut buf, r.seq, r.at_ms, r.interval_ms, &r.facts_fragment(), &r.measures());
            assert_eq!(String::from_utf8(buf).unwrap(), String::from_utf8(r.canonical()).unwrap());
        }
    }
}
