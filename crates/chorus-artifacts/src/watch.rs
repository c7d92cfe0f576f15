//! When to look at the store again: file-system notifications for a directory, a timer for everything.

use std::path::Path as FsPath;
use std::time::Duration;

use notify::Watcher as _;
use tokio::sync::mpsc;

/// Quiet time after a notification before the store is listed: an editor's save or a copy is often several
/// events.
const SETTLE: Duration = Duration::from_millis(50);

/// Wakes a reloader: on a file-system event under a local store's root (debounced), or every `interval`.
#[derive(Debug)]
pub struct Watcher {
    events: Option<mpsc::Receiver<()>>,
    /// Kept alive: dropping it stops the notifications.
    _watcher: Option<notify::RecommendedWatcher>,
    interval: tokio::time::Interval,
}

impl Watcher {
    pub(crate) fn new(local_dir: Option<&FsPath>, interval: Duration) -> Self {
        let mut interval = tokio::time::interval(interval.max(Duration::from_millis(10)));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut events, mut watcher) = (None, None);
        if let Some(dir) = local_dir {
            let (tx, rx) = mpsc::channel(1);
            let made = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let relevant = event.as_ref().is_ok_and(|e| {
                    !e.kind.is_access() && !e.paths.iter().all(|p| p.ends_with(crate::LOCK_FILE))
                });
                if relevant {
                    // Full means a wake-up is already pending: that one covers this event too.
                    let _ = tx.try_send(());
                }
            });
            match made.and_then(|mut w| w.watch(dir, notify::RecursiveMode::Recursive).map(|()| w)) {
                Ok(w) => {
                    events = Some(rx);
                    watcher = Some(w);
                }
                Err(e) => tracing::warn!(
                    dir = %dir.display(), error = %e,
                    "No file-system notifications for the artifact store; polling only."
                ),
            }
        }
        Self { events, _watcher: watcher, interval }
    }

    /// True when file-system notifications are on.
    pub fn notifies(&self) -> bool {
        self.events.is_some()
    }

    /// Waits for the next reason to look: a notification (then a short quiet time) or the next tick. The first
    /// call returns at once.
    pub async fn changed(&mut self) {
        let notified = match self.events.as_mut() {
            Some(rx) => {
                tokio::select! {
                    got = rx.recv() => got.is_some(),
                    _ = self.interval.tick() => false,
                }
            }
            None => {
                self.interval.tick().await;
                false
            }
        };
        if notified {
            tokio::time::sleep(SETTLE).await;
            if let Some(rx) = self.events.as_mut() {
                while rx.try_recv().is_ok() {}
            }
        }
    }
}
