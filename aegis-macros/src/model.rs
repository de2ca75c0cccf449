//! The service as the macro understands it, read from the `impl` block. Reading collects
//! every error it finds; expansion only ever sees a model that read without errors.

use proc_macro2::Span;
use quote::ToTokens;
use syn::{
    FnArg, GenericArgument, Ident, ImplItem, ImplItemFn, ItemImpl, LitStr, PathArguments,
    ReturnType, Type,
};

use crate::attrs::{AttrKind, MethodArgs, ScheduleArgs, ServiceArgs, SubscribeArgs};
use crate::errors::Errors;
use crate::naming;

/// A `#[service]` impl block.
pub(crate) struct Service<'a> {
    pub(crate) original: &'a ItemImpl,
    pub(crate) self_ident: &'a Ident,
    /// The service name and the tokens to blame for it (the literal, or the type).
    pub(crate) name: (String, Span),
    /// Whether the name was derived from the type (no `name = "…"`).
    pub(crate) name_from_type: bool,
    pub(crate) version: Version,
    /// The runtime's path: `crate = "…"`, or `::aegis_runtime`.
    pub(crate) krate: syn::Path,
    pub(crate) methods: Vec<Method<'a>>,
    /// The domain event types the service declares it publishes (`publishes = [...]`).
    pub(crate) publishes: Vec<Type>,
}

/// One method carrying an Aegis attribute.
pub(crate) struct Method<'a> {
    pub(crate) original: &'a ImplItemFn,
    pub(crate) ident: &'a Ident,
    pub(crate) kind: Kind,
    /// The name on the wire and what to blame for it (the `name` literal, or the ident).
    pub(crate) wire_name: (String, Span),
    /// `idempotent` was given: a call that timed out may be retried.
    pub(crate) idempotent: bool,
    /// The arguments after `&self`, in order.
    pub(crate) args: Vec<Arg<'a>>,
    pub(crate) output: Output<'a>,
}

/// The version a service registers with.
pub(crate) enum Version {
    /// `version = "…"`.
    Given(LitStr),
    /// No `version`: the version of the crate that defines the service.
    CrateVersion,
}

/// What kind of Aegis method, with its attribute's values resolved (defaults applied).
pub(crate) enum Kind {
    Rpc,
    ExclusiveRpc,
    Subscribe {
        pattern: LitStr,
        mode: SubscribeMode,
        /// The durable consumer's name, if the subscription has one (no default).
        durable: Option<LitStr>,
    },
    Command,
    /// `#[schedule]`: runs on a timer.
    Schedule(ScheduleSpec),
    /// `#[on_start]`: runs before the instance serves.
    OnStart,
    /// `#[on_stop]`: runs after the instance stopped serving.
    OnStop,
}

/// Who handles an event: `mode = "compete"` (the default) or `"broadcast"`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum SubscribeMode {
    /// One instance of the service handles each event.
    Compete,
    /// Every instance handles every event.
    Broadcast,
}

/// When and where a `#[schedule]` method runs, its values checked (defaults applied).
pub(crate) struct ScheduleSpec {
    pub(crate) timing: Timing,
    pub(crate) mode: ScheduleMode,
    pub(crate) missed: Missed,
    /// A random delay of up to this many milliseconds before each run; 0 for none.
    pub(crate) jitter_millis: u64,
}

/// `every = "…"` (in whole milliseconds) or `cron = "…"`.
pub(crate) enum Timing {
    Every { millis: u64 },
    Cron(LitStr),
}

/// `mode = "exclusive"` (the default) or `"every_instance"`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ScheduleMode {
    /// Only the active instance of the group runs it.
    Exclusive,
    /// Every instance runs it.
    EveryInstance,
}

/// `missed = "skip"` (the default) or `"run_once"`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Missed {
    Skip,
    RunOnce,
}

