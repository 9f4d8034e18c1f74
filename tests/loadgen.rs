//! `receptionist loadgen` end to end: the real binary starts its own server (scripted backends;
//! once the offline models), places a few concurrent calls (Twilio, then a short run on each other
//! carrier) and prints one JSON line (one per level with `--levels`). Only outcomes are checked,
//! never timings.

use std::process::Command;

use serde_json::Value;

#[test]
fn self_spawned_run_completes_every_call() {
    let (r, stderr) = short_run(5, 15, 90, &[]);
    assert_eq!(r["calls_started"], 5, "{r}");
    assert_eq!(r["calls_completed"], 5, "{r}\n{stderr}");
    assert_eq!(r["calls_failed"], 0, "{r}");
    assert_eq!(r["protocol_errors"], 0, "{r}");
    assert_eq!(r["peak_concurrent_calls"], 5, "{r}");
    // every measurement is present (values are not judged here)
    assert!(r["agent_frames_received"].as_u64().unwrap() > 0, "{r}");
    assert!(r["marks_echoed"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["first_greeting_n"], 5, "{r}");
    for key in [
        "server_cpu_s_per_call_s",
        "server_rss_peak_kib",
        "server_rss_baseline_kib",
        "rss_per_call_kib",
        "rss_anon_per_call_kib",
        "server_rss_anon_peak_kib",
        "jitter_gap_ms_p50",
        "jitter_gap_ms_p99",
        "jitter_gap_ms_max",
        "first_greeting_ms_p50",
        "first_greeting_ms_p99",
        "loadgen_cpu_s",
    ] {
        assert!(r[key].is_number(), "{key} missing in {r}");
    }
    for key in [
        "response_latency_ms_p50",
        "response_latency_ms_p99",
        "server_added_latency_ms_p50",
        "server_added_latency_ms_p99",
        "late_frames",
        "playout_gaps",
        "playout_gap_ms_max",
        "run_secs",
    ] {
        assert!(r.get(key).is_some(), "{key} missing in {r}");
    }
}

/// `--barge-in-every 1`: from its third answer on, each caller talks over the agent's line; the
/// agent stops for each (a `clear`) and the report says how soon.
#[test]
fn callers_who_talk_over_the_agent_stop_it_and_the_report_says_how_soon() {
    let (r, stderr) = short_run(3, 30, 120, &["--barge-in-every", "1"]);
    assert_eq!(r["calls_completed"], 3, "{r}\n{stderr}");
    assert_eq!(r["protocol_errors"], 0, "{r}");
    let barge_ins = r["barge_ins"].as_u64().unwrap();
    assert!(barge_ins >= 3, "each caller talked over the agent: {r}");
    // 30 s end before the closing lines, which cannot be interrupted: every talk stopped it
    assert_eq!(r["barge_ins_unstopped"], 0, "{r}");
    assert!(r["clears"].as_u64().unwrap() >= barge_ins, "{r}");
    assert!(r["barge_in_clear_ms_p50"].is_number(), "{r}");
    assert!(r["barge_in_clear_ms_p99"].is_number(), "{r}");
}

/// The providers' paths under load: the server hears through a transcription stand-in, speaks
/// through a streaming ElevenLabs stand-in (paced as it synthesises) and consults a chat model
/// stand-in; every call completes and each path's stage is measured.
#[test]
fn a_run_through_the_provider_stand_ins_completes_every_call() {
    let (r, stderr) = short_run(
        3,
        20,
        90,
        &[
            "--stt-stand-in",
            "--llm-stand-in",
            "--tts-stand-in",
            "--tts-stand-in-pace-ms",
            "20",
        ],
    );
    assert_eq!(r["calls_completed"], 3, "{r}\n{stderr}");
    assert_eq!(r["calls_failed"], 0, "{r}");
    assert_eq!(r["protocol_errors"], 0, "{r}");
    let stages = &r["server_stage_latency_ms"];
    for stage in ["stt_ms", "llm_first_ms", "tts_ms", "total_ms"] {
        assert!(
            stages[stage]["n"].as_u64().is_some_and(|n| n > 0),
            "{stage} not measured: {r}"
        );
    }
}

/// The neural offline defaults under load (`--backends offline`): the started server hears the
/// callers with Whisper, ends their turns with Smart Turn and speaks with Piper, from the installed
/// models; every call completes and its turns are answered and measured.
#[test]
fn a_run_on_the_offline_models_completes_every_call() {
    let models = receptionist::testing::installed_models_dir();
    let (r, stderr) = short_run(
        2,
        25,
        120,
        &[
            "--backends",
            "offline",
            "--models-dir",
            models.to_str().unwrap(),
        ],
    );
    assert_eq!(r["calls_completed"], 2, "{r}\n{stderr}");
    assert_eq!(r["calls_failed"], 0, "{r}");
    assert_eq!(r["protocol_errors"], 0, "{r}");
    assert!(
        stderr.contains("starting a server (offline backends)"),
        "{stderr}"
    );
    // the callers were heard and answered: turns ended, recognised and replied to
    assert!(
        r["response_latency_n"].as_u64().is_some_and(|n| n > 0),
        "{r}"
    );
    let stages = &r["server_stage_latency_ms"];
    for stage in ["endpointing_ms", "stt_ms", "total_ms"] {
        assert!(
            stages[stage]["n"].as_u64().is_some_and(|n| n > 0),
            "{stage} not measured: {r}"
        );
    }
}

/// [`loadgen`] with `calls` calls started within a second, each `duration_secs` long, everything
/// stopped after `max_secs`, and `extra` arguments.
fn short_run(calls: u32, duration_secs: u32, max_secs: u32, extra: &[&str]) -> (Value, String) {
    let (calls, duration, max) = (
        calls.to_string(),
        duration_secs.to_string(),
        max_secs.to_string(),
    );
    let mut args = vec![
        "--calls",
        &calls,
        "--ramp-secs",
        "1",
        "--duration-secs",
        &duration,
        "--max-secs",
        &max,
    ];
    args.extend_from_slice(extra);
    loadgen(&args)
}

/// `receptionist loadgen ARGS` on its own server with the fixtures: its one-line report (it
/// must succeed), and its stderr.
fn loadgen(args: &[&str]) -> (Value, String) {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/audio-fixtures");
    let out = Command::new(env!("CARGO_BIN_EXE_receptionist"))
        .arg("loadgen")
        .args(args)
        .args(["--fixtures", fixtures])
        .env_remove("TWILIO_AUTH_TOKEN")
        .env_remove("RECEPTIONIST_API_KEY")
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "loadgen failed:\n{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "one JSON line expected:\n{stdout}\n{stderr}"
    );
    (
        serde_json::from_str(lines[0]).expect("the report is JSON"),
        stderr,
    )
}

