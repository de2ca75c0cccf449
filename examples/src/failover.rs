//! Failover of the order processor's leader, measured: a group of instances as real
//! processes, a client calling the exclusive method all along, and the leader stopped
//! (SIGTERM), crashed (SIGKILL) or frozen (SIGSTOP, then SIGCONT). Used by the failover
//! tests, the `failover_bench` binary and the demo.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aegis_runtime::RetryPolicy;
use aegis_runtime::client::RetryBudget;
use aegis_runtime::codec::{self, RpcRequest, RpcResponse};
use aegis_runtime::instance::StickyActiveStatus;
use aegis_runtime::runner::StatusReport;
use nix::sys::signal::Signal;

use crate::orders::{OrderProcessorClient, OrderRequest, OrderResult};
use crate::process::ChildProcess;

/// How the leader goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    /// SIGTERM: it stops gracefully and hands over.
    Graceful,
    /// SIGKILL: it crashes; its key must expire first.
    Crash,
    /// SIGSTOP: it freezes (a long GC pause, a stalled VM) with its connection open; its
    /// key must expire first. It is thawed (SIGCONT) once the new leader serves, plus
    /// [`THAW_AFTER`], then replaced.
    Freeze,
}

/// How long a frozen leader stays frozen after the new leader served its first call.
pub const THAW_AFTER: Duration = Duration::from_secs(1);
/// How long a round waits for the new leader's first call before it gives up.
pub const FIRST_CALL_WITHIN: Duration = Duration::from_secs(60);

/// The registry settings of the instances a group starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryTiming {
    /// A 3 s registry TTL and a heartbeat every 500 ms: a gone instance leaves the
    /// registry within seconds (the tests' setting).
    Fast,
    /// The runtime's defaults (30 s TTL, a heartbeat every 10 s), as a deployment runs.
    Default,
}

impl std::fmt::Display for Departure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Departure::Graceful => "SIGTERM",
            Departure::Crash => "SIGKILL",
            Departure::Freeze => "SIGSTOP",
        })
    }
}

/// What one failover looked like from the client's side.
#[derive(Debug, Clone)]
pub struct Round {
    /// How the leader went.
    pub departure: Departure,
    /// The old and the new leader.
    pub leaders: (String, String),
    /// Their terms (the new one is always higher).
    pub terms: (u64, u64),
    /// From the signal to the first call served by the new leader.
    pub failover: Duration,
    /// Calls made during the round.
    pub calls: usize,
    /// Calls that failed, with their errors.
    pub failed: Vec<String>,
    /// The longest time between two successive successful calls in the round: what the
    /// client felt of the failover.
    pub longest_gap: Duration,
    /// Calls the old leader served after the new leader served one (a frozen leader that
    /// thawed and still served as leader would show here).
    pub stale_served: usize,
    /// For a freeze: the thawed old leader's role, as its status RPC said after the thaw
    /// (`None`: it did not answer within 5 s).
    pub thawed_role: Option<StickyActiveStatus>,
}

/// Instances of the order processor, each its own process, on one NATS server.
pub struct Group {
    url: String,
    nats: async_nats::Client,
    leader_ttl: Duration,
    registry: RegistryTiming,
    instances: BTreeMap<String, ChildProcess>,
    started: u32,
}

impl Group {
    /// Starts `size` instances with the given leader TTL (whole seconds).
    ///
    /// # Errors
    /// The NATS server cannot be reached.
    pub async fn start(url: &str, size: usize, leader_ttl: Duration) -> Result<Self, String> {
        Self::start_with(url, size, leader_ttl, RegistryTiming::Fast).await
    }

    /// Starts `size` instances with the given leader TTL and registry settings.
    ///
    /// # Errors
    /// The NATS server cannot be reached.
    pub async fn start_with(
        url: &str,
        size: usize,
        leader_ttl: Duration,
        registry: RegistryTiming,
    ) -> Result<Self, String> {
        let nats = aegis_runtime::ConnectConfig::new(url)
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        let mut group = Self {
            url: url.to_owned(),
            nats,
            leader_ttl,
            registry,
            instances: BTreeMap::new(),
            started: 0,
        };
        for _ in 0..size {
            group.add(None);
        }
        Ok(group)
    }