impl Kind {
    /// The attribute that made the method this kind.
    pub(crate) fn attribute(&self) -> AttrKind {
        match self {
            Kind::Rpc => AttrKind::Rpc,
            Kind::ExclusiveRpc => AttrKind::ExclusiveRpc,
            Kind::Subscribe { .. } => AttrKind::Subscribe,
            Kind::Command => AttrKind::Command,
            Kind::Schedule(_) => AttrKind::Schedule,
            Kind::OnStart => AttrKind::OnStart,
            Kind::OnStop => AttrKind::OnStop,
        }
    }

    /// The context argument this kind of handler may take.
    fn context(&self) -> Option<ContextKind> {
        match self {
            Kind::Rpc | Kind::ExclusiveRpc => Some(ContextKind::Rpc),
            Kind::Subscribe { .. } => Some(ContextKind::Event),
            Kind::Command => Some(ContextKind::Progress),
            Kind::Schedule(_) => Some(ContextKind::Schedule),
            Kind::OnStart | Kind::OnStop => None,
        }
    }
}

/// One argument of a handler.
pub(crate) enum Arg<'a> {
    /// A context the runtime provides: `&RpcContext`, `&EventContext` or `Progress`.
    Context(ContextKind),
    /// The request, event or command payload.
    Payload(&'a Type),
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContextKind {
    Rpc,
    Event,
    Progress,
    Schedule,
}

impl ContextKind {
    fn type_name(self) -> &'static str {
        match self {
            ContextKind::Rpc => "&RpcContext",
            ContextKind::Event => "&EventContext",
            ContextKind::Progress => "Progress",
            ContextKind::Schedule => "&ScheduleContext",
        }
    }
}

/// What a handler returns.
pub(crate) enum Output<'a> {
    /// Nothing: `()`.
    Unit,
    /// A value sent as the result.
    Value(&'a Type),
    /// `Result<T, E>`: `T` is the result, `E`'s `Display` text the error.
    Result { ok: &'a Type, err: Option<&'a Type> },
}

impl<'a> Method<'a> {
    /// The payload type, if the handler takes one.
    pub(crate) fn payload(&self) -> Option<&'a Type> {
        self.args.iter().find_map(|arg| match arg {
            Arg::Payload(ty) => Some(*ty),
            Arg::Context(_) => None,
        })
    }
}

/// Reads the service from `item` and its `args`, recording every problem in `errors`.
pub(crate) fn read<'a>(
    item: &'a ItemImpl,
    args: ServiceArgs,
    errors: &Errors,
) -> Option<Service<'a>> {
    if let Some((_, path, _)) = &item.trait_ {
        errors.spanned(path, "`#[service]` goes on an inherent impl block (`impl MyService { … }`), not on a trait impl");
    }
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        errors.spanned(
            &item.generics,
            "`#[service]` does not support generics: the service type must be concrete",
        );
    }
    if let Some(unsafety) = &item.unsafety {
        errors.spanned(unsafety, "`#[service]` impl blocks cannot be `unsafe`");
    }
    let self_ident = match &*item.self_ty {
        Type::Path(path) if path.qself.is_none() => path.path.segments.last().map(|s| &s.ident),
        _ => None,
    };
    let Some(self_ident) = self_ident else {
        errors.spanned(
            &item.self_ty,
            "`#[service]` needs a named type: `impl MyService { … }`",
        );
        return None;
    };
    let name = match &args.name {
        Some(lit) => (lit.value(), lit.span()),
        None => (
            naming::kebab_case(&self_ident.to_string()),
            self_ident.span(),
        ),
    };
    let krate = match &args.krate {
        Some(lit) => lit.parse::<syn::Path>().unwrap_or_else(|err| {
            errors.push(syn::Error::new(
                lit.span(),
                format!("`crate` must be a path such as \"aegis_runtime\": {err}"),
            ));
            syn::parse_quote!(::aegis_runtime)
        }),
        None => syn::parse_quote!(::aegis_runtime),
    };
    let methods = item
        .items
        .iter()
        .filter_map(|item| match item {
            ImplItem::Fn(method) => read_method(method, &krate, errors),
            _ => None,
        })
        .collect();
    let name_from_type = args.name.is_none();
    let publishes = read_publishes(args.publishes.unwrap_or_default(), errors);
    let version = match args.version {
        Some(version) => Version::Given(version),
        None => Version::CrateVersion,
    };
    Some(Service {
        original: item,
        self_ident,
        name,
        name_from_type,
        version,
        krate,
        methods,
        publishes,
    })
}

