//! An order processor using every Aegis attribute: `#[rpc]`, `#[exclusive_rpc]`,
//! `#[subscribe]` and `#[command]`, and publishing a domain event.

use std::sync::atomic::{AtomicU64, Ordering};

use aegis_runtime::{DomainEvent, Event, EventContext, Progress, RpcContext, service};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An order to process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderRequest {
    /// The order's id, e.g. `ORD-1`.
    pub order_id: String,
    /// The amount to charge.
    pub amount: f64,
}

/// A processed order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderResult {
    /// The order's id.
    pub order_id: String,
    /// The instance that processed it.
    pub instance_id: String,
    /// The fencing term it was processed under.
    pub term: u64,
    /// How many orders this instance has processed.
    pub sequence: u64,
}

/// Liveness of an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    /// Always `healthy` while it answers.
    pub status: String,
    /// Orders processed so far.
    pub processed: u64,
}

/// A quote request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QuoteRequest {
    /// Items in the order.
    pub items: u32,
}

/// An event: an order was created somewhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OrderCreated {
    /// The order's id.
    pub order_id: String,
}

/// A request to cancel an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CancelOrder {
    /// The order's id.
    pub order_id: String,
    /// Why it is cancelled.
    pub reason: String,
}

/// An event the order processor publishes: an order was cancelled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, DomainEvent)]
#[event(domain = "orders", event_type = "cancelled")]
pub struct OrderCancelled {
    /// The order's id.
    pub order_id: String,
    /// Why it was cancelled.
    pub reason: String,
    /// The instance that cancelled it.
    pub instance_id: String,
}

/// A command: rebuild the search index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Reindex {
    /// How many orders to reindex.
    pub orders: u32,
}

/// The outcome of a reindex.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Reindexed {
    /// How many orders were reindexed.
    pub reindexed: u32,
}

/// Why an order was refused.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// Amounts must be positive.
    #[error("order {order_id}: amount {amount} must be positive")]
    InvalidAmount {
        /// The order.
        order_id: String,
        /// Its amount.
        amount: f64,
    },
    /// The ledger could not be written.
    #[error("cannot write the ledger: {0}")]
    Ledger(String),
    /// An event could not be published.
    #[error("cannot publish the event: {0}")]
    Publish(#[from] aegis_runtime::events::PublishError),
}

/// Processes orders; only the active instance of the group processes them.
#[derive(Debug, Default)]
pub struct OrderProcessor {
    processed: AtomicU64,
    events_seen: AtomicU64,
    /// Where every processed order is written down with the term it ran under: the
    /// audit trail that fencing protects (shared by all instances in the tests).
    ledger: Option<std::sync::Mutex<std::fs::File>>,
    /// The orders processed here, by id, with their results.
    done: std::sync::Mutex<std::collections::HashMap<String, OrderResult>>,
}

impl OrderProcessor {
    /// An order processor that appends `{term} {instance} {order_id}` to the file at
    /// `path` for every order it processes.
    ///
    /// # Errors
    /// The file cannot be opened for appending.
    pub fn with_ledger(path: &std::path::Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self {
            ledger: Some(std::sync::Mutex::new(file)),
            ..Self::default()
        })
    }

    /// The result of an order this instance already processed.
    fn done(&self, order_id: &str) -> Option<OrderResult> {
        self.done.lock().ok()?.get(order_id).cloned()
    }

    /// Writes one processed order down. A real system would pass the term to its
    /// database, which refuses writes carrying an older term than it has seen.
    fn record(&self, term: u64, instance: &str, order_id: &str) -> Result<(), OrderError> {
        use std::io::Write;
        let Some(ledger) = &self.ledger else {
            return Ok(());
        };
        let mut file = ledger
            .lock()
            .map_err(|_| OrderError::Ledger("lock poisoned".into()))?;
        writeln!(file, "{term} {instance} {order_id}")
            .map_err(|e| OrderError::Ledger(e.to_string()))
    }
}

#[service(name = "order-processor", version = "1.0.0", publishes = [OrderCancelled])]
impl OrderProcessor {
    /// Processes an order. Runs only on the active instance.
    ///
    /// Idempotent: an order is identified by its `order_id`, and an instance answers a
    /// repeated id with the result it gave the first time. So a client may retry a call
    /// whose reply was lost (its leader crashed): at worst a new leader processes the
    /// order once more, under a higher term that the ledger can tell apart.
    #[exclusive_rpc(idempotent)]
    async fn process_order(
        &self,
        ctx: &RpcContext,
        order: OrderRequest,
    ) -> Result<OrderResult, OrderError> {
        if order.amount <= 0.0 {
            return Err(OrderError::InvalidAmount {
                order_id: order.order_id,
                amount: order.amount,
            });
        }
        if let Some(done) = self.done(&order.order_id) {
            return Ok(done);
        }
        let term = ctx.term().unwrap_or_default();
        self.record(term, ctx.instance_id(), &order.order_id)?;
        let sequence = self.processed.fetch_add(1, Ordering::SeqCst) + 1;
        let result = OrderResult {
            order_id: order.order_id,
            instance_id: ctx.instance_id().to_owned(),
            term,
            sequence,
        };
        if let Ok(mut done) = self.done.lock() {
            done.insert(result.order_id.clone(), result.clone());
        }
        Ok(result)
    }

    /// Answers on every instance.
    #[rpc]
    async fn health_check(&self) -> Health {
        Health {
            status: "healthy".into(),
            processed: self.processed.load(Ordering::SeqCst),
        }
    }

    /// Prices an order; a wire name other than the Rust name.
    #[rpc(name = "get_quote")]
    async fn quote(&self, request: QuoteRequest) -> Result<f64, String> {
        match request.items {
            0 => Err("an order needs at least one item".to_owned()),
            items => Ok(f64::from(items) * 9.5),
        }
    }

    /// Cancels an order: announces it with an [`OrderCancelled`] event.
    #[rpc]
    async fn cancel_order(&self, ctx: &RpcContext, order: CancelOrder) -> Result<(), OrderError> {
        ctx.emit(&OrderCancelled {
            order_id: order.order_id,
            reason: order.reason,
            instance_id: ctx.instance_id().to_owned(),
        })
        .await?;
        Ok(())
    }

    /// Which instance answers (for routing tests).
    #[rpc]
    async fn whoami(&self, ctx: &RpcContext) -> String {
        ctx.instance_id().to_owned()
    }

    /// Counts created orders seen anywhere.
    #[subscribe("events.orders.created", mode = "compete")]
    async fn on_order_created(&self, _ctx: &EventContext, _event: Event<OrderCreated>) {
        self.events_seen.fetch_add(1, Ordering::SeqCst);
    }

    /// Rebuilds the search index, reporting progress after each tenth of the orders.
    #[command]
    async fn reindex(&self, command: Reindex, progress: Progress) -> Result<Reindexed, String> {
        if command.orders == 0 {
            return Err("nothing to reindex".to_owned());
        }
        // A large reindex takes a while: 1 ms per order.
        let step = std::time::Duration::from_millis(u64::from(command.orders) / 10);
        for tenth in 1..=10u32 {
            tokio::time::sleep(step).await;
            let status = format!(
                "{} of {} orders",
                command.orders * tenth / 10,
                command.orders
            );
            progress
                .report(f64::from(tenth * 10), status)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(Reindexed {
            reindexed: command.orders,
        })
    }
}
