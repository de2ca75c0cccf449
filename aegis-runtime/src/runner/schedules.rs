//! `#[schedule]` methods: one task per schedule sleeps until its next tick and runs the
//! method through the serving core ([`super::invoke`]), like any other handler.
//!
//! The rules, in docs/guide.md ("Schedules"):
//! - Ticks are wall-clock times every instance computes alike: multiples of the interval
//!   since the Unix epoch (`every`), or the times of the cron expression in UTC (`cron`).
//!   A tick therefore names the same run on every instance, across a failover.
//! - Runs of one schedule never overlap on an instance: the next tick is awaited only once
//!   the run before has ended.
//! - A tick is *missed* when its run cannot start within half the time to the following
//!   tick (the run before took too long, the process was paused). `missed = "skip"` drops
//!   it; `"run_once"` makes up every missed tick with one run, at once.
//! - An exclusive schedule runs only while the instance leads, under the term read when the
//!   run starts; a standby, or a leader whose local lease ran out, does not run the tick.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::StartError;
use super::dispatch::{Shared, stopping};
use super::invoke::{self, Delivery, HandlerKind, Invoked};
use crate::service::{
    MissedTicks, ScheduleContext, ScheduleDefinition, ScheduleMode, Service, Timing, WorkFailure,
};

/// When a schedule fires, ready to compute ticks.
#[derive(Debug, Clone)]
pub(crate) enum Clock {
    /// Every `millis` milliseconds since the Unix epoch.
    Every { millis: u64 },
    /// The times of a cron expression, in UTC.
    Cron(Box<cron::Schedule>),
}

/// A cron expression that does not parse (the macro checks it first; this guards a
/// definition written by hand).
#[derive(Debug, thiserror::Error)]
#[error("the schedule `{schedule}` has an invalid cron expression {expression:?}: {source}")]
pub struct InvalidSchedule {
    /// The schedule (its method's name).
    pub schedule: &'static str,
    /// The expression.
    pub expression: &'static str,
    /// The parser's error.
    #[source]
    pub source: cron::error::Error,
}

impl Clock {
    pub(crate) fn new(schedule: &'static str, timing: Timing) -> Result<Self, InvalidSchedule> {
        match timing {
            Timing::Every { millis } => Ok(Self::Every {
                millis: millis.max(1),
            }),
            Timing::Cron(expression) => expression
                .parse::<cron::Schedule>()
                .map(|parsed| Self::Cron(Box::new(parsed)))
                .map_err(|source| InvalidSchedule {
                    schedule,
                    expression,
                    source,
                }),
        }
    }

    /// The first tick strictly after `after`; `None` when there is none (a cron
    /// expression whose times are all past).
    pub(crate) fn next_after(&self, after: SystemTime) -> Option<SystemTime> {
        match self {
            Self::Every { millis } => {
                let since = after.duration_since(SystemTime::UNIX_EPOCH).ok()?;
                let period = u128::from(*millis);
                let next = (since.as_millis() / period + 1) * period;
                let next = u64::try_from(next).ok()?;
                SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(next))
            }
            Self::Cron(schedule) => {
                let after: chrono::DateTime<chrono::Utc> = after.into();
                schedule.after(&after).next().map(SystemTime::from)
            }
        }
    }

    /// The ticks after `tick` up to `now` (included): how many there are (at most
    /// [`MAX_COUNTED`]) and the last of them.
    fn due_after(&self, tick: SystemTime, now: SystemTime) -> (u64, SystemTime) {
        let (mut count, mut last) = (0, tick);
        if let Self::Every { millis } = self {
            // Arithmetic: a paused process may have slept through millions of ticks.
            let index = |at: SystemTime| {
                at.duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |since| since.as_millis() / u128::from(*millis))
            };
            let behind = index(now).saturating_sub(index(tick));
            if behind > 0 {
                count = u64::try_from(behind).unwrap_or(u64::MAX);
                let last_millis = index(now) * u128::from(*millis);
                last = u64::try_from(last_millis)
                    .ok()
                    .and_then(|ms| SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(ms)))
                    .unwrap_or(now);
            }
            return (count, last);
        }
        while count < MAX_COUNTED {
            match self.next_after(last) {
                Some(following) if following <= now => {
                    (count, last) = (count + 1, following);
                }
                _ => break,
            }
        }
        (count, last)
    }
}

