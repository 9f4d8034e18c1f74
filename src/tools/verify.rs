//! `receptionist verify`: which calls' records are incomplete. It reads the database and the data
//! directory (never writes either) and prints one line per finding, with call ids only (no phone
//! number, name or transcript), then a summary; it exits 1 if any call's records are incomplete.
//!
//! A call is incomplete when:
//! - records of it wait in the journal (the database did not take them yet: a server with this
//!   data directory replays them when it starts, or while it runs);
//! - its events are not numbered 0, 1, 2, … without a gap (one was lost);
//! - it ended but its end reason or after-call work is missing;
//! - it ended but its recording is missing, is not a WAV file, has a header that disagrees with its
//!   length, or is far shorter than the call;
//! - it has been in progress for longer than any call may last (`--max-call-secs`): a node stopped
//!   without marking it (a node marks its own at its next start).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::server::persist;
use crate::store::{CallAudit, Store, now_ms};

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Database URL: `sqlite://path` or `postgres://...`. Default: the SQLite file in the data
    /// directory.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// The server's data directory (recordings, journal).
    #[arg(long, env = "RECEPTIONIST_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// A call in progress for longer than this is reported as left unfinished.
    #[arg(long, default_value_t = 3600 + 600)]
    pub max_call_secs: u64,
    /// One JSON object per finding instead of text.
    #[arg(long)]
    pub json: bool,
}

/// One incomplete call and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Finding {
    pub call_id: String,
    pub problem: String,
}

/// What `verify` found.
#[derive(Debug, Default)]
pub struct Report {
    pub calls: usize,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn incomplete_calls(&self) -> usize {
        let mut ids: Vec<_> = self.findings.iter().map(|f| &f.call_id).collect();
        ids.sort();
        ids.dedup();
        ids.len()
    }
}

/// A recording is short when it lacks more than this much of the call (the recording starts with
/// the media stream, a moment after the call's clock).
const RECORDING_SLACK_MS: i64 = 2_000;

/// Check every call in `store` against the data directory.
pub async fn verify(store: &Store, data_dir: &Path, max_call_ms: i64) -> anyhow::Result<Report> {
    let calls = store.audit_calls().await?;
    let journal_dir = data_dir.join("journal");
    let mut report = Report {
        calls: calls.len(),
        findings: Vec::new(),
    };
    let mut note = |call_id: &str, problem: String| {
        report.findings.push(Finding {
            call_id: call_id.to_string(),
            problem,
        })
    };
    for (call_id, path) in persist::pending_journals(&journal_dir) {
        match persist::read_journal(&path) {
            Ok(records) => note(
                &call_id,
                format!(
                    "{} record(s) wait in the journal for the database ({})",
                    records.len(),
                    path.display()
                ),
            ),
            Err(e) => note(&call_id, format!("unreadable journal: {e}")),
        }
    }
    let now = now_ms();
    for call in &calls {
        for problem in check_call(call, data_dir, now, max_call_ms) {
            note(&call.id, problem);
        }
    }
    Ok(report)
}

fn check_call(call: &CallAudit, data_dir: &Path, now: i64, max_call_ms: i64) -> Vec<String> {
    let mut problems = Vec::new();
    if call.events != call.max_seq + 1 {
        problems.push(format!(
            "events are not contiguous: {} stored, numbered up to {}",
            call.events, call.max_seq
        ));
    }
    match call.status.as_str() {
        "completed" | "interrupted" => {
            if call.end_reason.is_none() {
                problems.push("ended without an end reason".into());
            }
            if !call.after_call_done {
                problems.push("ended, but its after-call work has not run".into());
            }
            if let Some(rel) = &call.recording_path {
                let expected = call.duration_ms.unwrap_or(0);
                if let Err(e) = check_recording(&data_dir.join(rel), expected) {
                    problems.push(format!("recording: {e}"));
                }
            }
        }
        "in_progress" if call.started_at.is_some_and(|t| now - t > max_call_ms) => {
            problems.push("in progress for longer than a call can last: its node stopped without ending it (it is marked interrupted when that node starts)".into());
        }
        _ => {}
    }
    problems
}

