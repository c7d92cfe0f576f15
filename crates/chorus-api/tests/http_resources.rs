//! Voices and pronunciation dictionaries: CRUD, validation, pagination, and their use in synthesis.
#![allow(clippy::unwrap_used)]

mod http_support;

use http_support::{DE_VOICE, EN_VOICE, TestServer, patch_json, post_json, post_raw, request, tts_body};
use serde_json::{Value, json};

/// Walks a list endpoint with `starting_after` until an empty page, as the SDKs do; returns every id.
async fn walk(server: &TestServer, base: &str, limit: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let mut uri = format!("{base}?limit={limit}");
    for _ in 0..100 {
        let page = server.fetch(request("GET", &uri)).await.json();
        let data = page["data"].as_array().unwrap();
        if data.is_empty() {
            assert_eq!(page["has_more"], false);
            return ids;
        }
        assert!(data.len() <= limit);
        let last = data.last().unwrap()["id"].as_str().unwrap().to_owned();
        ids.extend(data.iter().map(|v| v["id"].as_str().unwrap().to_owned()));
        assert_eq!(page["next_page"].as_str().is_some(), page["has_more"].as_bool().unwrap());
        uri = format!("{base}?limit={limit}&starting_after={last}");
    }
    panic!("pagination never ended");
}

async fn create_preset(server: &TestServer, body: &Value) -> Value {
    let reply = server.fetch(post_json("/voices", body)).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.json()
}

#[tokio::test]
async fn built_in_voices_have_every_field() {
    let server = TestServer::open();
    let page = server.fetch(request("GET", "/voices")).await.json();
    let voices = page["data"].as_array().unwrap();
    assert_eq!(voices.len(), 2);
    assert_eq!(page["has_more"], false);
    assert_eq!(page["next_page"], Value::Null);
    let en = voices.iter().find(|v| v["id"] == EN_VOICE).unwrap();
    for field in [
        "id",
        "name",
        "description",
        "language",
        "is_owner",
        "access",
        "visibility",
        "is_public",
        "created_at",
        "locales",
        "tagline",
        "gender",
        "base_voice_id",
        "parameters",
    ] {
        assert!(en.get(field).is_some(), "missing {field}: {en}");
    }
    assert_eq!(en["language"], "en");
    assert_eq!(en["locales"], json!([{"locale": "en-US", "is_native": true}]));
    assert_eq!(
        (en["is_owner"].clone(), en["access"].clone(), en["is_public"].clone()),
        (json!(false), json!("public"), json!(true))
    );
    assert_eq!(en["tagline"], "");
    assert!(en["created_at"].as_str().unwrap().ends_with('Z'));

    let one = server.fetch(request("GET", &format!("/voices/{EN_VOICE}"))).await;
    assert_eq!(one.status, 200);
    assert_eq!(&one.json(), en);
    server.fetch(request("GET", "/voices/nope")).await.assert_error(404, "voice_not_found");
}