/// The most missed cron ticks counted one by one after a long pause.
const MAX_COUNTED: u64 = 10_000;

/// Checks every schedule of the service and spawns its task into `workers`.
pub(super) fn spawn_all<S: Service>(
    shared: &Arc<Shared<S>>,
    workers: &mut JoinSet<()>,
) -> Result<(), StartError> {
    for definition in shared.definition.schedules {
        let clock = Clock::new(definition.method, definition.timing)?;
        workers.spawn(run(shared.clone(), definition, clock));
    }
    Ok(())
}

/// The task of one schedule: waits for each tick, runs it (or not), until the instance
/// stops.
async fn run<S: Service>(
    shared: Arc<Shared<S>>,
    definition: &'static ScheduleDefinition<S>,
    clock: Clock,
) {
    let core = &shared.core;
    let service = shared.definition.name;
    let mut next = clock.next_after(SystemTime::now());
    loop {
        let Some(tick) = next else {
            tracing::info!(
                schedule = definition.method,
                "the schedule has no more ticks: it will not run again"
            );
            return;
        };
        let jitter = Duration::from_millis(fastrand::u64(0..=definition.jitter_millis));
        let due = tick + jitter;
        let wait = due
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stopping(core) => return,
        }
        let now = SystemTime::now();
        let following = clock.next_after(tick);
        // Late by more than half the time to the following tick: missed.
        let grace = following
            .and_then(|following| following.duration_since(tick).ok())
            .map_or(Duration::MAX, |gap| gap / 2);
        let late = now.duration_since(due).unwrap_or(Duration::ZERO);
        let (scheduled_at, missed) = if late > grace {
            let (behind, latest) = clock.due_after(tick, now);
            let missed = behind + 1;
            match definition.missed {
                MissedTicks::Skip => {
                    tracing::debug!(
                        schedule = definition.method,
                        missed,
                        ?late,
                        "ticks missed: skipped"
                    );
                    skipped(service, definition.method, "missed", missed);
                    next = clock.next_after(now);
                    continue;
                }
                MissedTicks::RunOnce => (latest, missed),
            }
        } else {
            (tick, 0)
        };
        let term = match definition.mode {
            ScheduleMode::EveryInstance => None,
            ScheduleMode::Exclusive => match core.leadership.term() {
                Some(term) => Some(term),
                None => {
                    skipped(service, definition.method, "standby", 1);
                    next = clock.next_after(scheduled_at.max(now));
                    continue;
                }
            },
        };
        // Held until the run is settled: a stop drains schedule runs like calls.
        let Ok(permit) = core.permits.clone().acquire_owned().await else {
            return;
        };
        // The term is read again once the run may start: a leadership lost while waiting
        // for a permit must not run the tick under its old term.
        if term.is_some() && core.leadership.term() != term {
            skipped(service, definition.method, "standby", 1);
            next = clock.next_after(scheduled_at.max(SystemTime::now()));
            continue;
        }
        let (done, finished) = oneshot::channel();
        let context = ScheduleContext::new(
            service,
            definition.method,
            core.instance_key.clone(),
            term,
            scheduled_at,
            missed.saturating_sub(1),
            (definition.mode == ScheduleMode::Exclusive).then(|| core.leadership.clone()),
            core.events.clone(),
        );
        invoke::serve(
            permit,
            ScheduleRun {
                shared: shared.clone(),
                definition,
                context: Some(context),
                done: Some(done),
            },
        );
        // Runs never overlap: the next tick is awaited once this run has ended.
        let _ = finished.await;
        next = clock.next_after(scheduled_at);
    }
}