/// The recording is a WAV file whose header agrees with its length and which covers the call.
fn check_recording(path: &Path, expected_ms: i64) -> Result<(), String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let mut header = [0u8; 44];
    f.read_exact(&mut header)
        .map_err(|_| format!("{}: shorter than a WAV header", path.display()))?;
    if &header[0..4] != b"RIFF" || &header[8..12] != b"WAVE" || &header[36..40] != b"data" {
        return Err(format!("{}: not a WAV file", path.display()));
    }
    let u16_at = |i: usize| u16::from_le_bytes([header[i], header[i + 1]]) as u64;
    let u32_at = |i: usize| {
        u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]) as u64
    };
    let (channels, rate, bits, data) = (u16_at(22), u32_at(24), u16_at(34), u32_at(40));
    if data != len - 44 {
        return Err(format!(
            "{}: the header says {data} bytes of audio, the file holds {}",
            path.display(),
            len - 44
        ));
    }
    let bytes_per_ms = (channels * rate * bits / 8).max(1) as f64 / 1000.0;
    let recorded_ms = (data as f64 / bytes_per_ms) as i64;
    if recorded_ms + RECORDING_SLACK_MS + expected_ms / 20 < expected_ms {
        return Err(format!(
            "{}: {recorded_ms} ms of audio for a call of {expected_ms} ms",
            path.display()
        ));
    }
    Ok(())
}

/// The command: print the findings and a summary; `Ok(false)` when any call is incomplete.
pub async fn run(args: &VerifyArgs, store: &Store) -> anyhow::Result<bool> {
    let max_call_ms = (args.max_call_secs * 1000) as i64;
    let report = verify(store, &args.data_dir, max_call_ms).await?;
    for f in &report.findings {
        if args.json {
            println!("{}", serde_json::to_string(f)?);
        } else {
            println!("call {}: {}", f.call_id, f.problem);
        }
    }
    eprintln!(
        "verify: {} call(s) checked, {} incomplete",
        report.calls,
        report.incomplete_calls()
    );
    Ok(report.findings.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audit(status: &str) -> CallAudit {
        CallAudit {
            id: "c".into(),
            status: status.into(),
            started_at: Some(0),
            duration_ms: Some(10_000),
            end_reason: Some("completed".into()),
            recording_path: Some("recordings/c.wav".into()),
            after_call_done: true,
            events: 3,
            max_seq: 2,
        }
    }

    fn wav(dir: &Path, ms: usize) {
        let samples = vec![0i16; ms * 16];
        let mut bytes = crate::backends::wav::encode(&samples, 8000);
        // stereo: same bytes, two channels at 8 kHz
        bytes[22] = 2;
        bytes[28..32].copy_from_slice(&(8000u32 * 4).to_le_bytes());
        bytes[32] = 4;
        std::fs::create_dir_all(dir.join("recordings")).unwrap();
        std::fs::write(dir.join("recordings/c.wav"), bytes).unwrap();
    }

    #[test]
    fn a_complete_call_has_no_findings_and_each_hole_is_named() {
        let dir = tempfile::tempdir().unwrap();
        wav(dir.path(), 9_500);
        let hour = 3_600_000;
        assert_eq!(
            check_call(&audit("completed"), dir.path(), 1, hour),
            Vec::<String>::new()
        );

        let gap = CallAudit {
            events: 2,
            ..audit("completed")
        };
        assert!(check_call(&gap, dir.path(), 1, hour)[0].contains("not contiguous"));
        let no_after = CallAudit {
            after_call_done: false,
            ..audit("interrupted")
        };
        assert!(check_call(&no_after, dir.path(), 1, hour)[0].contains("after-call"));
        let long = CallAudit {
            duration_ms: Some(60_000),
            ..audit("completed")
        };
        assert!(check_call(&long, dir.path(), 1, hour)[0].contains("ms of audio"));
        assert!(
            check_call(&audit("in_progress"), dir.path(), 2 * hour, hour)[0]
                .contains("in progress")
        );
        assert!(check_call(&audit("in_progress"), dir.path(), 1, hour).is_empty());

        // a header that disagrees with the file (a crash before the header was fixed up)
        let path = dir.path().join("recordings/c.wav");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, &[0; 400]).unwrap();
        assert!(check_call(&audit("completed"), dir.path(), 1, hour)[0].contains("header says"));
        std::fs::remove_file(&path).unwrap();
        assert!(check_call(&audit("completed"), dir.path(), 1, hour)[0].contains("recording"));
    }
}
