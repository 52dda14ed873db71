//! The original's `--experiment/--project` spelling: the broker is found in the
//! experiment's configuration file, `/proj/<project>/exp/<experiment>/experiment.conf`
//! (root overridable with `MAGI_PROJ_ROOT`).
//!
//! The broker URL is, in order: the file's `broker:` (top level or under `mesdl:`), or
//! `amqp://guest:guest@<first bridge's server>:5672/%2f` from the original's
//! `mesdl.bridges`.

use std::path::PathBuf;

use serde_json::Value;

/// Where the experiment's configuration file is.
pub fn config_path(project: &str, experiment: &str) -> PathBuf {
    let root = std::env::var_os("MAGI_PROJ_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/proj"));
    root.join(project)
        .join("exp")
        .join(experiment)
        .join("experiment.conf")
}

/// The broker URL of an experiment.
pub fn broker_of(project: &str, experiment: &str) -> Result<String, String> {
    let path = config_path(project, experiment);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read the experiment configuration {}: {e}",
            path.display()
        )
    })?;
    broker_in(&path.to_string_lossy(), &text)
}

/// The broker URL named by a configuration text.
pub fn broker_in(path: &str, text: &str) -> Result<String, String> {
    let conf = magi_aal::yaml_to_json(path, text)?;
    if let Some(b) = conf
        .get("broker")
        .or_else(|| conf.get("mesdl").and_then(|m| m.get("broker")))
        .and_then(Value::as_str)
    {
        return Ok(b.to_string());
    }
    let bridge = conf
        .get("mesdl")
        .and_then(|m| m.get("bridges"))
        .and_then(Value::as_array)
        .and_then(|b| b.first())
        .and_then(|b| b.get("server"))
        .and_then(Value::as_str);
    match bridge {
        Some(host) => Ok(format!("amqp://guest:guest@{host}:5672/%2f")),
        None => Err(format!(
            "{path} names no broker: add `broker: amqp://user:pass@host:5672/vhost`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_experiment_conf_names_its_bridge_as_the_broker() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/casestudies/experiment_cs.conf"
        ))
        .unwrap_or_else(|_| {
            "mesdl:\n  bridges:\n  - {port: 18808, server: clientnode.MagiTest4.montage}\n".into()
        });
        assert_eq!(
            broker_in("experiment.conf", &text).unwrap(),
            "amqp://guest:guest@clientnode.MagiTest4.montage:5672/%2f"
        );
        assert_eq!(
            broker_in("x", "broker: amqp://a:b@h/v\n").unwrap(),
            "amqp://a:b@h/v"
        );
        assert!(broker_in("x", "expdl: {}\n")
            .unwrap_err()
            .contains("names no broker"));
    }
}
