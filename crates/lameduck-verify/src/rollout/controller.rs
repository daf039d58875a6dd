//! The Deployment controller's rolling-update decisions, as a pure function of what it sees, so
//! the rules can be tested without processes (with paused time, below) and the executor only
//! carries them out.
//!
//! Kubernetes' rules (`pkg/controller/deployment/rolling.go`): scale the new ReplicaSet up while
//! `old + new < replicas + maxSurge`; scale the old one down while the available pods stay at
//! least `replicas - maxUnavailable`, unready old pods first (they cost no availability); a new
//! pod counts as available once ready for `minReadySeconds`; terminating pods count for neither.

use crate::events::PodId;

/// One pod as the controller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Seen {
    pub id: PodId,
    /// Passing its readiness probe.
    pub ready: bool,
    /// Counts towards availability (old pods: ready; new ones: ready for `minReadySeconds`).
    pub available: bool,
}

/// What one pass of the controller does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Decision {
    /// New pods to create.
    pub create: usize,
    /// Old pods to delete, in order.
    pub delete: Vec<PodId>,
    /// Nothing old is left and every new pod is available: the rollout is complete.
    pub done: bool,
}

/// One pass over the old (not terminating) and new pods of a rollout to `replicas` pods.
pub(super) fn decide(
    old: &[Seen],
    new: &[Seen],
    replicas: usize,
    surge: usize,
    unavailable: usize,
) -> Decision {
    let create = (replicas + surge)
        .saturating_sub(old.len() + new.len())
        .min(replicas.saturating_sub(new.len()));
    let new_available = new.iter().filter(|p| p.available).count();
    let mut available = old.iter().filter(|p| p.available).count() + new_available;
    let min_available = replicas.saturating_sub(unavailable);
    let mut victims = old.to_vec();
    victims.sort_by_key(|p| (p.ready, p.id));
    let mut delete = Vec::new();
    for p in victims {
        if p.available {
            if available <= min_available {
                break;
            }
            available -= 1;
        }
        delete.push(p.id);
    }
    Decision {
        create,
        done: delete.len() == old.len()
            && new.len() + create == replicas
            && new_available == replicas,
        delete,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;

    /// A simulated pod: ready `startup` after creation, gone `grace` after deletion.
    struct Pod {
        id: PodId,
        new: bool,
        created: Instant,
        deleted: Option<Instant>,
    }

    struct Rollout {
        replicas: usize,
        surge: usize,
        unavailable: usize,
        startup: Duration,
        min_ready: Duration,
        grace: Duration,
    }

    /// What a run of the controller did: the most pods alive at once, the fewest available
    /// once the rollout began, and the deletions in order with their times.
    #[derive(Debug)]
    struct Trace {
        most_alive: usize,
        least_available: usize,
        deletions: Vec<(PodId, Duration)>,
        took: Duration,
    }

    /// Drives [`decide`] every 20 ms of paused time, as the executor does, over simulated pods.
    async fn simulate(r: &Rollout) -> Trace {
        tokio::time::pause();
        let start = Instant::now();
        let mut pods: Vec<Pod> = (0..r.replicas)
            .map(|i| Pod {
                id: i as PodId,
                new: false,
                created: start - r.startup - r.min_ready,
                deleted: None,
            })
            .collect();
        let mut next_id = r.replicas as PodId;
        let mut trace = Trace {
            most_alive: 0,
            least_available: r.replicas,
            deletions: Vec::new(),
            took: Duration::ZERO,
        };
        // Bounded: a rollout of these sizes ends in seconds of simulated time.
        for _ in 0..10_000 {
            let now = Instant::now();
            let seen = |p: &Pod, min_ready: Duration| {
                let ready = now >= p.created + r.startup;
                Seen {
                    id: p.id,
                    ready,
                    available: ready && now >= p.created + r.startup + min_ready,
                }
            };
            let live = |p: &&Pod| p.deleted.is_none();
            let old: Vec<Seen> = pods
                .iter()
                .filter(|p| !p.new)
                .filter(live)
                .map(|p| seen(p, Duration::ZERO))
                .collect();
            let new: Vec<Seen> = pods
                .iter()
                .filter(|p| p.new)
                .filter(live)
                .map(|p| seen(p, r.min_ready))
                .collect();
            let available = old.iter().chain(&new).filter(|p| p.available).count();
            trace.least_available = trace.least_available.min(available);
            // Terminating pods still run until their grace is over.
            let alive = pods
                .iter()
                .filter(|p| p.deleted.is_none_or(|at| now < at + r.grace))
                .count();
            trace.most_alive = trace.most_alive.max(alive);
            let decision = decide(&old, &new, r.replicas, r.surge, r.unavailable);
            for _ in 0..decision.create {
                pods.push(Pod {
                    id: next_id,
                    new: true,
                    created: now,
                    deleted: None,
                });
                next_id += 1;
            }
            for id in &decision.delete {
                if let Some(p) = pods.iter_mut().find(|p| p.id == *id) {
                    p.deleted = Some(now);
                    trace.deletions.push((*id, now - start));
                }
            }
            if decision.done {
                trace.took = now - start;
                return trace;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the rollout did not finish: {trace:?}");
    }

    fn rollout(surge: usize, unavailable: usize) -> Rollout {
        Rollout {
            replicas: 3,
            surge,
            unavailable,
            startup: Duration::from_secs(1),
            min_ready: Duration::from_secs(2),
            grace: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn surge_one_keeps_every_replica_available_and_replaces_one_at_a_time() {
        let trace = simulate(&rollout(1, 0)).await;
        assert_eq!(trace.least_available, 3, "{trace:?}");
        let ids: Vec<PodId> = trace.deletions.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [0, 1, 2], "oldest first");
        // Each deletion waits for the next new pod's startup (1 s) and minReadySeconds (2 s).
        let times: Vec<u64> = trace.deletions.iter().map(|(_, t)| t.as_secs()).collect();
        assert_eq!(times, [3, 6, 9], "{trace:?}");
        assert_eq!(trace.took.as_secs(), 9);
    }

    #[tokio::test]
    async fn no_surge_deletes_first_and_terminating_pods_do_not_count_against_it() {
        let trace = simulate(&rollout(0, 1)).await;
        assert_eq!(trace.least_available, 2, "{trace:?}");
        let times: Vec<u64> = trace.deletions.iter().map(|(_, t)| t.as_secs()).collect();
        // The first old pod goes at once; each next one once the previous replacement is
        // available.
        assert_eq!(times, [0, 3, 6], "{trace:?}");
        // maxSurge 0 limits pods that are not terminating: a deleted pod runs through its grace
        // (5 s) beside its replacement, so at 3 s the first two old pods are still stopping
        // next to pod 2 and two new ones.
        assert_eq!(trace.most_alive, 5, "{trace:?}");
    }

    #[tokio::test]
    async fn generous_budgets_replace_everything_at_once() {
        let trace = simulate(&rollout(3, 3)).await;
        let times: Vec<u64> = trace.deletions.iter().map(|(_, t)| t.as_secs()).collect();
        assert_eq!(times, [0, 0, 0]);
        assert_eq!(trace.least_available, 0);
        assert_eq!(trace.took.as_secs(), 3);
    }

    #[test]
    fn unready_old_pods_go_first_and_cost_no_availability() {
        let old = [
            Seen {
                id: 1,
                ready: true,
                available: true,
            },
            Seen {
                id: 2,
                ready: false,
                available: false,
            },
            Seen {
                id: 3,
                ready: true,
                available: true,
            },
        ];
        let decision = decide(&old, &[], 3, 0, 0);
        assert_eq!(
            decision.delete,
            [2],
            "only the unready one: the others hold availability"
        );
        assert_eq!(decision.create, 0, "no room to surge into");
        assert!(!decision.done);
    }
}