/// A short soak (CI's version of `scripts/soak`): 20 calls kept going for a minute, each hung up
/// after 15 s and replaced at once; then the curve, the memory verdict, and every completed
/// call's records checked through the API (end reason, transcript, a finished recording as long
/// as the call).
#[test]
fn short_soak_replaces_calls_and_every_record_is_complete() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/audio-fixtures");
    let out = Command::new(env!("CARGO_BIN_EXE_receptionist"))
        .args(["loadgen", "--soak-secs", "60", "--calls", "20"])
        .args([
            "--ramp-secs",
            "5",
            "--duration-secs",
            "15",
            "--sample-secs",
            "5",
        ])
        .args(["--max-secs", "240", "--fixtures", fixtures])
        .env_remove("TWILIO_AUTH_TOKEN")
        .env_remove("RECEPTIONIST_API_KEY")
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "loadgen failed:\n{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let r: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");

    // each of the 20 slots placed a call about every 15 s for a minute
    let started = r["calls_started"].as_u64().unwrap();
    assert!(started >= 60, "calls were not replaced: {r}");
    assert_eq!(r["calls_completed"], started, "{r}\n{stderr}");
    assert_eq!(r["calls_failed"], 0, "{r}");
    assert_eq!(r["protocol_errors"], 0, "{r}");
    assert_eq!(r["peak_concurrent_calls"], 20, "{r}");
    // every completed call's records
    assert_eq!(r["records_checked"], started, "{r}");
    assert_eq!(r["records_incomplete"], 0, "{r}");
    // the curve: a point every 5 s over the minute and the last calls' end
    let curve = r["curve"].as_array().expect("a curve");
    assert!(curve.len() >= 13, "{r}");
    for p in curve {
        assert!(
            p["t_s"].is_number() && p["rss_kib"].as_u64().unwrap() > 0,
            "{p}"
        );
        assert!(p["active"].as_u64().unwrap() <= 20, "{p}");
    }
    assert!(
        curve
            .iter()
            .any(|p| p["active"] == 20 && p["rss_per_call_kib"].is_number()),
        "{r}"
    );
    // the verdict is made (its value is the soak's finding, not judged here)
    let memory = &r["memory"];
    assert!(memory["steady_points"].as_u64().unwrap() >= 6, "{memory}");
    assert!(memory["flat"].is_boolean(), "{memory}");
    assert!(memory["growth_pct"].is_number(), "{memory}");
}

