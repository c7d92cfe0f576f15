#![allow(clippy::unwrap_used)]
#![allow(clippy::print_stderr)] // the cluster support prints the logs of a failed test
//! The artifact store end to end: two real `chorus api` processes (over a real `nats-server`, with one real
//! `chorus worker`) sharing one store directory; `chorus artifacts export | import` between two stores.

mod cluster_support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cluster_support::{
    Api, Cluster, MODEL, WorkerOpts, create, http_get, json_call as call, poll, request_with, serial,
};
use serde_json::{Value, json};

/// Seconds between two listings: the directory is also watched (inotify), so changes usually land sooner.
const RELOAD: &str = "1";
/// Upper bound for a change to reach the other server (several reload intervals: a loaded CI machine).
const PROPAGATION: Duration = Duration::from_secs(15);

/// Seconds of audio for `transcript` with a dictionary (raw PCM s16 at 22050 Hz).
fn tts_seconds(api: SocketAddr, transcript: &str, dict: &str) -> f64 {
    let body = json!({
        "model_id": "sonic-3",
        "transcript": transcript,
        "voice": {"mode": "id", "id": MODEL},
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 22050},
        "pronunciation_dict_id": dict,
    });
    let mut response = request_with(api, "POST", "/tts/bytes", &[], Some(&body.to_string())).unwrap();
    let status = response.status;
    let bytes = response.read_all().map_err(|(e, _)| e).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    bytes.len() as f64 / 2.0 / 22050.0
}

fn voice_ids(api: SocketAddr) -> Vec<String> {
    let (status, body) = http_get(api, "/voices?is_owner=true&limit=100").unwrap();
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    body["data"].as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap().to_owned()).collect()
}

fn counter(api: &Api, kind: &str, result: &str) -> f64 {
    api.scrape().value("chorus_artifacts_reload_total", &[("kind", kind), ("result", result)]).unwrap_or(0.0)
}

fn start_apis(c: &mut Cluster, store: &Path) -> (usize, usize) {
    let store = store.to_str().unwrap();
    let args = ["--artifacts", store, "--reload-interval", RELOAD];
    let a = c.start_api_with(&args);
    let b = c.start_api_with(&args);
    c.wait_apis_see_workers();
    (a, b)
}

