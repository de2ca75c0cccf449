//! `#[schedule]`: an exclusive schedule runs on the leader only, and after a SIGKILL of the
//! leader on the new one, never under an old term; an `every_instance` schedule runs on
//! every instance; in a server outage it stops within its lease and resumes after; runs
//! never overlap, and missed ticks are skipped or made up as asked. Real processes
//! (`aegis-schedule-target`) and a real nats-server, stopped and restarted.

#![allow(clippy::print_stdout)] // the measured hand-over gap is printed

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aegis_runtime::testing::NatsServer;
use aegis_runtime::{ScheduleContext, ServiceRunner, service};
use futures_util::StreamExt;
use nix::sys::signal::Signal;
use serde::Deserialize;
use support::ChildProcess;

/// One run, as `aegis-schedule-target` reports it.
#[derive(Debug, Clone, Deserialize)]
struct Run {
    schedule: String,
    instance: String,
    term: Option<u64>,
    tick_ms: u64,
}

/// Every run the instances report on `ledger.ticker`, in the order received.
#[derive(Clone, Default)]
struct Ledger {
    runs: Arc<Mutex<Vec<Run>>>,
}

impl Ledger {
    /// Subscribes before any instance starts, so no run is missed.
    async fn record(nats: &async_nats::Client) -> Self {
        let ledger = Self::default();
        let mut subscriber = nats.subscribe("ledger.ticker").await.expect("subscribe");
        let runs = ledger.runs.clone();
        tokio::spawn(async move {
            while let Some(message) = subscriber.next().await {
                let run: Run = serde_json::from_slice(&message.payload).expect("a ledger entry");
                runs.lock().expect("ledger").push(run);
            }
        });
        ledger
    }

    fn runs(&self, schedule: &str) -> Vec<Run> {
        let runs = self.runs.lock().expect("ledger");
        runs.iter()
            .filter(|run| run.schedule == schedule)
            .cloned()
            .collect()
    }

    /// Waits for a run of `schedule` that `accept` takes.
    async fn wait_for(&self, schedule: &str, accept: impl Fn(&Run) -> bool) -> Run {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(run) = self.runs(schedule).into_iter().find(&accept) {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "no matching run of {schedule} within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn spawn(url: &str, id: &str) -> ChildProcess {
    ChildProcess::start("aegis-schedule-target", &["--nats", url, "--instance", id]).0
}

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis(),
    )
    .expect("ms fit")
}

/// Ticks of 200 ms in `window`, at the least that a schedule keeping up must run (generous:
/// the machine may be loaded).
fn at_least(window: Duration) -> usize {
    let ticks = window.as_millis() / 200;
    usize::try_from(ticks / 2).expect("small")
}

#[tokio::test]
async fn an_exclusive_schedule_runs_on_the_leader_only_and_on_the_next_after_a_sigkill() {
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let nats = server.connect().await.expect("connect");
    let ledger = Ledger::record(&nats).await;
    let ids: Vec<String> = (1..=3).map(|i| format!("ticker-{i}")).collect();
    let mut children: BTreeMap<String, ChildProcess> =
        ids.iter().map(|id| (id.clone(), spawn(&url, id))).collect();

    // Steady state: 5 s of the leader's runs.
    let first = ledger.wait_for("leader_tick", |_| true).await;
    let leader = first.instance.clone();
    let steady = Duration::from_secs(5);
    tokio::time::sleep(steady).await;
    let before_kill = ledger.runs("leader_tick");
    let strangers: Vec<&Run> = before_kill
        .iter()
        .filter(|run| run.instance != leader)
        .collect();
    assert!(
        strangers.is_empty(),
        "only the leader {leader} runs the exclusive schedule: {strangers:?}"
    );
    assert!(
        before_kill.len() >= at_least(steady),
        "the leader runs every tick: {} runs in {steady:?}",
        before_kill.len()
    );

    // SIGKILL the leader: the next one continues, under a newer term.
    let killed_at = now_ms();
    children.get_mut(&leader).expect("the leader").kill();
    let taken_over = ledger
        .wait_for("leader_tick", |run| run.instance != leader)
        .await;
    println!(
        "exclusive schedule: first tick of the new leader {} ms after the SIGKILL",
        taken_over.tick_ms.saturating_sub(killed_at)
    );
    let after = Duration::from_secs(5);
    tokio::time::sleep(after).await;

    let runs = ledger.runs("leader_tick");
    let successor: Vec<&Run> = runs
        .iter()
        .filter(|run| run.instance == taken_over.instance)
        .collect();
    assert!(
        successor.len() >= at_least(after),
        "the new leader keeps running it: {} runs in {after:?}",
        successor.len()
    );
    let old_term = first.term.expect("an exclusive run has a term");
    assert!(
        successor
            .iter()
            .all(|run| run.term.is_some_and(|term| term > old_term)),
        "the new leader runs under a newer term than {old_term}: {successor:?}"
    );
    assert_single_active(&runs);
}

