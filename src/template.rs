//! Templates: minijinja with strict undefined, over the variable tree.
//!
//! A string is rendered as text; a string that is exactly one `{{ expression }}` keeps the
//! expression's type (so `command: "{{ engine.command }}"` stays a list). Errors name the
//! template (file and step), the line in it and the undefined variable.

use minijinja::{Environment, UndefinedBehavior, value::Serde};
use serde_json::Value;

/// A template that could not be rendered.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct TemplateError {
    pub origin: String,
    pub message: String,
}

/// The renderer: one strict environment and the context built once from the tree.
pub struct Renderer {
    env: Environment<'static>,
    ctx: minijinja::Value,
}

impl Renderer {
    pub fn new(tree: &Value) -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // No escaping by file name (minijinja would JSON-quote every value in a `.yaml` template):
        // templates say `| tojson` where they want JSON.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        Renderer { env, ctx: minijinja::Value::from(Serde(tree)) }
    }

    fn error(origin: &str, e: &minijinja::Error) -> TemplateError {
        let line = e.line().map(|l| format!(" (template line {l})")).unwrap_or_default();
        let message = match e.detail() {
            Some(detail) => format!("{}: {detail}{line}", e.kind()),
            None => format!("{}{line}", e.kind()),
        };
        TemplateError { origin: origin.to_string(), message }
    }

    /// Renders a text template.
    pub fn render_str(&self, origin: &str, source: &str) -> Result<String, TemplateError> {
        let tmpl = self.env.template_from_named_str(origin, source).map_err(|e| Self::error(origin, &e))?;
        tmpl.render(&self.ctx).map_err(|e| Self::error(origin, &e))
    }

    /// Evaluates an expression (e.g. a step's `when`).
    pub fn eval(&self, origin: &str, expr: &str) -> Result<Value, TemplateError> {
        let compiled = self.env.compile_expression(expr).map_err(|e| Self::error(origin, &e))?;
        let value = compiled.eval(&self.ctx).map_err(|e| Self::error(origin, &e))?;
        if value.is_undefined() {
            return Err(TemplateError { origin: origin.into(), message: format!("`{expr}` is undefined") });
        }
        serde_json::to_value(&value)
            .map_err(|e| TemplateError { origin: origin.into(), message: format!("`{expr}`: {e}") })
    }

    /// Whether an expression is true.
    pub fn condition(&self, origin: &str, expr: &str) -> Result<bool, TemplateError> {
        Ok(match self.eval(origin, expr)? {
            Value::Null => false,
            Value::Bool(b) => b,
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::String(s) => !s.is_empty(),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
        })
    }

    /// Renders every string inside `value`.
    pub fn render_value(&self, origin: &str, value: &Value) -> Result<Value, TemplateError> {
        Ok(match value {
            Value::String(s) => match single_expression(s) {
                Some(expr) => self.eval(origin, expr)?,
                None if s.contains("{{") || s.contains("{%") => Value::String(self.render_str(origin, s)?),
                None => value.clone(),
            },
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.render_value(origin, v)).collect::<Result<_, _>>()?)
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.render_value(&format!("{origin}.{k}"), v)?)))
                    .collect::<Result<_, TemplateError>>()?,
            ),
            other => other.clone(),
        })
    }
}

/// `Some(expr)` when `s` is exactly `{{ expr }}`.
fn single_expression(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}")).then_some(inner.trim())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn renders_text_keeps_types_and_names_undefined_variables() {
        let r = Renderer::new(&json!({"engine": {"kind": "sim", "command": ["a", "b"], "port": 8}}));
        assert_eq!(r.render_str("t", "http://x:{{ engine.port }}/").unwrap(), "http://x:8/");
        assert_eq!(r.render_value("t", &json!("{{ engine.command }}")).unwrap(), json!(["a", "b"]));
        assert_eq!(r.render_value("t", &json!({"p": "{{ engine.port }}"})).unwrap(), json!({"p": 8}));
        assert!(r.condition("t", "engine.kind == 'sim'").unwrap());
        assert!(!r.condition("t", "engine.kind == 'vllm'").unwrap());
        let e = r.render_str("pipelines/x.yaml: step a", "ok\n{{ engine.nope }}").unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("pipelines/x.yaml: step a: "), "{text}");
        assert!(text.contains("`engine.nope` is undefined") && text.contains("line 2"), "{text}");
        let e = r.eval("when", "nothere == 1").unwrap_err();
        assert!(e.to_string().contains("nothere"), "{e}");
    }
}
