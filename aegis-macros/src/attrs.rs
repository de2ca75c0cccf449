//! Parsing the arguments of `#[service(...)]` and of the method attributes.
//!
//! Each parser accepts exactly the supported keys; anything else gets syn's
//! "expected one of …" error, spanned on the unknown key.

use syn::parse::{Parse, ParseStream};
use syn::{LitStr, Token};

mod kw {
    syn::custom_keyword!(name);
    syn::custom_keyword!(version);
    syn::custom_keyword!(mode);
    syn::custom_keyword!(durable);
    syn::custom_keyword!(idempotent);
    syn::custom_keyword!(every);
    syn::custom_keyword!(cron);
    syn::custom_keyword!(missed);
    syn::custom_keyword!(jitter);
    syn::custom_keyword!(publishes);
}

/// The method attributes `#[service]` reads, one per kind of handler.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum AttrKind {
    Rpc,
    ExclusiveRpc,
    Subscribe,
    Command,
    Schedule,
    OnStart,
    OnStop,
}

impl AttrKind {
    /// Every kind, in the order the docs list them.
    pub(crate) const ALL: [AttrKind; 7] = [
        AttrKind::Rpc,
        AttrKind::ExclusiveRpc,
        AttrKind::Subscribe,
        AttrKind::Command,
        AttrKind::Schedule,
        AttrKind::OnStart,
        AttrKind::OnStop,
    ];

    /// The attribute's name: `rpc` for `#[rpc]`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            AttrKind::Rpc => "rpc",
            AttrKind::ExclusiveRpc => "exclusive_rpc",
            AttrKind::Subscribe => "subscribe",
            AttrKind::Command => "command",
            AttrKind::Schedule => "schedule",
            AttrKind::OnStart => "on_start",
            AttrKind::OnStop => "on_stop",
        }
    }

    /// The kind named `ident`, if it names one.
    pub(crate) fn from_ident(ident: &syn::Ident) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| ident == kind.name())
    }

    /// Whether this is a lifecycle hook rather than something served on the wire.
    pub(crate) fn is_hook(self) -> bool {
        matches!(self, AttrKind::OnStart | AttrKind::OnStop)
    }
}

/// Arguments of `#[service(name = "…", version = "…", crate = "…", publishes = [A, B])]`.
#[derive(Default)]
pub(crate) struct ServiceArgs {
    pub(crate) name: Option<LitStr>,
    pub(crate) version: Option<LitStr>,
    pub(crate) krate: Option<LitStr>,
    /// The domain event types listed in `publishes = [...]`, as written.
    pub(crate) publishes: Option<Vec<syn::Type>>,
}

/// Arguments of `#[rpc(name = "…", idempotent)]`, `#[exclusive_rpc(name = "…", idempotent)]`,
/// `#[command(name = "…")]`.
#[derive(Default)]
pub(crate) struct MethodArgs {
    pub(crate) name: Option<LitStr>,
    /// The `idempotent` flag, kept as a token to blame where it does not belong.
    pub(crate) idempotent: Option<kw::idempotent>,
}

/// Arguments of `#[subscribe("events.…", mode = "…", durable = "…")]`.
pub(crate) struct SubscribeArgs {
    pub(crate) pattern: LitStr,
    pub(crate) mode: Option<LitStr>,
    pub(crate) durable: Option<LitStr>,
}

/// Arguments of `#[schedule(every = "…" | cron = "…", mode = "…", missed = "…", jitter = "…")]`,
/// as written (their values are checked when the model is read).
#[derive(Default)]
pub(crate) struct ScheduleArgs {
    pub(crate) every: Option<LitStr>,
    pub(crate) cron: Option<LitStr>,
    pub(crate) mode: Option<LitStr>,
    pub(crate) missed: Option<LitStr>,
    pub(crate) jitter: Option<LitStr>,
}

/// Parses `key = "value"` into `slot`, refusing a second occurrence (spanned on it).
pub(crate) fn parse_value<K: Parse + syn::spanned::Spanned>(
    input: ParseStream<'_>,
    slot: &mut Option<LitStr>,
    key_name: &str,
) -> syn::Result<()> {
    let key: K = input.parse()?;
    input.parse::<Token![=]>()?;
    let value: LitStr = input.parse()?;
    if slot.is_some() {
        return Err(syn::Error::new(
            key.span(),
            format!("`{key_name}` specified more than once"),
        ));
    }
    *slot = Some(value);
    Ok(())
}

