#![allow(clippy::unwrap_used)]
#![allow(clippy::print_stderr)] // the cluster support prints the logs of a failed test
//! Two real `chorus api` processes sharing an S3 bucket, with hot reload by listing. The bucket is served by
//! `moto` in server mode (an S3 emulator from PyPI, installed into .venv by `scripts/setup --dev`), started here:
//! it speaks the S3 wire protocol, conditional writes included, but it is not AWS.

mod cluster_support;
#[path = "../../chorus-artifacts/tests/moto/mod.rs"]
mod moto;

use std::process::Command;
use std::time::{Duration, Instant};

use cluster_support::{Cluster, create, http_get, json_call as call, poll, root, serial};
use moto::Moto;
use serde_json::json;

const PROPAGATION: Duration = Duration::from_secs(15);

fn moto() -> Moto {
    Moto::start(&root())
}

#[test]
fn two_api_servers_share_an_s3_bucket() {
    let _serial = serial();
    let moto = moto();
    assert_eq!(moto.request("PUT", "/voices-bucket", "").unwrap().0, 200);
    let endpoint = moto.endpoint();
    let env = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ];
    let args = ["--artifacts", "s3://voices-bucket/staging", "--reload-interval", "0.5"];
    let mut c = Cluster::new();
    let a = c.start_api_env(&args, &env);
    let b = c.start_api_env(&args, &env);
    let (a_addr, b_addr) = (c.apis[a].addr, c.apis[b].addr);

    // Created through A, listed by B (which only learns of it by listing the bucket).
    let id = create(
        a_addr,
        "/pronunciation-dicts/",
        json!({"name": "brands", "items": [{"text": "SQL", "alias": "sequel"}]}),
    );
    let (status, listing) = moto.request("GET", "/voices-bucket?list-type=2", "").unwrap();
    assert_eq!(status, 200);
    assert!(listing.contains(&format!("<Key>staging/pronunciation-dicts/{id}.json</Key>")), "{listing}");
    let seen = poll(PROPAGATION, || {
        let (_, body) = http_get(b_addr, "/pronunciation-dicts/").unwrap();
        body.contains(&id).then_some(())
    });
    assert!(seen.is_some(), "B never listed the dictionary created through A");

    // A stale version loses: 409 from B after A's update.
    let (_, _, version) = call(b_addr, "GET", &format!("/pronunciation-dicts/{id}"), &[], None);
    let version = version.unwrap();
    let rename = |api, name: &str| {
        let path = format!("/pronunciation-dicts/{id}");
        call(api, "PATCH", &path, &[("If-Match", &version)], Some(json!({ "name": name })))
    };
    let (status, _, _) = rename(a_addr, "brands v2");
    assert_eq!(status, 200);
    let (status, body, _) = rename(b_addr, "brands, B's edit");
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error_code"], "conflict");

    // An object put into the bucket by someone else is served; a corrupt one is skipped; removed, it is gone.
    let voice = json!({"name": "From the bucket", "language": "en", "model": cluster_support::MODEL});
    let (status, _) =
        moto.request("PUT", "/voices-bucket/staging/voices/bucket-voice.json", &voice.to_string()).unwrap();
    assert_eq!(status, 200);
    let (status, _) = moto.request("PUT", "/voices-bucket/staging/voices/corrupt.json", "{").unwrap();
    assert_eq!(status, 200);
    let served =
        poll(PROPAGATION, || (call(b_addr, "GET", "/voices/bucket-voice", &[], None).0 == 200).then_some(()));
    assert!(served.is_some(), "B never served the voice put into the bucket");
    let reported =
        poll(PROPAGATION, || c.apis[b].proc.log_text().contains("voices/corrupt.json").then_some(()));
    assert!(reported.is_some(), "the corrupt object was not reported");
    assert_eq!(call(b_addr, "GET", "/voices/corrupt", &[], None).0, 404);
    let (status, _) = moto.request("DELETE", "/voices-bucket/staging/voices/bucket-voice.json", "").unwrap();
    assert_eq!(status, 204);
    let gone =
        poll(PROPAGATION, || (call(a_addr, "GET", "/voices/bucket-voice", &[], None).0 == 404).then_some(()));
    assert!(gone.is_some(), "A still serves the voice removed from the bucket");

    // `chorus artifacts import` into the bucket, idempotent.
    let file = c.dir().join("batch.jsonl");
    std::fs::write(
        &file,
        json!({"type": "pronunciation_dict", "id": "imported", "name": "imported", "items": []}).to_string(),
    )
    .unwrap();
    let import = || {
        let out = Command::new(env!("CARGO_BIN_EXE_chorus"))
            .args([
                "artifacts",
                "import",
                "--artifacts",
                "s3://voices-bucket/staging",
                file.to_str().unwrap(),
            ])
            .envs(env)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(import().starts_with("created 1, updated 0, unchanged 0"));
    assert!(import().starts_with("created 0, updated 0, unchanged 1"));
    let t0 = Instant::now();
    let seen = poll(PROPAGATION, || {
        (call(b_addr, "GET", "/pronunciation-dicts/imported", &[], None).0 == 200).then_some(())
    });
    assert!(seen.is_some(), "B never served the imported dictionary ({:?})", t0.elapsed());
}
