//! Checks of the model that span several methods or need the protocol's rules.

use std::collections::HashMap;

use proc_macro2::Span;

use crate::errors::Errors;
use crate::model::{Kind, Service};
use crate::rules;

/// Functions and constants of the generated client; a client method of the same name
/// would clash with them.
pub(crate) const CLIENT_RESERVED: &[&str] = &["new", "from_client", "inner", "SERVICE"];

/// Methods every instance serves itself (`aegis_runtime::runner::{STATUS_METHOD, HEALTH_METHOD}`).
const BUILT_IN_METHODS: &[&str] = &["aegis_status", "aegis_health"];

/// Every name the generated client defines, with the method that defines it (`None` for
/// the fixed ones).
fn client_names<'a>(service: &'a Service<'a>) -> Vec<(String, Option<&'a syn::Ident>)> {
    let mut names: Vec<(String, Option<&syn::Ident>)> = CLIENT_RESERVED
        .iter()
        .map(|name| ((*name).to_owned(), None))
        .collect();
    for method in &service.methods {
        match method.kind {
            Kind::Rpc | Kind::ExclusiveRpc => {
                names.push((method.ident.to_string(), Some(method.ident)))
            }
            Kind::Command => {
                names.push((method.ident.to_string(), Some(method.ident)));
                names.push((
                    format!("start_{}", crate::naming::unraw(method.ident)),
                    Some(method.ident),
                ));
            }
            Kind::Subscribe { .. } | Kind::OnStart | Kind::OnStop => {}
        }
    }
    names
}

/// A client method whose name another generated item already takes.
fn check_client_names(service: &Service<'_>, errors: &Errors) {
    let names = client_names(service);
    for (index, (name, owner)) in names.iter().enumerate() {
        let Some(owner) = owner else { continue };
        let earlier = names[..index].iter().find(|(other, _)| other == name);
        if let Some((_, earlier_owner)) = earlier {
            let what = match earlier_owner {
                None => format!("generated `{}Client::{name}`", service.self_ident),
                Some(other) => format!(
                    "`{}Client::{name}`, generated for `{other}`",
                    service.self_ident
                ),
            };
            errors.spanned(
                owner,
                format!("method name conflicts with {what}; rename the method (its wire name can stay with `name = \"…\"`)"),
            );
        }
    }
}