/// The ledger of an exclusive schedule as a whole: no tick ran twice, in tick order the
/// terms never go back (no tick ran under an old term after a newer one ran), and each
/// term has one instance.
fn assert_single_active(runs: &[Run]) {
    let mut by_tick: Vec<&Run> = runs.iter().collect();
    by_tick.sort_by_key(|run| run.tick_ms);
    let ticks: BTreeSet<u64> = runs.iter().map(|run| run.tick_ms).collect();
    assert_eq!(ticks.len(), runs.len(), "a tick ran twice: {by_tick:?}");
    for pair in by_tick.windows(2) {
        let (earlier, later) = (pair[0], pair[1]);
        assert!(
            earlier.term <= later.term,
            "tick {} ran under term {:?} after tick {} ran under {:?}",
            later.tick_ms,
            later.term,
            earlier.tick_ms,
            earlier.term
        );
    }
    let mut holders: BTreeMap<u64, BTreeSet<&str>> = BTreeMap::new();
    for run in runs {
        holders
            .entry(run.term.expect("an exclusive run has a term"))
            .or_default()
            .insert(&run.instance);
    }
    assert!(
        holders.values().all(|instances| instances.len() == 1),
        "one instance per term: {holders:?}"
    );
}

#[tokio::test]
async fn a_frozen_leader_runs_no_tick_under_its_old_term_when_it_resumes() {
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let nats = server.connect().await.expect("connect");
    let ledger = Ledger::record(&nats).await;
    let ids: Vec<String> = (1..=2).map(|i| format!("ticker-{i}")).collect();
    let children: BTreeMap<String, ChildProcess> =
        ids.iter().map(|id| (id.clone(), spawn(&url, id))).collect();
    let first = ledger.wait_for("leader_tick", |_| true).await;
    let frozen = &children[&first.instance];
    // Frozen for twice the leader TTL: the other instance takes over meanwhile.
    frozen.signal(Signal::SIGSTOP);
    let taken_over = ledger
        .wait_for("leader_tick", |run| run.instance != first.instance)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    frozen.signal(Signal::SIGCONT);
    let resumed_at = now_ms();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let runs = ledger.runs("leader_tick");
    let late: Vec<&Run> = runs
        .iter()
        .filter(|run| run.instance == first.instance && run.tick_ms >= taken_over.tick_ms)
        .collect();
    assert!(
        late.is_empty(),
        "the resumed leader ran ticks after its successor took over (resumed at {resumed_at}): {late:?}"
    );
    assert!(
        runs.iter()
            .any(|run| run.instance == taken_over.instance && run.tick_ms > resumed_at),
        "the successor keeps running after the old leader resumed"
    );
    assert_single_active(&runs);
}

#[tokio::test]
async fn an_every_instance_schedule_runs_on_all_three_instances() {
    let server = NatsServer::start().await.expect("nats-server");
    let url = server.url();
    let nats = server.connect().await.expect("connect");
    let ledger = Ledger::record(&nats).await;
    let ids: Vec<String> = (1..=3).map(|i| format!("ticker-{i}")).collect();
    let _children: Vec<ChildProcess> = ids.iter().map(|id| spawn(&url, id)).collect();
    // All three are ready (they printed `ready`): count from now.
    let from = now_ms();
    let window = Duration::from_secs(3);
    tokio::time::sleep(window).await;
    let runs: Vec<Run> = ledger
        .runs("local_tick")
        .into_iter()
        .filter(|run| run.tick_ms >= from)
        .collect();
    for id in &ids {
        let mine: Vec<&Run> = runs.iter().filter(|run| &run.instance == id).collect();
        assert!(
            mine.len() >= at_least(window),
            "{id} runs the every-instance schedule: {} runs in {window:?}",
            mine.len()
        );
        assert!(
            mine.iter().all(|run| run.term.is_none()),
            "no term: {mine:?}"
        );
        let ticks: BTreeSet<u64> = mine.iter().map(|run| run.tick_ms).collect();
        assert_eq!(ticks.len(), mine.len(), "{id} ran a tick twice");
    }
}

