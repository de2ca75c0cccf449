//! Names a `#[service]` method cannot take, because generated code or the runtime already
//! uses them. The one place that lists them: validation reads these lists, the client
//! generator names its command starters with [`command_starter`], and a unit test checks
//! [`CLIENT_ITEMS`] against what the generator actually emits.

use quote::format_ident;

use crate::naming;

/// The associated items every generated `{Type}Client` defines besides its RPC and command
/// methods: a client method of one of these names would be a duplicate definition.
pub(crate) const CLIENT_ITEMS: &[&str] = &["SERVICE", "new", "configured", "from_client", "inner"];

/// The client method that starts a command and returns its handle: `start_{command}`.
/// It keeps the span of the method's ident, so errors in it point at the user's method.
pub(crate) fn command_starter(method: &syn::Ident) -> syn::Ident {
    format_ident!("start_{}", naming::unraw(method), span = method.span())
}

/// Wire names of the methods every instance serves itself
/// (`aegis_runtime::runner::{STATUS_METHOD, HEALTH_METHOD, DESCRIBE_METHOD}`); an RPC
/// cannot take them.
pub(crate) const BUILT_IN_METHODS: &[&str] = &["aegis_status", "aegis_health", "aegis_describe"];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use syn::parse_quote;

    use super::*;
    use crate::attrs::ServiceArgs;
    use crate::errors::Errors;
    use crate::expand::Generator;
    use crate::model;

    /// The names of the associated items the generator emits for the client of `item`.
    fn generated_client_items(item: &syn::ItemImpl) -> BTreeSet<String> {
        let errors = Errors::new();
        let service = model::read(item, ServiceArgs::default(), &errors);
        errors.finish().expect("a valid service");
        let service = service.expect("a service model");
        let tokens = Generator { service: &service }.client_methods();
        let client: syn::ItemImpl = syn::parse2(tokens).expect("the client is one impl block");
        client
            .items
            .iter()
            .map(|item| match item {
                syn::ImplItem::Fn(method) => naming::unraw(&method.sig.ident),
                syn::ImplItem::Const(constant) => constant.ident.to_string(),
                other => panic!("unexpected client item {}", quote::quote!(#other)),
            })
            .collect()
    }

    #[test]
    fn client_items_are_exactly_what_the_generated_client_defines() {
        let item = parse_quote! { impl Orders { fn helper(&self) {} } };
        let expected: BTreeSet<String> = CLIENT_ITEMS.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(generated_client_items(&item), expected);
    }

    #[test]
    fn each_rpc_adds_its_method_and_each_command_adds_a_starter() {
        let item = parse_quote! {
            impl Orders {
                #[rpc] async fn ping(&self) {}
                #[exclusive_rpc] async fn place(&self) {}
                #[command] async fn r#reindex(&self) {}
                #[subscribe("events.x")] async fn on_x(&self, e: u32) {}
                #[on_start] async fn warm(&self) {}
            }
        };
        let reindex: syn::Ident = parse_quote!(r#reindex);
        let mut expected: BTreeSet<String> = CLIENT_ITEMS.iter().map(|s| (*s).to_owned()).collect();
        expected.extend([
            "ping".to_owned(),
            "place".to_owned(),
            "reindex".to_owned(),
            command_starter(&reindex).to_string(),
        ]);
        assert_eq!(generated_client_items(&item), expected);
        assert_eq!(command_starter(&reindex).to_string(), "start_reindex");
    }
}
