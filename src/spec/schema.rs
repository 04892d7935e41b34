//! JSON Schemas for the four file kinds, generated from the serde types (the schema of the
//! `stats.json` output is `analysis::StatsDoc`'s). The checked-in copies
//! under `schemas/` are compared with these by a test, so they cannot go stale.

use schemars::schema_for;

use super::{
    experiment::Experiment, harness::Harness, pipeline::Pipeline, scenario::Scenario, workload::Workload,
};

/// `(file name, pretty JSON)` for each schema.
fn all() -> Vec<(&'static str, String)> {
    let pretty = |s: schemars::Schema| serde_json::to_string_pretty(&s).unwrap_or_default() + "\n";
    vec![
        ("scenario.schema.json", pretty(schema_for!(Scenario))),
        ("harness.schema.json", pretty(schema_for!(Harness))),
        ("workload.schema.json", pretty(schema_for!(Workload))),
        ("pipeline.schema.json", pretty(schema_for!(Pipeline))),
        ("experiment.schema.json", pretty(schema_for!(Experiment))),
    ]
}

/// For tests: fails when `schemas/NAME` differs from `text` (with `BENCHFLOW_WRITE_SCHEMAS` set,
/// writes it first).
#[cfg(test)]
pub(crate) fn assert_fresh(name: &str, text: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let path = dir.join(name);
    if std::env::var_os("BENCHFLOW_WRITE_SCHEMAS").is_some() {
        std::fs::create_dir_all(&dir).expect("create schemas/");
        std::fs::write(&path, text).expect("write schema");
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == text,
        "schemas/{name} is stale: run `BENCHFLOW_WRITE_SCHEMAS=1 cargo test --lib schema` and commit it"
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn checked_in_schemas_are_fresh() {
        for (name, text) in super::all() {
            super::assert_fresh(name, &text);
        }
    }
}
