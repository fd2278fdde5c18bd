//! `oomguard certs`: a CA and a serving certificate for the webhook (rcgen), and the webhook
//! configurations rendered with that CA as caBundle.

use std::net::IpAddr;
use std::path::Path;

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error(
        "{0} exists; pass --force to replace it (the old key is lost) or choose another --out"
    )]
    Exists(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("--dns {0:?} is not a valid DNS name")]
    BadDns(String),
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// PEM texts of a freshly made CA and serving certificate.
pub struct Bundle {
    pub ca_cert: String,
    pub tls_cert: String,
    pub tls_key: String,
}

/// Makes a CA and a serving certificate for `dns` names and `ips`.
pub fn generate(dns: &[String], ips: &[IpAddr]) -> Result<Bundle, CertsError> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, "oomguard webhook CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    ca.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(3650);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(Vec::<String>::new())?;
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name.push(
        DnType::CommonName,
        dns.first()
            .cloned()
            .unwrap_or_else(|| "oomguard".to_string()),
    );
    for d in dns {
        let name = d
            .clone()
            .try_into()
            .map_err(|_| CertsError::BadDns(d.clone()))?;
        leaf.subject_alt_names.push(SanType::DnsName(name));
    }
    for ip in ips {
        leaf.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // Strict verifiers (Python 3.13, OpenSSL -x509_strict) require it on CA-signed certificates.
    leaf.use_authority_key_identifier_extension = true;
    leaf.not_before = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    leaf.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(365);
    let tls_cert = leaf.signed_by(&key, &issuer)?;
    Ok(Bundle {
        ca_cert: ca_cert.pem(),
        tls_cert: tls_cert.pem(),
        tls_key: key.serialize_pem(),
    })
}

/// Where the apiserver reaches the webhook.
#[derive(Debug, Clone)]
pub enum Client {
    Service {
        namespace: String,
        name: String,
        port: u16,
    },
    Url(String),
}

/// The namespace of the Prometheus oomguard reads its history from (kube-prometheus'), left out of
/// the webhooks like the system namespaces: oomguard must never stand in the way of its own
/// history source. The OpenShift overlay replaces it with `openshift-monitoring`.
pub const MONITORING_NAMESPACE: &str = "monitoring";

