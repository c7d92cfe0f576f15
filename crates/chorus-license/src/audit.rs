//! Audit export (`GET /audit`) and its verification (`chorus audit verify`).
//!
//! The export is a tar archive:
//!
//! - `segments/segment-NNNNNNNN.log`: the ledger segments, as fsync'd at the moment of the export;
//! - `manifest.json`: format, time, the deployment's public key, the chain head (last sequence number and hash) and
//!   each segment's name, size and SHA-256;
//! - `manifest.sig`: the base64 Ed25519 signature of `manifest.json`'s bytes by the deployment key.
//!
//! Verification checks the signature, each segment against the manifest, the chain through all segments (a gap,
//! an edit, an unreadable entry), and that the chain ends at the signed head.

use std::io::{Read as _, Write as _};

use chorus_proto::secret::sha256_hex;

use crate::ledger::{Head, Snapshot, verify_chain};
use crate::license::{KeyPair, format_time, now_secs, verify_signature};

pub const MANIFEST: &str = "manifest.json";
pub const SIGNATURE: &str = "manifest.sig";
pub const FORMAT: &str = "chorus-audit-v1";

/// The signed description of an export.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub format: String,
    pub created_at: String,
    /// Base64 Ed25519 public key of the deployment that signed this manifest.
    pub deployment_public_key: String,
    pub licensee: Option<String>,
    pub head: Head,
    pub segments: Vec<SegmentInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SegmentInfo {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Builds the tar of `snapshot` (blocking: reads the segment files).
pub fn export(snapshot: &Snapshot, key: &KeyPair, licensee: Option<String>) -> std::io::Result<Vec<u8>> {
    let mut segments = Vec::new();
    for (path, len) in &snapshot.segments {
        let mut bytes = Vec::with_capacity(usize::try_from(*len).unwrap_or(0));
        std::fs::File::open(path)?.take(*len).read_to_end(&mut bytes)?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("segment").to_owned();
        segments.push((name, bytes));
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        created_at: format_time(now_secs()),
        deployment_public_key: key.public_base64(),
        licensee,
        head: snapshot.head.clone(),
        segments: segments
            .iter()
            .map(|(name, bytes)| SegmentInfo {
                name: name.clone(),
                bytes: bytes.len() as u64,
                sha256: sha256_hex(bytes),
            })
            .collect(),
    };
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
    let signature = key.sign(&manifest_bytes);

    let mut builder = tar::Builder::new(Vec::new());
    let mtime = now_secs();
    let mut add = |name: &str, data: &[u8]| -> std::io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_cksum();
        builder.append_data(&mut header, name, data)
    };
    add(MANIFEST, &manifest_bytes)?;
    add(SIGNATURE, signature.as_bytes())?;
    for (name, bytes) in &segments {
        add(&format!("segments/{name}"), bytes)?;
    }
    let mut out = builder.into_inner()?;
    out.flush()?;
    Ok(out)
}

/// What verifying an export found.
#[derive(Debug, Clone, Default)]
pub struct AuditReport {
    pub manifest: Option<Manifest>,
    pub entries: u64,
    /// Empty: the export is intact.
    pub problems: Vec<String>,
}

impl AuditReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What `chorus audit verify` prints: every problem, the signed head, and `OK` when intact.
impl std::fmt::Display for AuditReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for p in &self.problems {
            writeln!(f, "PROBLEM: {p}")?;
        }
        if let Some(m) = &self.manifest {
            writeln!(
                f,
                "{} entries in {} segments; signed head: entry {} ({}); signed by {}",
                self.entries,
                m.segments.len(),
                m.head.seq,
                m.head.hash,
                m.deployment_public_key
            )?;
        }
        if self.ok() {
            writeln!(f, "OK: the audit export is intact.")?;
        }
        Ok(())
    }
}

/// Verifies an export. `pinned_key` (base64), when given, must be the deployment key that signed it.
pub fn verify(archive: &[u8], pinned_key: Option<&str>) -> AuditReport {
    let mut report = AuditReport::default();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut tar = tar::Archive::new(archive);
    let entries = match tar.entries() {
        Ok(e) => e,
        Err(e) => {
            report.problems.push(format!("not a tar archive: {e}"));
            return report;
        }
    };
    for entry in entries {
        let read = entry.and_then(|mut e| {
            let name = e.path()?.to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data)?;
            Ok((name, data))
        });
        match read {
            Ok(file) => files.push(file),
            Err(e) => {
                report.problems.push(format!("unreadable archive entry: {e}"));
                return report;
            }
        }
    }
    let find = |name: &str| files.iter().find(|(n, _)| n == name).map(|(_, d)| d);
    let (Some(manifest_bytes), Some(signature)) = (find(MANIFEST), find(SIGNATURE)) else {
        report.problems.push(format!("the archive lacks {MANIFEST} or {SIGNATURE}"));
        return report;
    };
    let manifest: Manifest = match serde_json::from_slice(manifest_bytes) {
        Ok(m) => m,
        Err(e) => {
            report.problems.push(format!("unreadable manifest: {e}"));
            return report;
        }
    };
    let signature = String::from_utf8_lossy(signature);
    if !verify_signature(&manifest.deployment_public_key, manifest_bytes, &signature) {
        report.problems.push("the manifest signature does not verify (the manifest was edited)".into());
    }
    if let Some(pinned) = pinned_key
        && pinned.trim() != manifest.deployment_public_key
    {
        report.problems.push("the manifest is signed by another key than the one expected".into());
    }
    let mut segments = Vec::new();
    for info in &manifest.segments {
        let path = format!("segments/{}", info.name);
        match find(&path) {
            None => report.problems.push(format!("{path} is listed in the manifest but missing")),
            Some(bytes) => {
                if bytes.len() as u64 != info.bytes || sha256_hex(bytes) != info.sha256 {
                    report.problems.push(format!("{path} differs from the manifest (it was edited)"));
                }
                segments.push((info.name.clone(), bytes.clone()));
            }
        }
    }
    for (name, _) in &files {
        if let Some(seg) = name.strip_prefix("segments/")
            && !manifest.segments.iter().any(|s| s.name == seg)
        {
            report.problems.push(format!("{name} is not listed in the manifest"));
        }
    }
    let chain = verify_chain(&segments);
    report.entries = chain.entries;
    report.problems.extend(chain.problems);
    if chain.head.as_ref() != Some(&manifest.head) {
        report.problems.push(format!(
            "the chain ends at entry {} but the signed head is entry {}",
            chain.head.map_or(0, |h| h.seq),
            manifest.head.seq
        ));
    }
    report.manifest = Some(manifest);
    report
}

/// The usage records of an intact export's segments (for reconciliation tools and tests).
pub fn records(archive: &[u8]) -> std::io::Result<Vec<chorus_proto::license::UsageRecord>> {
    let mut out = Vec::new();
    let mut tar = tar::Archive::new(archive);
    let mut segs = Vec::new();
    for entry in tar.entries()? {
        let mut e = entry?;
        let name = e.path()?.to_string_lossy().into_owned();
        if name.starts_with("segments/") {
            let mut data = Vec::new();
            e.read_to_end(&mut data)?;
            segs.push((name, data));
        }
    }
    segs.sort();
    for (_, data) in segs {
        for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let entry: crate::ledger::Entry = serde_json::from_slice(line).map_err(std::io::Error::other)?;
            out.push(entry.record);
        }
    }
    Ok(out)
}
