//! OOM kills kept on the workload itself (`oomguard.io/oom-kills`): the reconciler writes the
//! kills the kubelet reported the moment it reported them, so that a new leader does not count
//! them again and the webhook answers the next `kubectl apply` with them before any scrape has
//! seen them. Merged into a history here: a kill Prometheus saw too counts once.

use serde::{Deserialize, Serialize};

use super::{ContainerHistory, OomKill, WorkloadHistory};
use crate::quantity::MI;

/// The annotation the kills are kept in.
pub const ANNOTATION: &str = "oomguard.io/oom-kills";
/// Kills kept per workload.
pub const MAX_KEPT: usize = 30;

/// One OOM kill as the kubelet reported it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeptKill {
    pub container: String,
    /// Unix seconds the container ended (`finishedAt`).
    pub at: i64,
    /// The memory limit it ran with, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// The pod: with the container and `at`, what makes a kill one.
    pub pod: String,
    /// The container's restart count when the kill was first seen. Not part of the key: the
    /// kubelet shows one termination with two counts (while the container waits in its
    /// back-off, and once the next one started).
    pub restarts: i32,
}

impl KeptKill {
    /// What makes a kill one: the pod, the container and the second it ended (a container is
    /// not killed twice in one second: a restart takes longer, the back-off at least 10 s).
    pub fn key(&self) -> (&str, &str, i64) {
        (&self.pod, &self.container, self.at)
    }
}

/// The kills a workload keeps (an unreadable value counts as none: the pods say them again).
pub fn decode(value: Option<&str>) -> Vec<KeptKill> {
    value
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default()
}

/// The annotation's value: the newest [`MAX_KEPT`] kills, oldest first.
pub fn encode(kills: &[KeptKill]) -> String {
    let mut sorted: Vec<&KeptKill> = kills.iter().collect();
    sorted.sort_by_key(|k| k.at);
    sorted.dedup_by(|a, b| a.key() == b.key());
    let skip = sorted.len().saturating_sub(MAX_KEPT);
    serde_json::to_string(&sorted[skip..]).unwrap_or_else(|_| "[]".to_string())
}

/// How far apart a kill the history saw and one the kubelet reported may be and still be one:
/// the history places a kill at the end of the interval its restart showed in, a scrape later.
const SAME_KILL_SLACK_SECS: i64 = 60;

/// `history` (None: the source knows nothing) with `kills` added where it has not seen them.
/// Matched one to one: a kill the history has within an interval (and a scrape) of it, at the
/// same limit (half a MiB), is the same kill; each of the history's kills answers for at most
/// one reported kill, so three kills the history put in one interval as two count three. Each
/// added kill is a restart too (its peaks stop at the limit). Only kills inside the history's
/// window count. None when both are empty.
pub fn with_kills(
    history: Option<&WorkloadHistory>,
    kills: &[KeptKill],
    now: i64,
    window_secs: u64,
) -> Option<WorkloadHistory> {
    if kills.is_empty() {
        return history.cloned();
    }
    let mut h = history.cloned().unwrap_or(WorkloadHistory {
        now,
        window_secs,
        containers: Default::default(),
        events_unseen: None,
    });
    let until = h.now.max(now);
    let since = until.saturating_sub(i64::try_from(h.window_secs).unwrap_or(i64::MAX));
    let mut sorted: Vec<&KeptKill> = kills
        .iter()
        .filter(|k| k.at > since && k.at <= until)
        .collect();
    sorted.sort_by_key(|k| k.at);
    sorted.dedup_by(|a, b| a.key() == b.key());
    for (name, of_container) in group_by_container(&sorted) {
        let c: &mut ContainerHistory = h.containers.entry(name.to_string()).or_default();
        let tolerance = c.interval_secs() + SAME_KILL_SLACK_SECS;
        let mut matched = vec![false; c.oom_kills.len()];
        let mut added = Vec::new();
        for k in of_container {
            let limit = k.limit.map(|l| l as f64);
            let same = (0..c.oom_kills.len()).find(|&i| {
                let o = &c.oom_kills[i];
                !matched[i]
                    && (o.t - k.at).abs() <= tolerance
                    && match (c.kill_limit(o), limit) {
                        (Some(a), Some(b)) => (a - b).abs() <= (MI as f64) / 2.0,
                        _ => true,
                    }
            });
            match same {
                // The kubelet's time is the kill's; the history's is the end of its interval.
                Some(i) => {
                    matched[i] = true;
                    c.oom_kills[i].t = k.at;
                }
                None => added.push(OomKill { t: k.at, limit }),
            }
        }
        for k in added {
            c.restarts.push(k.t);
            c.oom_kills.push(k);
        }
        c.oom_kills.sort_by_key(|k| k.t);
        c.restarts.sort_unstable();
    }
    Some(h)
}

