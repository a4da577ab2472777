//! Content negotiation of `/api` and `/apis` between the legacy documents and aggregated
//! discovery, as kube-apiserver's `negotiation.NegotiateMediaTypeOptions` decides it with the
//! discovery endpoint's restrictions.

/// The media types kube-apiserver's discovery serializer offers, in its order.
const OFFERED: [(&str, &str); 3] = [
    ("application", "json"),
    ("application", "yaml"),
    ("application", "vnd.kubernetes.protobuf"),
];

/// One clause of an Accept header, as goautoneg parses it.
struct Clause<'a> {
    kind: &'a str,
    subtype: &'a str,
    q: f64,
    params: Vec<(&'a str, &'a str)>,
}

fn parse(header: &str) -> Vec<Clause<'_>> {
    let mut clauses: Vec<Clause<'_>> = header
        .split(',')
        .filter_map(|part| {
            let mut pieces = part.trim().split(';');
            let range = pieces.next().unwrap_or_default();
            let (kind, subtype) = match range.split_once('/') {
                Some((kind, subtype)) if !subtype.contains('/') => (kind.trim(), subtype.trim()),
                None if range.trim() == "*" => ("*", "*"),
                _ => return None,
            };
            let mut clause = Clause {
                kind,
                subtype,
                q: 1.0,
                params: Vec::new(),
            };
            for param in pieces {
                let Some((key, value)) = param.split_once('=') else {
                    continue;
                };
                match key.trim() {
                    // why: goautoneg reads an unparsable q as 0.
                    "q" => clause.q = value.trim().parse().unwrap_or(0.0),
                    key => clause.params.push((key, value.trim())),
                }
            }
            Some(clause)
        })
        .collect();
    // why: goautoneg orders by q, then concrete types before wildcards; equal clauses keep
    // the client's order.
    clauses.sort_by(|a, b| {
        b.q.total_cmp(&a.q)
            .then((a.kind == "*").cmp(&(b.kind == "*")))
            .then((a.subtype == "*").cmp(&(b.subtype == "*")))
    });
    clauses
}

/// What one acceptable clause asks the discovery endpoint for.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Legacy,
    Aggregated,
}

/// The clause's parameters under the discovery endpoint's restrictions; `None` when they rule
/// the clause out (an unknown conversion target, a server version, a stream other than watch).
fn accept_params(params: &[(&str, &str)]) -> Option<Outcome> {
    let (mut group, mut version, mut kind) = (None, None, None);
    for &(key, value) in params {
        match key {
            "g" => group = Some(value),
            "v" => version = Some(value),
            "as" => kind = Some(value),
            "sv" if !value.is_empty() => return None,
            "stream" if !value.is_empty() && value != "watch" => return None,
            _ => {}
        }
    }
    if group.is_none() && version.is_none() && kind.is_none() {
        return Some(Outcome::Legacy);
    }
    let aggregated = group == Some("apidiscovery.k8s.io")
        && version == Some("v2")
        && kind == Some("APIGroupDiscoveryList");
    aggregated.then_some(Outcome::Aggregated)
}

/// Whether an `Accept` header gets the aggregated discovery document (`APIGroupDiscoveryList`
/// v2) rather than the legacy `APIVersions`/`APIGroupList`.
pub fn wants_aggregated(accept: &str) -> bool {
    if accept.trim().is_empty() {
        return false;
    }
    parse(accept)
        .iter()
        .flat_map(|clause| {
            OFFERED
                .iter()
                .filter(move |(kind, subtype)| {
                    (clause.kind == *kind && (clause.subtype == *subtype || clause.subtype == "*"))
                        || (clause.kind == "*" && clause.subtype == "*")
                })
                .map(move |_| clause)
        })
        .find_map(|clause| accept_params(&clause.params))
        == Some(Outcome::Aggregated)
}

#[cfg(test)]
mod tests {
    use super::wants_aggregated;

    #[test]
    fn client_go_accept_header_gets_aggregated_discovery() {
        assert!(wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
        ));
    }

    #[test]
    fn plain_json_and_empty_accept_get_legacy_discovery() {
        assert!(!wants_aggregated("application/json"));
        assert!(!wants_aggregated(""));
        assert!(!wants_aggregated("*/*"));
    }

    #[test]
    fn unknown_conversion_falls_through_to_the_next_clause() {
        assert!(!wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
        ));
        assert!(wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        ));
    }

    #[test]
    fn higher_quality_clause_wins() {
        assert!(!wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;q=0.5,application/json"
        ));
        assert!(wants_aggregated(
            "application/json;q=0.9,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        ));
    }

    #[test]
    fn unsupported_media_types_are_skipped() {
        assert!(wants_aggregated(
            "text/html,application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        ));
        assert!(!wants_aggregated(
            "text/html;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        ));
    }
}
