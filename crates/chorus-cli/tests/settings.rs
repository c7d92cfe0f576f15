//! Each role's settings, resolved from the defaults, a config file, the environment and the flags, as
//! `--print-config` shows them: precedence, the libraries' defaults, redacted secrets, and bad values refused on
//! load with a message naming the setting. Nothing is started (no model, no NATS).

use std::process::{Command, Output};

fn chorus(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chorus"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CHORUS_")) {
        cmd.env_remove(k);
    }
    cmd.args(args).envs(env.iter().copied()).env("NO_COLOR", "1");
    cmd.output().expect("run chorus")
}

/// The printed settings, parsed.
fn printed(args: &[&str], env: &[(&str, &str)]) -> toml::Table {
    let out = chorus(args, env);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    toml::from_str(&stdout).unwrap_or_else(|e| panic!("--print-config is not TOML ({e}):\n{stdout}"))
}

fn get<'a>(t: &'a toml::Table, path: &str) -> &'a toml::Value {
    let mut parts = path.split('.');
    let mut v = t.get(parts.next().unwrap_or(path)).unwrap_or_else(|| panic!("{path} missing in {t}"));
    for p in parts {
        v = v.get(p).unwrap_or_else(|| panic!("{path} missing in {t}"));
    }
    v
}

#[test]
fn serve_prints_its_settings_layered_and_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("chorus.toml");
    std::fs::write(
        &config,
        "max_queue = 17\nmax_batch = 3\n[server]\nws_idle_seconds = 111\nheader_timeout_seconds = 4\n\
         [license]\ntrusted_keys = [\"file-key\"]\nupstream_token = \"file-token-secret\"\n",
    )
    .unwrap();
    let t = printed(
        &[
            "serve",
            "--print-config",
            "--config",
            config.to_str().unwrap(),
            "--header-timeout",
            "7",
            "--api-key",
            "flag-api-secret",
            "--admin-key",
            "flag-admin-secret",
            "--trust-key",
            "flag-key",
        ],
        &[("CHORUS_WS_MAX_CONTEXTS", "9"), ("CHORUS_MAX_BATCH", "5"), ("CHORUS_HEADER_TIMEOUT", "8")],
    );
    // The file over the defaults; the environment over the file; a flag over its environment variable.
    assert_eq!(get(&t, "max_queue").as_integer(), Some(17));
    assert_eq!(get(&t, "server.ws_idle_seconds").as_float(), Some(111.0));
    assert_eq!(get(&t, "max_batch").as_integer(), Some(5));
    assert_eq!(get(&t, "server.ws_max_contexts").as_integer(), Some(9));
    assert_eq!(get(&t, "server.header_timeout_seconds").as_float(), Some(7.0));
    // The libraries' defaults where nothing is given.
    assert_eq!(get(&t, "server.body_timeout_seconds").as_float(), Some(30.0));
    assert_eq!(get(&t, "server.ws_context_idle_seconds").as_float(), Some(20.0));
    assert_eq!(get(&t, "server.ws_max_message_bytes").as_integer(), Some(1 << 20));
    assert_eq!(get(&t, "listen").as_str(), Some("127.0.0.1:5000"));
    assert_eq!(get(&t, "license.mode").as_str(), Some("open"));
    assert_eq!(get(&t, "license.grace").as_str(), Some("7days"));
    assert_eq!(get(&t, "license_proxy").as_bool(), Some(true));
    // Trusted keys add up: the file's and the flag's.
    let trusted: Vec<&str> =
        get(&t, "license.trusted_keys").as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert_eq!(trusted, ["file-key", "flag-key"]);
    // Secrets never printed.
    let text = t.to_string();
    for secret in ["flag-api-secret", "flag-admin-secret", "file-token-secret"] {
        assert!(!text.contains(secret), "{secret} printed:\n{text}");
    }
    assert_eq!(get(&t, "api_keys").as_array().unwrap()[0].as_str(), Some("<redacted>"));
    assert_eq!(get(&t, "license.upstream_token").as_str(), Some("<redacted>"));
}

