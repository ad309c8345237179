//! From the logical graph to what runs: each operator's parallelism, which operators are
//! chained into one task (Flink's rules), and which subtasks are connected by channels.

use crate::config::ExecutionConfig;
use crate::error::JobError;
use crate::graph::{Chaining, Edge, NodeId, NodeKind, StreamGraph};
use crate::keygroup::UPPER_BOUND_MAX_PARALLELISM;
use crate::runtime::writer::Partitioning;

/// Operators that run together in one task, one subtask per parallel instance.
#[derive(Debug, Clone)]
pub(crate) struct Vertex {
    pub head: NodeId,
    /// Members in chain order (head first).
    pub nodes: Vec<NodeId>,
    pub parallelism: usize,
    pub name: String,
}

#[derive(Debug)]
pub(crate) struct Plan {
    pub parallelism: Vec<usize>,
    pub max_parallelism: Vec<usize>,
    /// Per edge: both ends run in the same task.
    pub chained: Vec<bool>,
    /// Per edge: the partitioning that applies (implicit forwards resolved).
    pub partitioning: Vec<Partitioning>,
    pub vertices: Vec<Vertex>,
    pub vertex_of: Vec<usize>,
}

fn invalid(msg: String) -> JobError {
    JobError::InvalidGraph(msg)
}

pub(crate) fn plan(graph: &StreamGraph, config: &ExecutionConfig) -> Result<Plan, JobError> {
    if graph.nodes.is_empty() {
        return Err(invalid(
            "the job has no operators; add a source and a sink before executing".into(),
        ));
    }
    check_config(config)?;
    let n = graph.nodes.len();
    let mut parallelism = vec![0usize; n];
    let mut max_parallelism = vec![0usize; n];
    for node in &graph.nodes {
        let max_p = node.max_parallelism.unwrap_or(config.max_parallelism);
        if max_p == 0 || max_p > UPPER_BOUND_MAX_PARALLELISM {
            return Err(invalid(format!(
                "operator '{}': max parallelism {max_p} is out of range; use 1..={UPPER_BOUND_MAX_PARALLELISM}",
                node.name
            )));
        }
        let p = match (node.fixed_parallelism, node.parallelism) {
            (Some(fixed), Some(asked)) if asked != fixed => {
                return Err(invalid(format!(
                    "operator '{}' runs with parallelism {fixed} only, but parallelism {asked} was set; \
                     remove set_parallelism({asked})",
                    node.name
                )));
            }
            (Some(fixed), _) => fixed,
            (None, Some(asked)) => asked,
            (None, None) => config.parallelism,
        };
        if p == 0 {
            return Err(invalid(format!(
                "operator '{}': parallelism must be at least 1",
                node.name
            )));
        }
        if node.keyed && p > max_p {
            return Err(invalid(format!(
                "operator '{}' has parallelism {p} but only {max_p} key groups (max parallelism); \
                 raise the max parallelism or lower the parallelism",
                node.name
            )));
        }
        parallelism[node.id] = p;
        max_parallelism[node.id] = max_p;
    }

    check_inputs(graph)?;
    check_side_types(graph)?;

    let mut partitioning = Vec::with_capacity(graph.edges.len());
    for e in &graph.edges {
        let (ps, pt) = (parallelism[e.source], parallelism[e.target]);
        let p = match e.partitioning {
            Partitioning::Forward if ps != pt => {
                if e.explicit {
                    return Err(invalid(format!(
                        "forward partitioning from '{}' (parallelism {ps}) to '{}' (parallelism {pt}) \
                         needs equal parallelism; use rebalance() or rescale(), or make them equal",
                        graph.nodes[e.source].name, graph.nodes[e.target].name
                    )));
                }
                Partitioning::Rebalance
            }
            other => other,
        };
        partitioning.push(p);
    }

    let chained: Vec<bool> = graph
        .edges
        .iter()
        .enumerate()
        .map(|(i, e)| chainable(graph, e, partitioning[i], &parallelism, config))
        .collect();

    // Vertices: every node not chained to a predecessor heads one.
    let mut vertex_of = vec![usize::MAX; n];
    let mut vertices = Vec::new();
    for node in &graph.nodes {
        let has_chained_input = graph
            .edges
            .iter()
            .enumerate()
            .any(|(i, e)| e.target == node.id && chained[i]);
        if has_chained_input {
            continue;
        }
        let idx = vertices.len();
        let mut members = Vec::new();
        let mut stack = vec![node.id];
        while let Some(id) = stack.pop() {
            vertex_of[id] = idx;
            members.push(id);
            for (i, e) in graph.edges.iter().enumerate().rev() {
                if e.source == id && chained[i] {
                    stack.push(e.target);
                }
            }
        }
        let name = members
            .iter()
            .map(|&id| graph.nodes[id].name.as_str())
            .collect::<Vec<_>>()
            .join(" -> ");
        vertices.push(Vertex {
            head: node.id,
            nodes: members,
            parallelism: parallelism[node.id],
            name,
        });
    }

    for v in &vertices {
        tracing::debug!(
            task = %v.name,
            parallelism = v.parallelism,
            operators = v.nodes.len(),
            "planned task"
        );
    }
    for (i, e) in graph.edges.iter().enumerate() {
        if !chained[i] {
            tracing::debug!(
                from = %graph.nodes[e.source].name,
                to = %graph.nodes[e.target].name,
                partitioning = partitioning[i].name(),
                "planned channel"
            );
        }
    }
    Ok(Plan {
        parallelism,
        max_parallelism,
        chained,
        partitioning,
        vertices,
        vertex_of,
    })
}