fn skipped(service: &'static str, schedule: &'static str, reason: &'static str, ticks: u64) {
    metrics::counter!(
        crate::metrics::SCHEDULE_SKIPS,
        "service" => service,
        "schedule" => schedule,
        "reason" => reason
    )
    .increment(ticks);
}

/// One run of a schedule, as the serving core runs it.
struct ScheduleRun<S: 'static> {
    shared: Arc<Shared<S>>,
    definition: &'static ScheduleDefinition<S>,
    context: Option<ScheduleContext>,
    /// Tells the schedule's task that the run has ended.
    done: Option<oneshot::Sender<()>>,
}

impl<S: Service> Delivery for ScheduleRun<S> {
    type Output = Result<(), WorkFailure>;

    fn kind(&self) -> HandlerKind {
        HandlerKind::Schedule
    }

    fn method(&self) -> &'static str {
        self.definition.method
    }

    fn span(&self) -> tracing::Span {
        let term = self.context.as_ref().and_then(ScheduleContext::term);
        crate::telemetry::traced_span!(
            "schedule",
            kind = "schedule",
            service = self.shared.definition.name,
            method = self.definition.method,
            instance = %self.shared.core.instance_key,
            term = term,
        )
    }

    fn start(&mut self) -> impl Future<Output = Self::Output> + Send + 'static {
        let context = self.context.take().expect("a schedule run is started once");
        (self.definition.handler)(self.shared.service.clone(), context)
    }

    async fn settle(mut self, invoked: Invoked<Self::Output>) {
        let failure = match invoked {
            Invoked::Returned(Ok(())) => None,
            Invoked::Returned(Err(failure)) => Some(failure.to_string()),
            Invoked::Panicked(message) => Some(invoke::panicked(&message)),
            Invoked::TimedOut(limit) => Some(format!("the run took longer than {limit:?}")),
        };
        let outcome = match &failure {
            None => "ok",
            Some(failure) => {
                // The next tick runs regardless: a schedule has nobody to report to.
                tracing::warn!(%failure, "the scheduled run failed");
                crate::telemetry::record_error(&tracing::Span::current(), failure);
                "error"
            }
        };
        metrics::counter!(
            crate::metrics::SCHEDULE_RUNS,
            "service" => self.shared.definition.name,
            "schedule" => self.definition.method,
            "outcome" => outcome
        )
        .increment(1);
        if let Some(done) = self.done.take() {
            let _ = done.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(millis)
    }

    #[test]
    fn interval_ticks_are_multiples_of_the_interval_since_the_epoch() {
        let clock = Clock::new("t", Timing::Every { millis: 200 }).expect("a clock");
        assert_eq!(clock.next_after(at(1_000)), Some(at(1_200)));
        assert_eq!(clock.next_after(at(1_001)), Some(at(1_200)));
        assert_eq!(clock.next_after(at(1_199)), Some(at(1_200)));
        assert_eq!(clock.due_after(at(1_200), at(1_250)), (0, at(1_200)));
        assert_eq!(clock.due_after(at(1_200), at(1_650)), (2, at(1_600)));
    }

    #[test]
    fn cron_ticks_follow_the_expression_in_utc() {
        let clock = Clock::new("t", Timing::Cron("0 */5 * * * *")).expect("a clock");
        // 1970-01-01T00:00:00Z + 61 s → the next multiple of five minutes.
        assert_eq!(clock.next_after(at(61_000)), Some(at(300_000)));
        assert_eq!(clock.due_after(at(300_000), at(960_000)), (2, at(900_000)));
    }

    #[test]
    fn a_bad_cron_expression_is_an_error_that_names_the_schedule() {
        let err = Clock::new("nightly", Timing::Cron("every day")).expect_err("not cron");
        assert!(err.to_string().contains("`nightly`"), "{err}");
    }
}