/// The `publishes = [...]` types, each listed once (a repeat is blamed on the repeat).
fn read_publishes(types: Vec<Type>, errors: &Errors) -> Vec<Type> {
    let mut seen = std::collections::HashSet::new();
    types
        .into_iter()
        .filter(|ty| {
            let first = seen.insert(ty.to_token_stream().to_string());
            if !first {
                errors.spanned(ty, "this event type is already listed in `publishes`");
            }
            first
        })
        .collect()
}

/// Whether `attr` is one of ours, and which: `#[rpc]`, or a path ending in it under the
/// runtime (`#[aegis_runtime::rpc]`, `#[aegis::rpc]`, or the `crate = "…"` path).
pub(crate) fn aegis_attribute(attr: &syn::Attribute, krate: &syn::Path) -> Option<AttrKind> {
    let path = attr.path();
    let kind = AttrKind::from_ident(&path.segments.last()?.ident)?;
    let prefix: Vec<String> = path
        .segments
        .iter()
        .rev()
        .skip(1)
        .rev()
        .map(|s| s.ident.to_string())
        .collect();
    let krate_segments: Vec<String> = krate.segments.iter().map(|s| s.ident.to_string()).collect();
    let prefix_ok = prefix.is_empty()
        || prefix == ["aegis_runtime"]
        || prefix == ["aegis"]
        || prefix == krate_segments
        || krate_segments
            .last()
            .is_some_and(|name| prefix == [name.as_str()]);
    prefix_ok.then_some(kind)
}

fn read_method<'a>(
    method: &'a ImplItemFn,
    krate: &syn::Path,
    errors: &Errors,
) -> Option<Method<'a>> {
    let mut found: Option<(Kind, Option<LitStr>, bool)> = None;
    for attr in &method.attrs {
        let Some(which) = aegis_attribute(attr, krate) else {
            continue;
        };
        if let Some((kind, ..)) = &found {
            let message = if kind.attribute() == which {
                format!("`#[{}]` appears twice on this method", which.name())
            } else {
                format!(
                    "a method can be only one of `#[rpc]`, `#[exclusive_rpc]`, `#[subscribe]`, `#[command]`, `#[schedule]`; \
                     this one is already `#[{}]`",
                    kind.attribute().name()
                )
            };
            errors.spanned(attr, message);
            continue;
        }
        match read_attribute(which, attr, errors) {
            Ok((kind, name, idempotent)) => found = Some((kind, name, idempotent)),
            Err(err) => errors.push(err),
        }
    }
    let (kind, name, idempotent) = found?;
    let ident = &method.sig.ident;
    let wire_name = match &name {
        Some(lit) => (lit.value(), lit.span()),
        None => (naming::unraw(ident), ident.span()),
    };
    let args = read_signature(method, &kind, errors);
    let output = read_output(&method.sig.output);
    Some(Method {
        original: method,
        ident,
        kind,
        wire_name,
        idempotent,
        args,
        output,
    })
}