fn check_config(config: &ExecutionConfig) -> Result<(), JobError> {
    if config.batch_size == 0 {
        return Err(invalid("batch_size must be at least 1".into()));
    }
    if config.channel_capacity == 0 {
        return Err(invalid("channel_capacity must be at least 1".into()));
    }
    if config.remote_channel_capacity == 0 {
        return Err(invalid("remote_channel_capacity must be at least 1".into()));
    }
    Ok(())
}

fn check_inputs(graph: &StreamGraph) -> Result<(), JobError> {
    for node in &graph.nodes {
        let wanted = node.kind.inputs();
        for input in 0..wanted {
            let has = graph
                .edges
                .iter()
                .any(|e| e.target == node.id && usize::from(e.input) == input);
            if !has {
                return Err(invalid(format!(
                    "operator '{}' has no stream on its input {}",
                    node.name,
                    input + 1
                )));
            }
        }
    }
    Ok(())
}

fn check_side_types(graph: &StreamGraph) -> Result<(), JobError> {
    for (i, (name, ty, ty_name)) in graph.side_types.iter().enumerate() {
        for (other, oty, oty_name) in &graph.side_types[i + 1..] {
            if name == other && ty != oty {
                return Err(invalid(format!(
                    "side output '{name}' is used with two record types ({ty_name} and {oty_name}); \
                     give each type its own tag name"
                )));
            }
        }
    }
    Ok(())
}

/// Flink's chaining rules: a forward edge between equal parallelisms, into an operator
/// whose only input it is, where neither end refuses chaining.
fn chainable(
    graph: &StreamGraph,
    e: &Edge,
    partitioning: Partitioning,
    parallelism: &[usize],
    config: &ExecutionConfig,
) -> bool {
    if !config.chaining || partitioning != Partitioning::Forward {
        return false;
    }
    let (src, tgt) = (&graph.nodes[e.source], &graph.nodes[e.target]);
    if parallelism[e.source] != parallelism[e.target] {
        return false;
    }
    if !matches!(tgt.kind, NodeKind::OneInput(_)) {
        return false;
    }
    if src.chaining == Chaining::Never || tgt.chaining != Chaining::Always {
        return false;
    }
    graph.edges.iter().filter(|x| x.target == e.target).count() == 1
}

/// Which downstream subtasks upstream subtask `u` sends to, for each pattern.
pub(crate) fn targets_of(
    partitioning: Partitioning,
    upstream: usize,
    downstream: usize,
    u: usize,
) -> Vec<usize> {
    if !partitioning.is_pointwise() {
        return (0..downstream).collect();
    }
    if upstream == downstream {
        vec![u]
    } else if upstream > downstream {
        // Several upstream subtasks feed one downstream subtask.
        (0..downstream)
            .filter(|&d| {
                let start = d * upstream / downstream;
                let end = (d + 1) * upstream / downstream;
                (start..end).contains(&u)
            })
            .collect()
    } else {
        let start = (u * downstream).div_ceil(upstream);
        let end = ((u + 1) * downstream).div_ceil(upstream);
        (start..end).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointwise_connections_cover_every_subtask_once() {
        for up in 1..8 {
            for down in 1..8 {
                let mut seen = vec![0; down];
                for u in 0..up {
                    let t = targets_of(Partitioning::Rescale, up, down, u);
                    assert!(!t.is_empty(), "up {up} down {down} u {u}");
                    for d in t {
                        seen[d] += 1;
                    }
                }
                if up <= down {
                    assert!(
                        seen.iter().all(|&c| c == 1),
                        "up {up} down {down}: {seen:?}"
                    );
                } else {
                    assert!(
                        seen.iter().all(|&c| c >= 1),
                        "up {up} down {down}: {seen:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn all_to_all_for_rebalance() {
        assert_eq!(targets_of(Partitioning::Rebalance, 2, 3, 1), vec![0, 1, 2]);
    }
}
