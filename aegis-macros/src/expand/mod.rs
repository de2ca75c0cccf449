//! From a valid model to tokens. Generated code is glue: it builds values and calls
//! `::aegis_runtime::__private`, where every piece of logic lives.

mod client;
mod definition;

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::ItemImpl;

use crate::attrs::{AttrKind, ServiceArgs};
use crate::errors::Errors;
use crate::model::{self, Service};
use crate::validate;

/// `#[service]`: reads, validates and expands; on errors, emits them next to the user's
/// impl block (attributes stripped) so no secondary errors follow.
pub(crate) fn service(args: TokenStream, item: TokenStream) -> TokenStream {
    let item: ItemImpl = match syn::parse2(item.clone()) {
        Ok(item) => item,
        // Not an impl block we can read: pass it through untouched, with the error.
        Err(err) => return with_original(item, err),
    };
    let args: ServiceArgs = match syn::parse2(args) {
        Ok(args) => args,
        Err(err) => {
            let stripped = model::strip_attributes(&item, &syn::parse_quote!(::aegis_runtime));
            return with_original(stripped.into_token_stream(), err);
        }
    };
    let errors = Errors::new();
    let service = model::read(&item, args, &errors);
    if let Some(service) = &service {
        validate::check(service, &errors);
    }
    let output = match (errors.finish(), service) {
        (Ok(()), Some(service)) => Generator { service: &service }.into_token_stream(),
        (Err(err), service) => {
            let krate = service.map_or_else(|| syn::parse_quote!(::aegis_runtime), |s| s.krate);
            let stripped = model::strip_attributes(&item, &krate);
            let errors = err.to_compile_error();
            quote! { #stripped #errors }
        }
        (Ok(()), None) => item.to_token_stream(),
    };
    debug_print(&output);
    output
}

/// `#[rpc]` & co. used outside a `#[service]` impl block: a spanned error, and the item.
pub(crate) fn outside_service(
    attribute: AttrKind,
    _args: TokenStream,
    item: TokenStream,
) -> TokenStream {
    let attribute = attribute.name();
    let message = format!(
        "`#[{attribute}]` is only valid on a method inside a `#[service]` impl block; \
         put `#[aegis_runtime::service]` on the `impl` that holds this method"
    );
    let error = syn::Error::new(proc_macro2::Span::call_site(), message).to_compile_error();
    quote! { #error #item }
}

fn with_original(item: TokenStream, err: syn::Error) -> TokenStream {
    let errors = err.to_compile_error();
    quote! { #item #errors }
}

/// `AEGIS_MACROS_DEBUG=1` prints every expansion to stderr at compile time.
fn debug_print(output: &TokenStream) {
    if std::env::var_os("AEGIS_MACROS_DEBUG").is_some_and(|v| v != "0") {
        #[allow(clippy::print_stderr)] // a debugging aid the user asked for
        {
            eprintln!("{output}");
        }
    }
}

/// Generates everything for one service; each method emits one item.
pub(crate) struct Generator<'a> {
    pub(crate) service: &'a Service<'a>,
}

impl ToTokens for Generator<'_> {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let stripped = model::strip_attributes(self.service.original, &self.service.krate);
        let checks = self.checks();
        let service_impl = self.service_impl();
        let handlers = self.handlers();
        let describe = self.describe();
        let registration = self.registration();
        let client_struct = self.client_struct();
        let client_methods = self.client_methods();
        tokens.extend(quote! {
            #stripped

            #[doc(hidden)]
            const _: () = {
                #checks
                #service_impl
                #handlers
                #describe
                #registration
            };

            #client_struct
            #client_methods
        });
    }
}