#[test]
fn two_api_servers_share_one_store() {
    let _serial = serial();
    let store = tempfile::tempdir().unwrap();
    let mut c = Cluster::new();
    c.start_worker("w", WorkerOpts::with_capacity(4));
    let (a, b) = start_apis(&mut c, store.path());
    let (a_addr, b_addr) = (c.apis[a].addr, c.apis[b].addr);

    // A voice created through A is listed by B.
    let (status, voice, etag) = call(
        a_addr,
        "POST",
        "/voices",
        &[],
        Some(json!({"name": "Narrator", "base_voice_id": MODEL, "speed": 1.1})),
    );
    assert_eq!(status, 200, "{voice}");
    assert!(etag.is_some(), "a created voice answers its version in ETag");
    let id = voice["id"].as_str().unwrap().to_owned();
    assert!(store.path().join(format!("voices/{id}.json")).is_file());
    let seen = poll(PROPAGATION, || voice_ids(b_addr).contains(&id).then_some(()));
    assert!(seen.is_some(), "B never listed the voice created through A");

    // A conflicting update: both servers hold the same version; one update wins, every other one gets 409.
    let (_, _, etag_a) = call(a_addr, "GET", &format!("/voices/{id}"), &[], None);
    let (_, _, etag_b) = call(b_addr, "GET", &format!("/voices/{id}"), &[], None);
    let version = etag_a.unwrap();
    assert_eq!(etag_b.as_deref(), Some(version.as_str()));
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let (addr, version, id) = (if i % 2 == 0 { a_addr } else { b_addr }, version.clone(), id.clone());
            std::thread::spawn(move || {
                call(
                    addr,
                    "PATCH",
                    &format!("/voices/{id}"),
                    &[("If-Match", &version)],
                    Some(json!({"description": format!("writer {i}")})),
                )
            })
        })
        .collect();
    let results: Vec<(u16, Value, Option<String>)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let won: Vec<&Value> = results.iter().filter(|r| r.0 == 200).map(|r| &r.1).collect();
    assert_eq!(won.len(), 1, "exactly one writer wins: {results:?}");
    for (status, body, _) in results.iter().filter(|r| r.0 != 200) {
        assert_eq!(*status, 409, "{body}");
        assert_eq!(body["error_code"], "conflict", "{body}");
        assert!(body["request_id"].as_str().is_some_and(|r| !r.is_empty()), "{body}");
    }
    // The stored description is the winner's, on both servers.
    let winner = won[0]["description"].as_str().unwrap().to_owned();
    let converged = poll(PROPAGATION, || {
        let (_, v, _) = call(b_addr, "GET", &format!("/voices/{id}"), &[], None);
        (v["description"] == winner.as_str()).then_some(())
    });
    assert!(converged.is_some(), "B does not serve the winning update");
    // Without If-Match, an update re-reads the current version and goes through.
    let (status, body, _) =
        call(b_addr, "PATCH", &format!("/voices/{id}"), &[], Some(json!({"description": "final"})));
    assert_eq!(status, 200, "{body}");

    // A dictionary edited on disk changes the audio of the next request.
    let dict_id = create(
        a_addr,
        "/pronunciation-dicts/",
        json!({"name": "names", "items": [{"text": "Zork", "alias": "zork"}]}),
    );
    let seen = poll(PROPAGATION, || {
        (call(b_addr, "GET", &format!("/pronunciation-dicts/{dict_id}"), &[], None).0 == 200).then_some(())
    });
    assert!(seen.is_some(), "B never served the dictionary created through A");
    let before = tts_seconds(b_addr, "Zork.", &dict_id);
    let path = store.path().join(format!("pronunciation-dicts/{dict_id}.json"));
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let long = "the quick brown fox jumps over the lazy dog and runs far away";
    doc["items"] = json!([{"text": "Zork", "alias": long}]);
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let edited = poll(PROPAGATION, || {
        let (_, d, _) = call(b_addr, "GET", &format!("/pronunciation-dicts/{dict_id}"), &[], None);
        (d["items"][0]["alias"] == long).then_some(())
    });
    assert!(edited.is_some(), "B never loaded the dictionary edited on disk");
    let after = tts_seconds(b_addr, "Zork.", &dict_id);
    assert!(
        after > before + 1.5,
        "the edited alias should be spoken: {before:.2} s before, {after:.2} s after"
    );

    // A corrupt document is reported with its path and ignored; a good one corrupted keeps its loaded version.
    let invalid_before = counter(&c.apis[b], "dict", "invalid");
    std::fs::write(store.path().join("voices/broken.json"), "{ not json").unwrap();
    std::fs::write(&path, "{\"name\": \"names\", \"items\": [{\"text\": \"\"").unwrap();
    let reported = poll(PROPAGATION, || {
        let log = c.apis[b].proc.log_text();
        (log.contains("voices/broken.json") && log.contains(&format!("pronunciation-dicts/{dict_id}.json")))
            .then_some(())
    });
    assert!(reported.is_some(), "B did not report the corrupt files:\n{}", c.apis[b].proc.log_text());
    assert!(counter(&c.apis[b], "dict", "invalid") > invalid_before);
    assert!(counter(&c.apis[b], "voice", "invalid") >= 1.0);
    let (status, d, _) = call(b_addr, "GET", &format!("/pronunciation-dicts/{dict_id}"), &[], None);
    assert_eq!(status, 200, "the last good version stays loaded: {d}");
    assert_eq!(d["items"][0]["alias"], long);
    assert!(!voice_ids(b_addr).contains(&"broken".to_owned()));
    assert!(voice_ids(b_addr).contains(&id), "the good voice stays");
    assert_eq!(c.apis[b].scrape().value("chorus_artifacts_loaded", &[("kind", "voice")]), Some(1.0));
    assert!(c.apis[b].scrape().value("chorus_artifacts_last_sync_timestamp_seconds", &[]).unwrap() > 1.7e9);

    // A migration file dropped into the store is applied once, by one of the two servers.
    let migration = [
        json!({"type": "voice", "id": "migrated-voice", "name": "Migrated", "language": "en", "model": MODEL}),
        json!({"type": "pronunciation_dict", "id": "migrated-dict", "name": "Migrated",
               "items": [{"text": "SQL", "alias": "sequel"}]}),
    ]
    .iter()
    .map(Value::to_string)
    .collect::<Vec<_>>()
    .join("\n");
    std::fs::write(store.path().join("migrations/2026-01-batch.jsonl"), migration).unwrap();
    let landed = poll(PROPAGATION, || {
        let on_a = voice_ids(a_addr).contains(&"migrated-voice".to_owned());
        let on_b = call(b_addr, "GET", "/pronunciation-dicts/migrated-dict", &[], None).0 == 200;
        (on_a && on_b).then_some(())
    });
    assert!(landed.is_some(), "the migration was not applied");
    let appliers = c.apis.iter().filter(|api| counter(api, "migration", "applied") > 0.0).count();
    assert_eq!(appliers, 1, "exactly one server applies a migration");
    let marker: Value = serde_json::from_slice(
        &std::fs::read(store.path().join("migrations/applied/2026-01-batch.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(marker["state"], "applied", "{marker}");
    assert_eq!(marker["report"]["created"], 2, "{marker}");

    // Deleted through B: A answers 404.
    let (status, _, _) = call(b_addr, "DELETE", &format!("/voices/{id}"), &[], None);
    assert_eq!(status, 204);
    let gone = poll(PROPAGATION, || {
        (call(a_addr, "GET", &format!("/voices/{id}"), &[], None).0 == 404).then_some(())
    });
    assert!(gone.is_some(), "A still serves the voice deleted through B");
    // Deleted on disk: B answers 404.
    std::fs::remove_file(store.path().join("pronunciation-dicts/migrated-dict.json")).unwrap();
    let gone = poll(PROPAGATION, || {
        (call(b_addr, "GET", "/pronunciation-dicts/migrated-dict", &[], None).0 == 404).then_some(())
    });
    assert!(gone.is_some(), "B still serves the dictionary deleted on disk");
}

#[test]
fn hot_reload_can_be_turned_off() {
    let _serial = serial();
    let store = tempfile::tempdir().unwrap();
    let mut c = Cluster::new();
    let api = c.start_api_with(&[
        "--artifacts",
        store.path().to_str().unwrap(),
        "--reload-interval",
        "0.2",
        "--enable-hot-reload",
        "false",
    ]);
    let addr = c.apis[api].addr;
    let doc = json!({"name": "late", "items": []});
    std::fs::write(store.path().join("pronunciation-dicts/late.json"), doc.to_string()).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(call(addr, "GET", "/pronunciation-dicts/late", &[], None).0, 404);
    // Its own writes still go to the store.
    let id = create(addr, "/pronunciation-dicts/", json!({"name": "own"}));
    assert!(store.path().join(format!("pronunciation-dicts/{id}.json")).is_file());
}

fn chorus_artifacts(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .arg("artifacts")
        .args(args)
        .env_remove("CHORUS_ARTIFACTS")
        .env_remove("CHORUS_CONFIG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn export_import_round_trip_is_idempotent() {
    let (from, to, files) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (from_s, to_s) = (from.path().to_str().unwrap(), to.path().to_str().unwrap());
    // A store with two voices and a dictionary (written as an operator would).
    chorus_artifacts(&["export", "--artifacts", from_s, "--to", "/dev/null"]);
    {
        use std::os::unix::fs::FileTypeExt as _;
        let kind = std::fs::metadata("/dev/null").unwrap().file_type();
        assert!(kind.is_char_device(), "exporting to /dev/null replaced the device with a file");
    }
    for (id, name) in [("v1", "One"), ("v2", "Two")] {
        let doc = json!({"id": id, "name": name, "language": "en", "model": MODEL, "params": {"speed": 1.2}});
        std::fs::write(from.path().join(format!("voices/{id}.json")), doc.to_string()).unwrap();
    }
    let dict = json!({"name": "d", "items": [{"text": "SQL", "alias": "sequel"}]});
    std::fs::write(from.path().join("pronunciation-dicts/d1.json"), dict.to_string()).unwrap();

    let all = files.path().join("all.jsonl");
    let (ok, out, err) = chorus_artifacts(&["export", "--artifacts", from_s, "--to", all.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("exported 2 voices and 1 pronunciation dictionaries"), "{out}");
    assert_eq!(std::fs::read_to_string(&all).unwrap().lines().count(), 3);

    let (ok, out, err) = chorus_artifacts(&["import", "--artifacts", to_s, all.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(out.starts_with("created 3, updated 0, unchanged 0, failed 0"), "{out}");
    let (ok, out, err) = chorus_artifacts(&["import", "--artifacts", to_s, all.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(out.starts_with("created 0, updated 0, unchanged 3, failed 0"), "second import: {out}");

    // The second store exports the same records.
    let again = files.path().join("again.jsonl");
    let (ok, out, err) = chorus_artifacts(&["export", "--artifacts", to_s, "--to", again.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert_eq!(std::fs::read_to_string(&again).unwrap(), std::fs::read_to_string(&all).unwrap());

    // A changed record updates; a selection exports only what was asked; a bad line is reported.
    let one = files.path().join("one.jsonl");
    let (ok, out, err) =
        chorus_artifacts(&["export", "--artifacts", from_s, "--voices", "v2", "--to", one.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    let mut record: Value = serde_json::from_str(std::fs::read_to_string(&one).unwrap().trim()).unwrap();
    assert_eq!(record["id"], "v2");
    record["name"] = json!("Two, renamed");
    std::fs::write(&one, format!("{record}\n{{\"type\": \"voice\", \"id\": \"x\"}}\n")).unwrap();
    let (ok, out, err) = chorus_artifacts(&["import", "--artifacts", to_s, one.to_str().unwrap()]);
    assert!(!ok, "a bad record fails the command");
    assert!(out.starts_with("created 0, updated 1, unchanged 0, failed 1"), "{out}");
    assert!(err.contains("line 2"), "{err}");
    let stored: Value =
        serde_json::from_slice(&std::fs::read(to.path().join("voices/v2.json")).unwrap()).unwrap();
    assert_eq!(stored["name"], "Two, renamed");
}
