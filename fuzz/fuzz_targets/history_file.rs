//! The history file parser (YAML and JSON) never panics, and an accepted file gives windows,
//! and verdicts over them (the engine the webhook runs), without panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oomguard::history::file::FileHistory;
use oomguard::history::HistoryQuery;
use oomguard::policy::PolicySpec;
use oomguard::verdict::{self, HistoryStatus};
use oomguard::workload::{Workload, WorkloadKind};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = FileHistory::parse("fuzz.yaml", text) else {
        return;
    };
    let policy = PolicySpec::default();
    for ns in file.namespaces() {
        for key in file.workloads(&ns) {
            for window_secs in [0, 3 * 3600, 14 * 86_400, u64::MAX] {
                let query = HistoryQuery {
                    key: key.clone(),
                    window_secs,
                };
                let Some(h) = file.window(&query) else {
                    continue;
                };
                // A Deployment whose containers are the file's, with a 256Mi limit.
                let containers: Vec<serde_json::Value> = h
                    .containers
                    .keys()
                    .map(|name| {
                        let _ = file.window_peaks(&query, name);
                        serde_json::json!({
                            "name": name,
                            "resources": {"limits": {"memory": "256Mi"}, "requests": {"memory": "128Mi"}}
                        })
                    })
                    .collect();
                let object = serde_json::json!({
                    "metadata": {"name": key.name, "namespace": key.namespace},
                    "spec": {"template": {"spec": {"containers": containers}}}
                });
                let Ok(w) = Workload::from_object(WorkloadKind::Deployment, &object, &ns) else {
                    continue;
                };
                let _ = verdict::decide(&w, HistoryStatus::Found(&h), &policy, h.now);
            }
        }
    }
});