/// The kind, the `name` and the `idempotent` flag of an Aegis attribute. A syntax error
/// drops the attribute (`Err`); a bad value is recorded in `errors` and replaced by its
/// default, so the method's other problems are still reported.
fn read_attribute(
    which: AttrKind,
    attr: &syn::Attribute,
    errors: &Errors,
) -> syn::Result<(Kind, Option<LitStr>, bool)> {
    let method_args = || -> syn::Result<MethodArgs> {
        match &attr.meta {
            syn::Meta::Path(_) => Ok(MethodArgs::default()),
            _ => attr.parse_args(),
        }
    };
    match which {
        AttrKind::Rpc | AttrKind::ExclusiveRpc => {
            let args = method_args()?;
            let kind = if which == AttrKind::Rpc {
                Kind::Rpc
            } else {
                Kind::ExclusiveRpc
            };
            Ok((kind, args.name, args.idempotent.is_some()))
        }
        AttrKind::Command => {
            let args = method_args()?;
            if let Some(flag) = args.idempotent {
                return Err(syn::Error::new(
                    flag.span,
                    "`idempotent` applies to `#[rpc]` and `#[exclusive_rpc]`; a command's redeliveries are bounded by its `max_retries`",
                ));
            }
            Ok((Kind::Command, args.name, false))
        }
        AttrKind::Schedule => {
            let args: ScheduleArgs = match &attr.meta {
                syn::Meta::List(_) => attr.parse_args()?,
                _ => return Err(syn::Error::new_spanned(attr, SCHEDULE_NEEDS_TIMING)),
            };
            Ok((
                Kind::Schedule(read_schedule(attr, args, errors)),
                None,
                false,
            ))
        }
        AttrKind::OnStart | AttrKind::OnStop => {
            if !matches!(attr.meta, syn::Meta::Path(_)) {
                return Err(syn::Error::new_spanned(
                    attr,
                    format!("`#[{}]` takes no arguments", which.name()),
                ));
            }
            let kind = if which == AttrKind::OnStart {
                Kind::OnStart
            } else {
                Kind::OnStop
            };
            Ok((kind, None, false))
        }
        AttrKind::Subscribe => {
            let args: SubscribeArgs = match &attr.meta {
                syn::Meta::List(_) => attr.parse_args()?,
                _ => {
                    return Err(syn::Error::new_spanned(
                        attr,
                        "`#[subscribe]` needs a subject pattern: `#[subscribe(\"events.orders.*\")]`",
                    ));
                }
            };
            let mode = match args.mode.as_ref().map(|mode| (mode, mode.value())) {
                None => SubscribeMode::Compete,
                Some((_, value)) if value == "compete" => SubscribeMode::Compete,
                Some((_, value)) if value == "broadcast" => SubscribeMode::Broadcast,
                Some((mode, _)) => {
                    errors.spanned(
                        mode,
                        "`mode` is \"compete\" (one instance per event) or \"broadcast\" (every instance)",
                    );
                    SubscribeMode::Compete
                }
            };
            Ok((
                Kind::Subscribe {
                    pattern: args.pattern,
                    mode,
                    durable: args.durable,
                },
                None,
                false,
            ))
        }
    }
}

const SCHEDULE_NEEDS_TIMING: &str = "`#[schedule]` needs `every = \"…\"` (an interval: \"200ms\", \"30s\", \"5m\") \
     or `cron = \"…\"` (seconds first, UTC: \"0 */5 * * * *\")";

