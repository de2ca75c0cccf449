use aegis_runtime::{Event, EventContext, Progress, RpcContext, ScheduleContext, Service};

#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Order {
    id: String,
}

/// A domain event, with a generic parameter the derive carries over.
#[derive(serde::Serialize, schemars::JsonSchema, aegis_runtime::DomainEvent)]
#[event(domain = "orders", event_type = "placed")]
struct Placed<T: serde::Serialize> {
    id: T,
}

#[derive(Default)]
struct Orders;

#[aegis_runtime::service(name = "orders", version = "2.1.0", publishes = [Placed<String>])]
impl Orders {
    #[exclusive_rpc]
    async fn place(&self, ctx: &RpcContext, order: Order) -> Result<String, std::io::Error> {
        let _ = ctx.emit(&Placed { id: order.id.clone() }).await;
        Ok(format!("{} {:?}", order.id, ctx.term()))
    }

    #[rpc(name = "ping")]
    async fn health(&self) {}

    #[subscribe("events.orders.*", mode = "broadcast", durable = "orders-audit")]
    async fn on_order(&self, _ctx: &EventContext, _event: Event<Order>) -> Result<(), String> {
        Ok(())
    }

    #[subscribe("events.payments.>")]
    async fn on_payment(&self, _payment: Order) {}

    #[command]
    async fn rebuild(&self, order: Order, _progress: Progress) -> String {
        order.id
    }

    #[schedule(every = "30s", jitter = "2s")]
    async fn sweep(&self, ctx: &ScheduleContext) {
        let _ = ctx.term();
    }

    #[schedule(cron = "0 */5 * * * *", mode = "every_instance", missed = "run_once")]
    async fn report(&self) -> Result<(), String> {
        Ok(())
    }

    #[on_start]
    async fn warm_up(&self) -> Result<(), String> {
        Ok(())
    }

    #[on_stop]
    async fn flush(&self) {}

    /// Not an Aegis method: left alone.
    fn helper(&self) -> u32 {
        7
    }
}

fn main() {
    let definition = Orders::definition();
    assert_eq!(definition.name, "orders");
    assert_eq!(definition.rpcs.len(), 2);
    assert_eq!(definition.subscriptions.len(), 2);
    assert_eq!(definition.commands.len(), 1);
    assert_eq!(definition.schedules.len(), 2);
    assert!(definition.elects_leader(), "an exclusive schedule and method");
    assert!(definition.on_start.is_some() && definition.on_stop.is_some());
    assert_eq!(Orders.helper(), 7);
    let descriptor = aegis_runtime::linked_services()
        .expect("one of each")
        .into_iter()
        .find(|service| service.name == "orders")
        .expect("linked");
    assert_eq!(descriptor.publishes.len(), 1);
    assert_eq!(descriptor.publishes[0].subject(), "events.orders.placed");
    let _client: fn(aegis_runtime::__private::async_nats::Client) -> OrdersClient = OrdersClient::new;
}
