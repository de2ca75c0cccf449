//! The service's side: type checks, the `Service` impl with its static definition, one
//! handler per RPC, the descriptor and its registration.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{GenericArgument, PathArguments, Type};

use super::Generator;
use crate::attrs::AttrKind;
use crate::model::{
    Arg, ContextKind, Kind, Method, Missed, Output, ScheduleMode, ScheduleSpec, SubscribeMode,
    Timing, Version,
};
use crate::naming;

impl Generator<'_> {
    /// Assertions spanned on the user's types, so a missing derive is reported there, once:
    /// `JsonSchema` is asserted here and nowhere else (the descriptor only probes for it).
    pub(super) fn checks(&self) -> TokenStream {
        let k = &self.service.krate;
        let self_ty = &self.service.original.self_ty;
        let mut checks =
            vec![quote_spanned! {self_ty.span()=> #k::__private::assert_service::<#self_ty>(); }];
        let schema =
            |ty: &Type| quote_spanned! {ty.span()=> #k::__private::assert_schema::<#ty>(); };
        for method in &self.service.methods {
            if let Some(payload) = method.payload() {
                let payload = event_payload(payload).unwrap_or(payload);
                checks.push(
                    quote_spanned! {payload.span()=> #k::__private::assert_request::<#payload>(); },
                );
                checks.push(schema(payload));
            }
            let (ok, err) = match &method.output {
                Output::Unit => continue,
                Output::Value(ok) => (ok, None),
                Output::Result { ok, err } => (ok, *err),
            };
            checks.push(quote_spanned! {ok.span()=> #k::__private::assert_response::<#ok>(); });
            checks.push(schema(ok));
            if let Some(err) = err {
                checks.push(quote_spanned! {err.span()=> #k::__private::assert_error::<#err>(); });
            }
        }
        for event in &self.service.publishes {
            checks.push(
                quote_spanned! {event.span()=> #k::__private::assert_domain_event::<#event>(); },
            );
            checks.push(schema(event));
        }
        quote! {
            #[allow(dead_code)]
            fn __aegis_checks() {
                #(#checks)*
            }
        }
    }

    /// `impl Service for T` with the static handler table.
    pub(super) fn service_impl(&self) -> TokenStream {
        let k = &self.service.krate;
        let self_ty = &self.service.original.self_ty;
        let name = &self.service.name.0;
        let version = version(&self.service.version);
        let rpcs = self.rpcs().map(|method| {
            let wire = &method.wire_name.0;
            let exclusive = matches!(method.kind, Kind::ExclusiveRpc);
            let handler = handler_ident("rpc", method);
            quote! { #k::__private::RpcDefinition { name: #wire, exclusive: #exclusive, handler: #handler } }
        });
        let subscriptions = self.service.methods.iter().filter_map(|method| {
            let Kind::Subscribe { pattern, mode, durable } = &method.kind else { return None };
            let rust_name = naming::unraw(method.ident);
            let mode = subscribe_mode(k, *mode);
            let durable = optional_str(durable.as_ref().map(syn::LitStr::value));
            let handler = handler_ident("event", method);
            Some(quote! {
                #k::__private::SubscriptionDefinition {
                    method: #rust_name, pattern: #pattern, mode: #mode, durable: #durable, handler: #handler,
                }
            })
        });
        let commands = self.commands().map(|method| {
            let wire = &method.wire_name.0;
            let handler = handler_ident("command", method);
            quote! { #k::__private::CommandDefinition { name: #wire, handler: #handler } }
        });
        let schedules = self.schedules().map(|(method, spec)| {
            let rust_name = naming::unraw(method.ident);
            let handler = handler_ident("schedule", method);
            let timing = match &spec.timing {
                Timing::Every { millis } => {
                    quote!(#k::__private::Timing::Every { millis: #millis })
                }
                Timing::Cron(cron) => quote!(#k::__private::Timing::Cron(#cron)),
            };
            let (mode, missed) = schedule_mode_and_missed(k, spec);
            let jitter = spec.jitter_millis;
            quote! {
                #k::__private::ScheduleDefinition {
                    method: #rust_name, timing: #timing, mode: #mode, missed: #missed,
                    jitter_millis: #jitter, handler: #handler,
                }
            }
        });
        let hook = |kind: AttrKind| match self
            .service
            .methods
            .iter()
            .find(|m| m.kind.attribute() == kind)
        {
            Some(method) => {
                let handler = handler_ident("hook", method);
                quote!(::core::option::Option::Some(#handler))
            }
            None => quote!(::core::option::Option::None),
        };
        let (on_start, on_stop) = (hook(AttrKind::OnStart), hook(AttrKind::OnStop));
        quote! {
            #[automatically_derived]
            impl #k::__private::Service for #self_ty {
                fn definition() -> &'static #k::__private::ServiceDefinition<Self> {
                    static DEFINITION: #k::__private::ServiceDefinition<#self_ty> = #k::__private::ServiceDefinition {
                        name: #name,
                        version: #version,
                        rpcs: &[#(#rpcs),*],
                        subscriptions: &[#(#subscriptions),*],
                        commands: &[#(#commands),*],
                        schedules: &[#(#schedules),*],
                        on_start: #on_start,
                        on_stop: #on_stop,
                        describe: __aegis_describe,
                    };
                    &DEFINITION
                }
            }
        }
    }

    /// One function per RPC: decode the parameters, call the method, encode the reply.
    pub(super) fn handlers(&self) -> TokenStream {
        let k = &self.service.krate;
        let self_ty = &self.service.original.self_ty;
        let handlers = self.rpcs().map(|method| {
            let handler = handler_ident("rpc", method);
            let ident = method.ident;
            let params_ty = payload_or_no_params(k, method.payload());
            let payload_binding = if method.payload().is_some() {
                quote!(payload)
            } else {
                quote!(_)
            };
            let args = method.args.iter().map(|arg| match arg {
                Arg::Context(ContextKind::Rpc) => quote!(&ctx),
                Arg::Context(_) | Arg::Payload(_) => quote!(payload),
            });
            let respond = match &method.output {
                Output::Result { .. } => quote!(#k::__private::Reply::result(&ctx, output)),
                Output::Unit | Output::Value(_) => {
                    quote!(#k::__private::Reply::value(&ctx, output))
                }
            };
            quote! {
                fn #handler(
                    service: #k::__private::Arc<#self_ty>,
                    call: #k::__private::RpcCall,
                ) -> #k::__private::BoxFuture<'static, #k::__private::Reply> {
                    #k::__private::Box::pin(async move {
                        let (ctx, #payload_binding) = match call.decode::<#params_ty>() {
                            ::core::result::Result::Ok(decoded) => decoded,
                            ::core::result::Result::Err(reply) => return reply,
                        };
                        let output = service.#ident(#(#args),*).await;
                        #respond
                    })
                }
            }
        });
        let events = self
            .service
            .methods
            .iter()
            .filter(|m| matches!(m.kind, Kind::Subscribe { .. }));
        let event_handlers = events.map(|method| self.event_handler(method));
        let command_handlers = self.commands().map(|method| self.command_handler(method));
        let hooks = self.service.methods.iter().filter(|m| m.kind.attribute().is_hook()).map(|method| {
            let handler = handler_ident("hook", method);
            let ident = method.ident;
            quote! {
                fn #handler(
                    service: #k::__private::Arc<#self_ty>,
                ) -> #k::__private::BoxFuture<'static, ::core::result::Result<(), #k::__private::WorkFailure>> {
                    #k::__private::Box::pin(async move {
                        #k::__private::UnitOutcome::into_outcome(service.#ident().await)
                    })
                }
            }
        });
        let schedule_handlers = self.schedules().map(|(method, _)| {
            let handler = handler_ident("schedule", method);
            let ident = method.ident;
            let args = method.args.iter().map(|_| quote!(&ctx));
            quote! {
                #[allow(unused_variables)]
                fn #handler(
                    service: #k::__private::Arc<#self_ty>,
                    ctx: #k::__private::ScheduleContext,
                ) -> #k::__private::BoxFuture<'static, ::core::result::Result<(), #k::__private::WorkFailure>> {
                    #k::__private::Box::pin(async move {
                        #k::__private::UnitOutcome::into_outcome(service.#ident(#(#args),*).await)
                    })
                }
            }
        });
        quote! { #(#handlers)* #(#event_handlers)* #(#command_handlers)* #(#schedule_handlers)* #(#hooks)* }
    }

    /// Decodes the event (with the payload type the method wants), calls the method.
    fn event_handler(&self, method: &Method<'_>) -> TokenStream {
        let k = &self.service.krate;
        let self_ty = &self.service.original.self_ty;
        let handler = handler_ident("event", method);
        let ident = method.ident;
        let declared = method.payload();
        let payload_ty = declared.map(|ty| event_payload(ty).unwrap_or(ty));
        let wants_envelope = declared.is_some_and(|ty| event_payload(ty).is_some());
        let payload_ty = payload_or_no_params(k, payload_ty);
        let args = method.args.iter().map(|arg| match arg {
            Arg::Context(_) => quote!(&ctx),
            Arg::Payload(_) if wants_envelope => quote!(event),
            Arg::Payload(_) => quote!(event.payload),
        });
        quote! {
            #[allow(unused_variables)]
            fn #handler(
                service: #k::__private::Arc<#self_ty>,
                call: #k::__private::EventCall,
            ) -> #k::__private::BoxFuture<'static, ::core::result::Result<(), #k::__private::WorkFailure>> {
                #k::__private::Box::pin(async move {
                    let (ctx, event) = call.decode::<#payload_ty>()?;
                    let output = service.#ident(#(#args),*).await;
                    #k::__private::UnitOutcome::into_outcome(output)
                })
            }
        }
    }

    /// Decodes the command, calls the method with its progress handle, encodes the outcome.
    fn command_handler(&self, method: &Method<'_>) -> TokenStream {
        let k = &self.service.krate;
        let self_ty = &self.service.original.self_ty;
        let handler = handler_ident("command", method);
        let ident = method.ident;
        let payload_ty = payload_or_no_params(k, method.payload());
        let args = method.args.iter().map(|arg| match arg {
            Arg::Context(_) => quote!(progress),
            Arg::Payload(_) => quote!(payload),
        });
        let output = match &method.output {
            Output::Result { .. } => quote!(output),
            Output::Unit | Output::Value(_) => quote!(#k::__private::Completed(output)),
        };
        quote! {
            #[allow(unused_variables)]
            fn #handler(
                service: #k::__private::Arc<#self_ty>,
                call: #k::__private::CommandCall,
            ) -> #k::__private::BoxFuture<'static, #k::__private::CommandOutcome> {
                #k::__private::Box::pin(async move {
                    let (command, progress, payload) = match call.decode::<#payload_ty>() {
                        ::core::result::Result::Ok(decoded) => decoded,
                        ::core::result::Result::Err(outcome) => return outcome,
                    };
                    let output = service.#ident(#(#args),*).await;
                    #k::__private::CommandOutcome::of(&command, #output)
                })
            }
        }
    }

    /// The descriptor with the JSON Schema of every request, response and event payload.
    /// Schemas are probed for (`schema_probe`), not required: a type without `JsonSchema`
    /// is reported by `checks` alone, on the type.
    pub(super) fn describe(&self) -> TokenStream {
        let k = &self.service.krate;
        let name = &self.service.name.0;
        let describe_method = |method: &Method<'_>| {
            let wire = &method.wire_name.0;
            let exclusive = matches!(method.kind, Kind::ExclusiveRpc);
            let request = payload_or_no_params(k, method.payload());
            let response = response_type(&method.output);
            quote! {
                #k::__private::MethodDescriptor {
                    name: ::core::convert::From::from(#wire),
                    exclusive: #exclusive,
                    request: #k::__private::schema_probe::<#request>().schema(),
                    response: #k::__private::schema_probe::<#response>().schema(),
                }
            }
        };
        let rpcs = self.rpcs().map(describe_method);
        let commands = self.commands().map(describe_method);
        let subscriptions = self.service.methods.iter().filter_map(|method| {
            let Kind::Subscribe {
                pattern,
                mode,
                durable,
            } = &method.kind
            else {
                return None;
            };
            let rust_name = naming::unraw(method.ident);
            let payload = method.payload().map(|ty| event_payload(ty).unwrap_or(ty))?;
            let mode = subscribe_mode(k, *mode);
            let durable = match durable {
                Some(durable) => {
                    quote!(::core::option::Option::Some(::core::convert::From::from(#durable)))
                }
                None => quote!(::core::option::Option::None),
            };
            Some(quote! {
                #k::__private::SubscriptionDescriptor {
                    method: ::core::convert::From::from(#rust_name),
                    pattern: ::core::convert::From::from(#pattern),
                    mode: #mode,
                    durable: #durable,
                    payload: #k::__private::schema_probe::<#payload>().schema(),
                }
            })
        });
        let schedules = self.schedules().map(|(method, spec)| {
            let rust_name = naming::unraw(method.ident);
            let none = quote!(::core::option::Option::None);
            let (every, cron) = match &spec.timing {
                Timing::Every { millis } => (quote!(::core::option::Option::Some(#millis)), none),
                Timing::Cron(cron) => (
                    none,
                    quote!(::core::option::Option::Some(::core::convert::From::from(#cron))),
                ),
            };
            let (mode, missed) = schedule_mode_and_missed(k, spec);
            let jitter = spec.jitter_millis;
            quote! {
                #k::__private::ScheduleDescriptor {
                    method: ::core::convert::From::from(#rust_name),
                    every_ms: #every,
                    cron: #cron,
                    mode: #mode,
                    missed: #missed,
                    jitter_ms: #jitter,
                }
            }
        });
        let publishes = self.service.publishes.iter().map(|event| {
            quote! {
                #k::__private::event_probe::<#event>()
                    .published(#k::__private::schema_probe::<#event>().schema())
            }
        });
        let version = version(&self.service.version);
        quote! {
            fn __aegis_describe() -> #k::__private::ServiceDescriptor {
                // Both probes of each pair in scope: method resolution picks the schema (the
                // event's tokens) when there is one.
                #[allow(unused_imports)]
                use #k::__private::{ProbeEvent as _, ProbeNoEvent as _, ProbeNoSchema as _, ProbeSchema as _};
                #k::__private::ServiceDescriptor {
                    name: ::core::convert::From::from(#name),
                    version: ::core::convert::From::from(#version),
                    rpcs: ::std::vec![#(#rpcs),*],
                    commands: ::std::vec![#(#commands),*],
                    subscriptions: ::std::vec![#(#subscriptions),*],
                    schedules: ::std::vec![#(#schedules),*],
                    publishes: ::std::vec![#(#publishes),*],
                }
            }
        }
    }

    /// Registers the descriptor with `inventory`, so a binary can list its services.
    pub(super) fn registration(&self) -> TokenStream {
        let k = &self.service.krate;
        let name = &self.service.name.0;
        quote! {
            #k::__private::inventory::submit! {
                #k::__private::DescriptorEntry { name: #name, describe: __aegis_describe }
            }
        }
    }

    pub(super) fn rpcs(&self) -> impl Iterator<Item = &Method<'_>> {
        self.service
            .methods
            .iter()
            .filter(|m| matches!(m.kind, Kind::Rpc | Kind::ExclusiveRpc))
    }

    /// The `#[schedule]` methods, with their schedule.
    pub(super) fn schedules(&self) -> impl Iterator<Item = (&Method<'_>, &ScheduleSpec)> {
        self.service.methods.iter().filter_map(|m| match &m.kind {
            Kind::Schedule(spec) => Some((m, spec)),
            _ => None,
        })
    }

    pub(super) fn commands(&self) -> impl Iterator<Item = &Method<'_>> {
        self.service
            .methods
            .iter()
            .filter(|m| matches!(m.kind, Kind::Command))
    }
}

/// `__aegis_{kind}_{method}`: the generated handler of a method.
fn handler_ident(kind: &str, method: &Method<'_>) -> syn::Ident {
    format_ident!(
        "__aegis_{}_{}",
        kind,
        naming::unraw(method.ident),
        span = Span::call_site()
    )
}

/// The request type on the wire: the payload, or `NoParams` for a method without one.
fn payload_or_no_params(k: &syn::Path, payload: Option<&Type>) -> TokenStream {
    match payload {
        Some(ty) => quote!(#ty),
        None => quote!(#k::__private::NoParams),
    }
}

/// The result type on the wire.
pub(super) fn response_type(output: &Output<'_>) -> TokenStream {
    match output {
        Output::Unit => quote!(()),
        Output::Value(ty) | Output::Result { ok: ty, .. } => quote!(#ty),
    }
}

/// `T` of an `Event<T>` argument: subscribers may take the whole envelope.
fn event_payload(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Event" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(inner) if args.args.len() == 1 => Some(inner),
        _ => None,
    }
}

/// The service's version: the given literal, or the defining crate's.
fn version(version: &Version) -> TokenStream {
    match version {
        Version::Given(version) => quote!(#version),
        Version::CrateVersion => quote!(::core::env!("CARGO_PKG_VERSION")),
    }
}

/// The runtime's `SubscribeMode` for `mode`.
fn subscribe_mode(k: &syn::Path, mode: SubscribeMode) -> TokenStream {
    match mode {
        SubscribeMode::Compete => quote!(#k::__private::SubscribeMode::Compete),
        SubscribeMode::Broadcast => quote!(#k::__private::SubscribeMode::Broadcast),
    }
}

/// The runtime's `ScheduleMode` and `MissedTicks` of `spec`.
fn schedule_mode_and_missed(k: &syn::Path, spec: &ScheduleSpec) -> (TokenStream, TokenStream) {
    let mode = match spec.mode {
        ScheduleMode::Exclusive => quote!(#k::__private::ScheduleMode::Exclusive),
        ScheduleMode::EveryInstance => quote!(#k::__private::ScheduleMode::EveryInstance),
    };
    let missed = match spec.missed {
        Missed::Skip => quote!(#k::__private::MissedTicks::Skip),
        Missed::RunOnce => quote!(#k::__private::MissedTicks::RunOnce),
    };
    (mode, missed)
}

fn optional_str(value: Option<String>) -> TokenStream {
    match value {
        Some(value) => quote!(::core::option::Option::Some(#value)),
        None => quote!(::core::option::Option::None),
    }
}