/// The namespaces the webhooks never see: the control plane's, the node heartbeats', oomguard's
/// own (it cannot block its own recovery) and its Prometheus'.
pub fn excluded_namespaces(own_namespace: &str) -> Vec<String> {
    [
        "kube-system",
        "kube-node-lease",
        own_namespace,
        MONITORING_NAMESPACE,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// How many calls the apiserver makes to oomguard per admitted object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Calls {
    /// A mutating webhook (`/mutate`) and a validating one (`/validate`), which sees the object
    /// after every mutating webhook.
    Two,
    /// One mutating webhook (`/admit`) that patches, warns and denies: half the calls; a webhook
    /// that changes the object after oomguard's re-invocation is not seen.
    One,
}

/// The webhook configurations (Mutating and Validating, or the one Mutating of [`Calls::One`]),
/// as a multi-document YAML text.
pub fn webhook_configuration(
    ca_pem: &str,
    client: &Client,
    own_namespace: &str,
    timeout_secs: u32,
    calls: Calls,
) -> String {
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let hooks: &[(&str, &str)] = match calls {
        Calls::Two => &[
            ("MutatingWebhookConfiguration", "mutate"),
            ("ValidatingWebhookConfiguration", "validate"),
        ],
        Calls::One => &[("MutatingWebhookConfiguration", "admit")],
    };
    let docs: Vec<Value> = hooks
        .iter()
        .map(|(kind, path)| {
            let client_config = match client {
                Client::Service { namespace, name, port } => json!({
                    "service": {"namespace": namespace, "name": name, "path": format!("/{path}"), "port": port},
                    "caBundle": ca_bundle,
                }),
                Client::Url(base) => json!({
                    "url": format!("{}/{path}", base.trim_end_matches('/')),
                    "caBundle": ca_bundle,
                }),
            };
            let rule = |group: &str, version: &str, resources: &[&str]| {
                json!({"apiGroups": [group], "apiVersions": [version], "operations": ["CREATE", "UPDATE"],
                       "resources": resources, "scope": "Namespaced"})
            };
            // Two webhooks, so that the kinds users write are sent without a match condition:
            // the apiserver converts the whole object for a CEL condition, which cost it as
            // much CPU as the call itself (bench/apply-cost.sh, docs/benchmarks.md).
            let made = [
                // What users write; no workload controller makes these.
                (
                    format!("{path}.oomguard.io"),
                    vec![
                        rule("apps", "v1", &["deployments", "statefulsets", "daemonsets"]),
                        rule("batch", "v1", &["cronjobs"]),
                        rule("apps.openshift.io", "v1", &["deploymentconfigs"]),
                        rule("argoproj.io", "v1alpha1", &["rollouts"]),
                    ],
                    None,
                ),
                // What workload controllers make from a template oomguard read (their owner was
                // checked): sent only when bare. An operator's objects (owned by its custom
                // resource) are sent, to be warned about and never patched.
                (
                    format!("{path}-bare.oomguard.io"),
                    vec![
                        rule("apps", "v1", &["replicasets"]),
                        rule("batch", "v1", &["jobs"]),
                        rule("", "v1", &["pods", "replicationcontrollers"]),
                    ],
                    Some(json!([{"name": "not-controlled", "expression": NOT_CONTROLLED}])),
                ),
            ];
            let hooks: Vec<Value> = made
                .into_iter()
                .map(|(name, rules, conditions)| {
                    let mut hook = json!({
                        "name": name,
                        "admissionReviewVersions": ["v1"],
                        "sideEffects": "None",
                        "failurePolicy": "Ignore",
                        "timeoutSeconds": timeout_secs,
                        "clientConfig": client_config,
                        "namespaceSelector": {"matchExpressions": [{
                            "key": "kubernetes.io/metadata.name",
                            "operator": "NotIn",
                            "values": excluded_namespaces(own_namespace),
                        }]},
                        "rules": rules,
                    });
                    if let Some(c) = conditions {
                        hook["matchConditions"] = c;
                    }
                    if *kind == "MutatingWebhookConfiguration" {
                        hook["reinvocationPolicy"] = json!("IfNeeded");
                    }
                    hook
                })
                .collect();
            json!({
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": kind,
                "metadata": {"name": "oomguard", "labels": {"app.kubernetes.io/name": "oomguard"}},
                "webhooks": hooks,
            })
        })
        .collect();
    docs.iter()
        .map(|d| serde_norway::to_string(d).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The webhooks' match condition: not made by a workload controller from a template oomguard
/// read (the list of [`crate::workload::WorkloadKind::is_workload_owner`]).
pub const NOT_CONTROLLED: &str = "!has(object.metadata.ownerReferences) || !object.metadata.ownerReferences.exists(r, has(r.controller) && r.controller && r.kind in ['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Job', 'CronJob', 'ReplicationController', 'DeploymentConfig', 'Rollout', 'Node'])";

/// Writes `ca.crt`, `tls.crt`, `tls.key` (mode 0600) and `webhook.yaml` into `out`.
pub fn write(
    out: &Path,
    bundle: &Bundle,
    webhook_yaml: &str,
    force: bool,
) -> Result<Vec<String>, CertsError> {
    std::fs::create_dir_all(out).map_err(|source| CertsError::Write {
        path: out.display().to_string(),
        source,
    })?;
    let files = [
        ("ca.crt", &bundle.ca_cert),
        ("tls.crt", &bundle.tls_cert),
        ("tls.key", &bundle.tls_key),
        ("webhook.yaml", &webhook_yaml.to_string()),
    ];
    if !force {
        for (name, _) in &files {
            let p = out.join(name);
            if p.exists() {
                return Err(CertsError::Exists(p.display().to_string()));
            }
        }
    }
    let mut written = Vec::new();
    for (name, text) in files {
        let p = out.join(name);
        // Write beside and rename, so a watching webhook never reads half a file.
        let tmp = out.join(format!(".{name}.tmp"));
        let w = |source| CertsError::Write {
            path: p.display().to_string(),
            source,
        };
        std::fs::write(&tmp, text).map_err(w)?;
        #[cfg(unix)]
        if name == "tls.key" {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(w)?;
        }
        std::fs::rename(&tmp, &p).map_err(w)?;
        written.push(p.display().to_string());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(pem: &str) -> Vec<u8> {
        rustls_pemfile::certs(&mut pem.as_bytes())
            .next()
            .unwrap()
            .unwrap()
            .to_vec()
    }

    /// OID 2.5.29.35 (authorityKeyIdentifier), DER-encoded.
    const AKI: [u8; 5] = [0x06, 0x03, 0x55, 0x1d, 0x23];

    /// deploy/base/webhooks.yaml says it is what `oomguard certs` renders for the in-cluster
    /// Service, without caBundle: keep it so.
    #[test]
    fn deploy_base_webhooks_yaml_is_what_certs_renders() {
        use serde::Deserialize as _;
        fn docs(text: &str) -> Vec<Value> {
            serde_norway::Deserializer::from_str(text)
                .map(|d| Value::deserialize(d).unwrap())
                .collect()
        }
        let rendered = webhook_configuration(
            "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
            &Client::Service {
                namespace: "oomguard".into(),
                name: "oomguard".into(),
                port: 443,
            },
            "oomguard",
            5,
            Calls::Two,
        );
        let mut rendered = docs(&rendered);
        for d in &mut rendered {
            for hook in d["webhooks"].as_array_mut().unwrap() {
                hook["clientConfig"]
                    .as_object_mut()
                    .unwrap()
                    .remove("caBundle")
                    .unwrap();
            }
        }
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/base/webhooks.yaml");
        let shipped = docs(&std::fs::read_to_string(&path).unwrap());
        assert_eq!(
            shipped,
            rendered,
            "{} differs from `oomguard certs`",
            path.display()
        );
    }

    #[test]
    fn the_webhooks_leave_out_the_system_own_and_monitoring_namespaces() {
        for (calls, n) in [(Calls::Two, 4), (Calls::One, 2)] {
            let url = Client::Url("https://127.0.0.1:1".into());
            let yaml = webhook_configuration("x", &url, "og", 5, calls);
            for ns in ["kube-system", "kube-node-lease", "og", "monitoring"] {
                assert_eq!(
                    yaml.matches(&format!("- {ns}\n")).count(),
                    n,
                    "{ns} in {yaml}"
                );
            }
        }
    }

    #[test]
    fn one_call_is_one_mutating_webhook_at_admit() {
        let url = Client::Url("https://127.0.0.1:1".into());
        let yaml = webhook_configuration("x", &url, "og", 5, Calls::One);
        assert_eq!(yaml.matches("kind: ").count(), 1, "{yaml}");
        assert!(
            yaml.contains("kind: MutatingWebhookConfiguration"),
            "{yaml}"
        );
        assert!(yaml.contains("name: admit.oomguard.io"), "{yaml}");
        assert!(yaml.contains("name: admit-bare.oomguard.io"), "{yaml}");
        assert_eq!(
            yaml.matches("url: https://127.0.0.1:1/admit\n").count(),
            2,
            "{yaml}"
        );
        assert_eq!(
            yaml.matches("reinvocationPolicy: IfNeeded").count(),
            2,
            "{yaml}"
        );
        // The kinds users write carry no match condition; the ones controllers make do.
        assert_eq!(yaml.matches("matchConditions").count(), 1, "{yaml}");
    }

    #[test]
    fn the_serving_certificate_names_its_issuer_key() {
        // Python 3.13 and `openssl verify -x509_strict` refuse a CA-signed certificate without it.
        let b = generate(&["localhost".into()], &["127.0.0.1".parse().unwrap()]).unwrap();
        let leaf = der(&b.tls_cert);
        assert!(leaf.windows(AKI.len()).any(|w| w == AKI));
    }
}