#[tokio::test]
async fn voice_pagination_search_and_filters() {
    let server = TestServer::open();
    for i in 0..5 {
        create_preset(
            &server,
            &json!({"name": format!("Preset {i}"), "base_voice_id": EN_VOICE, "gender": "feminine"}),
        )
        .await;
    }
    let all = walk(&server, "/voices", 2).await;
    assert_eq!(all.len(), 7);
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted, "ordered by id, no duplicates");
    sorted.dedup();
    assert_eq!(sorted.len(), 7);
    assert_eq!(walk(&server, "/voices/", 100).await, all, "trailing slash too");

    // A cursor past the end: an empty page (this is what ends the SDKs' auto-paging).
    let last = all.last().unwrap();
    let page = server.fetch(request("GET", &format!("/voices?starting_after={last}"))).await.json();
    assert_eq!(page["data"], json!([]));
    let page = server.fetch(request("GET", "/voices?starting_after=zzzz")).await.json();
    assert_eq!(page["data"], json!([]));
    // Backwards.
    let page =
        server.fetch(request("GET", &format!("/voices?ending_before={}&limit=2", all[3]))).await.json();
    let ids: Vec<&str> = page["data"].as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [all[1].as_str(), all[2].as_str()]);
    assert_eq!(page["has_more"], true);

    let count = |v: Value| v["data"].as_array().unwrap().len();
    assert_eq!(count(server.fetch(request("GET", "/voices?q=preset%203")).await.json()), 1);
    assert_eq!(count(server.fetch(request("GET", "/voices?q=PRESET&limit=100")).await.json()), 5);
    assert_eq!(count(server.fetch(request("GET", "/voices?q=de_DE")).await.json()), 1);
    assert_eq!(count(server.fetch(request("GET", "/voices?gender=feminine&limit=100")).await.json()), 5);
    assert_eq!(count(server.fetch(request("GET", "/voices?gender=masculine")).await.json()), 0);
    assert_eq!(count(server.fetch(request("GET", "/voices?is_owner=false")).await.json()), 2);
    assert_eq!(count(server.fetch(request("GET", "/voices?expand[]=preview_file_url")).await.json()), 7);

    for bad in ["limit=0", "limit=101", "limit=ten", "is_owner=maybe", "starting_after=a&ending_before=b"] {
        server.fetch(request("GET", &format!("/voices?{bad}"))).await.assert_error(400, "invalid_request");
    }
}

#[tokio::test]
async fn presets_are_created_validated_and_spoken() {
    let server = TestServer::open();
    let preset = create_preset(
        &server,
        &json!({"name": "  Slow Joe ", "description": "calm", "base_voice_id": EN_VOICE, "language": "en-US",
                "speed": 0.8, "noise_scale": 0.5, "noise_w": 0.6}),
    )
    .await;
    let id = preset["id"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok());
    assert_eq!(preset["name"], "Slow Joe");
    assert_eq!(preset["base_voice_id"], EN_VOICE);
    assert_eq!(preset["parameters"], json!({"speed": 0.8, "noise_scale": 0.5, "noise_w": 0.6}));
    assert_eq!((preset["is_owner"].clone(), preset["access"].clone()), (json!(true), json!("private")));

    // A preset of a preset inherits the model voice and parameters.
    let child = create_preset(&server, &json!({"name": "Child", "base_voice_id": id, "noise_w": 0.1})).await;
    assert_eq!(child["base_voice_id"], EN_VOICE);
    assert_eq!(child["parameters"]["speed"].as_f64().map(|s| (s * 10.0).round()), Some(8.0));

    // Speaking with the preset: its model voice, its parameters, the request's speed scaled by the preset's.
    let mut body =
        tts_body("Hi.", json!({"container": "raw", "encoding": "pcm_s16le", "sample_rate": 22050}));
    body["voice"] = json!(id);
    body["generation_config"] = json!({"speed": 1.5});
    assert_eq!(server.fetch(post_json("/tts/bytes", &body)).await.status, 200);
    let job = server.record.last_job();
    assert_eq!(job.model, EN_VOICE);
    assert!((job.params.speed - 1.2).abs() < 1e-5, "{}", job.params.speed);
    assert_eq!((job.params.noise_scale, job.params.noise_w), (Some(0.5), Some(0.6)));

    let bad: Vec<(Value, u16)> = vec![
        (json!({"name": "x", "base_voice_id": EN_VOICE, "speed": 3.0}), 400),
        (json!({"name": "x", "base_voice_id": EN_VOICE, "speed": 0.4}), 400),
        (json!({"name": "x", "base_voice_id": EN_VOICE, "noise_scale": -0.1}), 400),
        (json!({"name": "x", "base_voice_id": EN_VOICE, "noise_w": 2.5}), 400),
        (json!({"name": "x", "base_voice_id": EN_VOICE, "language": "de"}), 400),
        (json!({"name": "x", "base_voice_id": EN_VOICE, "gender": "robot"}), 400),
        (json!({"name": " ", "base_voice_id": EN_VOICE}), 400),
        (json!({"name": "x", "embedding": [0.1, 0.2]}), 400),
        (json!({"name": "x"}), 422),
        (json!({"base_voice_id": EN_VOICE}), 422),
        (json!({"name": 5, "base_voice_id": EN_VOICE}), 422),
    ];
    for (body, status) in bad {
        let reply = server.fetch(post_json("/voices", &body)).await;
        assert_eq!(reply.status.as_u16(), status, "{body}: {:?}", reply.body);
        reply.assert_error(status, "invalid_request");
    }
    let reply = server.fetch(post_json("/voices", &json!({"name": "x", "base_voice_id": "nope"}))).await;
    reply.assert_error(404, "voice_not_found");
    server.fetch(post_raw("/voices", "{")).await.assert_error(400, "invalid_request");
}

