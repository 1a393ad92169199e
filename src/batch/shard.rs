//! Deterministic sharding of a batch, so that Slurm job arrays and Kubernetes Indexed Jobs run
//! it as is: shard `I/N` takes items `I, I + N, I + 2N, ...` of the sorted item list. The
//! shards of one N are disjoint and together are the whole batch.

use crate::error::{Error, Result};

/// One shard of `count` (0-based `index`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

fn shard_err(msg: impl Into<String>) -> Error {
    Error::Config(msg.into())
}

impl Shard {
    /// A shard after checking `index < count`.
    pub fn new(index: usize, count: usize) -> Result<Self> {
        if count == 0 || index >= count {
            return Err(shard_err(format!(
                "shard {index}/{count}: the index must be below the count (0-based), the count at least 1"
            )));
        }
        Ok(Shard { index, count })
    }

    /// Parses `I/N` (0-based).
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = || shard_err(format!("--shard '{spec}' must be I/N with 0 <= I < N"));
        let (i, n) = spec.split_once('/').ok_or_else(bad)?;
        let i = i.trim().parse().map_err(|_| bad())?;
        let n = n.trim().parse().map_err(|_| bad())?;
        Shard::new(i, n).map_err(|_| bad())
    }

    /// The shard the scheduler assigned, read through `var` (the process environment in
    /// the CLI): a Slurm array task (`SLURM_ARRAY_TASK_ID` and `SLURM_ARRAY_TASK_COUNT`, less
    /// `SLURM_ARRAY_TASK_MIN` and divided by `SLURM_ARRAY_TASK_STEP` when set), or, when
    /// `shards` is given, a Kubernetes Indexed Job's `JOB_COMPLETION_INDEX`. No scheduler and
    /// no `shards`: the whole batch. Inconsistent values are an error, never a guess.
    pub fn from_env(var: impl Fn(&str) -> Option<String>, shards: Option<usize>) -> Result<Self> {
        let num =
            |name: &str| -> Result<Option<usize>> {
                match var(name) {
                    None => Ok(None),
                    Some(v) => v.trim().parse().map(Some).map_err(|_| {
                        shard_err(format!("{name}='{v}' is not a non-negative integer"))
                    }),
                }
            };
        if let Some(n) = shards {
            let index = num("JOB_COMPLETION_INDEX")?.ok_or_else(|| {
                shard_err("--shards is given but JOB_COMPLETION_INDEX is not set (use --shard I/N outside a Kubernetes Indexed Job)")
            })?;
            return Shard::new(index, n).map_err(|_| {
                shard_err(format!(
                    "JOB_COMPLETION_INDEX={index} is out of range for --shards {n}"
                ))
            });
        }
        let Some(id) = num("SLURM_ARRAY_TASK_ID")? else {
            return Ok(Shard::default());
        };
        let count = num("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| {
            shard_err("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not")
        })?;
        let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let step = num("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
        let offset = id.checked_sub(min).ok_or_else(|| {
            shard_err(format!(
                "SLURM_ARRAY_TASK_ID={id} is below SLURM_ARRAY_TASK_MIN={min}"
            ))
        })?;
        if offset % step != 0 {
            return Err(shard_err(format!(
                "SLURM_ARRAY_TASK_ID={id} is not on the array's step {step} from {min}"
            )));
        }
        Shard::new(offset / step, count).map_err(|_| {
            shard_err(format!(
                "SLURM_ARRAY_TASK_ID={id} gives shard {} of SLURM_ARRAY_TASK_COUNT={count}; submit a contiguous array such as --array=0-{}",
                offset / step,
                count.saturating_sub(1)
            ))
        })
    }

    /// Whether item `k` of the sorted list belongs to this shard.
    pub fn owns(&self, k: usize) -> bool {
        k % self.count == self.index
    }

    /// This shard's items of a sorted list, in order.
    pub fn select<T>(&self, items: Vec<T>) -> Vec<T> {
        items
            .into_iter()
            .enumerate()
            .filter(|(k, _)| self.owns(*k))
            .map(|(_, t)| t)
            .collect()
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn shards_partition_the_items() {
        for n in 1..=7 {
            let mut seen = vec![0; 23];
            for i in 0..n {
                for k in Shard::new(i, n).unwrap().select((0..23).collect()) {
                    seen[k] += 1;
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "{n}: {seen:?}");
        }
        assert_eq!(
            Shard::new(1, 3).unwrap().select((0..8).collect()),
            [1, 4, 7]
        );
    }

    #[test]
    fn parse_accepts_only_i_of_n() {
        assert_eq!(Shard::parse("2/5").unwrap(), Shard { index: 2, count: 5 });
        for bad in ["5/5", "1/0", "-1/3", "1", "a/b", "1/2/3", ""] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slurm_variables_give_the_shard() {
        fn s(pairs: &[(&str, &str)]) -> Result<Shard> {
            Shard::from_env(env(pairs), None)
        }
        assert_eq!(s(&[]).unwrap(), Shard::default());
        let two = [
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
        ];
        assert_eq!(s(&two).unwrap(), Shard { index: 1, count: 2 });
        // --array=5-8: ids 5..8, min 5.
        let offset = [
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "5"),
        ];
        assert_eq!(s(&offset).unwrap(), Shard { index: 2, count: 4 });
        // --array=0-6:2: ids 0, 2, 4, 6.
        let stepped = [
            ("SLURM_ARRAY_TASK_ID", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
        ];
        assert_eq!(s(&stepped).unwrap(), Shard { index: 2, count: 4 });
        for bad in [
            vec![("SLURM_ARRAY_TASK_ID", "1")],
            vec![
                ("SLURM_ARRAY_TASK_ID", "2"),
                ("SLURM_ARRAY_TASK_COUNT", "2"),
            ],
            vec![
                ("SLURM_ARRAY_TASK_ID", "x"),
                ("SLURM_ARRAY_TASK_COUNT", "2"),
            ],
            vec![
                ("SLURM_ARRAY_TASK_ID", "1"),
                ("SLURM_ARRAY_TASK_COUNT", "2"),
                ("SLURM_ARRAY_TASK_MIN", "3"),
            ],
            vec![
                ("SLURM_ARRAY_TASK_ID", "3"),
                ("SLURM_ARRAY_TASK_COUNT", "4"),
                ("SLURM_ARRAY_TASK_STEP", "2"),
            ],
        ] {
            assert!(s(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn kubernetes_index_needs_shards() {
        fn k(pairs: &[(&str, &str)], n: Option<usize>) -> Result<Shard> {
            Shard::from_env(env(pairs), n)
        }
        let idx = [("JOB_COMPLETION_INDEX", "3")];
        assert_eq!(k(&idx, Some(4)).unwrap(), Shard { index: 3, count: 4 });
        assert!(k(&idx, Some(3)).is_err());
        assert!(k(&[], Some(3)).is_err());
        // Without --shards the index alone is not taken as a shard.
        assert_eq!(k(&idx, None).unwrap(), Shard::default());
    }
}