/// Kills by container, each container's in time order.
fn group_by_container<'a>(kills: &[&'a KeptKill]) -> Vec<(&'a str, Vec<&'a KeptKill>)> {
    let mut out: Vec<(&'a str, Vec<&'a KeptKill>)> = Vec::new();
    for k in kills {
        match out.iter_mut().find(|(n, _)| *n == k.container) {
            Some((_, v)) => v.push(k),
            None => out.push((k.container.as_str(), vec![*k])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kill(pod: &str, restarts: i32, at: i64, limit_mi: u64) -> KeptKill {
        KeptKill {
            container: "app".into(),
            at,
            limit: Some(limit_mi * MI),
            pod: pod.into(),
            restarts,
        }
    }

    fn history(kills: &[(i64, u64)], step: u32) -> WorkloadHistory {
        let mut c = ContainerHistory {
            interval_secs: step,
            ..Default::default()
        };
        for &(t, mi) in kills {
            c.oom_kills.push(OomKill {
                t,
                limit: Some((mi * MI) as f64),
            });
            c.restarts.push(t);
        }
        WorkloadHistory {
            now: 10_000,
            window_secs: 86_400,
            containers: [("app".to_string(), c)].into(),
            events_unseen: None,
        }
    }

    fn count(h: &WorkloadHistory) -> usize {
        h.containers["app"].oom_kills.len()
    }

    #[test]
    fn kept_kills_round_trip_newest_thirty_once_each() {
        let mut kills: Vec<KeptKill> = (0..40)
            .map(|i| kill("p", i, 1000 + i64::from(i), 64))
            .collect();
        kills.push(kills[39].clone());
        let back = decode(Some(&encode(&kills)));
        assert_eq!(back.len(), MAX_KEPT);
        assert_eq!(back[0].restarts, 10);
        assert_eq!(back[MAX_KEPT - 1].restarts, 39);
        assert!(decode(Some("not json")).is_empty());
        assert!(decode(None).is_empty());
    }

    #[test]
    fn a_kill_prometheus_saw_too_counts_once_and_each_of_its_kills_answers_one() {
        // Prometheus (1-minute steps) put three kills at 5000 and 5060; the kubelet reported
        // four: three of them are the same kills, one is new.
        let h = history(&[(5000, 64), (5060, 64), (5060, 64)], 60);
        let reported = [
            kill("p", 1, 4950, 64),
            kill("p", 2, 4990, 64),
            kill("p", 3, 5030, 64),
            kill("p", 4, 5050, 64),
        ];
        let merged = with_kills(Some(&h), &reported, 10_000, 86_400).unwrap();
        assert_eq!(count(&merged), 4);
        assert_eq!(merged.containers["app"].restarts.len(), 4);
        // Twice the same report changes nothing.
        let again = with_kills(Some(&merged), &reported, 10_000, 86_400).unwrap();
        assert_eq!(count(&again), 4);
    }

    #[test]
    fn a_kill_at_another_limit_or_far_away_is_another_kill() {
        let h = history(&[(5000, 64)], 60);
        let merged = with_kills(Some(&h), &[kill("p", 1, 4990, 128)], 10_000, 86_400).unwrap();
        assert_eq!(count(&merged), 2);
        let merged = with_kills(Some(&h), &[kill("p", 1, 4000, 64)], 10_000, 86_400).unwrap();
        assert_eq!(count(&merged), 2);
    }

    #[test]
    fn without_history_the_kills_are_the_history_and_old_ones_do_not_count() {
        let kills = [kill("p", 1, 9_990, 64), kill("p", 0, 10_000 - 90_000, 64)];
        let h = with_kills(None, &kills, 10_000, 86_400).unwrap();
        let c = &h.containers["app"];
        assert_eq!(c.oom_kills.len(), 1);
        assert_eq!(c.kill_limit(&c.oom_kills[0]), Some((64 * MI) as f64));
        assert!(with_kills(None, &[], 10_000, 86_400).is_none());
    }
}