#[tokio::test]
async fn presets_are_updated_and_deleted_built_ins_are_not() {
    let server = TestServer::open();
    let preset =
        create_preset(&server, &json!({"name": "A", "base_voice_id": DE_VOICE, "gender": "masculine"})).await;
    let uri = format!("/voices/{}", preset["id"].as_str().unwrap());

    let reply =
        server.fetch(patch_json(&uri, &json!({"name": "B", "description": "new", "speed": 1.1}))).await;
    assert_eq!(reply.status, 200);
    let v = reply.json();
    assert_eq!(
        (v["name"].clone(), v["description"].clone(), v["gender"].clone()),
        (json!("B"), json!("new"), json!("masculine"))
    );
    let v = server.fetch(patch_json(&uri, &json!({"gender": null}))).await.json();
    assert_eq!(v["gender"], Value::Null);
    assert_eq!(v["name"], "B");
    server.fetch(patch_json(&uri, &json!({"gender": "other"}))).await.assert_error(400, "invalid_request");
    server.fetch(patch_json(&uri, &json!({"speed": 5}))).await.assert_error(400, "invalid_request");
    server.fetch(patch_json(&uri, &json!({"name": ""}))).await.assert_error(400, "invalid_request");
    server
        .fetch(patch_json("/voices/nope", &json!({"name": "x"})))
        .await
        .assert_error(404, "voice_not_found");

    let builtin = format!("/voices/{EN_VOICE}");
    let body =
        server.fetch(patch_json(&builtin, &json!({"name": "x"}))).await.assert_error(403, "invalid_request");
    assert!(body["message"].as_str().unwrap().contains("built in"));
    server.fetch(request("DELETE", &builtin)).await.assert_error(403, "invalid_request");
    assert_eq!(server.fetch(request("GET", &builtin)).await.status, 200);

    let reply = server.fetch(request("DELETE", &uri)).await;
    assert_eq!(reply.status, 204);
    assert!(reply.bytes().is_empty());
    server.fetch(request("GET", &uri)).await.assert_error(404, "voice_not_found");
    server.fetch(request("DELETE", &uri)).await.assert_error(404, "voice_not_found");
}

#[tokio::test]
async fn dictionaries_crud_with_and_without_the_slash() {
    let server = TestServer::open();
    for collection in ["/pronunciation-dicts/", "/pronunciation-dicts"] {
        let body = json!({"name": "Tech", "items": [
            {"text": "SQL", "alias": "sequel"},
            {"text": "tomato", "alias": "/təmˈɑːtoʊ/", "case_sensitive": true},
        ]});
        let reply = server.fetch(post_json(collection, &body)).await;
        assert_eq!(reply.status, 200, "{collection}: {:?}", reply.body);
        let dict = reply.json();
        let id = dict["id"].as_str().unwrap().to_owned();
        for field in ["id", "name", "description", "items", "created_at", "owner_id", "pinned"] {
            assert!(dict.get(field).is_some(), "missing {field}");
        }
        assert_eq!(dict["items"][0], json!({"text": "SQL", "alias": "sequel", "case_sensitive": false}));
        assert_eq!(dict["pinned"], false);

        let one = format!("/pronunciation-dicts/{id}");
        assert_eq!(server.fetch(request("GET", &one)).await.json(), dict);

        let updated =
            server.fetch(patch_json(&one, &json!({"items": [{"text": "GIF", "alias": "jif"}]}))).await;
        assert_eq!(updated.status, 200);
        let updated = updated.json();
        assert_eq!(updated["name"], "Tech");
        assert_eq!(updated["items"], json!([{"text": "GIF", "alias": "jif", "case_sensitive": false}]));
        let renamed = server.fetch(patch_json(&one, &json!({"name": "Renamed"}))).await.json();
        assert_eq!(
            (renamed["name"].clone(), renamed["items"].as_array().unwrap().len()),
            (json!("Renamed"), 1)
        );

        // Used in synthesis: the job carries the resolved items.
        let mut tts =
            tts_body("GIF.", json!({"container": "raw", "encoding": "pcm_s16le", "sample_rate": 22050}));
        tts["pronunciation_dict_id"] = json!(id);
        assert_eq!(server.fetch(post_json("/tts/bytes", &tts)).await.status, 200);
        let job = server.record.last_job();
        assert_eq!(job.pronunciations.len(), 1);
        assert_eq!(job.pronunciations[0].alias, "jif");

        assert_eq!(server.fetch(request("DELETE", &one)).await.status, 204);
        server.fetch(request("GET", &one)).await.assert_error(404, "not_found");
        server.fetch(request("DELETE", &one)).await.assert_error(404, "not_found");
        server.fetch(patch_json(&one, &json!({"name": "x"}))).await.assert_error(404, "not_found");
        server.fetch(post_json("/tts/bytes", &tts)).await.assert_error(404, "not_found");
    }
}

