//! `#[schedule]` methods: when they run, on which instances, and what a run knows.

use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{BoxFuture, WorkFailure};
use crate::leadership::Leadership;

/// Which instances run a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleMode {
    /// Only the active instance of the group, under its fencing term (the default). The
    /// service takes part in the leader election for it, as for an `#[exclusive_rpc]`.
    Exclusive,
    /// Every instance, independently.
    EveryInstance,
}

/// What happens to ticks that could not start on time: the instance was busy with the
/// previous run of the same schedule (runs never overlap), paused, or starved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MissedTicks {
    /// They are dropped; the schedule resumes at its next tick (the default).
    Skip,
    /// They are made up by one run, at once; then the schedule resumes at its next tick.
    RunOnce,
}

/// When a schedule fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timing {
    /// At every multiple of the interval since the Unix epoch, in milliseconds: instances
    /// agree on the ticks, so a new leader continues where the old one stopped.
    Every {
        /// The interval, in milliseconds (at least 1).
        millis: u64,
    },
    /// At the times of a cron expression (6 or 7 fields, seconds first), in UTC.
    Cron(&'static str),
}

#[doc(hidden)] // glue for the generated code, not public API
/// A handler of schedule ticks: runs the user's method.
pub type ScheduleHandler<S> =
    fn(Arc<S>, ScheduleContext) -> BoxFuture<'static, Result<(), WorkFailure>>;

#[doc(hidden)] // glue for the generated code, not public API
/// One `#[schedule]` method of a service.
pub struct ScheduleDefinition<S: 'static> {
    /// The Rust method, which names the schedule.
    pub method: &'static str,
    /// When it fires.
    pub timing: Timing,
    /// Which instances run it.
    pub mode: ScheduleMode,
    /// What happens to ticks that could not start on time.
    pub missed: MissedTicks,
    /// A random delay of up to this many milliseconds before each run; 0 for none.
    pub jitter_millis: u64,
    /// The generated handler.
    pub handler: ScheduleHandler<S>,
}

impl<S: 'static> std::fmt::Debug for ScheduleDefinition<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScheduleDefinition")
            .field("method", &self.method)
            .field("timing", &self.timing)
            .field("mode", &self.mode)
            .field("missed", &self.missed)
            .field("jitter_millis", &self.jitter_millis)
            .finish_non_exhaustive()
    }
}

/// What a `#[schedule]` method knows about the run it is in.
///
/// Take `ctx: &ScheduleContext` as the argument of a `#[schedule]` method to see it. An
/// exclusive schedule runs only on the active instance and gets its fencing term: pass it
/// to anything that must reject writes of an older leader.
///
/// ```
/// use aegis_runtime::{ScheduleContext, service};
///
/// struct Reports;
///
/// #[service]
/// impl Reports {
///     #[schedule(every = "30s")]
///     async fn publish_summary(&self, ctx: &ScheduleContext) {
///         // Exclusive (the default): only the leader runs it, under its fencing term.
///         assert!(ctx.term().is_some());
///         let _tick = ctx.scheduled_at();
///     }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct ScheduleContext {
    service: &'static str,
    schedule: &'static str,
    instance_id: Arc<str>,
    term: Option<u64>,
    scheduled_at: SystemTime,
    missed: u64,
    leadership: Option<Leadership>,
    events: Option<crate::events::EventPublisher>,
}

impl ScheduleContext {
    /// The context of one run of `schedule`: exclusive runs pass their `leadership` and the
    /// `term` they start under.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        service: &'static str,
        schedule: &'static str,
        instance_id: Arc<str>,
        term: Option<u64>,
        scheduled_at: SystemTime,
        missed: u64,
        leadership: Option<Leadership>,
        events: crate::events::EventPublisher,
    ) -> Self {
        Self {
            service,
            schedule,
            instance_id,
            term,
            scheduled_at,
            missed,
            leadership,
            events: Some(events),
        }
    }

    /// The service name.
    pub fn service(&self) -> &str {
        self.service
    }

    /// The schedule's name: its method's.
    pub fn schedule(&self) -> &str {
        self.schedule
    }

    /// The id of the instance running it.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// For an exclusive schedule: the fencing term of the leadership this run started
    /// under. `None` for an `every_instance` schedule.
    pub fn term(&self) -> Option<u64> {
        self.term
    }

    /// The tick this run is for: the time it was due (before any jitter). Every instance
    /// computes the same ticks, so it identifies the run across a failover.
    pub fn scheduled_at(&self) -> SystemTime {
        self.scheduled_at
    }

    /// How many earlier ticks could not run and are made up by this run (`missed =
    /// "run_once"`); 0 otherwise.
    pub fn missed_ticks(&self) -> u64 {
        self.missed
    }

    /// Whether the run may still act as leader: for an exclusive schedule, whether this
    /// instance still leads under the term the run started with (a long run can check it
    /// between steps); always `true` for an `every_instance` schedule.
    pub fn still_active(&self) -> bool {
        match (&self.leadership, self.term) {
            (Some(leadership), Some(term)) => leadership.term() == Some(term),
            _ => true,
        }
    }

    /// Publishes `payload` as event `event_type` of `domain`, with this service as its
    /// source; see [`RpcContext::publish`](crate::RpcContext::publish).
    ///
    /// # Errors
    /// [`PublishError`](crate::events::PublishError).
    pub async fn publish<P: serde::Serialize>(
        &self,
        domain: &str,
        event_type: &str,
        payload: &P,
    ) -> Result<(), crate::events::PublishError> {
        crate::events::publish_through(self.events.as_ref(), domain, event_type, payload).await
    }

    /// Publishes a [`DomainEvent`](crate::DomainEvent) on the subject its type names, with
    /// this service as its source; see [`RpcContext::emit`](crate::RpcContext::emit).
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    pub async fn emit<E: crate::DomainEvent>(
        &self,
        event: &E,
    ) -> Result<(), crate::events::PublishError> {
        self.publish(E::DOMAIN, E::EVENT_TYPE, event).await
    }
}