/// The values of a `#[schedule]` attribute, each bad one recorded in `errors` (spanned on
/// its literal) and replaced by its default, so every problem is reported at once.
fn read_schedule(attr: &syn::Attribute, args: ScheduleArgs, errors: &Errors) -> ScheduleSpec {
    let timing = match (&args.every, &args.cron) {
        (Some(_), Some(cron)) => {
            errors.spanned(
                cron,
                "give either `every` or `cron`, not both: a schedule has one timing",
            );
            Timing::Every { millis: 1000 }
        }
        (Some(every), None) => Timing::Every {
            millis: read_millis(every, "every", errors).unwrap_or(1000).max(1),
        },
        (None, Some(cron)) => {
            if let Err(err) = cron.value().parse::<cron::Schedule>() {
                // The parser's text repeats the expression with a caret line; its last line
                // says what is wrong, and the span already shows where.
                let err = err.to_string();
                let err = err.lines().last().unwrap_or_default().trim();
                errors.spanned(
                    cron,
                    format!(
                        "`cron` is not a cron expression ({err}); write 6 or 7 fields, seconds \
                         first, evaluated in UTC: \"0 */5 * * * *\" runs every five minutes"
                    ),
                );
            }
            Timing::Cron(cron.clone())
        }
        (None, None) => {
            errors.spanned(attr, SCHEDULE_NEEDS_TIMING);
            Timing::Every { millis: 1000 }
        }
    };
    let mode = match args.mode.as_ref().map(|mode| (mode, mode.value())) {
        None => ScheduleMode::Exclusive,
        Some((_, value)) if value == "exclusive" => ScheduleMode::Exclusive,
        Some((_, value)) if value == "every_instance" => ScheduleMode::EveryInstance,
        Some((mode, _)) => {
            errors.spanned(
                mode,
                "`mode` is \"exclusive\" (only the active instance of the group runs it) or \
                 \"every_instance\"",
            );
            ScheduleMode::Exclusive
        }
    };
    let missed = match args.missed.as_ref().map(|missed| (missed, missed.value())) {
        None => Missed::Skip,
        Some((_, value)) if value == "skip" => Missed::Skip,
        Some((_, value)) if value == "run_once" => Missed::RunOnce,
        Some((missed, _)) => {
            errors.spanned(
                missed,
                "`missed` is \"skip\" (ticks that could not run are dropped) or \"run_once\" \
                 (they are made up by one run, as soon as possible)",
            );
            Missed::Skip
        }
    };
    let jitter_millis = match &args.jitter {
        None => 0,
        Some(jitter) => {
            let millis = read_millis(jitter, "jitter", errors).unwrap_or(0);
            if let Timing::Every { millis: every } = timing
                && millis >= every
            {
                errors.spanned(
                    jitter,
                    format!(
                        "`jitter` ({millis} ms) must be shorter than the interval ({every} ms), \
                         or a run could be delayed past the next tick"
                    ),
                );
            }
            millis
        }
    };
    ScheduleSpec {
        timing,
        mode,
        missed,
        jitter_millis,
    }
}

/// A duration literal (`"200ms"`, `"30s"`, `"1h 30m"`) in whole milliseconds, above zero.
fn read_millis(literal: &LitStr, key: &str, errors: &Errors) -> Option<u64> {
    let duration = match humantime::parse_duration(&literal.value()) {
        Ok(duration) => duration,
        Err(err) => {
            errors.spanned(
                literal,
                format!(
                    "`{key}` is not a duration ({err}); write a number and a unit: \"200ms\", \
                     \"30s\", \"5m\", \"1h 30m\""
                ),
            );
            return None;
        }
    };
    if duration.is_zero() || duration.subsec_nanos() % 1_000_000 != 0 {
        errors.spanned(
            literal,
            format!("`{key}` must be a whole number of milliseconds, at least 1ms"),
        );
        return None;
    }
    match u64::try_from(duration.as_millis()) {
        Ok(millis) => Some(millis),
        Err(_) => {
            errors.spanned(literal, format!("`{key}` is too long"));
            None
        }
    }
}