#[tokio::test]
async fn dictionary_items_are_validated() {
    let server = TestServer::open();
    let many: Vec<Value> = (0..1001).map(|i| json!({"text": format!("w{i}"), "alias": "x"})).collect();
    let bad: Vec<(Value, u16)> = vec![
        (json!({"name": "d", "items": [{"text": "", "alias": "x"}]}), 400),
        (json!({"name": "d", "items": [{"text": "a", "alias": "  "}]}), 400),
        (json!({"name": "d", "items": [{"text": "a", "alias": "/abc"}]}), 400),
        (json!({"name": "d", "items": [{"text": "a", "alias": "//"}]}), 400),
        (json!({"name": "d", "items": many}), 400),
        (json!({"name": ""}), 400),
        (json!({"items": []}), 422),
        (json!({"name": "d", "items": [{"text": "a"}]}), 422),
        (json!({"name": "d", "items": "nope"}), 422),
    ];
    for (body, status) in bad {
        let reply = server.fetch(post_json("/pronunciation-dicts/", &body)).await;
        let short: String = body.to_string().chars().take(100).collect();
        assert_eq!(reply.status.as_u16(), status, "{short}: {:?}", reply.body);
        reply.assert_error(status, "invalid_request");
    }
    let ok: Vec<Value> = (0..1000).map(|i| json!({"text": format!("w{i}"), "alias": "x"})).collect();
    assert_eq!(
        server.fetch(post_json("/pronunciation-dicts/", &json!({"name": "d", "items": ok}))).await.status,
        200
    );

    let id =
        server.fetch(post_json("/pronunciation-dicts", &json!({"name": "e"}))).await.json()["id"].clone();
    let uri = format!("/pronunciation-dicts/{}", id.as_str().unwrap());
    let reply = server.fetch(patch_json(&uri, &json!({"items": [{"text": "a", "alias": "/x"}]}))).await;
    reply.assert_error(400, "invalid_request");
}

#[tokio::test]
async fn dictionary_pagination_past_the_end() {
    let server = TestServer::open();
    for i in 0..3 {
        let reply = server.fetch(post_json("/pronunciation-dicts/", &json!({"name": format!("d{i}")}))).await;
        assert_eq!(reply.status, 200);
    }
    let ids = walk(&server, "/pronunciation-dicts/", 2).await;
    assert_eq!(ids.len(), 3);
    assert_eq!(walk(&server, "/pronunciation-dicts", 1).await, ids);
    let page =
        server.fetch(request("GET", &format!("/pronunciation-dicts?starting_after={}", ids[2]))).await.json();
    assert_eq!((page["data"].clone(), page["has_more"].clone()), (json!([]), json!(false)));
    server.fetch(request("GET", "/pronunciation-dicts/?limit=0")).await.assert_error(400, "invalid_request");
}
