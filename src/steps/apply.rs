//! `apply`: server-side apply (field manager `benchflow`) of the manifests the planner rendered
//! from templates, each labelled with the run and the step. A namespace that already exists is
//! used and never deleted; a failure or an interrupt part-way deletes what this step created.
//! Undo deletes the created objects in reverse order and waits until they are gone.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Ctx, Done, Inputs, Step, StepError, UndoRecord};
use crate::{
    platform::{
        kube::{self, ObjectRef, Target},
        kubernetes,
    },
    units::Secs,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// Template files (the planner renders them into `manifests`).
    #[serde(default)]
    pub templates: Vec<String>,
    /// A directory of custom templates (else the shipped ones).
    #[serde(default)]
    pub template_dir: Option<String>,
    /// The rendered manifests, in order.
    #[serde(default)]
    pub manifests: Vec<Value>,
    #[serde(default)]
    pub cluster: Target,
    /// The value of the run label.
    pub run_label: String,
    /// How long a deletion may take at undo.
    #[serde(default = "default_delete")]
    pub delete_timeout: Secs,
}

fn default_delete() -> Secs {
    Secs(300.0)
}

fn fail(e: impl std::fmt::Display) -> StepError {
    StepError::Failed(e.to_string())
}

/// What teardown deletes: the objects this step created (not the ones it found and kept).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Undo {
    pub cluster: Target,
    pub objects: Vec<ObjectRef>,
    pub kept: Vec<ObjectRef>,
    pub delete_timeout_s: f64,
}

impl Undo {
    /// Deletes the created objects in reverse order, waiting until each is gone.
    pub async fn undo(&self, ctx: &Ctx) -> Result<String, StepError> {
        let limit = Duration::from_secs_f64(self.delete_timeout_s);
        let client = self.cluster.client().await.map_err(fail)?;
        let mut done = Vec::new();
        for r in self.objects.iter().rev() {
            let deleted = kube::delete(&client, r, limit).await.map_err(fail)?;
            ctx.note(&format!("# {} {r}", if deleted { "deleted" } else { "already gone:" }));
            done.push(r.to_string());
        }
        Ok(format!("deleted {}", if done.is_empty() { "nothing".into() } else { done.join(", ") }))
    }

    pub fn describe(&self) -> String {
        let list: Vec<String> = self.objects.iter().map(ToString::to_string).collect();
        format!("Kubernetes objects {}", list.join(", "))
    }
}

impl Step for Args {
    /// Renders the templates into `manifests`: the plan holds exactly what will be applied.
    fn compile(&mut self, inputs: &Inputs) -> Result<(), String> {
        self.manifests =
            kubernetes::render_manifests(inputs.templates, self.template_dir.as_deref(), &self.templates)?;
        // Labelled now, so that the plan (and a dry run) shows exactly what will be sent.
        for m in &mut self.manifests {
            kubernetes::label(m, &self.run_label, inputs.step);
        }
        Ok(())
    }

    fn files(&self) -> Vec<(String, String)> {
        self.manifests
            .iter()
            .map(|m| {
                let r = ObjectRef::of(m);
                let text = serde_saphyr::to_string(m).unwrap_or_default();
                (format!("{}-{}.yaml", r.kind, r.name), text)
            })
            .collect()
    }

    fn describe(&self) -> Vec<String> {
        let objects: Vec<String> = self.manifests.iter().map(|m| ObjectRef::of(m).to_string()).collect();
        vec![format!("server-side apply {}", objects.join(", "))]
    }

    fn teardown(&self) -> Option<String> {
        let objects: Vec<String> =
            self.manifests.iter().rev().map(|m| ObjectRef::of(m).to_string()).collect();
        Some(format!("delete {} and wait until gone (a namespace that existed is kept)", objects.join(", ")))
    }

    async fn run(self, ctx: &Ctx) -> Result<Done, StepError> {
        self.apply(ctx).await
    }
}

impl Args {
    /// Fills `env:NAME` references in a Secret's `stringData` from our environment, in memory.
    fn fill_secret(doc: &mut Value, ctx: &Ctx) {
        let Some(data) = doc.get_mut("stringData").and_then(Value::as_object_mut) else { return };
        let keys: Vec<String> = data.keys().cloned().collect();
        for k in keys {
            let Some(name) =
                data.get(&k).and_then(Value::as_str).and_then(|v| v.strip_prefix("env:")).map(str::to_string)
            else {
                continue;
            };
            match std::env::var(&name) {
                Ok(value) => {
                    crate::redact::register(&value);
                    data.insert(k.clone(), Value::String(value));
                    ctx.note(&format!("# secret key {k} from ${name} (value not shown)"));
                }
                Err(_) => {
                    data.remove(&k);
                    ctx.note(&format!(
                        "# secret key {k}: ${name} is not set; left out (public models need none)"
                    ));
                }
            }
        }
    }

    async fn apply(&self, ctx: &Ctx) -> Result<Done, StepError> {
        let client = self.cluster.client().await.map_err(fail)?;
        let mut created: Vec<ObjectRef> = Vec::new();
        let mut kept: Vec<ObjectRef> = Vec::new();
        let outcome: Result<(), StepError> = async {
            for manifest in &self.manifests {
                if *ctx.cancel.borrow() {
                    return Err(StepError::Cancelled);
                }
                let mut doc = manifest.clone();
                let r = ObjectRef::of(&doc);
                if r.kind == "Namespace" {
                    // Credentials confined to the namespace may not read it: it exists then.
                    let found = match kube::exists(&client, &r).await {
                        Err(e) if kube::forbidden(&e) => Some("may not be read: taken to exist"),
                        found => found.map_err(fail)?.then_some("exists"),
                    };
                    if let Some(why) = found {
                        ctx.note(&format!("# {r} {why}: used as it is, never deleted"));
                        kept.push(r);
                        continue;
                    }
                }
                kubernetes::label(&mut doc, &self.run_label, &ctx.step);
                if r.kind == "Secret" {
                    Self::fill_secret(&mut doc, ctx);
                }
                // Recorded before it is sent: if benchflow dies now, teardown deletes it.
                let mut about = created.clone();
                about.push(r.clone());
                ctx.record_undo(&UndoRecord::Apply(Undo {
                    cluster: self.cluster.clone(),
                    objects: about,
                    kept: kept.clone(),
                    delete_timeout_s: self.delete_timeout.0,
                }))?;
                kube::apply(&client, &doc).await.map_err(fail)?;
                ctx.note(&format!("# applied {r}"));
                created.push(r);
            }
            Ok(())
        }
        .await;
        let record = Undo {
            cluster: self.cluster.clone(),
            objects: created.clone(),
            kept: kept.clone(),
            delete_timeout_s: self.delete_timeout.0,
        };
        if let Err(e) = outcome {
            // Nothing half-done is left behind.
            if record.undo(ctx).await.is_ok() {
                ctx.clear_undo();
            }
            return Err(e);
        }
        let list = |v: &[ObjectRef]| v.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        let summary = match (created.is_empty(), kept.is_empty()) {
            (false, true) => format!("applied {}", list(&created)),
            (false, false) => format!("applied {}; kept {}", list(&created), list(&kept)),
            (true, false) => format!("kept {} (it existed)", list(&kept)),
            (true, true) => "nothing to apply".to_string(),
        };
        Ok(Done { summary, undo: Some(UndoRecord::Apply(record)) })
    }
}
