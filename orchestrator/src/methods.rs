//! `magi check`'s knowledge of agents' methods: an event calling a method its agent's
//! module does not list, or giving an argument the method does not take, is a warning at
//! the event's line. The methods come from the module's manifest (`magi-agent.json`) or its
//! original `.idl`, found as `magi run` finds modules (the path as is, else by module name
//! in the library). A module that cannot be found or read, or that lists no methods (most
//! original IDLs), gives no warning: nothing is known of it.

use std::collections::HashMap;

use magi_aal::{AgentSource, Diagnostic, Entry, Procedure};
use magi_node::library::ModuleLibrary;
use magi_node::manifest::Manifest;

/// The warnings about the procedure's calls, in AAL order.
pub fn diagnose(procedure: &Procedure, library: &ModuleLibrary) -> Vec<Diagnostic> {
    let mut manifests: HashMap<&str, Option<Manifest>> = HashMap::new();
    let mut out = Vec::new();
    for stream in &procedure.streams {
        for entry in &stream.entries {
            let Entry::Event(event) = entry else { continue };
            let manifest = manifests.entry(event.agent.as_str()).or_insert_with(|| {
                let agent = procedure.agent(&event.agent)?;
                let Some(AgentSource::Path(path)) = &agent.source else {
                    return None;
                };
                magi_node::describe::describe_path(library, path).ok()
            });
            let Some(manifest) = manifest.as_ref().filter(|m| !m.methods.is_empty()) else {
                continue;
            };
            let Some(method) = manifest.method(&event.method) else {
                let names: Vec<&str> = manifest.methods.iter().map(|m| m.name.as_str()).collect();
                out.push(
                    Diagnostic::warning(
                        event.span,
                        format!(
                            "agent `{}` (module `{}`) has no method `{}`{}",
                            event.agent,
                            manifest.name,
                            event.method,
                            magi_aal::suggest::did_you_mean(&event.method, names.iter().copied())
                        ),
                    )
                    .label("the call will fail with a RuntimeException")
                    .note(format!("its methods: {}", names.join(", "))),
                );
                continue;
            };
            if method.varargs {
                continue;
            }
            let takes: Vec<&str> = method.args.iter().map(|a| a.name.as_str()).collect();
            for key in event.args.keys().filter(|k| !takes.contains(&k.as_str())) {
                let takes_text = if takes.is_empty() {
                    "no arguments".to_string()
                } else {
                    takes.join(", ")
                };
                out.push(
                    Diagnostic::warning(
                        event.span,
                        format!(
                            "method `{}` of agent `{}` (module `{}`) takes no argument `{key}`{}",
                            event.method,
                            event.agent,
                            manifest.name,
                            magi_aal::suggest::did_you_mean(key, takes.iter().copied())
                        ),
                    )
                    .label("the agent drops it")
                    .note(format!("`{}` takes {takes_text}", event.method)),
                );
            }
        }
    }
    out
}