/// Checks the shape: `async`, `&self`, no generics, at most one context and one payload.
fn read_signature<'a>(method: &'a ImplItemFn, kind: &Kind, errors: &Errors) -> Vec<Arg<'a>> {
    let sig = &method.sig;
    let attribute = kind.attribute().name();
    if sig.asyncness.is_none() {
        errors.spanned(
            sig.fn_token,
            format!("`#[{attribute}]` methods must be `async`"),
        );
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.spanned(
            unsafety,
            format!("`#[{attribute}]` methods cannot be `unsafe`"),
        );
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.spanned(
            &sig.generics,
            format!("`#[{attribute}]` methods cannot be generic: the wire types must be concrete"),
        );
    }
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(receiver)) if receiver.reference.is_some() && receiver.mutability.is_none() => {}
        Some(FnArg::Receiver(receiver)) => errors.spanned(
            receiver,
            format!("`#[{attribute}]` methods must take `&self`: handlers run concurrently on a shared service"),
        ),
        _ => errors.spanned(&sig.ident, format!("`#[{attribute}]` methods must take `&self` as their first argument")),
    }
    let Some(allowed_context) = kind.context() else {
        // A lifecycle hook takes nothing but `&self`.
        if let Some(extra) = inputs.next() {
            errors.spanned(extra, format!("`#[{attribute}]` methods take only `&self`"));
        }
        return Vec::new();
    };
    let mut args = Vec::new();
    let (mut seen_context, mut seen_payload) = (false, false);
    for input in inputs {
        let FnArg::Typed(typed) = input else { continue };
        match context_kind(&typed.ty) {
            Some(context) if context == allowed_context && !seen_context => {
                seen_context = true;
                args.push(Arg::Context(context));
            }
            Some(context) if context == allowed_context => {
                errors.spanned(&typed.ty, format!("`{}` is already an argument of this method", context.type_name()));
            }
            Some(context) => errors.spanned(
                &typed.ty,
                format!(
                    "`#[{attribute}]` methods take `{}` as their context, not `{}`",
                    allowed_context.type_name(),
                    context.type_name()
                ),
            ),
            None if matches!(kind, Kind::Schedule(_)) => errors.spanned(
                typed,
                "`#[schedule]` methods take no payload: only `&self`, and `ctx: &ScheduleContext` if they need it",
            ),
            None if !seen_payload => {
                seen_payload = true;
                args.push(Arg::Payload(&typed.ty));
            }
            None => errors.spanned(
                typed,
                format!(
                    "too many arguments: `#[{attribute}]` methods take at most one payload argument \
                     (put several values in one struct)"
                ),
            ),
        }
    }
    if matches!(kind, Kind::Subscribe { .. }) && !seen_payload {
        errors.spanned(
            &sig.ident,
            "`#[subscribe]` methods take the event: `event: Event<T>`, or just its payload `T`",
        );
    }
    args
}

/// Which context type `ty` is, judged by its last path segment.
fn context_kind(ty: &Type) -> Option<ContextKind> {
    let (path, by_ref) = match ty {
        Type::Reference(reference) => match &*reference.elem {
            Type::Path(path) => (path, true),
            _ => return None,
        },
        Type::Path(path) => (path, false),
        _ => return None,
    };
    let last = path.path.segments.last()?.ident.to_string();
    match (last.as_str(), by_ref) {
        ("RpcContext", _) => Some(ContextKind::Rpc),
        ("EventContext", _) => Some(ContextKind::Event),
        ("Progress", false) => Some(ContextKind::Progress),
        ("ScheduleContext", _) => Some(ContextKind::Schedule),
        _ => None,
    }
}

/// `Result<T, E>` (or a one-argument `Result<T>` alias) is a fallible handler; anything
/// else is the value itself.
fn read_output(output: &ReturnType) -> Output<'_> {
    let ty = match output {
        ReturnType::Default => return Output::Unit,
        ReturnType::Type(_, ty) => &**ty,
    };
    if let Type::Tuple(tuple) = ty
        && tuple.elems.is_empty()
    {
        return Output::Unit;
    }
    if let Type::Path(path) = ty
        && let Some(last) = path.path.segments.last()
        && last.ident == "Result"
        && let PathArguments::AngleBracketed(generic) = &last.arguments
    {
        let types: Vec<&Type> = generic
            .args
            .iter()
            .filter_map(|arg| match arg {
                GenericArgument::Type(ty) => Some(ty),
                _ => None,
            })
            .collect();
        match types.as_slice() {
            [ok] => return Output::Result { ok, err: None },
            [ok, err] => return Output::Result { ok, err: Some(err) },
            _ => {}
        }
    }
    Output::Value(ty)
}

/// A copy of `item` without our method attributes, to re-emit (they are not real
/// attributes: left in place, the compiler would look for macros of those names).
pub(crate) fn strip_attributes(item: &ItemImpl, krate: &syn::Path) -> ItemImpl {
    let mut item = item.clone();
    for impl_item in &mut item.items {
        if let ImplItem::Fn(method) = impl_item {
            method
                .attrs
                .retain(|attr| aegis_attribute(attr, krate).is_none());
        }
    }
    item
}
