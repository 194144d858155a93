//! CPU time spent by each side of a benchmark, from `/proc` (Linux): this process (every
//! service of the in-process cluster and the worker loops), PostgreSQL (every `postgres`
//! process, plus what the postmaster's exited children used) and Redis. CPU time per task is
//! steadier than a rate on a shared machine: another tenant slows the wall clock far more
//! than it inflates our own CPU seconds.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// `USER_HZ`: the unit of `/proc/*/stat` times, 100 on every Linux architecture we run on.
const TICKS_PER_SECOND: f64 = 100.0;

/// Seconds of CPU (user + system) used so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    pub this_process: f64,
    pub postgres: f64,
    pub redis: f64,
}

impl Cpu {
    pub fn now() -> Cpu {
        let mut cpu = Cpu {
            this_process: stat(Path::new("/proc/self/stat")).map_or(0.0, |s| s.own),
            ..Cpu::default()
        };
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return cpu;
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
                continue;
            };
            let Some(times) = stat(&dir.join("stat")) else {
                continue;
            };
            match comm.trim_end() {
                // Backends that exited are counted in their parent's children times.
                "postgres" => cpu.postgres += times.own + times.children,
                "redis-server" => cpu.redis += times.own,
                _ => {}
            }
        }
        cpu
    }

    /// What was used since `earlier`.
    pub fn since(self, earlier: Cpu) -> Cpu {
        Cpu {
            this_process: self.this_process - earlier.this_process,
            postgres: self.postgres - earlier.postgres,
            redis: self.redis - earlier.redis,
        }
    }

    /// What two measurements used together.
    pub fn plus(self, other: Cpu) -> Cpu {
        Cpu {
            this_process: self.this_process + other.this_process,
            postgres: self.postgres + other.postgres,
            redis: self.redis + other.redis,
        }
    }

    pub fn total(self) -> f64 {
        self.this_process + self.postgres + self.redis
    }

    /// "… ms per 1,000 tasks" for `tasks` tasks, each side and the total.
    pub fn per_thousand(self, tasks: u64) -> String {
        let per = |seconds: f64| seconds * 1e3 * 1e3 / tasks as f64;
        format!(
            "CPU per 1,000 tasks: {:.0} ms (services and workers {:.0}, PostgreSQL {:.0}, Redis {:.0})",
            per(self.total()),
            per(self.this_process),
            per(self.postgres),
            per(self.redis)
        )
    }
}

/// CPU seconds used so far by each PostgreSQL backend serving a service of the cluster, by
/// pid, with the service's name. Services name their connections after their schema
/// (`switchyard-<schema>`, see `switchyard_runtime::db::application_name`), which is how a
/// backend is traced to its service.
#[derive(Debug, Clone, Default)]
pub struct Backends(HashMap<i32, (String, f64)>);

impl Backends {
    /// `services`: `(service, schema)` of every service to tell apart.
    pub async fn now(
        conn: &sea_orm::DatabaseConnection,
        services: &[(&str, String)],
    ) -> anyhow::Result<Backends> {
        use sea_orm::{ConnectionTrait, Statement};
        let rows = conn
            .query_all_raw(Statement::from_string(
                sea_orm::DatabaseBackend::Postgres,
                "SELECT pid, application_name FROM pg_stat_activity",
            ))
            .await?;
        let names: HashMap<String, &str> = services
            .iter()
            .map(|(service, schema)| (switchyard_runtime::db::application_name(schema), *service))
            .collect();
        let mut backends = HashMap::new();
        for row in rows {
            let pid: i32 = row.try_get("", "pid")?;
            let name: String = row.try_get("", "application_name")?;
            let Some(service) = names.get(&name) else {
                continue;
            };
            if let Some(times) = stat(Path::new(&format!("/proc/{pid}/stat"))) {
                backends.insert(pid, ((*service).to_owned(), times.own));
            }
        }
        Ok(Backends(backends))
    }

    /// Seconds each service's backends used since `earlier` (a backend opened since counts
    /// whole; one closed since is not seen: pools here keep their connections for minutes).
    pub fn since(&self, earlier: &Backends) -> BTreeMap<String, f64> {
        let mut by_service = BTreeMap::new();
        for (pid, (service, seconds)) in &self.0 {
            let before = earlier.0.get(pid).map_or(0.0, |(_, s)| *s);
            *by_service.entry(service.clone()).or_insert(0.0) += seconds - before;
        }
        by_service
    }
}

/// "PostgreSQL by service, ms per 1,000 tasks: control-plane 40, scheduler 150, ..."
pub fn by_service_per_thousand(by_service: &BTreeMap<String, f64>, tasks: u64) -> String {
    let parts: Vec<String> = by_service
        .iter()
        .map(|(service, seconds)| format!("{service} {:.0}", seconds * 1e6 / tasks as f64))
        .collect();
    format!(
        "PostgreSQL by service, ms per 1,000 tasks: {}",
        parts.join(", ")
    )
}

struct Times {
    own: f64,
    children: f64,
}

/// utime + stime and cutime + cstime of one process.
fn stat(path: &Path) -> Option<Times> {
    let text = std::fs::read_to_string(path).ok()?;
    // The command name is in parentheses and may hold spaces: fields count from after it.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14..17 of stat(5), i.e. 11..14 after the state (field 3).
    let tick = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some(Times {
        own: (tick(11)? + tick(12)?) / TICKS_PER_SECOND,
        children: (tick(13)? + tick(14)?) / TICKS_PER_SECOND,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_after_a_command_name_with_spaces_and_parentheses() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("stat");
        // pid (comm) state, then fields 4..13, then utime stime cutime cstime (ticks).
        std::fs::write(
            &path,
            "42 (post gres) (x)) S 1 2 3 4 5 6 7 8 9 10 250 50 700 100 20 0\n",
        )
        .expect("the stat file is written");
        let times = stat(&path).expect("the times are read");
        assert!((times.own - 3.0).abs() < 1e-9, "{}", times.own);
        assert!((times.children - 8.0).abs() < 1e-9, "{}", times.children);
    }

    #[test]
    fn this_process_counts_the_cpu_it_burns() {
        // Burns until its own CPU time has grown by 0.2 s: on a busy machine that takes
        // longer in wall time, so only a reading that never grows fails (at the deadline).
        let before = Cpu::now();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut x = 0u64;
        while Cpu::now().since(before).this_process < 0.2 {
            assert!(std::time::Instant::now() < deadline, "no CPU time counted");
            for _ in 0..1_000_000 {
                x = x.wrapping_mul(31).wrapping_add(7);
            }
            std::hint::black_box(x);
        }
    }
}
