//! A run's DAG drawn as SVG, laid out here (no crate draws a layered graph
//! as plain SVG without inline styles, which the UI's CSP forbids):
//!
//! - **Layers**: a task sits one layer right of its deepest dependency
//!   (`runAfter` and result references, as recorded with the run); `finally`
//!   tasks get a last layer of their own, set apart by a dashed line.
//! - **Order**: file order first, then four sweeps that sort each layer by
//!   the mean position of its neighbours in the layer before (forward
//!   sweeps) or after (backward sweeps) — the barycenter heuristic, which
//!   removes most crossings at O(edges) per sweep.
//! - **Matrix children** stay side by side in a dashed box named after
//!   their matrix task.
//!
//! Each node is a link to the task's row, with its name and status in a
//! `<title>`; colour comes from the `st-STATUS` class, and the status is
//! also written in the table beside the graph.

use std::collections::HashMap;

use maud::{Markup, html};

use crate::store::TaskRecord;

pub const NODE_W: i64 = 176;
pub const NODE_H: i64 = 34;
const GAP_X: i64 = 56;
const GAP_Y: i64 = 22;
const PAD: i64 = 16;

/// Where each task is drawn: its layer (column) and row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Per task (in the input's order): (layer, row).
    pub at: Vec<(usize, usize)>,
    pub layers: usize,
    /// The first layer of `finally` tasks (== `layers` when none).
    pub finally_layer: usize,
    /// Each task's dependencies by index ([`edges`]).
    pub deps: Vec<Vec<usize>>,
}

/// Each task's dependencies by index: a dependency on a matrix task is one
/// on each of its children.
pub fn edges(tasks: &[TaskRecord]) -> Vec<Vec<usize>> {
    let mut index: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, t) in tasks.iter().enumerate() {
        index.entry(t.name.as_str()).or_default().push(i);
        if let Some(m) = &t.matrix_of {
            index.entry(m.as_str()).or_default().push(i);
        }
    }
    tasks
        .iter()
        .map(|t| {
            let mut ds: Vec<usize> = t
                .deps
                .iter()
                .flat_map(|d| index.get(d.as_str()).into_iter().flatten().copied())
                .filter(|&d| !tasks[d].finally || t.finally)
                .collect();
            ds.sort_unstable();
            ds.dedup();
            ds
        })
        .collect()
}

/// Lay out `tasks` (main then finally, file order).
pub fn layout(tasks: &[TaskRecord]) -> Layout {
    let deps = edges(tasks);
    // Layers of the main tasks, in dependency order (Kahn); anything in a
    // cycle (validation forbids them) stays in layer 0.
    let n = tasks.len();
    let mut layer = vec![0usize; n];
    let mut pending: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (t, ds) in deps.iter().enumerate() {
        for &d in ds {
            users[d].push(t);
        }
    }
    let mut ready: Vec<usize> = (0..n).filter(|&t| pending[t] == 0).collect();
    while let Some(t) = ready.pop() {
        for &u in &users[t] {
            layer[u] = layer[u].max(layer[t] + 1);
            pending[u] -= 1;
            if pending[u] == 0 {
                ready.push(u);
            }
        }
    }
    let main_layers = (0..n)
        .filter(|&t| !tasks[t].finally)
        .map(|t| layer[t] + 1)
        .max()
        .unwrap_or(0);
    for t in 0..n {
        if tasks[t].finally {
            layer[t] += main_layers;
        }
    }
    let layers = layer.iter().map(|l| l + 1).max().unwrap_or(0);
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); layers];
    for t in 0..n {
        rows[layer[t]].push(t);
    }
    order(&mut rows, &deps, &users);
    let mut at = vec![(0, 0); n];
    for (l, row) in rows.iter().enumerate() {
        for (r, &t) in row.iter().enumerate() {
            at[t] = (l, r);
        }
    }
    Layout {
        at,
        layers,
        finally_layer: main_layers,
        deps,
    }
}