    /// Starts one more instance; with `ledger`, it writes every processed order there.
    pub fn add(&mut self, ledger: Option<&Path>) -> String {
        self.started += 1;
        let id = format!("orders-{}", self.started);
        let child = spawn_instance_with(&self.url, &id, self.leader_ttl, ledger, self.registry);
        self.instances.insert(id.clone(), child);
        id
    }

    /// The ids of the running instances.
    pub fn ids(&self) -> Vec<String> {
        self.instances.keys().cloned().collect()
    }

    /// Takes instance `id` out of the group (its process keeps running until the returned
    /// handle is dropped): for a caller that stops it and watches it go.
    pub fn remove(&mut self, id: &str) -> Option<ChildProcess> {
        self.instances.remove(id)
    }

    /// The instance process `id`.
    pub fn process(&mut self, id: &str) -> Option<&mut ChildProcess> {
        self.instances.get_mut(id)
    }

    /// The connection used to watch the group.
    pub fn nats(&self) -> &async_nats::Client {
        &self.nats
    }

    /// The current leader, waiting up to 15 s for exactly one.
    ///
    /// # Errors
    /// No leader within 15 s, or two at once.
    pub async fn leader(&self) -> Result<String, String> {
        wait_for_leader(&self.nats, &self.ids(), Duration::from_secs(15)).await
    }

    /// Makes the leader go (`departure`) while a client calls the exclusive method, waits
    /// for another instance to serve, and starts a replacement so the group keeps its size.
    ///
    /// The client is patient (see [`patient_client`]): no call may fail.
    ///
    /// # Errors
    /// No leader before, or none after.
    pub async fn failover(&mut self, departure: Departure) -> Result<Round, String> {
        // A graceful stop must lose nothing: an attempt waits for its reply until the
        // deadline, so a dropped call would fail the round. A crash can take a call in
        // flight with it: there a lost reply is retried after 500 ms (the method is
        // idempotent).
        let client = match departure {
            Departure::Graceful => {
                let deadline = Duration::from_secs(2);
                patient_client(self.nats.clone(), deadline, deadline)
            }
            Departure::Crash | Departure::Freeze => patient_client(
                self.nats.clone(),
                Duration::from_millis(500),
                Duration::from_secs(10),
            ),
        };
        self.failover_with(departure, client).await
    }

