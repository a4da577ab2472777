//! Policy rules and how they match a request, as `k8s.io/kubernetes/pkg/apis/rbac/v1`
//! (evaluation helpers) and `component-helpers/auth/rbac/validation` (coverage) define them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::auth::Attributes;

/// `*` in verbs, apiGroups, resources and nonResourceURLs.
const ALL: &str = "*";

/// One `rbac.authorization.k8s.io/v1` PolicyRule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PolicyRule {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verbs: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    #[serde(rename = "nonResourceURLs", skip_serializing_if = "Vec::is_empty")]
    pub non_resource_urls: Vec<String>,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_string()).collect()
}

impl PolicyRule {
    /// A resource rule: `verbs` on `resources` of `api_groups`.
    pub fn resource(verbs: &[&str], api_groups: &[&str], resources: &[&str]) -> Self {
        Self {
            verbs: strings(verbs),
            api_groups: strings(api_groups),
            resources: strings(resources),
            ..Self::default()
        }
    }

    /// A non-resource rule: `verbs` on `urls`.
    pub fn urls(verbs: &[&str], urls: &[&str]) -> Self {
        Self {
            verbs: strings(verbs),
            non_resource_urls: strings(urls),
            ..Self::default()
        }
    }

    /// Restricts the rule to objects with these names.
    pub fn names(mut self, names: &[&str]) -> Self {
        self.resource_names = strings(names);
        self
    }

    /// The rules of a role or ClusterRole object (`rules`; malformed rules are skipped).
    pub fn from_object(object: &serde_json::Value) -> Vec<PolicyRule> {
        object
            .get("rules")
            .and_then(serde_json::Value::as_array)
            .map(|rules| {
                rules
                    .iter()
                    .filter_map(|rule| serde_json::from_value(rule.clone()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether this rule allows the request (kube-apiserver's `RuleAllows`).
    pub fn allows(&self, attributes: &Attributes) -> bool {
        if !self.verb_matches(&attributes.verb) {
            return false;
        }
        if !attributes.resource_request {
            return self.url_matches(&attributes.path);
        }
        self.group_matches(&attributes.api_group)
            && self.resource_matches(&attributes.resource, &attributes.subresource)
            && self.name_matches(&attributes.name)
    }

    fn verb_matches(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == ALL || v == verb)
    }

    fn group_matches(&self, group: &str) -> bool {
        self.api_groups.iter().any(|g| g == ALL || g == group)
    }

    fn resource_matches(&self, resource: &str, subresource: &str) -> bool {
        self.resources.iter().any(|rule| {
            if rule == ALL {
                return true;
            }
            if subresource.is_empty() {
                return rule == resource;
            }
            // why: `resource/subresource` exactly, or `*/subresource` for any resource.
            match rule.split_once('/') {
                Some((rule_resource, rule_sub)) => {
                    rule_sub == subresource && (rule_resource == resource || rule_resource == ALL)
                }
                None => false,
            }
        })
    }

    fn name_matches(&self, name: &str) -> bool {
        self.resource_names.is_empty() || self.resource_names.iter().any(|n| n == name)
    }

    fn url_matches(&self, path: &str) -> bool {
        self.non_resource_urls
            .iter()
            .any(|url| url_covers(url, path))
    }

    /// One rule per (group, resource, verb, name) and per (url, verb): the atoms coverage is
    /// checked on (`BreakdownRule`).
    pub fn breakdown(&self) -> Vec<PolicyRule> {
        let mut atoms = Vec::new();
        for group in &self.api_groups {
            for resource in &self.resources {
                for verb in &self.verbs {
                    let atom = PolicyRule::resource(&[verb], &[group], &[resource]);
                    if self.resource_names.is_empty() {
                        atoms.push(atom);
                    } else {
                        atoms.extend(
                            self.resource_names
                                .iter()
                                .map(|name| atom.clone().names(&[name])),
                        );
                    }
                }
            }
        }
        for url in &self.non_resource_urls {
            for verb in &self.verbs {
                atoms.push(PolicyRule::urls(&[verb], &[url]));
            }
        }
        atoms
    }

    /// Whether this rule grants everything `atom` (one of [`PolicyRule::breakdown`]) grants.
    pub fn covers(&self, atom: &PolicyRule) -> bool {
        let has_all = |set: &[String], wanted: &[String]| {
            set.iter().any(|s| s == ALL) || wanted.iter().all(|w| set.contains(w))
        };
        let resources_covered = self.resources.iter().any(|r| r == ALL)
            || atom.resources.iter().all(|wanted| {
                self.resources.contains(wanted)
                    || wanted.split_once('/').is_some_and(|(_, sub)| {
                        self.resources.iter().any(|r| *r == format!("*/{sub}"))
                    })
            });
        let urls_covered = atom.non_resource_urls.iter().all(|wanted| {
            self.non_resource_urls
                .iter()
                .any(|url| url_covers(url, wanted))
        });
        let names_covered = self.resource_names.is_empty()
            || (!atom.resource_names.is_empty()
                && atom
                    .resource_names
                    .iter()
                    .all(|n| self.resource_names.contains(n)));
        has_all(&self.verbs, &atom.verbs)
            && has_all(&self.api_groups, &atom.api_groups)
            && resources_covered
            && urls_covered
            && names_covered
    }
}

/// `owner` is the path itself or a `prefix*` of it.
fn url_covers(owner: &str, path: &str) -> bool {
    owner == path
        || owner
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix.trim_end_matches('*')))
}

/// The rules among `wanted` that `owned` does not cover, broken down to atoms and compacted as
/// kube-apiserver lists them in escalation errors.
pub fn uncovered(owned: &[PolicyRule], wanted: &[PolicyRule]) -> Vec<PolicyRule> {
    let missing: Vec<PolicyRule> = wanted
        .iter()
        .flat_map(PolicyRule::breakdown)
        .filter(|atom| !owned.iter().any(|rule| rule.covers(atom)))
        .collect();
    compact(missing)
}

/// Merges atoms that differ only in their verbs (`CompactRules`).
fn compact(atoms: Vec<PolicyRule>) -> Vec<PolicyRule> {
    let mut compacted: Vec<PolicyRule> = Vec::new();
    for atom in atoms {
        let simple = atom.non_resource_urls.is_empty()
            && atom.resource_names.len() <= 1
            && atom.api_groups.len() == 1
            && atom.resources.len() == 1;
        let same_target = compacted.iter_mut().find(|rule| {
            simple
                && rule.non_resource_urls.is_empty()
                && rule.api_groups == atom.api_groups
                && rule.resources == atom.resources
                && rule.resource_names == atom.resource_names
        });
        match same_target {
            Some(rule) => rule.verbs.extend(atom.verbs),
            None => compacted.push(atom),
        }
    }
    compacted
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
pub fn go_quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| format!("{item:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

/// `CompactString`: `{APIGroups:["apps"], Resources:["deployments"], Verbs:["get"]}`.
impl fmt::Display for PolicyRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = [
            ("APIGroups", &self.api_groups),
            ("Resources", &self.resources),
            ("NonResourceURLs", &self.non_resource_urls),
            ("ResourceNames", &self.resource_names),
            ("Verbs", &self.verbs),
        ]
        .into_iter()
        .filter(|(_, items)| !items.is_empty())
        .map(|(label, items)| format!("{label}:{}", go_quoted_list(items)))
        .collect();
        write!(f, "{{{}}}", parts.join(", "))
    }
}
