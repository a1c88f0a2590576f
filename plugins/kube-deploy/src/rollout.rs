//! The plugin's logic, native-testable: which API resource a manifest's
//! kind maps to, the image patch, and when a Deployment's rollout is done.

use serde_json::{Value, json};

/// Where an object goes in the API: (group, version, plural resource).
pub fn resource_of(api_version: &str, kind: &str) -> Result<(String, String, String), String> {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), api_version.to_string()),
    };
    // No discovery (the task may only reach what it was granted): the
    // kinds a deploy step applies, by name.
    let plural = match (group.as_str(), kind) {
        ("", "ConfigMap") => "configmaps",
        ("", "Secret") => "secrets",
        ("", "Service") => "services",
        ("", "ServiceAccount") => "serviceaccounts",
        ("", "PersistentVolumeClaim") => "persistentvolumeclaims",
        ("apps", "Deployment") => "deployments",
        ("apps", "StatefulSet") => "statefulsets",
        ("apps", "DaemonSet") => "daemonsets",
        ("batch", "Job") => "jobs",
        ("batch", "CronJob") => "cronjobs",
        ("networking.k8s.io", "Ingress") => "ingresses",
        ("autoscaling", "HorizontalPodAutoscaler") => "horizontalpodautoscalers",
        ("policy", "PodDisruptionBudget") => "poddisruptionbudgets",
        _ => {
            return Err(format!(
                "kind `{kind}` in `{api_version}` is not one kube-deploy applies \
                 (namespaced workload, config and network kinds only)"
            ));
        }
    };
    Ok((group, version, plural.to_string()))
}

/// Every object in a manifest file (YAML, multi-document, or JSON).
pub fn objects(file: &str, text: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let v: Value = serde::Deserialize::deserialize(doc)
            .map_err(|e| format!("{file}: document {}: {e}", i + 1))?;
        if v.is_null() {
            continue;
        }
        for field in ["apiVersion", "kind"] {
            if !v[field].is_string() {
                return Err(format!("{file}: document {}: no `{field}`", i + 1));
            }
        }
        if !v["metadata"]["name"].is_string() {
            return Err(format!("{file}: document {}: no `metadata.name`", i + 1));
        }
        out.push(v);
    }
    Ok(out)
}

/// The strategic merge patch that sets one container's image.
pub fn image_patch(container: &str, image: &str) -> Value {
    json!({ "spec": { "template": { "spec": { "containers": [ { "name": container, "image": image } ] } } } })
}

/// Whether a Deployment's rollout is complete, as `kubectl rollout status`
/// decides: the controller saw this generation, and every replica is
/// updated and available.
pub fn rollout_done(d: &Value) -> Result<bool, String> {
    let generation = d["metadata"]["generation"].as_i64().unwrap_or(0);
    let st = &d["status"];
    let observed = st["observedGeneration"].as_i64().unwrap_or(0);
    if observed < generation {
        return Ok(false);
    }
    for c in st["conditions"].as_array().into_iter().flatten() {
        if c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded" {
            return Err(format!(
                "the rollout exceeded its progress deadline: {}",
                c["message"].as_str().unwrap_or("")
            ));
        }
    }
    let want = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let n = |f: &str| st[f].as_i64().unwrap_or(0);
    Ok(n("updatedReplicas") >= want && n("availableReplicas") >= want && n("replicas") <= want)
}

/// The Deployment's revision.
pub fn revision(d: &Value) -> String {
    d["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| {
            d["metadata"]["generation"]
                .as_i64()
                .unwrap_or(0)
                .to_string()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_resources() {
        assert_eq!(
            resource_of("apps/v1", "Deployment").unwrap(),
            ("apps".into(), "v1".into(), "deployments".into())
        );
        assert_eq!(resource_of("v1", "Service").unwrap().2, "services");
        assert!(resource_of("rbac.authorization.k8s.io/v1", "ClusterRole").is_err());
    }

    #[test]
    fn manifests_parse_with_errors_that_name_the_document() {
        let objs = objects(
            "m.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: b}\n",
        )
        .unwrap();
        assert_eq!(objs.len(), 2);
        let e = objects("m.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n").unwrap_err();
        assert!(
            e.contains("m.yaml: document 1") && e.contains("metadata.name"),
            "{e}"
        );
        assert!(objects("m.yaml", "a: [").is_err());
    }

    #[test]
    fn rollout_is_done_when_every_replica_is_updated_and_available() {
        let d = |obs: i64, upd: i64, avail: i64| {
            json!({"metadata": {"generation": 2}, "spec": {"replicas": 2},
                   "status": {"observedGeneration": obs, "replicas": 2, "updatedReplicas": upd, "availableReplicas": avail}})
        };
        assert!(!rollout_done(&d(1, 2, 2)).unwrap());
        assert!(!rollout_done(&d(2, 1, 2)).unwrap());
        assert!(!rollout_done(&d(2, 2, 1)).unwrap());
        assert!(rollout_done(&d(2, 2, 2)).unwrap());
        let stuck = json!({"metadata": {"generation": 1}, "status": {"observedGeneration": 1,
            "conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded", "message": "no"}]}});
        assert!(rollout_done(&stuck).is_err());
        assert_eq!(revision(&json!({"metadata": {"generation": 3}})), "3");
    }
}