/// A short run on each other carrier (the loadgen's own server has every carrier's test
/// credentials), so that `--carrier` cannot rot.
macro_rules! short_run_on {
    ($($name:ident: $carrier:literal),* $(,)?) => {
        $(#[test]
        fn $name() {
            short_run_on($carrier);
        })*
    };
}

short_run_on!(
    telnyx_short_run: "telnyx",
    plivo_short_run: "plivo",
    vonage_short_run: "vonage",
    signalwire_short_run: "signalwire",
    exotel_short_run: "exotel",
);

fn short_run_on(carrier: &str) {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/audio-fixtures");
    let out = Command::new(env!("CARGO_BIN_EXE_receptionist"))
        .args([
            "loadgen",
            "--carrier",
            carrier,
            "--calls",
            "2",
            "--ramp-secs",
            "0.5",
        ])
        .args(["--duration-secs", "8", "--max-secs", "60", "--threads", "1"])
        .args(["--fixtures", fixtures])
        .env_remove("TWILIO_AUTH_TOKEN")
        .env_remove("RECEPTIONIST_API_KEY")
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{carrier}: loadgen failed:\n{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let r: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(r["calls_started"], 2, "{carrier}: {r}");
    assert_eq!(r["calls_completed"], 2, "{carrier}: {r}\n{stderr}");
    assert_eq!(r["calls_failed"], 0, "{carrier}: {r}");
    assert_eq!(r["protocol_errors"], 0, "{carrier}: {r}");
    assert_eq!(r["first_greeting_n"], 2, "{carrier}: {r}");
    assert!(
        r["agent_frames_received"].as_u64().unwrap() > 0,
        "{carrier}: {r}"
    );
    // Vonage has no marks: the server times it by its own play-out clock
    if carrier != "vonage" {
        assert!(r["marks_echoed"].as_u64().unwrap() > 0, "{carrier}: {r}");
    }
}

/// `--levels`: one run per level, each on a fresh server, one JSON line each as it finishes.
#[test]
fn levels_run_one_after_another() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/audio-fixtures");
    let out = Command::new(env!("CARGO_BIN_EXE_receptionist"))
        .args(["loadgen", "--levels", "2,3", "--ramp-secs", "0.5"])
        .args(["--duration-secs", "8", "--max-secs", "60", "--threads", "1"])
        .args(["--fixtures", fixtures])
        .env_remove("TWILIO_AUTH_TOKEN")
        .env_remove("RECEPTIONIST_API_KEY")
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "loadgen failed:\n{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let reports: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(reports.len(), 2, "two JSON lines expected:\n{stdout}");
    let mut pids = Vec::new();
    for (r, level) in reports.iter().zip([2, 3]) {
        assert_eq!(r["level"], level, "{r}");
        assert_eq!(r["calls"], level, "{r}");
        assert_eq!(r["calls_completed"], level, "{r}\n{stderr}");
        assert_eq!(r["calls_failed"], 0, "{r}");
        assert_eq!(r["protocol_errors"], 0, "{r}");
        pids.push(r["server_pid"].as_u64().expect("a server of its own"));
    }
    assert_ne!(pids[0], pids[1], "each level on a fresh server");
    // the memory a level's added calls cost: from the second level on
    assert!(
        reports[0].get("rss_per_added_call_kib").is_none(),
        "{}",
        reports[0]
    );
    if cfg!(target_os = "linux") {
        assert!(
            reports[1]["rss_per_added_call_kib"].is_number()
                && reports[1]["rss_anon_per_added_call_kib"].is_number(),
            "{}",
            reports[1]
        );
    }
    assert!(
        stderr.contains("cpu_s/call_s"),
        "no summary table:\n{stderr}"
    );
}

#[test]
fn levels_refuse_a_running_server() {
    let out = Command::new(env!("CARGO_BIN_EXE_receptionist"))
        .args(["loadgen", "--levels", "10,100"])
        .args(["--server", "http://127.0.0.1:8080", "--to", "+15550001111"])
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--levels") && stderr.contains("--server"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn refuses_servers_off_loopback() {
    let out = Command::new(env!("CARGO_BIN_EXE_receptionist"))
        .args([
            "loadgen",
            "--server",
            "http://192.0.2.1:8080",
            "--to",
            "+15550001111",
        ])
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("only targets loopback"), "{stderr}");
    assert!(out.stdout.is_empty());
}
