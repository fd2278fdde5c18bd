//! File watching for hot reload (notify). Kubernetes updates mounted Secrets and ConfigMaps by
//! swapping a `..data` symlink, so the parent folders are watched, not the files.

use std::path::PathBuf;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// A live watch; dropping it stops the events.
pub struct Watch {
    _watcher: Box<dyn Watcher + Send>,
    pub changes: mpsc::Receiver<()>,
}

/// Watches the folders holding `paths`; sends one `()` per burst of changes (after `debounce`).
pub fn watch(paths: &[PathBuf], debounce: Duration) -> notify::Result<Watch> {
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let handler = move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if !ev.kind.is_access() {
                let _ = raw_tx.send(());
            }
        }
    };
    let mut watcher: Box<dyn Watcher + Send> = match RecommendedWatcher::new(
        handler.clone(),
        notify::Config::default(),
    ) {
        Ok(w) => Box::new(w),
        Err(e) => {
            tracing::warn!(error = %e, "inotify unavailable; polling every 5s for file changes");
            Box::new(notify::PollWatcher::new(
                handler,
                notify::Config::default().with_poll_interval(Duration::from_secs(5)),
            )?)
        }
    };
    let mut dirs: Vec<PathBuf> = paths
        .iter()
        .map(|p| {
            if p.is_dir() {
                p.clone()
            } else {
                p.parent()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("."))
            }
        })
        .map(|d| {
            if d.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                d
            }
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    for d in &dirs {
        watcher.watch(d, RecursiveMode::NonRecursive)?;
    }
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            // Let the burst settle (a ConfigMap update is several events).
            tokio::time::sleep(debounce).await;
            while raw_rx.try_recv().is_ok() {}
            if tx.send(()).await.is_err() {
                break;
            }
        }
    });
    Ok(Watch {
        _watcher: watcher,
        changes: rx,
    })
}
