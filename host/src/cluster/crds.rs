//! Every custom resource of Kubernetes mode as one multi-document YAML:
//! what `capstan crds` prints and `deploy/crds.yaml` holds.

/// The CRDs, each a YAML document.
pub fn crds_yaml() -> String {
    use kube::CustomResourceExt as _;
    let mut out = String::new();
    for crd in [
        super::crd::PipelineResource::crd(),
        super::crd::PipelineRunResource::crd(),
        super::repository::RepositoryResource::crd(),
    ] {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd).expect("CRDs serialize"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crds_have_the_names_columns_and_status_subresource() {
        let y = crds_yaml();
        for want in [
            "name: pipelines.capstan.dev",
            "name: pipelineruns.capstan.dev",
            "name: repositories.capstan.dev",
            "jsonPath: .status.lastRun.id",
            "status: {}",
            "jsonPath: .status.phase",
            "jsonPath: .status.startTime",
            "jsonPath: .status.duration",
            "x-kubernetes-preserve-unknown-fields: true",
        ] {
            assert!(y.contains(want), "missing `{want}` in:\n{y}");
        }
    }

    #[test]
    fn deploy_crds_yaml_is_what_capstan_crds_prints() {
        let file = include_str!("../../../deploy/crds.yaml");
        assert!(
            file == crds_yaml(),
            "deploy/crds.yaml is stale: regenerate it with `capstan crds > deploy/crds.yaml`"
        );
    }
}