/// Barycenter sweeps: forward by dependencies, backward by dependents.
fn order(rows: &mut [Vec<usize>], deps: &[Vec<usize>], users: &[Vec<usize>]) {
    let mut pos = vec![0f64; deps.len()];
    let set = |rows: &[Vec<usize>], pos: &mut Vec<f64>| {
        for row in rows {
            for (r, &t) in row.iter().enumerate() {
                pos[t] = r as f64;
            }
        }
    };
    set(rows, &mut pos);
    for sweep in 0..4 {
        let forward = sweep % 2 == 0;
        let layers: Vec<usize> = if forward {
            (1..rows.len()).collect()
        } else {
            (0..rows.len().saturating_sub(1)).rev().collect()
        };
        for l in layers {
            let key = |t: usize| {
                let near = if forward { &deps[t] } else { &users[t] };
                if near.is_empty() {
                    pos[t]
                } else {
                    near.iter().map(|&d| pos[d]).sum::<f64>() / near.len() as f64
                }
            };
            let mut keyed: Vec<(f64, usize)> = rows[l].iter().map(|&t| (key(t), t)).collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
            rows[l] = keyed.into_iter().map(|(_, t)| t).collect();
            for (r, &t) in rows[l].iter().enumerate() {
                pos[t] = r as f64;
            }
        }
    }
}

fn x_of(layer: usize) -> i64 {
    PAD + layer as i64 * (NODE_W + GAP_X)
}

fn y_of(row: usize) -> i64 {
    PAD + 18 + row as i64 * (NODE_H + GAP_Y)
}

/// A name cut to fit a node.
fn label(name: &str) -> String {
    if name.chars().count() <= 22 {
        name.to_string()
    } else {
        name.chars().take(21).chain(['…']).collect()
    }
}

