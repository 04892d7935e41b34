//! The HTML reports, on minijinja templates: `templates/base.html` is the one layout (the
//! page, its stylesheet), which `run.html` (a run's `report.html`, built by [`super::report`]),
//! `experiment.html` (an experiment's, built by `experiment::analysis`) and `compare.html`
//! (`benchflow compare --plots DIR`'s, built by `experiment::compare`) extend.
//!
//! The Rust side formats every figure (so a report shows the numbers `stats.txt` shows) and
//! hands the template a view of plain strings; the templates only place them. Every value is
//! HTML-escaped (auto-escaping by the `.html` name) unless a template marks it `| safe`: only
//! the chart SVGs benchflow drew itself are.

use minijinja::{AutoEscape, Environment, UndefinedBehavior, syntax::SyntaxConfig, value::Serde};
use serde::Serialize;

/// The templates, compiled into the binary: (name, source).
const TEMPLATES: [(&str, &str); 5] = [
    ("base.html", include_str!("templates/base.html")),
    ("run.html", include_str!("templates/run.html")),
    ("conventions.html", include_str!("templates/conventions.html")),
    ("experiment.html", include_str!("templates/experiment.html")),
    ("compare.html", include_str!("templates/compare.html")),
];

/// A report template that could not be rendered: a bug in benchflow (the templates and their
/// views are compiled in), said with the template, its line and minijinja's reason.
#[derive(Debug, thiserror::Error)]
#[error("the report template {template} failed{}: {reason} (a bug in benchflow: please report it)", line.map(|l| format!(" at line {l}")).unwrap_or_default())]
pub struct HtmlError {
    pub template: String,
    pub line: Option<usize>,
    pub reason: String,
}

impl HtmlError {
    fn of(template: &str, e: &minijinja::Error) -> Self {
        let reason = match e.detail() {
            Some(d) => format!("{}: {d}", e.kind()),
            None => e.kind().to_string(),
        };
        HtmlError { template: e.name().unwrap_or(template).to_string(), line: e.line(), reason }
    }
}

/// Text escaped for HTML: `&`, `<`, `>` and both quotes (minijinja's own escaping also
/// writes `/` as `&#x2f;`, which makes every link and path of a report unreadable as source).
fn text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Renders template `name` with `view` as its variable `var` (`r` for a run, `e` for an
/// experiment).
pub(crate) fn render(name: &str, var: &str, view: &impl Serialize) -> Result<String, HtmlError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let syntax = SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build();
    env.set_syntax(syntax.map_err(|e| HtmlError::of(name, &e))?);
    env.set_formatter(|out, state, value| match state.auto_escape() {
        AutoEscape::Html if !value.is_safe() => out.write_str(&text(&value.to_string())).map_err(|e| {
            minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "writing the report").with_source(e)
        }),
        _ => minijinja::escape_formatter(out, state, value),
    });
    for (n, source) in TEMPLATES {
        env.add_template(n, source).map_err(|e| HtmlError::of(n, &e))?;
    }
    let template = env.get_template(name).map_err(|e| HtmlError::of(name, &e))?;
    let ctx = minijinja::Value::from(Serde(std::collections::BTreeMap::from([(var, view)])));
    template.render(ctx).map_err(|e| HtmlError::of(name, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles_and_a_missing_one_is_an_error_naming_it() {
        let mut env = Environment::new();
        for (n, source) in TEMPLATES {
            env.add_template(n, source).unwrap_or_else(|e| panic!("{n}: {e}"));
        }
        let e = render("nope.html", "r", &()).unwrap_err();
        assert_eq!(e.template, "nope.html");
        assert!(e.to_string().contains("a bug in benchflow"), "{e}");
    }

    #[test]
    fn a_missing_field_of_the_view_is_an_error_with_its_line() {
        // Strict: a view without the fields run.html uses is refused, not rendered blank.
        let e = render("run.html", "r", &serde_json::json!({"meta": []})).unwrap_err();
        assert_eq!(e.template, "run.html");
        assert!(e.line.is_some(), "{e}");
    }
}
