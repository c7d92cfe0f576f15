//! The bundled voice's forward pass can be stopped from another thread (the scheduler preempts work that is not
//! due for an urgent chunk), and the session serves normally afterwards.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use chorus_engine::{Model, PiperModel, PiperVoice, Scales, discover_library, environment};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn a_forward_pass_is_interrupted_and_the_session_runs_again() {
    let models = root().join("models");
    assert!(models.is_dir(), "run scripts/setup first (models/ is missing)");
    let env = environment(&discover_library(&root().join("runtime"))).unwrap();
    let voice = PiperVoice::discover(&models).unwrap().into_iter().next().unwrap();
    let mut model = PiperModel::load(&env, &voice, 1, chorus_engine::Device::Cpu).unwrap();
    let scales = Scales { noise_scale: 0.667, length_scale: 1.0, noise_w: 0.0 };
    // About 2,000 phoneme ids (BOS, ids separated by pads, EOS): seconds of compute on one thread.
    let mut long = vec![1i64];
    for k in 0..1000 {
        long.extend([14 + (k % 20), 0]);
    }
    long.push(2);
    let short: Vec<i64> = vec![1, 0, 20, 0, 21, 0, 22, 0, 2];

    let stop = model.interrupter().expect("Piper sessions can be interrupted");
    let interrupter = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            stop.interrupt();
        })
    };
    let result = model.infer(&long, scales);
    interrupter.join().unwrap();
    assert!(result.is_err(), "the pass ran to its end although it was interrupted");
    assert!(stop.interrupted());

    // Once the flag is reset, the session synthesizes again.
    stop.reset();
    assert!(!stop.interrupted());
    let out = model.infer(&short, scales).unwrap();
    assert!(!out.audio.is_empty());
    assert!(out.audio.iter().any(|s| s.abs() > 1e-3), "silence after the reset");
    assert_eq!(out.durations.len(), short.len());
}