    /// Like [`failover`](Self::failover), with the caller's `client` (the benchmark uses
    /// one with default settings).
    ///
    /// # Errors
    /// No leader before, none after, or the new leader served no call within
    /// [`FIRST_CALL_WITHIN`].
    pub async fn failover_with(
        &mut self,
        departure: Departure,
        client: OrderProcessorClient,
    ) -> Result<Round, String> {
        let old = self.leader().await?;
        let caller = Caller::start(client);
        // Some calls served by the old leader first, so the round starts from steady state.
        let steady = wait_until(Duration::from_secs(10), || {
            caller.tally().2.as_deref() == Some(old.as_str())
        })
        .await;
        if !steady {
            caller.finish().await;
            return Err(format!("the leader {old} served no call within 10 s"));
        }

        let mut victim = self
            .instances
            .remove(&old)
            .ok_or("the leader has no process")?;
        let signalled = Instant::now();
        match departure {
            Departure::Crash => victim.kill(),
            Departure::Graceful => victim.signal(Signal::SIGTERM),
            Departure::Freeze => victim.signal(Signal::SIGSTOP),
        }
        let new = self.leader().await?;
        // The round ends once the new leader served (and a little after, to see the calls
        // that follow).
        wait_until(FIRST_CALL_WITHIN, || {
            caller.tally().2.as_deref() == Some(new.as_str())
        })
        .await;
        let mut thawed_role = None;
        if departure == Departure::Freeze {
            // A long pause, then the process runs again: it must find it is no longer
            // the leader (its local lease ran out) and not serve as one.
            tokio::time::sleep(THAW_AFTER).await;
            victim.signal(Signal::SIGCONT);
            let deadline = Instant::now() + Duration::from_secs(5);
            while thawed_role.is_none() && Instant::now() < deadline {
                thawed_role = roles(&self.nats, std::slice::from_ref(&old))
                    .await
                    .remove(&old)
                    .flatten();
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let outcomes = caller.finish().await;
        drop(victim);
        self.add(None);

        let failed = outcomes
            .iter()
            .filter_map(|(_, outcome)| outcome.as_ref().err().cloned())
            .collect();
        let old_term = served_by(&outcomes, &old)
            .map(|(_, term)| term)
            .max()
            .unwrap_or_default();
        let (first_new, new_term) = served_by(&outcomes, &new)
            .next()
            .ok_or("the new leader served no call")?;
        let stale_served = served_by(&outcomes, &old)
            .filter(|(at, _)| *at > first_new)
            .count();
        Ok(Round {
            departure,
            leaders: (old, new),
            terms: (old_term, new_term),
            failover: first_new.saturating_duration_since(signalled),
            calls: outcomes.len(),
            failed,
            longest_gap: longest_gap(&outcomes),
            stale_served,
            thawed_role,
        })
    }
}

/// Waits (polling every 5 ms) until `condition` holds, at most `within`; whether it held.
async fn wait_until(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    condition()
}

/// The longest time between two successive successful calls.
fn longest_gap(outcomes: &[Outcome]) -> Duration {
    let successes: Vec<Instant> = outcomes
        .iter()
        .filter(|(_, outcome)| outcome.is_ok())
        .map(|(at, _)| *at)
        .collect();
    successes
        .windows(2)
        .map(|pair| pair[1].saturating_duration_since(pair[0]))
        .max()
        .unwrap_or_default()
}

/// The successful calls `id` served: when, and under which term.
fn served_by<'a>(
    outcomes: &'a [Outcome],
    id: &'a str,
) -> impl Iterator<Item = (Instant, u64)> + 'a {
    outcomes.iter().filter_map(move |(at, outcome)| {
        outcome
            .as_ref()
            .ok()
            .filter(|r| r.instance_id == id)
            .map(|r| (*at, r.term))
    })
}

/// Starts one `order_service` process with [`RegistryTiming::Fast`] and waits until it
/// serves.
pub fn spawn_instance(
    url: &str,
    id: &str,
    leader_ttl: Duration,
    ledger: Option<&Path>,
) -> ChildProcess {
    spawn_instance_with(url, id, leader_ttl, ledger, RegistryTiming::Fast)
}

/// Starts one `order_service` process with the given registry settings and waits until it
/// serves.
pub fn spawn_instance_with(
    url: &str,
    id: &str,
    leader_ttl: Duration,
    ledger: Option<&Path>,
    registry: RegistryTiming,
) -> ChildProcess {
    let ttl = leader_ttl.as_secs().max(1).to_string();
    let mut args = vec!["--nats", url, "--instance", id, "--leader-ttl", &ttl];
    if registry == RegistryTiming::Fast {
        args.extend(["--registry-ttl", "3", "--heartbeat-ms", "500"]);
    }
    let ledger = ledger.map(|p| p.display().to_string());
    if let Some(ledger) = &ledger {
        args.extend(["--ledger", ledger.as_str()]);
    }
    ChildProcess::start("order_service", &args).0
}

