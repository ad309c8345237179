//! Where subtasks run: slot sharing as in Flink. Slot `s` holds subtask `s` of every
//! operator, so a job needs as many slots as its largest parallelism; slots are filled
//! worker by worker in the order the workers registered.

/// Not enough slots for the job.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the job needs {needed} slots and the workers offer {available}")]
pub(crate) struct NotEnoughSlots {
    pub needed: usize,
    pub available: usize,
}

/// The worker (index into `slots`, each a worker's slot count) of every subtask:
/// `result[vertex][subtask]`.
pub(crate) fn place(
    parallelisms: &[usize],
    slots: &[u32],
) -> Result<Vec<Vec<usize>>, NotEnoughSlots> {
    let needed = parallelisms.iter().copied().max().unwrap_or(0);
    let worker_of_slot: Vec<usize> = slots
        .iter()
        .enumerate()
        .flat_map(|(worker, &n)| std::iter::repeat_n(worker, n as usize))
        .collect();
    if worker_of_slot.len() < needed {
        return Err(NotEnoughSlots {
            needed,
            available: worker_of_slot.len(),
        });
    }
    Ok(parallelisms
        .iter()
        .map(|&p| worker_of_slot[..p].to_vec())
        .collect())
}

/// Slots a job needs.
pub(crate) fn slots_needed(parallelisms: &[usize]) -> usize {
    parallelisms.iter().copied().max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtask_s_of_every_operator_shares_slot_s() {
        // Source at 1, two operators at 4; workers with 2, 1 and 3 slots.
        assert_eq!(
            place(&[1, 4, 4], &[2, 1, 3]),
            Ok(vec![vec![0], vec![0, 0, 1, 2], vec![0, 0, 1, 2]])
        );
    }

    #[test]
    fn one_slot_per_worker_spreads_subtasks() {
        assert_eq!(place(&[2, 2], &[1, 1]), Ok(vec![vec![0, 1], vec![0, 1]]));
    }

    #[test]
    fn too_few_slots_is_an_error_with_the_counts() {
        let e = place(&[3, 1], &[1, 1]).expect_err("3 > 2");
        assert_eq!(
            e,
            NotEnoughSlots {
                needed: 3,
                available: 2
            }
        );
        assert_eq!(
            e.to_string(),
            "the job needs 3 slots and the workers offer 2"
        );
        assert_eq!(slots_needed(&[3, 1]), 3);
    }
}
