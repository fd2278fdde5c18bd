//! Whether this replica may act: it holds the `coordination.k8s.io` Lease, and its last renewal
//! is still in force.
//!
//! The lease manager (`kube-lease-manager`) says when this replica took the Lease and when it saw
//! another holder, but not when it failed to renew it: on an error (the apiserver unreachable,
//! the Lease deleted, a renewal refused) it logs, backs off and tries again, and its flag stays
//! `true` — while a standby that can reach the apiserver takes the Lease once it expired, and two
//! replicas act. So the flag it gives is checked against the Lease itself: while it says "held",
//! the Lease is read every [`tick`], and this replica acts only while the Lease names it and its
//! last renewal (as last read) is younger than the lease duration less one tick. A replica cut
//! off from the apiserver stops acting at least a tick before anyone else can take over.

use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use tokio::sync::watch;

/// How often the holder reads the Lease: a sixth of its duration (a renewal comes every two
/// thirds), at least half a second.
pub fn tick(duration: Duration) -> Duration {
    (duration / 6).max(Duration::from_millis(500))
}

/// The last renewal by `identity`, if the Lease names it.
pub fn renewal_by(lease: &Lease, identity: &str) -> Option<SystemTime> {
    let spec = lease.spec.as_ref()?;
    if spec.holder_identity.as_deref() != Some(identity) {
        return None;
    }
    spec.renew_time.as_ref().map(|t| SystemTime::from(t.0))
}

/// How long a holder whose last known renewal is `renewed` may still act after `now`: until the
/// lease duration less one tick has passed since it (a standby may take the Lease once the whole
/// duration has). Zero: not any more.
pub fn in_force_for(renewed: Option<SystemTime>, now: SystemTime, duration: Duration) -> Duration {
    let Some(renewed) = renewed else {
        return Duration::ZERO;
    };
    let age = now.duration_since(renewed).unwrap_or(Duration::ZERO);
    duration.saturating_sub(tick(duration)).saturating_sub(age)
}

/// The flag to act on: `held` (the lease manager's) while the Lease confirms it. It turns false
/// the moment the last renewal read runs out, whether or not a read is under way. Ends when
/// `held`'s sender is gone or nobody listens any more (dropping the returned receivers, and so
/// `held`, lets the lease manager release the Lease).
pub fn guard(
    mut held: watch::Receiver<bool>,
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    let every = tick(duration);
    tokio::spawn(async move {
        let mut renewed: Option<SystemTime> = None;
        loop {
            let holds = *held.borrow_and_update();
            if holds {
                let left = in_force_for(renewed, SystemTime::now(), duration);
                let read = tokio::time::timeout(every, api.get_opt(&name));
                tokio::select! {
                    r = read => match r {
                        Ok(Ok(Some(lease))) => renewed = renewal_by(&lease, &identity),
                        Ok(Ok(None)) => renewed = None,
                        // Unread: the last renewal read stands, and ages.
                        Ok(Err(e)) => tracing::debug!(error = %e, "lease not read"),
                        Err(_) => tracing::debug!("lease not read in time"),
                    },
                    // The last renewal ran out while the read was under way: judged now.
                    () = tokio::time::sleep(left), if !left.is_zero() => {}
                }
            } else {
                renewed = None;
            }
            let left = in_force_for(renewed, SystemTime::now(), duration);
            let acting = holds && !left.is_zero();
            let changed = tx.send_if_modified(|v| std::mem::replace(v, acting) != acting);
            if changed && holds && !acting {
                tracing::warn!(
                    identity = %identity,
                    lease = %name,
                    "not acting: the lease manager says this replica holds the Lease, but the \
                     Lease names another holder or its last renewal read is older than the lease \
                     duration (the apiserver unreachable, or the renewal refused)"
                );
            }
            let wait = if acting { every.min(left) } else { every };
            tokio::select! {
                changed = held.changed() => if changed.is_err() { break },
                () = tokio::time::sleep(wait) => {}
                () = tx.closed() => break,
            }
        }
        tx.send_if_modified(|v| std::mem::replace(v, false));
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    #[test]
    fn acts_only_while_its_own_last_renewal_is_in_force() {
        let d = Duration::from_secs(15);
        assert_eq!(tick(d), Duration::from_millis(2500));
        assert_eq!(tick(Duration::from_secs(2)), Duration::from_millis(500));
        let now = SystemTime::now();
        let ago = |s: f64| now.checked_sub(Duration::from_secs_f64(s));
        // Renewed every 10 s (two thirds of 15): in force until 12.5 s.
        let secs = |r: Option<SystemTime>| in_force_for(r, now, d).as_secs_f64();
        assert_eq!(secs(ago(0.0)), 12.5);
        assert!((secs(ago(12.4)) - 0.1).abs() < 1e-6);
        assert_eq!(secs(ago(12.5)), 0.0);
        assert_eq!(secs(ago(60.0)), 0.0);
        assert_eq!(secs(None), 0.0);
        // A renewal written by a clock a little ahead counts as fresh, no more.
        assert_eq!(secs(now.checked_add(Duration::from_secs(1))), 12.5);

        let lease = |holder: &str| Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                renew_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(renewal_by(&lease("a"), "a").is_some());
        assert!(renewal_by(&lease("b"), "a").is_none());
        assert!(renewal_by(&Lease::default(), "a").is_none());
    }
}