/// The DAG of `tasks` as an `<svg>` element.
pub fn svg(tasks: &[TaskRecord]) -> Markup {
    let lay = layout(tasks);
    let most_rows = lay.at.iter().map(|a| a.1 + 1).max().unwrap_or(1);
    let width = x_of(lay.layers) - GAP_X + PAD;
    let height = y_of(most_rows) - GAP_Y + PAD;
    // Matrix groups: the span of rows their children take in each layer.
    let mut groups: HashMap<(&str, usize), (usize, usize)> = HashMap::new();
    for (t, task) in tasks.iter().enumerate() {
        if let Some(m) = &task.matrix_of {
            let (l, r) = lay.at[t];
            let span = groups.entry((m.as_str(), l)).or_insert((r, r));
            span.0 = span.0.min(r);
            span.1 = span.1.max(r);
        }
    }
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort();
    html! {
        svg.dag xmlns="http://www.w3.org/2000/svg" role="img"
            aria-label={ "Task graph: " (tasks.len()) " tasks" }
            width=(width) height=(height) viewBox={ "0 0 " (width) " " (height) } {
            @if lay.finally_layer < lay.layers {
                @let x = x_of(lay.finally_layer) - GAP_X / 2;
                line.finally-rule x1=(x) y1="4" x2=(x) y2=(height - 4) {}
                text.finally-label x=(x + 8) y=(PAD + 4) { "finally" }
            }
            @for ((name, l), (r0, r1)) in &groups {
                rect.matrix x=(x_of(*l) - 6) y=(y_of(*r0) - 14)
                    width=(NODE_W + 12) height=(y_of(*r1) - y_of(*r0) + NODE_H + 20) rx="6" {}
                text.matrix-label x=(x_of(*l) - 2) y=(y_of(*r0) - 3) { "matrix " (label(name)) }
            }
            g.edges {
                @for (t, ds) in lay.deps.iter().enumerate() {
                    @for d in ds {
                        @let (dl, dr) = lay.at[*d];
                        @let (tl, tr) = lay.at[t];
                        @let (x1, y1) = (x_of(dl) + NODE_W, y_of(dr) + NODE_H / 2);
                        @let (x2, y2) = (x_of(tl), y_of(tr) + NODE_H / 2);
                        @let mx = (x1 + x2) / 2;
                        path d={ "M" (x1) "," (y1) " C" (mx) "," (y1) " " (mx) "," (y2) " " (x2) "," (y2) } {}
                    }
                }
            }
            @for (t, task) in tasks.iter().enumerate() {
                @let (l, r) = lay.at[t];
                @let status = task.status.as_str();
                a href={ "#task-" (task.name) } {
                    g class={ "node st-" (status) } data-task=(task.name)
                        transform={ "translate(" (x_of(l)) "," (y_of(r)) ")" } {
                        title { (task.name) ": " (status) }
                        rect width=(NODE_W) height=(NODE_H) rx="6" {}
                        circle.dot cx="14" cy=(NODE_H / 2) r="5" {}
                        text x="26" y=(NODE_H / 2 + 4) { (label(&task.name)) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TaskStatus;

    fn task(name: &str, deps: &[&str], finally: bool, matrix_of: Option<&str>) -> TaskRecord {
        TaskRecord {
            name: name.into(),
            finally,
            status: TaskStatus::Pending,
            attempts: 0,
            started_at: None,
            finished_at: None,
            message: None,
            results: Default::default(),
            skip_reason: None,
            reused_from: None,
            deps: deps.iter().map(|d| d.to_string()).collect(),
            matrix_of: matrix_of.map(String::from),
        }
    }

    #[test]
    fn layers_follow_the_deepest_dependency_and_finally_comes_last() {
        let tasks = [
            task("clone", &[], false, None),
            task("lint", &["clone"], false, None),
            task("test", &["clone"], false, None),
            task("build", &["lint", "test"], false, None),
            task("notify", &[], true, None),
        ];
        let l = layout(&tasks);
        let layers: Vec<usize> = l.at.iter().map(|a| a.0).collect();
        assert_eq!(layers, [0, 1, 1, 2, 3]);
        assert_eq!((l.layers, l.finally_layer), (4, 3));
        let svg = svg(&tasks).into_string();
        assert_eq!(svg.matches("<path").count(), 4, "{svg}");
        assert!(svg.contains("finally"), "{svg}");
        assert!(!svg.contains("style"), "inline styles break the CSP: {svg}");
    }

    #[test]
    fn barycenter_sweeps_uncross_a_crossed_pair() {
        // a→d and b→c: file order puts c above d, crossing the edges.
        let tasks = [
            task("a", &[], false, None),
            task("b", &[], false, None),
            task("c", &["b"], false, None),
            task("d", &["a"], false, None),
        ];
        let l = layout(&tasks);
        let row = |t: usize| l.at[t].1;
        assert_eq!(row(0) < row(1), row(3) < row(2), "{:?}", l.at);
    }

    #[test]
    fn matrix_children_are_boxed_together_and_a_thousand_tasks_lay_out() {
        let mut tasks = vec![task("clone", &[], false, None)];
        for i in 0..3 {
            tasks.push(task(
                &format!("build-{i}"),
                &["clone"],
                false,
                Some("build"),
            ));
        }
        tasks.push(task("other", &["clone"], false, None));
        let svg = svg(&tasks).into_string();
        assert_eq!(svg.matches("class=\"matrix\"").count(), 1, "{svg}");
        assert!(svg.contains("matrix build"));
        let big: Vec<TaskRecord> = (0..1000)
            .map(|i| {
                let deps: Vec<String> = if i < 10 {
                    vec![]
                } else {
                    vec![format!("t{}", i / 10)]
                };
                let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
                task(&format!("t{i}"), &deps, false, None)
            })
            .collect();
        let l = layout(&big);
        assert!(l.layers >= 3);
        assert_eq!(
            super::svg(&big)
                .into_string()
                .matches("<g class=\"node")
                .count(),
            1000
        );
    }
}