/// Parses `publishes = [A, B]` into `slot`, refusing a second occurrence (spanned on it).
fn parse_types(input: ParseStream<'_>, slot: &mut Option<Vec<syn::Type>>) -> syn::Result<()> {
    let key: kw::publishes = input.parse()?;
    input.parse::<Token![=]>()?;
    let content;
    syn::bracketed!(content in input);
    let types = content.parse_terminated(syn::Type::parse, Token![,])?;
    if slot.is_some() {
        return Err(syn::Error::new(
            key.span,
            "`publishes` specified more than once",
        ));
    }
    *slot = Some(types.into_iter().collect());
    Ok(())
}

/// Parses a comma-separated list, one `step` per entry.
pub(crate) fn parse_list(
    input: ParseStream<'_>,
    mut step: impl FnMut(ParseStream<'_>) -> syn::Result<()>,
) -> syn::Result<()> {
    while !input.is_empty() {
        step(input)?;
        if input.is_empty() {
            break;
        }
        input.parse::<Token![,]>()?;
    }
    Ok(())
}

impl Parse for ServiceArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = ServiceArgs::default();
        parse_list(input, |input| {
            let lookahead = input.lookahead1();
            if lookahead.peek(kw::name) {
                parse_value::<kw::name>(input, &mut args.name, "name")
            } else if lookahead.peek(kw::version) {
                parse_value::<kw::version>(input, &mut args.version, "version")
            } else if lookahead.peek(Token![crate]) {
                parse_value::<Token![crate]>(input, &mut args.krate, "crate")
            } else if lookahead.peek(kw::publishes) {
                parse_types(input, &mut args.publishes)
            } else {
                Err(lookahead.error())
            }
        })?;
        Ok(args)
    }
}

impl Parse for MethodArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = MethodArgs::default();
        parse_list(input, |input| {
            let lookahead = input.lookahead1();
            if lookahead.peek(kw::name) {
                parse_value::<kw::name>(input, &mut args.name, "name")
            } else if lookahead.peek(kw::idempotent) {
                let flag: kw::idempotent = input.parse()?;
                if args.idempotent.is_some() {
                    return Err(syn::Error::new(
                        flag.span,
                        "`idempotent` specified more than once",
                    ));
                }
                args.idempotent = Some(flag);
                Ok(())
            } else {
                Err(lookahead.error())
            }
        })?;
        Ok(args)
    }
}

impl Parse for SubscribeArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.is_empty() {
            return Err(input.error(
                "`#[subscribe]` needs a subject pattern: `#[subscribe(\"events.orders.*\")]`",
            ));
        }
        let pattern: LitStr = input.parse()?;
        let (mut mode, mut durable) = (None, None);
        if !input.is_empty() {
            input.parse::<Token![,]>()?;
            parse_list(input, |input| {
                let lookahead = input.lookahead1();
                if lookahead.peek(kw::mode) {
                    parse_value::<kw::mode>(input, &mut mode, "mode")
                } else if lookahead.peek(kw::durable) {
                    parse_value::<kw::durable>(input, &mut durable, "durable")
                } else {
                    Err(lookahead.error())
                }
            })?;
        }
        Ok(SubscribeArgs {
            pattern,
            mode,
            durable,
        })
    }
}

impl Parse for ScheduleArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = ScheduleArgs::default();
        parse_list(input, |input| {
            let lookahead = input.lookahead1();
            if lookahead.peek(kw::every) {
                parse_value::<kw::every>(input, &mut args.every, "every")
            } else if lookahead.peek(kw::cron) {
                parse_value::<kw::cron>(input, &mut args.cron, "cron")
            } else if lookahead.peek(kw::mode) {
                parse_value::<kw::mode>(input, &mut args.mode, "mode")
            } else if lookahead.peek(kw::missed) {
                parse_value::<kw::missed>(input, &mut args.missed, "missed")
            } else if lookahead.peek(kw::jitter) {
                parse_value::<kw::jitter>(input, &mut args.jitter, "jitter")
            } else {
                Err(lookahead.error())
            }
        })?;
        Ok(args)
    }
}
