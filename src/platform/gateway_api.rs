//! The kinds of an llm-d stack that k8s-openapi does not type: the Gateway API's `Gateway` and
//! `HTTPRoute` (`gateway.networking.k8s.io/v1`) and the Inference Extension's `InferencePool`
//! (`inference.networking.k8s.io/v1`). Each rendered manifest is checked against the fields
//! benchflow sets (unknown fields refused, so a misspelt template fails at plan time, not on
//! the cluster), and against the rules their CRDs enforce on those fields.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Object<S> {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    #[allow(dead_code)]
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    spec: S,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PortNumber {
    number: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct InferencePoolSpec {
    selector: Selector,
    target_ports: Vec<PortNumber>,
    #[serde(default)]
    endpoint_picker_ref: Option<EndpointPickerRef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Selector {
    match_labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EndpointPickerRef {
    #[serde(default)]
    #[allow(dead_code)]
    group: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    name: String,
    #[serde(default)]
    port: Option<PortNumber>,
    #[serde(default)]
    failure_mode: Option<FailureMode>,
}

#[derive(Deserialize)]
enum FailureMode {
    FailOpen,
    FailClose,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GatewaySpec {
    gateway_class_name: String,
    listeners: Vec<Listener>,
    #[serde(default)]
    #[allow(dead_code)]
    addresses: Option<Vec<Value>>,
    #[serde(default)]
    #[allow(dead_code)]
    infrastructure: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Listener {
    name: String,
    protocol: String,
    port: u16,
    #[serde(default)]
    #[allow(dead_code)]
    hostname: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    allowed_routes: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    tls: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HttpRouteSpec {
    parent_refs: Vec<Reference>,
    #[serde(default)]
    #[allow(dead_code)]
    hostnames: Option<Vec<String>>,
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Reference {
    #[serde(default)]
    #[allow(dead_code)]
    group: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    namespace: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    section_name: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    port: Option<u16>,
    #[serde(default)]
    #[allow(dead_code)]
    weight: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    matches: Option<Vec<Value>>,
    #[serde(default)]
    #[allow(dead_code)]
    filters: Option<Vec<Value>>,
    #[serde(default)]
    backend_refs: Vec<Reference>,
    #[serde(default)]
    timeouts: Option<RouteTimeouts>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RouteTimeouts {
    #[serde(default)]
    request: Option<String>,
    #[serde(default)]
    backend_request: Option<String>,
}

fn parse<S: serde::de::DeserializeOwned>(doc: &Value, kind: &str) -> Result<S, String> {
    serde_json::from_value::<Object<S>>(doc.clone())
        .map(|o| o.spec)
        .map_err(|e| format!("not a valid {kind} (the fields benchflow sets): {e}"))
}

fn port(n: u16, what: &str) -> Result<(), String> {
    if n == 0 { Err(format!("{what}: port 0 (1–65535)")) } else { Ok(()) }
}

/// A Gateway API duration: `1h`, `30s`, `500ms`, combinations (`1m30s`).
fn duration(text: &str) -> bool {
    let mut digits = false;
    let mut rest = text;
    while !rest.is_empty() {
        let n = rest.chars().take_while(char::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &rest[n..];
        let unit = ["ms", "h", "m", "s"].into_iter().find(|u| rest.starts_with(u));
        let Some(u) = unit else { return false };
        rest = &rest[u.len()..];
        digits = true;
    }
    digits
}

/// Checks a manifest of one of the three kinds; `None` for other kinds.
pub(crate) fn check(api: &str, kind: &str, doc: &Value) -> Option<Result<(), String>> {
    Some(match (api, kind) {
        ("inference.networking.k8s.io/v1", "InferencePool") => {
            parse::<InferencePoolSpec>(doc, kind).and_then(|spec| {
                if spec.selector.match_labels.is_empty() {
                    return Err("InferencePool: spec.selector.matchLabels is empty (it selects the engine pods)".into());
                }
                if spec.target_ports.is_empty() || spec.target_ports.len() > 8 {
                    return Err("InferencePool: spec.targetPorts needs 1 to 8 ports".into());
                }
                for p in &spec.target_ports {
                    port(p.number, "InferencePool spec.targetPorts")?;
                }
                if let Some(r) = &spec.endpoint_picker_ref {
                    let _ = &r.failure_mode;
                    if r.name.is_empty() {
                        return Err("InferencePool: spec.endpointPickerRef.name is empty".into());
                    }
                    let service = r.kind.as_deref().is_none_or(|k| k == "Service");
                    match &r.port {
                        None if service => {
                            return Err("InferencePool: spec.endpointPickerRef.port is required when its kind is Service".into());
                        }
                        Some(p) => port(p.number, "InferencePool spec.endpointPickerRef.port")?,
                        None => {}
                    }
                }
                Ok(())
            })
        }
        ("gateway.networking.k8s.io/v1", "Gateway") => parse::<GatewaySpec>(doc, kind).and_then(|spec| {
            if spec.gateway_class_name.is_empty() {
                return Err("Gateway: spec.gatewayClassName is empty".into());
            }
            if spec.listeners.is_empty() {
                return Err("Gateway: spec.listeners is empty".into());
            }
            for l in &spec.listeners {
                if !["HTTP", "HTTPS", "TLS", "TCP", "UDP"].contains(&l.protocol.as_str()) {
                    return Err(format!("Gateway listener {}: protocol `{}` (HTTP, HTTPS, TLS, TCP, UDP)", l.name, l.protocol));
                }
                port(l.port, &format!("Gateway listener {}", l.name))?;
            }
            Ok(())
        }),
        ("gateway.networking.k8s.io/v1", "HTTPRoute") => parse::<HttpRouteSpec>(doc, kind).and_then(|spec| {
            if spec.parent_refs.is_empty() {
                return Err("HTTPRoute: spec.parentRefs is empty (it names the Gateway)".into());
            }
            for r in spec.parent_refs.iter().chain(spec.rules.iter().flat_map(|r| r.backend_refs.iter())) {
                if r.name.is_empty() {
                    return Err(format!("HTTPRoute: a reference of kind {} without a name", r.kind.as_deref().unwrap_or("?")));
                }
            }
            for t in spec.rules.iter().filter_map(|r| r.timeouts.as_ref()) {
                for d in [&t.request, &t.backend_request].into_iter().flatten() {
                    if !duration(d) {
                        return Err(format!("HTTPRoute: timeout `{d}` is not a duration such as 300s or 1m30s"));
                    }
                }
            }
            Ok(())
        }),
        _ => return None,
    })
}

/// `Ok` when every wanted condition is True in every condition list the object's status has;
/// else what is still missing, with the conditions' reasons and messages.
pub(crate) fn conditions_met(obj: &Value, types: &[String]) -> Result<(), String> {
    let mut lists: Vec<(String, &Vec<Value>)> = Vec::new();
    if let Some(l) = obj.pointer("/status/conditions").and_then(Value::as_array) {
        lists.push((String::new(), l));
    }
    for p in obj.pointer("/status/parents").and_then(Value::as_array).into_iter().flatten() {
        let parent = p.pointer("/parentRef/name").and_then(Value::as_str).unwrap_or("?");
        if let Some(l) = p.get("conditions").and_then(Value::as_array) {
            lists.push((format!(" for parent {parent}"), l));
        }
    }
    if lists.is_empty() {
        return Err("no status conditions yet (is a controller for it running?)".into());
    }
    let mut missing = Vec::new();
    for (whose, list) in &lists {
        for t in types {
            let found = list.iter().find(|c| c.get("type").and_then(Value::as_str) == Some(t.as_str()));
            let text = |c: &Value, k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            match found {
                Some(c) if text(c, "status") == "True" => {}
                Some(c) => missing.push(format!(
                    "{t}{whose} is {} ({}: {})",
                    text(c, "status"),
                    text(c, "reason"),
                    text(c, "message")
                )),
                None => missing.push(format!("{t}{whose} not reported")),
            }
        }
    }
    if missing.is_empty() { Ok(()) } else { Err(missing.join("; ")) }
}

/// A wanted condition the object's controller has answered `False` with a reason other than
/// `Pending` (it refuses, rather than has not got to it yet): what it says, else `None`.
pub(crate) fn refused(obj: &Value, types: &[String]) -> Option<String> {
    let top = obj.pointer("/status/conditions").and_then(Value::as_array).into_iter().flatten();
    let parents = obj
        .pointer("/status/parents")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|p| p.get("conditions").and_then(Value::as_array).into_iter().flatten());
    let text = |c: &Value, k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    top.chain(parents)
        .find(|c| {
            types.contains(&text(c, "type")) && text(c, "status") == "False" && text(c, "reason") != "Pending"
        })
        .map(|c| format!("{} is False ({}: {})", text(c, "type"), text(c, "reason"), text(c, "message")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pool(spec: Value) -> Value {
        json!({"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool", "metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn pools_routes_and_gateways_are_checked_against_the_fields_benchflow_sets() {
        let good = json!({"selector": {"matchLabels": {"a": "b"}}, "targetPorts": [{"number": 8000}],
                          "endpointPickerRef": {"name": "epp", "port": {"number": 9002}, "failureMode": "FailOpen"}});
        assert_eq!(
            check("inference.networking.k8s.io/v1", "InferencePool", &pool(good.clone())),
            Some(Ok(()))
        );
        let mut typo = good.clone();
        typo["targetPortNumber"] = json!(8000);
        let e = check("inference.networking.k8s.io/v1", "InferencePool", &pool(typo)).unwrap().unwrap_err();
        assert!(e.contains("targetPortNumber"), "{e}");
        let mut no_port = good.clone();
        no_port["endpointPickerRef"] = json!({"name": "epp"});
        let e =
            check("inference.networking.k8s.io/v1", "InferencePool", &pool(no_port)).unwrap().unwrap_err();
        assert!(e.contains("port is required"), "{e}");
        let mut bad_mode = good;
        bad_mode["endpointPickerRef"]["failureMode"] = json!("Open");
        assert!(check("inference.networking.k8s.io/v1", "InferencePool", &pool(bad_mode)).unwrap().is_err());
        let route = |timeout: &str| {
            json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "r"},
                   "spec": {"parentRefs": [{"name": "g"}], "rules": [{"backendRefs": [{"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "p"}], "timeouts": {"request": timeout}}]}})
        };
        assert_eq!(check("gateway.networking.k8s.io/v1", "HTTPRoute", &route("1m30s")), Some(Ok(())));
        assert!(check("gateway.networking.k8s.io/v1", "HTTPRoute", &route("300")).unwrap().is_err());
        let gateway = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "g"},
                             "spec": {"gatewayClassName": "istio", "listeners": [{"name": "http", "protocol": "http", "port": 80}]}});
        let e = check("gateway.networking.k8s.io/v1", "Gateway", &gateway).unwrap().unwrap_err();
        assert!(e.contains("protocol `http`"), "{e}");
        assert_eq!(check("v1", "Service", &gateway), None);
    }
}