/// The role of each instance, asked through its own subject (`None` when it did not
/// answer).
pub async fn roles(
    nats: &async_nats::Client,
    ids: &[String],
) -> BTreeMap<String, Option<StickyActiveStatus>> {
    let mut roles = BTreeMap::new();
    for id in ids {
        let payload = codec::encode(&RpcRequest::new("aegis_status", serde_json::json!({})))
            .unwrap_or_default();
        let subject = format!("rpc.order-processor.{id}.aegis_status");
        let asked = tokio::time::timeout(
            Duration::from_millis(500),
            nats.request(subject, payload.into()),
        )
        .await;
        let role = match asked {
            Ok(Ok(reply)) => codec::decode::<RpcResponse<StatusReport>>(&reply.payload)
                .ok()
                .and_then(|response| response.result)
                .and_then(|report| report.role),
            _ => None,
        };
        roles.insert(id.clone(), role);
    }
    roles
}

/// Waits until exactly one of `ids` is ACTIVE, and returns it.
///
/// # Errors
/// Two leaders at once, or none within `within`.
pub async fn wait_for_leader(
    nats: &async_nats::Client,
    ids: &[String],
    within: Duration,
) -> Result<String, String> {
    let deadline = Instant::now() + within;
    loop {
        let roles = roles(nats, ids).await;
        let active: Vec<&String> = roles
            .iter()
            .filter(|(_, r)| **r == Some(StickyActiveStatus::Active))
            .map(|(id, _)| id)
            .collect();
        match active.as_slice() {
            [one] => return Ok((*one).clone()),
            [] if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(10)).await,
            [] => return Err(format!("no leader within {within:?}: {roles:?}")),
            _ => return Err(format!("two leaders at once: {roles:?}")),
        }
    }
}

/// A client that keeps retrying `process_order` until `deadline`; an attempt that got no
/// reply within `attempt_timeout` is retried too (the method is idempotent).
pub fn patient_client(
    nats: async_nats::Client,
    attempt_timeout: Duration,
    deadline: Duration,
) -> OrderProcessorClient {
    let retry = RetryPolicy {
        max_attempts: u32::MAX,
        initial_delay: Duration::from_millis(10),
        multiplier: 1.5,
        max_delay: Duration::from_millis(50),
        jitter: 0.2,
        attempt_timeout: Some(attempt_timeout),
    };
    OrderProcessorClient::configured(nats, |client| {
        client
            .with_retry_policy(retry)
            .with_retry_budget(RetryBudget::unlimited())
            .with_timeout(deadline)
    })
}

/// What one call returned, and when.
pub type Outcome = (Instant, Result<OrderResult, String>);

/// Calls `process_order` in a loop until finished.
pub struct Caller {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    task: tokio::task::JoinHandle<Vec<Outcome>>,
}

/// Calls so far, failed calls so far, and the instance that served the last success.
#[derive(Debug, Default, Clone)]
struct Tally {
    calls: usize,
    failed: usize,
    last: Option<String>,
}

impl Caller {
    /// Starts calling with `client`.
    pub fn start(client: OrderProcessorClient) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let (flag, shared) = (stop.clone(), tally.clone());
        let task = tokio::spawn(async move {
            let mut outcomes = Vec::new();
            let mut n = 0u64;
            while !flag.load(Ordering::Relaxed) {
                n += 1;
                let order = OrderRequest {
                    order_id: format!("ORD-{n}"),
                    amount: 1.0,
                };
                let outcome = client.process_order(order).await.map_err(|e| e.to_string());
                if let Ok(mut tally) = shared.lock() {
                    tally.calls += 1;
                    match &outcome {
                        Ok(result) => tally.last = Some(result.instance_id.clone()),
                        Err(_) => tally.failed += 1,
                    }
                }
                outcomes.push((Instant::now(), outcome));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            outcomes
        });
        Self { stop, tally, task }
    }

    /// Calls made so far, how many failed, and who served the last one that succeeded.
    pub fn tally(&self) -> (usize, usize, Option<String>) {
        let tally = self.tally.lock().map(|t| t.clone()).unwrap_or_default();
        (tally.calls, tally.failed, tally.last)
    }

    /// Stops calling; returns every outcome.
    pub async fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}
