//! Checks of the model that span several methods or need the protocol's rules.

use std::collections::HashMap;

use proc_macro2::Span;
use quote::ToTokens;
use syn::Type;

use crate::attrs::AttrKind;
use crate::errors::Errors;
use crate::model::{Kind, Output, Service, Version};
use crate::naming::unraw;
use crate::reserved::{BUILT_IN_METHODS, CLIENT_ITEMS, command_starter};
use crate::rules;

/// Every name the generated client defines, with the method that defines it (`None` for
/// the fixed ones). Raw identifiers count without `r#`: `r#new` and `new` are one name.
fn client_names<'a>(service: &'a Service<'a>) -> Vec<(String, Option<&'a syn::Ident>)> {
    let mut names: Vec<(String, Option<&syn::Ident>)> = CLIENT_ITEMS
        .iter()
        .map(|name| ((*name).to_owned(), None))
        .collect();
    for method in &service.methods {
        match method.kind {
            Kind::Rpc | Kind::ExclusiveRpc => names.push((unraw(method.ident), Some(method.ident))),
            Kind::Command => {
                names.push((unraw(method.ident), Some(method.ident)));
                names.push((
                    command_starter(method.ident).to_string(),
                    Some(method.ident),
                ));
            }
            Kind::Subscribe { .. } | Kind::Schedule(_) | Kind::OnStart | Kind::OnStop => {}
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
            let client = format!("`{}Client::{name}`", service.self_ident);
            let what = match earlier_owner {
                None => client,
                Some(other) => format!("{client}, generated for `{other}`"),
            };
            errors.spanned(
                owner,
                format!(
                    "`{name}` is taken by the generated client ({what}); rename the method \
                     (its wire name can stay with `name = \"…\"`)"
                ),
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
    if let Version::Given(version) = &service.version
        && let Err(message) = rules::check_version(&version.value())
    {
        errors.spanned(version, message);
    }

    check_client_names(service, errors);
    check_owned(service, errors);

    let mut rpc_names: HashMap<String, Span> = HashMap::new();
    let mut command_names: HashMap<String, Span> = HashMap::new();
    let mut patterns: HashMap<String, Span> = HashMap::new();
    let mut hooks: HashMap<AttrKind, Span> = HashMap::new();
    for method in &service.methods {
        let (wire, wire_span) = &method.wire_name;
        match &method.kind {
            Kind::Schedule(_) => {
                if let Output::Value(ty) = &method.output {
                    errors.spanned(
                        ty,
                        "`#[schedule]` methods return `()` or `Result<(), E>`: nobody receives a value",
                    );
                }
            }
            Kind::OnStart | Kind::OnStop => {
                let attribute = method.kind.attribute();
                let which = attribute.name();
                if hooks.insert(attribute, method.ident.span()).is_some() {
                    errors.spanned(
                        method.ident,
                        format!("another method is already `#[{which}]`; a service has one"),
                    );
                }
                if let Output::Value(ty) = &method.output {
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
                pattern, durable, ..
            } => {
                if let Output::Value(ty) = &method.output {
                    errors.spanned(ty, "`#[subscribe]` methods return `()` or `Result<(), E>`: events have no reply");
                }
                if let Err(violation) = rules::check_event_pattern(&pattern.value()) {
                    errors.spanned(pattern, violation.to_string());
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

/// Payloads and results that borrow: serde can only decode them from a buffer that outlives
/// the value, which a handler's payload and a client's result never have. Left to the
/// compiler, this is "`Deserialize` is not general enough" on the `#[service]` line.
fn check_owned(service: &Service<'_>, errors: &Errors) {
    for method in &service.methods {
        if method.kind.attribute().is_hook() {
            continue;
        }
        if let Some(ty) = method.payload()
            && let Some(borrow) = borrowed_part(ty)
        {
            borrow.report(ty, "payloads", errors);
        }
        // Subscribers' values are refused elsewhere: they reply nothing.
        if matches!(method.kind, Kind::Subscribe { .. }) {
            continue;
        }
        if let Output::Value(ty) | Output::Result { ok: ty, .. } = &method.output
            && let Some(borrow) = borrowed_part(ty)
        {
            borrow.report(ty, "results", errors);
        }
    }
}

/// The part of a type that makes it borrow.
enum Borrow<'a> {
    /// `&T`, `&'a T`, `&mut T`.
    Reference(&'a syn::TypeReference),
    /// A lifetime argument other than `'static`: `Cow<'a, str>`, `Name<'_>`.
    Lifetime(&'a syn::Lifetime),
}

impl Borrow<'_> {
    /// Records the error, spanned on the reference or the lifetime.
    fn report(&self, ty: &Type, what: &str, errors: &Errors) {
        match self {
            Borrow::Reference(reference) => {
                let (owned, borrowed) = match &*reference.elem {
                    Type::Path(path) if path.qself.is_none() && path.path.is_ident("str") => {
                        ("String".to_owned(), "&str".to_owned())
                    }
                    Type::Slice(slice) => {
                        let elem = type_text(&slice.elem);
                        (format!("Vec<{elem}>"), format!("&[{elem}]"))
                    }
                    elem => {
                        let elem = type_text(elem);
                        (elem.clone(), format!("&{elem}"))
                    }
                };
                errors.spanned(
                    reference,
                    format!(
                        "{what} must be owned: use `{owned}` instead of `{borrowed}` \
                         (Aegis deserializes {what} into values that outlive the message)"
                    ),
                );
            }
            Borrow::Lifetime(lifetime) => errors.spanned(
                lifetime,
                format!(
                    "{what} must be owned, but `{}` borrows for `{lifetime}`: use a type without \
                     lifetimes (`String` instead of `&str`, `Vec<T>` instead of `&[T]`)",
                    type_text(ty)
                ),
            ),
        }
    }
}

/// The first reference or non-`'static` lifetime in `ty`, looking through paths' generic
/// arguments, tuples, arrays and slices (where serde would have to decode a borrow).
fn borrowed_part(ty: &Type) -> Option<Borrow<'_>> {
    match ty {
        Type::Reference(reference) => Some(Borrow::Reference(reference)),
        Type::Path(path) => {
            if let Some(qself) = &path.qself
                && let Some(borrow) = borrowed_part(&qself.ty)
            {
                return Some(borrow);
            }
            path.path.segments.iter().find_map(|segment| {
                let syn::PathArguments::AngleBracketed(generic) = &segment.arguments else {
                    return None;
                };
                generic.args.iter().find_map(|arg| match arg {
                    syn::GenericArgument::Lifetime(lifetime) if lifetime.ident != "static" => {
                        Some(Borrow::Lifetime(lifetime))
                    }
                    syn::GenericArgument::Type(ty) => borrowed_part(ty),
                    syn::GenericArgument::AssocType(assoc) => borrowed_part(&assoc.ty),
                    _ => None,
                })
            })
        }
        Type::Tuple(tuple) => tuple.elems.iter().find_map(borrowed_part),
        Type::Array(array) => borrowed_part(&array.elem),
        Type::Slice(slice) => borrowed_part(&slice.elem),
        Type::Paren(paren) => borrowed_part(&paren.elem),
        Type::Group(group) => borrowed_part(&group.elem),
        _ => None,
    }
}

/// `ty` as users write it (`Vec<u8>`, not the token stream's `Vec < u8 >`), for messages.
fn type_text(ty: &impl ToTokens) -> String {
    ty.to_token_stream()
        .to_string()
        .replace(" :: ", "::")
        .replace(":: ", "::")
        .replace(" <", "<")
        .replace("< ", "<")
        .replace(" >", ">")
        .replace(" ,", ",")
        .replace(" ;", ";")
        .replace("& ", "&")
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
        assert!(errors.iter().any(|e| {
            e.contains("`inner` is taken by the generated client (`OrdersClient::inner`)")
        }));
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
    #[test]
    fn every_fixed_client_item_is_refused_as_a_method_name() {
        for reserved in crate::reserved::CLIENT_ITEMS {
            let ident = syn::Ident::new(reserved, proc_macro2::Span::call_site());
            // A valid wire name, so the clash is the only error.
            let item =
                parse_quote! { impl Orders { #[rpc(name = "x")] async fn #ident(&self) {} } };
            let errors = errors_of(ServiceArgs::default(), item);
            assert_eq!(errors.len(), 1, "{reserved}: {errors:#?}");
            assert!(
                errors[0].starts_with(&format!(
                    "`{reserved}` is taken by the generated client (`OrdersClient::{reserved}`)"
                )),
                "{}",
                errors[0]
            );
        }
    }

    #[test]
    fn borrowed_payloads_and_results_are_refused_with_an_owned_suggestion() {
        let item = parse_quote! {
            impl Orders {
                #[rpc] async fn a(&self, s: &str) {}
                #[rpc] async fn b(&self, bytes: &'static [u8]) {}
                #[command] async fn c(&self, order: Vec<&Order>) {}
                #[subscribe("events.orders.x")] async fn d(&self, e: Event<Cow<'_, str>>) {}
                #[rpc] async fn e(&self) -> &'static str { "" }
                #[exclusive_rpc] async fn f(&self) -> Result<(u32, Name<'static, 'a>), E> { todo() }
                #[rpc] async fn owned(&self, s: Cow<'static, str>, ctx: &RpcContext) -> Result<String, &'static str> { todo() }
            }
        };
        let errors = errors_of(ServiceArgs::default(), item);
        assert_eq!(errors.len(), 6, "{errors:#?}");
        let expected = [
            "payloads must be owned: use `String` instead of `&str`",
            "payloads must be owned: use `Vec<u8>` instead of `&[u8]`",
            "payloads must be owned: use `Order` instead of `&Order`",
            "payloads must be owned, but `Event<Cow<'_, str>>` borrows for `'_`",
            "results must be owned: use `String` instead of `&str`",
            "results must be owned, but `(u32, Name<'static, 'a>)` borrows for `'a`",
        ];
        for (error, expected) in errors.iter().zip(expected) {
            assert!(error.starts_with(expected), "{error}\nexpected: {expected}");
        }
    }

    #[test]
    fn type_text_reads_as_written() {
        let ty: syn::Type = parse_quote!(std::collections::HashMap<String, Vec<[u8; 4]>>);
        assert_eq!(
            super::type_text(&ty),
            "std::collections::HashMap<String, Vec<[u8; 4]>>"
        );
        let ty: syn::Type = parse_quote!(&'a mut Option<&str>);
        assert_eq!(super::type_text(&ty), "&'a mut Option<&str>");
    }

    #[test]
    fn subscribe_mode_defaults_to_compete_and_a_bad_one_is_reported() {
        use crate::model::{Kind, SubscribeMode};
        let item: syn::ItemImpl = parse_quote! {
            impl Orders {
                #[subscribe("events.orders.a")] async fn a(&self, e: u32) {}
                #[subscribe("events.orders.b", mode = "broadcast")] async fn b(&self, e: u32) {}
            }
        };
        let errors = Errors::new();
        let service = model::read(&item, ServiceArgs::default(), &errors).expect("a model");
        let modes: Vec<SubscribeMode> = service
            .methods
            .iter()
            .filter_map(|method| match &method.kind {
                Kind::Subscribe { mode, .. } => Some(*mode),
                _ => None,
            })
            .collect();
        assert_eq!(modes, [SubscribeMode::Compete, SubscribeMode::Broadcast]);
        errors.finish().expect("no errors");

        let item = parse_quote! {
            impl Orders { #[subscribe("events.orders.a", mode = "fanout")] async fn a(&self, e: u32) {} }
        };
        let errors = errors_of(ServiceArgs::default(), item);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].starts_with("`mode` is \"compete\""),
            "{}",
            errors[0]
        );
    }
}