#[test]
fn every_role_prints_its_settings() {
    let t = printed(&["api", "--print-config", "--nats", "nats://127.0.0.1:4999", "--license-proxy"], &[]);
    assert_eq!(get(&t, "nats").as_str(), Some("nats://127.0.0.1:4999"));
    assert_eq!(get(&t, "license_proxy").as_bool(), Some(true));
    let t = printed(&["worker", "--print-config", "--drain-seconds", "12"], &[("CHORUS_MODEL", "m1")]);
    assert_eq!(get(&t, "model").as_str(), Some("m1"));
    assert_eq!(get(&t, "drain_seconds").as_integer(), Some(12));
    // The models' poll follows the reload interval when only that is given.
    let t = printed(&["worker", "--print-config", "--model", "m1", "--reload-interval", "0.5"], &[]);
    assert_eq!(get(&t, "models_poll_seconds").as_float(), Some(0.5));
    // One license shape: the proxy's short flags and serve's long ones set the same settings.
    let t = printed(
        &["license-proxy", "--print-config", "--mode", "connected", "--grace", "2h", "--data", "/tmp/x"],
        &[],
    );
    assert_eq!(get(&t, "license.mode").as_str(), Some("connected"));
    assert_eq!(get(&t, "license.grace").as_str(), Some("2h"));
    assert_eq!(get(&t, "license.data").as_str(), Some("/tmp/x"));
    let t = printed(&["license-proxy", "--print-config", "--license-mode", "open", "--air-gapped"], &[]);
    assert_eq!(get(&t, "license.mode").as_str(), Some("air-gapped"));
}

#[test]
fn bad_settings_are_refused_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[server]\nheader_timeout = 3\n").unwrap();
    for (args, env, expected) in [
        (vec!["serve", "--print-config", "--header-timeout=-1"], vec![], "--header-timeout must be"),
        (vec!["serve", "--print-config"], vec![("CHORUS_WS_IDLE_TIMEOUT", "0")], "--ws-idle-timeout must be"),
        (vec!["serve", "--print-config", "--ws-max-contexts", "0"], vec![], "--ws-max-contexts"),
        (vec!["serve", "--print-config", "--device", "tpu"], vec![], "tpu"),
        (vec!["serve", "--print-config", "--license-mode", "sometimes"], vec![], "unknown license mode"),
        (vec!["serve", "--print-config", "--config", typo.to_str().unwrap()], vec![], "invalid config"),
        (vec!["worker", "--print-config"], vec![], "--model"),
    ] {
        let out = chorus(&args, &env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} {env:?} was accepted");
        assert!(stderr.contains(expected), "{args:?} {env:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed settings");
    }
}

#[test]
fn shape_bucket_settings_follow_flags_then_environment_then_file_and_bad_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("chorus.toml");
    std::fs::write(&config, "shape_buckets = true\nbucket_frames = [256, 512]\nbucket_frame_rows = 1024\n")
        .unwrap();
    let file = config.to_str().unwrap();
    let t = printed(
        &["worker", "--print-config", "--model", "m", "--config", file, "--bucket-ids", "64,32"],
        &[],
    );
    assert_eq!(get(&t, "shape_buckets").as_bool(), Some(true));
    assert_eq!(get(&t, "bucket_ids").as_array().map(Vec::len), Some(2));
    assert_eq!(get(&t, "bucket_frame_rows").as_integer(), Some(1024));
    let t = printed(
        &["worker", "--print-config", "--model", "m", "--config", file, "--bucket-frames", "128"],
        &[("CHORUS_SHAPE_BUCKETS", "off")],
    );
    assert_eq!(get(&t, "shape_buckets").as_bool(), Some(false), "the environment over the file");
    assert_eq!(get(&t, "bucket_frames").as_array().map(Vec::len), Some(1), "a flag over the file");
    for bad in [
        vec!["--bucket-ids", "32,abc"],
        vec!["--shape-buckets", "maybe"],
        vec!["--shape-buckets", "on", "--bucket-frame-rows", "0"],
    ] {
        let args: Vec<&str> =
            ["worker", "--print-config", "--model", "m"].into_iter().chain(bad.clone()).collect();
        let out = chorus(&args, &[]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{bad:?} accepted");
        assert!(
            err.contains("not a positive number") || err.contains("invalid") || err.contains("shape buckets"),
            "{bad:?}: {err}"
        );
    }
}
