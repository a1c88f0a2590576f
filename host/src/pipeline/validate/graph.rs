//! The DAG's shape: cycles, reported as a path.

use std::collections::HashMap;

use super::PlannedTask;

/// A dependency cycle, as the path `[a, …, a]`, if there is one. Depth-first
/// with an explicit stack, so a chain of 100,000 tasks needs no deep
/// recursion.
pub fn find_cycle(tasks: &[PlannedTask]) -> Option<Vec<String>> {
    let index: HashMap<&str, usize> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.spec.name.as_str(), i))
        .collect();
    let deps: Vec<Vec<usize>> = tasks
        .iter()
        .map(|t| {
            t.deps
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect()
        })
        .collect();
    // 0 = unvisited, 1 = on the path, 2 = done
    let mut state = vec![0u8; tasks.len()];
    for root in 0..tasks.len() {
        if state[root] != 0 {
            continue;
        }
        // The current path, each node with the next dependency to look at.
        let mut path: Vec<(usize, usize)> = vec![(root, 0)];
        state[root] = 1;
        while let Some((node, next)) = path.last_mut() {
            let node = *node;
            let Some(&dep) = deps[node].get(*next) else {
                state[node] = 2;
                path.pop();
                continue;
            };
            *next += 1;
            match state[dep] {
                1 => {
                    let start = path.iter().position(|(n, _)| *n == dep).unwrap_or(0);
                    let name = |i: usize| tasks[i].spec.name.clone();
                    let mut cycle = vec![name(dep)];
                    cycle.extend(path[start..].iter().rev().map(|(n, _)| name(*n)));
                    return Some(cycle);
                }
                0 => {
                    state[dep] = 1;
                    path.push((dep, 0));
                }
                _ => {}
            }
        }
    }
    None
}
