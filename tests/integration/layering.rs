//! The module layering: every top-level module of `src/` imports only modules of lower layers,
//! in the order docs/architecture.md draws ([`LAYERS`]), so no two import each other, directly
//! or through others. Read from the source (`crate::…` paths, `#[cfg(test)]` items left out and
//! nothing else), so a new import that climbs a layer fails here, naming it.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

/// Top-level module of a file under `src/` (`plan/mod.rs` → `plan`, `timer.rs` → `timer`).
fn module_of(rel: &Path) -> String {
    let first = rel.components().next().map(|c| c.as_os_str().to_string_lossy().to_string());
    first.unwrap_or_default().trim_end_matches(".rs").to_string()
}

/// The top-level modules named after `crate::` in `text`, grouped imports included
/// (`use crate::{a::X, b::{Y, Z}}` names `a` and `b`).
fn referenced(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the brace group.
            let mut depth = 0usize;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(head(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
            out.insert(head(&item));
        } else {
            out.insert(head(rest));
        }
    }
    out.remove("");
    out.remove("self");
    out
}

fn head(path: &str) -> String {
    path.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
}

/// Every source file of `src/`: its top-level module and its code without `#[cfg(test)]` items.
fn sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let module = module_of(path.strip_prefix(&root).unwrap());
                out.push((module, without_tests(&std::fs::read_to_string(&path).unwrap())));
            }
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, code) in sources() {
        let mut refs = referenced(&code);
        refs.remove(&module);
        deps.entry(module).or_default().extend(refs);
    }
    deps
}

/// Who may start a process or open a connection: the step kinds, the external load generators
/// (a tool's run), the tool installer; the HTTP client, the load generator and the step kinds.
/// An experiment, the CLI or the analysis does it through a step.
#[test]
fn processes_and_connections_only_where_documented() {
    let rules: [(&str, &[&str], &[&str]); 2] = [
        (
            "starts a process",
            &["tokio::process", "process::Command", "Command::new("],
            &["steps", "harnesses", "tools"],
        ),
        ("opens a connection", &["TcpStream::connect", "net::fetch", "fetch("], &["net", "loadgen", "steps"]),
    ];
    let mut wrong = BTreeSet::new();
    for (module, code) in sources() {
        // clap's `Command` describes a command line; it starts nothing.
        let code = code.replace("clap::Command::new(", "");
        for (what, needles, allowed) in rules {
            if !allowed.contains(&module.as_str()) && needles.iter().any(|n| code.contains(n)) {
                wrong.insert(format!("{module} {what}: do it in a step kind (or net / loadgen)"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.into_iter().collect::<Vec<_>>().join("\n"));
}

/// The layers, lowest first, as docs/architecture.md draws them: a module may import only
/// modules of lower layers.
const LAYERS: &[&[&str]] = &[
    &["lexicon", "redact", "rng", "shell", "template", "timer", "tools", "units"],
    &["spec", "workdir"],
    &["datasets", "net", "results", "sim"],
    &["loadgen", "platform"],
    &["harnesses", "resolve"],
    &["analysis"],
    &["steps"],
    &["plan"],
    &["exec"],
    &["session"],
    &["experiment"],
    &["cli"],
    &["lib", "main"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// `text` without its `#[cfg(test)]` items (a test module, a test-only function or import):
/// each is skipped to the end of its block or its `;`, string and char literals read as such.
fn without_tests(text: &str) -> String {
    const ATTR: &str = "#[cfg(test)]";
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(ATTR) {
        out.push_str(&rest[..i]);
        rest = &rest[i + ATTR.len()..];
        let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
        let mut end = rest.len();
        let bytes = rest.as_bytes();
        let mut k = 0;
        while k < bytes.len() {
            let c = bytes[k];
            if in_str {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_str = false,
                    _ => {}
                }
            } else if c == b'"' {
                in_str = true;
            } else if c == b'\'' && bytes.get(k + 2) == Some(&b'\'') {
                k += 2; // a char literal such as '{'
            } else if c == b'{' {
                depth += 1;
            } else if c == b'}' {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    end = k + 1;
                    break;
                }
            } else if c == b';' && depth == 0 {
                end = k + 1;
                break;
            }
            k += 1;
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[test]
fn test_items_are_left_out_and_nothing_else() {
    let text = "use crate::a::X;\n#[cfg(test)]\nuse crate::t::Y;\nfn f() { crate::b::g(\"}\") }\n\
                #[cfg(test)]\nmod tests { fn h() { let c = '{'; crate::t::z(\"{\"); } }\nfn k() { crate::c::m() }\n";
    let refs = referenced(&without_tests(text));
    assert_eq!(refs, BTreeSet::from(["a".into(), "b".into(), "c".into()]));
}

#[test]
fn every_import_goes_to_a_lower_layer_as_documented() {
    let deps = graph();
    let mut wrong = Vec::new();
    for (module, imports) in &deps {
        let Some(mine) = layer_of(module) else {
            wrong.push(format!("{module} is in no layer: add it to LAYERS and docs/architecture.md"));
            continue;
        };
        for import in imports {
            match layer_of(import) {
                Some(theirs) if theirs < mine => {}
                Some(theirs) => {
                    wrong.push(format!("{module} (layer {mine}) imports {import} (layer {theirs})"))
                }
                None => wrong.push(format!("{module} imports {import}, which is in no layer")),
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A path of imports from `from` back to itself, if there is one.
fn circle(deps: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut path = vec![from.to_string()];
    let mut seen = BTreeSet::new();
    fn walk(
        deps: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        let last = path.last().cloned().unwrap_or_default();
        for next in deps.get(&last).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(deps, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    walk(deps, from, &mut path, &mut seen).then_some(path)
}

#[test]
fn the_parser_sees_grouped_and_inline_imports() {
    let refs = referenced("use crate::{a::X, b::{c::Y, Z}, self};\nlet x = crate::d::f();");
    assert_eq!(refs, BTreeSet::from(["a".into(), "b".into(), "d".into()]));
}

#[test]
fn the_cycle_finder_finds_a_planted_cycle() {
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    deps.entry("a".into()).or_default().insert("b".into());
    deps.entry("b".into()).or_default().insert("c".into());
    assert_eq!(circle(&deps, "a"), None);
    deps.entry("c".into()).or_default().insert("a".into());
    assert_eq!(circle(&deps, "a"), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
}

#[test]
fn no_module_imports_itself_through_others() {
    let deps = graph();
    // The parser must see the modules we know exist, or this test proves nothing.
    for known in ["plan", "steps", "spec", "sim", "analysis", "resolve", "platform", "exec"] {
        assert!(deps.contains_key(known), "module {known} not found under src/");
    }
    assert!(deps["exec"].contains("plan"), "exec's imports were not read: {:?}", deps["exec"]);
    let circles: Vec<String> = deps.keys().filter_map(|m| circle(&deps, m)).map(|c| c.join(" → ")).collect();
    assert!(circles.is_empty(), "modules import each other in a circle:\n  {}", circles.join("\n  "));
}
