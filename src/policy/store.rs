//! The policies folder: loaded at start, reloaded when it changes. A broken file leaves the last
//! good policy for its namespace in force and is reported until it is fixed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use super::{MemoryPolicy, PolicyError, PolicySpec};

/// The cluster's own namespaces: oomguard never decides or acts there (the webhook
/// configurations leave them out too), whatever a policy file says.
pub const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// Every namespace's policy as of one successful (or partly successful) load.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    namespaces: HashMap<String, Arc<PolicySpec>>,
    default: Arc<PolicySpec>,
    /// Namespaces left alone besides [`SYSTEM_NAMESPACES`]: oomguard's own.
    reserved: BTreeSet<String>,
}

impl PolicySet {
    /// The policy for a namespace: its own file, else `default.yaml`, else the built-in default;
    /// marked `reserved` for the cluster's namespaces and oomguard's own.
    pub fn for_namespace(&self, namespace: &str) -> Arc<PolicySpec> {
        let spec = self
            .namespaces
            .get(namespace)
            .cloned()
            .unwrap_or_else(|| self.default.clone());
        if SYSTEM_NAMESPACES.contains(&namespace) || self.reserved.contains(namespace) {
            let mut reserved = (*spec).clone();
            reserved.reserved = true;
            return Arc::new(reserved);
        }
        spec
    }

    /// The same set, leaving `namespace` (oomguard's own) alone too.
    pub fn reserving(mut self, namespace: &str) -> PolicySet {
        self.reserved.insert(namespace.to_string());
        self
    }

    /// The namespaces that have a policy file of their own, with it.
    pub fn own(&self) -> impl Iterator<Item = (&str, &PolicySpec)> {
        self.namespaces
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_ref()))
    }

    /// Whether a namespace has a policy file of its own.
    pub fn has_own(&self, namespace: &str) -> bool {
        self.namespaces.contains_key(namespace)
    }

    /// The same set with `mode` in every namespace (`oomguard check --mode`).
    pub fn with_mode(&self, mode: super::Mode) -> PolicySet {
        let set = |p: &Arc<PolicySpec>| {
            let mut p = (**p).clone();
            p.mode = mode;
            Arc::new(p)
        };
        PolicySet {
            namespaces: self
                .namespaces
                .iter()
                .map(|(k, v)| (k.clone(), set(v)))
                .collect(),
            default: set(&self.default),
            reserved: self.reserved.clone(),
        }
    }

    /// A set with one policy for every namespace (tests, `check` without a folder).
    pub fn single(spec: PolicySpec) -> PolicySet {
        PolicySet {
            namespaces: HashMap::new(),
            default: Arc::new(spec),
            reserved: BTreeSet::new(),
        }
    }
}

/// What a reload did.
#[derive(Debug, Default)]
pub struct ReloadReport {
    pub loaded: usize,
    pub errors: Vec<PolicyError>,
}

pub struct PolicyStore {
    dir: PathBuf,
    /// oomguard's own namespace, once known: left alone like the system ones.
    reserved: RwLock<BTreeSet<String>>,
    current: RwLock<Arc<PolicySet>>,
    /// Files whose latest version is broken, with the error.
    broken: RwLock<BTreeMap<String, String>>,
}

