//! The DAG's shape: cycles, reported as a path.

use std::collections::{BTreeSet, HashMap};

use super::PlannedTask;

pub fn find_cycle(tasks: &[PlannedTask]) -> Option<Vec<String>> {
    let deps: HashMap<&str, &BTreeSet<String>> = tasks
        .iter()
        .map(|t| (t.spec.name.as_str(), &t.deps))
        .collect();
    // 0 = unvisited, 1 = on stack, 2 = done
    let mut state: HashMap<&str, u8> = HashMap::new();
    fn visit<'a>(
        n: &'a str,
        deps: &HashMap<&'a str, &'a BTreeSet<String>>,
        state: &mut HashMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        state.insert(n, 1);
        stack.push(n);
        for dep in deps.get(n).into_iter().flat_map(|s| s.iter()) {
            match state.get(dep.as_str()) {
                Some(1) => {
                    let start = stack.iter().position(|s| s == dep).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        stack[start..].iter().rev().map(|s| s.to_string()).collect();
                    cycle.insert(0, dep.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    let key = deps.get_key_value(dep.as_str()).map(|(k, _)| *k)?;
                    if let Some(c) = visit(key, deps, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(n, 2);
        None
    }
    for t in tasks {
        if !state.contains_key(t.spec.name.as_str())
            && let Some(c) = visit(&t.spec.name, &deps, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}