pub(crate) fn check(service: &Service<'_>, errors: &Errors) {
    let (name, span) = &service.name;
    if let Err(violation) = rules::check_service_name(name) {
        let hint = if service.name_from_type {
            " (derived from the type name; set one with `#[service(name = \"…\")]`)"
        } else {
            ""
        };
        errors.push(syn::Error::new(*span, format!("{violation}{hint}")));
    }
    if let Some(version) = &service.version
        && let Err(message) = rules::check_version(&version.value())
    {
        errors.spanned(version, message);
    }

    check_client_names(service, errors);

    let mut rpc_names: HashMap<String, Span> = HashMap::new();
    let mut command_names: HashMap<String, Span> = HashMap::new();
    let mut patterns: HashMap<String, Span> = HashMap::new();
    let mut hooks: HashMap<&'static str, Span> = HashMap::new();
    for method in &service.methods {
        let (wire, wire_span) = &method.wire_name;
        match &method.kind {
            Kind::OnStart | Kind::OnStop => {
                let which = method.kind.attribute_name();
                if hooks.insert(which, method.ident.span()).is_some() {
                    errors.spanned(
                        method.ident,
                        format!("another method is already `#[{which}]`; a service has one"),
                    );
                }
                if let crate::model::Output::Value(ty) = &method.output {
                    errors.spanned(
                        ty,
                        format!("`#[{which}]` methods return `()` or `Result<(), E>`"),
                    );
                }
            }
            Kind::Rpc | Kind::ExclusiveRpc | Kind::Command => {
                if let Err(violation) = rules::check_method_name(wire) {
                    errors.push(syn::Error::new(*wire_span, violation.to_string()));
                }
                if BUILT_IN_METHODS.contains(&wire.as_str())
                    && !matches!(method.kind, Kind::Command)
                {
                    errors.push(syn::Error::new(
                        *wire_span,
                        format!("`{wire}` is a method every Aegis instance already serves; choose another name"),
                    ));
                }
                let (names, what) = if matches!(method.kind, Kind::Command) {
                    (&mut command_names, "command")
                } else {
                    (&mut rpc_names, "RPC method")
                };
                if names.insert(wire.clone(), *wire_span).is_some() {
                    errors.push(syn::Error::new(
                        *wire_span,
                        format!("two {what}s are named `{wire}` on the wire; rename one with `name = \"…\"`"),
                    ));
                }
            }
            Kind::Subscribe {
                pattern,
                mode,
                durable,
            } => {
                if let crate::model::Output::Value(ty) = &method.output {
                    errors.spanned(ty, "`#[subscribe]` methods return `()` or `Result<(), E>`: events have no reply");
                }
                if let Err(violation) = rules::check_event_pattern(&pattern.value()) {
                    errors.spanned(pattern, violation.to_string());
                }
                if let Some(mode) = mode
                    && !matches!(mode.value().as_str(), "compete" | "broadcast")
                {
                    errors.spanned(
                        mode,
                        "`mode` is \"compete\" (one instance per event) or \"broadcast\" (every instance)",
                    );
                }
                if let Some(durable) = durable
                    && let Err(violation) = rules::check_group_id(&durable.value())
                {
                    let message = violation
                        .to_string()
                        .replacen("group id", "durable name", 1);
                    errors.spanned(durable, message);
                }
                if patterns.insert(pattern.value(), pattern.span()).is_some() {
                    errors.spanned(
                        pattern,
                        format!("another method already subscribes to `{}`", pattern.value()),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use syn::parse_quote;

    use crate::attrs::ServiceArgs;
    use crate::errors::Errors;
    use crate::model;

    /// Reads and validates `item`, returning every error message.
    fn errors_of(args: ServiceArgs, item: syn::ItemImpl) -> Vec<String> {
        let errors = Errors::new();
        if let Some(service) = model::read(&item, args, &errors) {
            super::check(&service, &errors);
        }
        match errors.finish() {
            Ok(()) => Vec::new(),
            Err(err) => err.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn a_valid_service_has_no_errors() {
        let item = parse_quote! {
            impl Orders {
                #[rpc] async fn ping(&self) {}
                #[exclusive_rpc] async fn place(&self, ctx: &RpcContext, order: Order) -> Result<u32, E> { todo() }
                #[subscribe("events.orders.*", mode = "broadcast")] async fn on(&self, e: Event<Order>) {}
                #[command] async fn reindex(&self, p: Progress) {}
                fn helper(&self) {}
            }
        };
        assert_eq!(
            errors_of(ServiceArgs::default(), item),
            Vec::<String>::new()
        );
    }

    #[test]
    fn every_error_of_an_impl_is_reported() {
        let item = parse_quote! {
            impl Orders {
                #[rpc] fn not_async(&self) {}
                #[rpc] async fn by_value(self) {}
                #[rpc(name = "Bad")] async fn bad_name(&self) {}
                #[subscribe("events..x")] async fn bad_pattern(&self, e: u32) {}
            }
        };
        let errors = errors_of(ServiceArgs::default(), item);
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(errors[0].contains("must be `async`"));
        assert!(errors[1].contains("must take `&self`"));
        assert!(errors[2].contains("invalid method name"));
        assert!(errors[3].contains("invalid event pattern: token 1 is empty"));
    }

    #[test]
    fn wire_names_and_client_names_must_be_unique() {
        let item = parse_quote! {
            impl Orders {
                #[rpc(name = "ping")] async fn first(&self) {}
                #[exclusive_rpc] async fn ping(&self) {}
                #[command] async fn sync(&self) {}
                #[rpc] async fn start_sync(&self) {}
                #[rpc] async fn inner(&self) {}
                #[rpc] async fn aegis_status(&self) {}
            }
        };
        let errors = errors_of(ServiceArgs::default(), item);
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(
            errors
                .iter()
                .any(|e| e
                    .contains("`aegis_status` is a method every Aegis instance already serves"))
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("`OrdersClient::start_sync`, generated for `sync`"))
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("generated `OrdersClient::inner`"))
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("two RPC methods are named `ping`"))
        );
    }

    #[test]
    fn a_derived_service_name_says_where_it_came_from() {
        let item = parse_quote! { impl _Orders { #[rpc] async fn ping(&self) {} } };
        let errors = errors_of(ServiceArgs::default(), item);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].contains("derived from the type name"),
            "{}",
            errors[0]
        );
    }
}
