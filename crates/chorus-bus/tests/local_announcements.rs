//! The in-process bus announces the models its workers serve as they change, without being asked.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chorus_bus::{
    Bus, LocalBus, LocalBusConfig, ModelInfo, ModelListeners, ModelsChanged, Offer, Refusal, Worker,
    WorkerStatus,
};

/// A worker whose models change at the test's command, telling its listeners as a real worker does.
#[derive(Default)]
struct Changing {
    models: Mutex<Vec<ModelInfo>>,
    draining: Mutex<bool>,
    listeners: ModelListeners,
}

impl Changing {
    fn set(&self, ids: &[&str]) {
        *self.models.lock().unwrap() = ids
            .iter()
            .map(|id| ModelInfo { id: (*id).into(), language: "en".into(), sample_rate: 22050 })
            .collect();
        self.listeners.notify();
    }
}

impl Worker for Changing {
    fn status(&self) -> WorkerStatus {
        let status = WorkerStatus::serving("changing", self.models.lock().unwrap().clone(), 1, 0);
        WorkerStatus { draining: *self.draining.lock().unwrap(), ..status }
    }

    fn accept(&self, _offer: Offer) -> Result<(), Refusal> {
        Err(Refusal::Full)
    }

    fn on_models_changed(&self, changed: ModelsChanged) {
        self.listeners.add(changed);
    }
}

fn ids(models: &[ModelInfo]) -> Vec<&str> {
    models.iter().map(|m| m.id.as_str()).collect()
}

#[tokio::test]
async fn models_added_removed_and_drained_are_announced_as_they_happen() {
    let bus = LocalBus::new(LocalBusConfig::default());
    let worker = Arc::new(Changing::default());
    worker.set(&["b"]);
    let mut announced = bus.announcements();
    assert!(announced.borrow_and_update().is_empty(), "nothing before a worker registers");

    bus.register(Arc::clone(&worker) as Arc<dyn Worker>);
    let wait = |rx: &mut tokio::sync::watch::Receiver<Vec<ModelInfo>>| {
        let mut rx = rx.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(5), rx.changed()).await.unwrap().unwrap();
            rx.borrow_and_update().clone()
        }
    };
    assert!(announced.has_changed().unwrap(), "registering announces the worker's models");
    assert_eq!(ids(&announced.borrow_and_update()), ["b"]);

    worker.set(&["b", "a"]);
    assert_eq!(ids(&wait(&mut announced).await), ["a", "b"], "sorted by id");
    announced.mark_unchanged();

    // A notification that changes nothing is not announced again.
    worker.set(&["a", "b"]);
    assert!(!announced.has_changed().unwrap());

    worker.set(&["a"]);
    assert_eq!(ids(&wait(&mut announced).await), ["a"]);
    announced.mark_unchanged();

    *worker.draining.lock().unwrap() = true;
    worker.listeners.notify();
    assert!(wait(&mut announced).await.is_empty(), "a draining worker's models are not announced");
    assert!(bus.models().is_empty());
}
