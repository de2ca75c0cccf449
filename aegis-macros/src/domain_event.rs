//! `#[derive(DomainEvent)]`: reads `#[event(domain = "…", event_type = "…")]`, checks both
//! names against the event token rule (every error collected), and implements the runtime's
//! `DomainEvent` trait with them.

use proc_macro2::TokenStream;
use quote::quote;
use syn::parse::{Parse, ParseStream};
use syn::{DeriveInput, LitStr, Token};

use crate::errors::Errors;
use crate::rules;

mod kw {
    syn::custom_keyword!(domain);
    syn::custom_keyword!(event_type);
}

/// What `#[event(...)]` says, as written.
#[derive(Default)]
struct EventArgs {
    domain: Option<LitStr>,
    event_type: Option<LitStr>,
    krate: Option<LitStr>,
}

impl Parse for EventArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = EventArgs::default();
        crate::attrs::parse_list(input, |input| {
            let lookahead = input.lookahead1();
            if lookahead.peek(kw::domain) {
                crate::attrs::parse_value::<kw::domain>(input, &mut args.domain, "domain")
            } else if lookahead.peek(kw::event_type) {
                crate::attrs::parse_value::<kw::event_type>(
                    input,
                    &mut args.event_type,
                    "event_type",
                )
            } else if lookahead.peek(Token![crate]) {
                crate::attrs::parse_value::<Token![crate]>(input, &mut args.krate, "crate")
            } else {
                Err(lookahead.error())
            }
        })?;
        Ok(args)
    }
}

/// Expands `#[derive(DomainEvent)]` on `input`.
pub(crate) fn derive(input: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(input) {
        Ok(input) => input,
        Err(err) => return err.to_compile_error(),
    };
    let errors = Errors::new();
    let expanded = expand(&input, &errors);
    match errors.finish() {
        Ok(()) => expanded.unwrap_or_default(),
        Err(err) => err.to_compile_error(),
    }
}

/// The trait impl, or `None` when `errors` has the reasons why not.
fn expand(input: &DeriveInput, errors: &Errors) -> Option<TokenStream> {
    let mut attrs = input.attrs.iter().filter(|a| a.path().is_ident("event"));
    let Some(attr) = attrs.next() else {
        errors.spanned(
            &input.ident,
            "`#[derive(DomainEvent)]` needs the event's subject tokens: \
             `#[event(domain = \"orders\", event_type = \"created\")]`",
        );
        return None;
    };
    for repeated in attrs {
        errors.spanned(repeated, "`#[event(...)]` given more than once");
    }
    let args: EventArgs = match attr.parse_args() {
        Ok(args) => args,
        Err(err) => {
            errors.push(err);
            return None;
        }
    };
    let token = |value: &Option<LitStr>, key: &str| match value {
        Some(lit) => {
            if let Err(violation) = rules::check_event_token(&lit.value()) {
                errors.spanned(lit, format!("{violation} (the event's `{key}`)"));
            }
            Some(lit.clone())
        }
        None => {
            errors.spanned(attr, format!("`#[event(...)]` needs `{key} = \"…\"`"));
            None
        }
    };
    let (domain, event_type) = (
        token(&args.domain, "domain"),
        token(&args.event_type, "event_type"),
    );
    let krate: syn::Path = match &args.krate {
        Some(lit) => match lit.parse() {
            Ok(path) => path,
            Err(err) => {
                errors.push(syn::Error::new(
                    lit.span(),
                    format!("`crate` must be a path such as \"aegis_runtime\": {err}"),
                ));
                return None;
            }
        },
        None => syn::parse_quote!(::aegis_runtime),
    };
    let (domain, event_type) = (domain?, event_type?);
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Some(quote! {
        impl #impl_generics #krate::DomainEvent for #ident #ty_generics #where_clause {
            const DOMAIN: &'static str = #domain;
            const EVENT_TYPE: &'static str = #event_type;
        }
    })
}