/// Runs that take 250 ms on a 100 ms schedule: what each run saw, and how many ran at once.
#[derive(Default)]
struct Slow {
    skipping: Mutex<Vec<(SystemTime, u64)>>,
    catching_up: Mutex<Vec<(SystemTime, u64)>>,
    running: AtomicUsize,
    most_at_once: AtomicUsize,
}

impl Slow {
    async fn run(&self, ctx: &ScheduleContext, into: &Mutex<Vec<(SystemTime, u64)>>) {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_at_once.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(250)).await;
        into.lock()
            .expect("runs")
            .push((ctx.scheduled_at(), ctx.missed_ticks()));
        self.running.fetch_sub(1, Ordering::SeqCst);
    }
}

struct SlowTicker(Arc<Slow>);

#[service(name = "slow-ticker", version = "1.0.0")]
impl SlowTicker {
    #[schedule(every = "100ms", mode = "every_instance")]
    async fn skipping(&self, ctx: &ScheduleContext) {
        self.0.run(ctx, &self.0.skipping).await;
    }

    #[schedule(every = "100ms", mode = "every_instance", missed = "run_once")]
    async fn catching_up(&self, ctx: &ScheduleContext) {
        self.0.run(ctx, &self.0.catching_up).await;
    }
}

#[tokio::test]
async fn runs_never_overlap_and_missed_ticks_are_skipped_or_made_up_once() {
    let server = NatsServer::start().await.expect("nats-server");
    let slow = Arc::new(Slow::default());
    let running = ServiceRunner::new(SlowTicker(slow.clone()))
        .nats(server.connect().await.expect("connect"))
        .start()
        .await
        .expect("start");
    tokio::time::sleep(Duration::from_secs(2)).await;
    running.stop().await;

    // Each schedule waits for its run before the next: two schedules, at most two at once.
    assert!(
        slow.most_at_once.load(Ordering::SeqCst) <= 2,
        "runs of one schedule overlapped"
    );
    let skipping = slow.skipping.lock().expect("runs").clone();
    assert!(skipping.len() >= 3, "{skipping:?}");
    assert!(
        skipping.iter().all(|(_, missed)| *missed == 0),
        "skipped ticks are not made up: {skipping:?}"
    );
    for pair in skipping.windows(2) {
        let gap = pair[1].0.duration_since(pair[0].0).expect("in order");
        assert!(
            gap >= Duration::from_millis(200),
            "the ticks during a 250 ms run are skipped: {gap:?} between runs"
        );
    }
    let catching_up = slow.catching_up.lock().expect("runs").clone();
    assert!(catching_up.len() >= 4, "{catching_up:?}");
    assert!(
        catching_up[1..].iter().all(|(_, missed)| *missed >= 1),
        "the ticks missed during a run are made up by the next one: {catching_up:?}"
    );
}

#[tokio::test]
async fn a_schedule_runs_once_at_a_time_per_instance() {
    // One schedule only: the overlap bound is exactly one.
    struct Lone(Arc<Slow>);

    #[service(name = "lone-ticker", version = "1.0.0")]
    impl Lone {
        #[schedule(every = "50ms", mode = "every_instance", missed = "run_once")]
        async fn tick(&self, ctx: &ScheduleContext) {
            self.0.run(ctx, &self.0.catching_up).await;
        }
    }

    let server = NatsServer::start().await.expect("nats-server");
    let slow = Arc::new(Slow::default());
    let running = ServiceRunner::new(Lone(slow.clone()))
        .nats(server.connect().await.expect("connect"))
        .start()
        .await
        .expect("start");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    running.stop().await;
    assert_eq!(
        slow.most_at_once.load(Ordering::SeqCst),
        1,
        "runs overlapped"
    );
    assert!(slow.catching_up.lock().expect("runs").len() >= 3);
}

