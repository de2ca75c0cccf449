//! Procedural macros of Aegis: `#[service]`, its method attributes, and
//! `#[derive(DomainEvent)]`.
//!
//! Use them through `aegis-runtime`, which re-exports them and documents them; every piece
//! of logic the generated code needs lives there, behind `::aegis_runtime::__private`.
//!
//! The crate is laid out as parse → model → validate → expand (private modules, so no
//! links): `attrs` parses attribute arguments, `model` turns the `impl` block into a
//! checked description (collecting every error), `validate` checks what spans several
//! methods and the names `reserved` by generated code, and `expand` generates code from the
//! valid model only.

mod attrs;
mod domain_event;
mod errors;
mod expand;
mod model;
mod naming;
mod reserved;
mod validate;

/// The naming rules of the protocol, shared with the runtime so both accept the same names.
use aegis_names as rules;

use proc_macro::TokenStream;

use crate::attrs::AttrKind;

#[doc = include_str!("../docs/macros.md")]
#[proc_macro_attribute]
pub fn service(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::service(args.into(), item.into()).into()
}

/// Marks an RPC method; valid only inside a `#[service]` impl block.
#[proc_macro_attribute]
pub fn rpc(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::outside_service(AttrKind::Rpc, args.into(), item.into()).into()
}

/// Marks an exclusive RPC method; valid only inside a `#[service]` impl block.
#[proc_macro_attribute]
pub fn exclusive_rpc(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::outside_service(AttrKind::ExclusiveRpc, args.into(), item.into()).into()
}

/// Marks an event handler; valid only inside a `#[service]` impl block.
#[proc_macro_attribute]
pub fn subscribe(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::outside_service(AttrKind::Subscribe, args.into(), item.into()).into()
}

/// Marks a command handler; valid only inside a `#[service]` impl block.
#[proc_macro_attribute]
pub fn command(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::outside_service(AttrKind::Command, args.into(), item.into()).into()
}

/// Marks a method that runs on a timer (`every = "30s"` or `cron = "0 */5 * * * *"`);
/// valid only inside a `#[service]` impl block.
#[proc_macro_attribute]
pub fn schedule(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::outside_service(AttrKind::Schedule, args.into(), item.into()).into()
}

/// Marks the method that runs before an instance serves; valid only inside a `#[service]`
/// impl block.
#[proc_macro_attribute]
pub fn on_start(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::outside_service(AttrKind::OnStart, args.into(), item.into()).into()
}

/// Marks the method that runs after an instance stopped serving; valid only inside a
/// `#[service]` impl block.
#[proc_macro_attribute]
pub fn on_stop(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::outside_service(AttrKind::OnStop, args.into(), item.into()).into()
}

/// Implements `aegis_runtime::DomainEvent` with the subject tokens of
/// `#[event(domain = "…", event_type = "…")]`, checked at compile time.
#[proc_macro_derive(DomainEvent, attributes(event))]
pub fn domain_event(input: TokenStream) -> TokenStream {
    domain_event::derive(input.into()).into()
}