impl PolicyStore {
    /// Loads the folder. A missing or unreadable folder is an error; broken files are reported
    /// in the returned report (and skipped: at start there is no last good version of them).
    pub fn open(dir: &Path) -> Result<(PolicyStore, ReloadReport), PolicyError> {
        if !dir.is_dir() {
            return Err(PolicyError {
                file: dir.display().to_string(),
                message: "is not a folder; pass --policies DIR with one <namespace>.yaml per \
                          namespace and an optional default.yaml"
                    .into(),
            });
        }
        let store = PolicyStore {
            dir: dir.to_path_buf(),
            reserved: RwLock::new(BTreeSet::new()),
            current: RwLock::new(Arc::new(PolicySet::default())),
            broken: RwLock::new(BTreeMap::new()),
        };
        let report = store.reload();
        Ok((store, report))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Leaves `namespace` (oomguard's own) alone from now on, as the system namespaces.
    pub fn reserve(&self, namespace: &str) {
        if let Ok(mut r) = self.reserved.write() {
            r.insert(namespace.to_string());
        }
        if let Ok(mut cur) = self.current.write() {
            let set = (**cur).clone().reserving(namespace);
            *cur = Arc::new(set);
        }
    }

    pub fn current(&self) -> Arc<PolicySet> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Files that are broken right now (their last good version, if any, is in force).
    pub fn broken(&self) -> BTreeMap<String, String> {
        match self.broken.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the folder. Namespaces whose file is broken keep their previous policy.
    pub fn reload(&self) -> ReloadReport {
        let previous = self.current();
        let mut report = ReloadReport::default();
        let mut next = PolicySet {
            namespaces: HashMap::new(),
            default: Arc::new(PolicySpec::default()),
            reserved: match self.reserved.read() {
                Ok(g) => g.clone(),
                Err(poisoned) => poisoned.into_inner().clone(),
            },
        };
        let mut broken = BTreeMap::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) => {
                let err = PolicyError {
                    file: self.dir.display().to_string(),
                    message: format!("cannot read the folder: {e}; keeping the policies in force"),
                };
                broken.insert(err.file.clone(), err.message.clone());
                report.errors.push(err);
                self.set_broken(broken);
                return report;
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                !name.starts_with('.')
                    && (name.ends_with(".yaml") || name.ends_with(".yml"))
                    && p.is_file()
            })
            .collect();
        files.sort();
        for path in files {
            let Some(namespace) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            let display = path.display().to_string();
            let parsed = std::fs::read_to_string(&path)
                .map_err(|e| PolicyError {
                    file: display.clone(),
                    message: format!("cannot read it: {e}"),
                })
                .and_then(|text| MemoryPolicy::parse(&display, &text))
                .and_then(|p| match &p.metadata.namespace {
                    Some(ns) if namespace != "default" && *ns != namespace => Err(PolicyError {
                        file: display.clone(),
                        message: format!(
                            "metadata.namespace: {ns:?} does not match the file name; name the \
                             file {ns}.yaml or fix the namespace"
                        ),
                    }),
                    _ => Ok(p),
                });
            let is_default = namespace == "default";
            match parsed {
                Ok(p) => {
                    report.loaded += 1;
                    let spec = Arc::new(p.spec);
                    if is_default {
                        next.default = spec.clone();
                    }
                    next.namespaces.insert(namespace, spec);
                }
                Err(e) => {
                    tracing::error!(file = %e.file, error = %e.message, "policy file rejected; the last good version stays in force");
                    if let Some(old) = previous.namespaces.get(&namespace) {
                        if is_default {
                            next.default = old.clone();
                        }
                        next.namespaces.insert(namespace, old.clone());
                    }
                    broken.insert(e.file.clone(), e.message.clone());
                    report.errors.push(e);
                }
            }
        }
        // "default" also names a real namespace; keep it only as a namespace entry too.
        if let Ok(mut cur) = self.current.write() {
            *cur = Arc::new(next);
        }
        self.set_broken(broken);
        report
    }

    fn set_broken(&self, broken: BTreeMap<String, String>) {
        if let Ok(mut b) = self.broken.write() {
            *b = broken;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Mode;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    fn policy(mode: &str) -> String {
        format!("apiVersion: oomguard.io/v1\nkind: MemoryPolicy\nspec:\n  mode: {mode}\n")
    }

    #[test]
    fn namespace_file_then_default_then_builtin() {
        let dir = tempfile::tempdir().unwrap();
        let (store, report) = PolicyStore::open(dir.path()).unwrap();
        assert_eq!(report.loaded, 0);
        assert_eq!(store.current().for_namespace("x").mode, Mode::Warn);

        write(dir.path(), "default.yaml", &policy("off"));
        write(dir.path(), "team-a.yaml", &policy("enforce"));
        write(dir.path(), "..data", "not a policy");
        let report = store.reload();
        assert_eq!(report.loaded, 2, "{:?}", report.errors);
        assert_eq!(store.current().for_namespace("team-a").mode, Mode::Enforce);
        assert_eq!(store.current().for_namespace("team-b").mode, Mode::Off);
    }

    #[test]
    fn a_broken_file_keeps_the_last_good_policy_and_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "team-a.yaml", &policy("enforce"));
        let (store, _) = PolicyStore::open(dir.path()).unwrap();
        assert_eq!(store.current().for_namespace("team-a").mode, Mode::Enforce);

        write(dir.path(), "team-a.yaml", &policy("enforse"));
        let report = store.reload();
        assert_eq!(report.errors.len(), 1);
        assert!(report.errors[0].to_string().contains("team-a.yaml"));
        assert!(
            report.errors[0].to_string().contains("mode"),
            "{}",
            report.errors[0]
        );
        assert_eq!(store.current().for_namespace("team-a").mode, Mode::Enforce);
        assert_eq!(store.broken().len(), 1);

        write(dir.path(), "team-a.yaml", &policy("mutate"));
        let report = store.reload();
        assert!(report.errors.is_empty());
        assert_eq!(store.current().for_namespace("team-a").mode, Mode::Mutate);
        assert!(store.broken().is_empty());
    }

    #[test]
    fn a_broken_file_at_start_is_skipped_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "team-a.yaml",
            "apiVersion: oomguard.io/v1\nkind: MemoryPolicy\nspec: {mode: 3}\n",
        );
        let (store, report) = PolicyStore::open(dir.path()).unwrap();
        assert_eq!(report.errors.len(), 1);
        assert_eq!(store.current().for_namespace("team-a").mode, Mode::Warn);
    }

    #[test]
    fn namespace_mismatch_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "team-a.yaml",
            "apiVersion: oomguard.io/v1\nkind: MemoryPolicy\nmetadata: {namespace: team-b}\nspec: {}\n",
        );
        let (_, report) = PolicyStore::open(dir.path()).unwrap();
        assert!(report.errors[0].message.contains("team-b.yaml"));
    }

    #[test]
    fn missing_folder_is_a_clear_error() {
        let e = PolicyStore::open(Path::new("/nonexistent/policies"))
            .err()
            .unwrap();
        assert!(e.to_string().contains("--policies"));
    }
}