#[tokio::test]
async fn jitter_delays_each_run_by_a_random_part_of_it() {
    /// When each run started, after its tick.
    struct Jittery(Arc<Mutex<Vec<Duration>>>);

    #[service(name = "jittery-ticker", version = "1.0.0")]
    impl Jittery {
        #[schedule(every = "100ms", mode = "every_instance", jitter = "80ms")]
        async fn tick(&self, ctx: &ScheduleContext) {
            let after = SystemTime::now()
                .duration_since(ctx.scheduled_at())
                .unwrap_or_default();
            self.0.lock().expect("delays").push(after);
        }
    }

    let server = NatsServer::start().await.expect("nats-server");
    let delays = Arc::new(Mutex::new(Vec::new()));
    let running = ServiceRunner::new(Jittery(delays.clone()))
        .nats(server.connect().await.expect("connect"))
        .start()
        .await
        .expect("start");
    tokio::time::sleep(Duration::from_secs(3)).await;
    running.stop().await;
    let delays = delays.lock().expect("delays").clone();
    assert!(delays.len() >= 10, "{delays:?}");
    let (least, most) = (
        delays.iter().min().copied().unwrap_or_default(),
        delays.iter().max().copied().unwrap_or_default(),
    );
    // Up to 80 ms of jitter, plus at most half the interval of lateness (a later start is a
    // missed tick, skipped), and spread over that range.
    assert!(
        most < Duration::from_millis(80 + 50 + 20),
        "no run is delayed past its jitter: {delays:?}"
    );
    assert!(
        most - least >= Duration::from_millis(20),
        "the delays vary: {delays:?}"
    );
}

/// One run of an exclusive schedule: its tick, its term, when it started.
type GuardedRun = (SystemTime, Option<u64>, SystemTime);

/// Every run of an exclusive schedule.
#[derive(Clone, Default)]
struct Runs(Arc<Mutex<Vec<GuardedRun>>>);

struct Guarded(Runs);

#[service(name = "guarded-ticker", version = "1.0.0")]
impl Guarded {
    #[schedule(every = "200ms")]
    async fn tick(&self, ctx: &ScheduleContext) {
        let run = (ctx.scheduled_at(), ctx.term(), SystemTime::now());
        self.0.0.lock().expect("runs").push(run);
    }
}

#[tokio::test]
async fn an_exclusive_schedule_stops_within_its_lease_in_a_server_outage_and_resumes_after() {
    let leader_ttl = Duration::from_secs(2);
    let mut server = NatsServer::start().await.expect("nats-server");
    let runs = Runs::default();
    let nats = async_nats::ConnectOptions::new()
        // Retry every 50 ms, so the resumption measures the runtime, not the back-off.
        .reconnect_delay_callback(|_| Duration::from_millis(50))
        .connect(server.url())
        .await
        .expect("connect");
    let running = ServiceRunner::new(Guarded(runs.clone()))
        .nats(nats)
        .leader_ttl(leader_ttl)
        .registry_ttl(Duration::from_secs(3))
        .heartbeat_interval(Duration::from_millis(500))
        .start()
        .await
        .expect("start");
    let ran = || runs.0.lock().expect("runs").clone();
    let before = Instant::now();
    while ran().len() < 3 {
        assert!(
            before.elapsed() < Duration::from_secs(20),
            "the schedule never ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    server.stop().await;
    let stopped_at = SystemTime::now();
    tokio::time::sleep(2 * leader_ttl).await;
    let restarting_at = SystemTime::now();
    server.restart().await.expect("restart");
    let restarted = Instant::now();
    while !ran().iter().any(|(_, _, started)| *started > restarting_at) {
        assert!(
            restarted.elapsed() < Duration::from_secs(20),
            "no run within 20 s of the restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("runs resumed {:?} after the restart", restarted.elapsed());
    running.stop().await;

    // Without the server the leader cannot renew its key: it runs no tick once its lease
    // (less than the leader TTL after its last renewal) has run out. Judged by the tick, not
    // by when the run started, so a run delayed by a busy machine is not mistaken for one:
    // a tick runs only if the leadership was checked at or after it, and not at all later
    // than half a period (100 ms) after it, which for these ticks is still in the outage.
    let runs = ran();
    let period = Duration::from_millis(200);
    let during: Vec<_> = runs
        .iter()
        .filter(|(tick, _, _)| *tick > stopped_at + leader_ttl && *tick < restarting_at - period)
        .collect();
    assert!(
        during.is_empty(),
        "ticks ran during the outage, past the leader's lease: {during:?}"
    );
    // Every run had a term, no tick ran twice, and terms never went back.
    assert!(runs.iter().all(|(_, term, _)| term.is_some()), "{runs:?}");
    let ticks: BTreeSet<SystemTime> = runs.iter().map(|(tick, _, _)| *tick).collect();
    assert_eq!(ticks.len(), runs.len(), "a tick ran twice: {runs:?}");
    assert!(
        runs.windows(2).all(|pair| pair[0].1 <= pair[1].1),
        "the term went back: {runs:?}"
    );
}
