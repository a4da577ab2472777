//! How built-in kinds' lists merge: the `patchStrategy`/`patchMergeKey` tags of the Kubernetes Go
//! types, shared by strategic merge patch and server-side apply.

/// How a list field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// Items are objects identified by these keys (`patchMergeKey`, `listMapKeys`).
    Map(&'static [&'static str]),
    /// Items are scalars merged as a set (`finalizers`).
    Set,
    /// The list is replaced as a whole.
    Atomic,
}

/// The strategy of the list at `path` (field names from the object root, no indices) of `kind`.
pub fn builtin_list_strategy(kind: &str, path: &[&str]) -> ListStrategy {
    let Some((field, parents)) = path.split_last() else {
        return ListStrategy::Atomic;
    };
    match *field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates" => ListStrategy::Map(&["name"]),
        "volumeMounts" => ListStrategy::Map(&["mountPath"]),
        "volumeDevices" => ListStrategy::Map(&["devicePath"]),
        "hostAliases" => ListStrategy::Map(&["ip"]),
        "topologySpreadConstraints" => ListStrategy::Map(&["topologyKey", "whenUnsatisfiable"]),
        "ownerReferences" => ListStrategy::Map(&["uid"]),
        "conditions" => ListStrategy::Map(&["type"]),
        "finalizers" => ListStrategy::Set,
        // why: a Service's ports are keyed by `port`; everywhere else (containers) by `containerPort`.
        "ports" if kind == "Service" && parents == ["spec"] => ListStrategy::Map(&["port"]),
        "ports"
            if parents.last() == Some(&"containers")
                || parents.last() == Some(&"initContainers")
                || parents.last() == Some(&"ephemeralContainers") =>
        {
            ListStrategy::Map(&["containerPort"])
        }
        _ => ListStrategy::Atomic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_keyed_by_port_on_services_and_container_port_in_containers() {
        assert_eq!(
            builtin_list_strategy("Service", &["spec", "ports"]),
            ListStrategy::Map(&["port"])
        );
        assert_eq!(
            builtin_list_strategy(
                "Deployment",
                &["spec", "template", "spec", "containers", "ports"]
            ),
            ListStrategy::Map(&["containerPort"])
        );
    }

    #[test]
    fn unknown_lists_are_atomic_and_finalizers_a_set() {
        assert_eq!(
            builtin_list_strategy("Role", &["rules"]),
            ListStrategy::Atomic
        );
        assert_eq!(
            builtin_list_strategy("Secret", &["metadata", "finalizers"]),
            ListStrategy::Set
        );
    }
}
