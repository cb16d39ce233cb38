//! `backup`: validate, preflight the database and choose pg_dump, claim the key, then store the
//! dump (`ops::backup`: pg_dump → parallel gzip → S3 multipart upload, completed only after
//! pg_dump exited 0 and every part succeeded). Only then verify and prune, and report.
//!
//! With `--all-databases` the run is one backup per database of the server, and one of its
//! globals (first), each claimed, stored, verified and pruned on its own: a backup that fails
//! is aborted and named, the others go on, and the run exits 1. A signal stops the run: the
//! backup under way is aborted, the rest are not started.

use crate::cli::BackupArgs;
use crate::config::BackupConfig;
use crate::error::{self, Interrupted};
use crate::layout::{BackupId, Series};
use crate::ops::job::Job;
use crate::ops::{self, claim, prune::Report};
use crate::ping::Pinger;
use crate::report::{self, Entry, Outcome};
use crate::signals::{self, or_stop};
use crate::source::pg_dump::{self, PgDump};
use crate::source::preflight::{self, Cluster, ServerInfo};
use crate::{output, s3};
use anyhow::Result;
use chrono::Utc;
use std::path::PathBuf;
use std::time::Instant;

pub async fn run(args: &BackupArgs) -> Result<()> {
    let cfg = BackupConfig::from_args(args)?;
    let Some(url) = &cfg.ping else {
        return backup(&cfg, &mut None).await;
    };
    // The pings frame the run: they never change its outcome (see `ping`).
    let pinger = Pinger::new(url);
    pinger.start().await;
    let mut outcome = None;
    let result = backup(&cfg, &mut outcome).await;
    // If `main` drops the command during a ping (grace over, second signal), it reports
    // what the guard says, not "stopped before it finished cleaning up".
    match (&result, outcome) {
        (Ok(()), json) => {
            let _done =
                signals::context("the backup is complete; its health-check ping was not sent");
            pinger.success(json.as_deref().unwrap_or("{}")).await
        }
        (Err(e), _) => {
            let line = error::one_line(e);
            let _failed = signals::context(line.clone());
            let stopped = e.downcast_ref::<Interrupted>().is_some();
            pinger.fail(&line, stopped).await
        }
    }
    result
}

/// The run; `outcome_json` gets its JSON once it is known.
async fn backup(cfg: &BackupConfig, outcome_json: &mut Option<String>) -> Result<()> {
    match &cfg.all {
        None => database(cfg, outcome_json).await,
        Some(excluded) => server(cfg, excluded, outcome_json).await,
    }
}

/// The database `--database-url` names.
async fn database(cfg: &BackupConfig, outcome_json: &mut Option<String>) -> Result<()> {
    let started = Instant::now();
    output::group("Preflight: PostgreSQL, pg_dump, S3");
    // Nothing is written before the key is claimed: a signal here just stops.
    let preflight = async {
        let server = preflight::check(&cfg.conn).await?;
        let dump = pg_dump::choose(server.version, cfg.pg_dump_path.as_deref()).await?;
        Ok((server, dump))
    };
    let (server, dump) = or_stop(preflight, "stopped before anything was written").await?;
    let client = s3::client(&cfg.s3).await?;
    let job = Job {
        series: Series::Database(server.database.clone()),
        conn: cfg.conn.clone(),
        server,
        tool: dump,
        no_role_passwords: false,
    };
    let done = one(&client, cfg, &job, started).await?;
    if let Some(e) = done.failed {
        return Err(e);
    }
    output::end_group();
    *outcome_json = serde_json::to_string(&done.outcome).ok();
    report::backup(&done.outcome, cfg.json)?;
    done.stopped.map_or(Ok(()), Err)
}

/// Every database of the server but `excluded`, and its globals.
async fn server(
    cfg: &BackupConfig,
    excluded: &[String],
    outcome_json: &mut Option<String>,
) -> Result<()> {
    output::group("Preflight: PostgreSQL, pg_dump, pg_dumpall, S3");
    let preflight = async {
        let server = preflight::check(&cfg.conn).await?;
        let cluster = preflight::cluster(&cfg.conn).await?;
        let dump = pg_dump::choose(server.version, cfg.pg_dump_path.as_deref()).await?;
        let dumpall = pg_dump::choose_tool(
            "pg_dumpall",
            server.version,
            beside_pg_dump(cfg).as_deref(),
            "--pg-dump-path (pg_dumpall is taken from its directory)",
        )
        .await?;
        Ok((server, cluster, dump, dumpall))
    };
    let (server, cluster, dump, dumpall) =
        or_stop(preflight, "stopped before anything was written").await?;
    let databases = chosen(&cluster, excluded, &cfg.conn.display_host())?;
    if !cluster.passwords_readable {
        output::warn(
            "the server does not let this user read the roles' password hashes (pg_authid; managed servers such as RDS and Cloud SQL hide them): the globals are dumped with --no-role-passwords, so restored roles need their passwords set again",
        );
    }
    output::note(format_args!(
        "backing up {} databases of {} and its globals: {}",
        databases.len(),
        cfg.conn.display_host(),
        databases.join(", ")
    ));
    let client = s3::client(&cfg.s3).await?;
    let mut series = vec![Series::Globals];
    series.extend(databases.into_iter().map(Series::Database));
    let mut entries = Vec::new();
    let mut stopped: Option<anyhow::Error> = None;
    for s in series {
        if stopped.is_some() || signals::stop_requested().is_some() {
            entries.push(Entry::not_run(s));
            continue;
        }
        output::group(&format!("Backup of {}", s.label()));
        let started = Instant::now();
        let tools = (&server, &dump, &dumpall, !cluster.passwords_readable);
        // Only a refused connection, before anything was written, is a managed service's
        // database refusing every user: a dump of one that fails is a failure like any other.
        let result = match job_for(cfg, &s, tools).await {
            Ok(job) => one(&client, cfg, &job, started).await,
            Err(e) if managed_admin(&s, &e) => {
                let why = format!(
                    "{} is the managed service's own database, which it lets no user connect to: skipped ({})",
                    s.label(),
                    error::one_line(&e)
                );
                output::note(&why);
                entries.push(Entry::skipped(s, why));
                continue;
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(done) => {
                stopped = done.stopped;
                entries.push(match done.failed {
                    None => Entry::complete(done.outcome),
                    Some(e) => {
                        let line = error::one_line(&e);
                        output::warn(format_args!("the backup of {} failed: {line}", s.label()));
                        Entry::failed_stored(done.outcome, line)
                    }
                });
            }
            Err(e) => {
                let mut line = error::one_line(&e);
                match since(cfg, &cluster, &s, &e).await {
                    Since::Gone => {
                        let why = format!(
                            "{} was dropped, or stopped accepting connections, after the run listed it: skipped ({line})",
                            s.label()
                        );
                        output::warn(&why);
                        entries.push(Entry::skipped(s, why));
                        continue;
                    }
                    Since::Renamed(now) => {
                        line = format!(
                            "it was renamed to `{now}` after the run listed it, and is backed up under neither name: run the backup again ({line})"
                        );
                    }
                    Since::Here => {}
                }
                if e.downcast_ref::<Interrupted>().is_some() {
                    stopped = Some(e);
                } else {
                    output::warn(format_args!("the backup of {} failed: {line}", s.label()));
                }
                entries.push(Entry::failed(s, line));
            }
        }
    }
    for name in &cluster.unnamed {
        let why = format!(
            "database `{name}` has a name that is not UTF-8, which no key or connection string can hold: rename it (ALTER DATABASE ... RENAME TO) to back it up"
        );
        output::warn(format_args!(
            "the backup of database `{name}` failed: {why}"
        ));
        entries.push(Entry::failed(Series::Database(name.clone()), why));
    }
    output::end_group();
    // A signal between backups (or while a failure was looked into) stopped the run too.
    if let (None, Some(sig)) = (&stopped, signals::stop_requested()) {
        stopped = Some(anyhow::Error::new(Interrupted(sig)));
    }
    *outcome_json = serde_json::to_string(&entries).ok();
    report::server(&entries, cfg.json)?;
    let complete = entries.iter().filter(|e| e.status == "complete").count();
    let total = entries.len();
    if let Some(e) = stopped {
        return Err(e.context(format!(
            "{complete} of {total} backups of the server are complete; the rest were stopped or not started"
        )));
    }
    let failed: Vec<&Entry> = entries.iter().filter(|e| e.status == "failed").collect();
    let stored: Vec<String> = failed
        .iter()
        .filter(|e| e.outcome.is_some())
        .map(|e| e.series().label())
        .collect();
    if !failed.is_empty() {
        let left = match stored.is_empty() {
            true => "nothing of them was left behind".to_string(),
            false => format!(
                "the backups of {} were stored but their verification or retention failed, nothing of the others was left behind",
                stored.join(", ")
            ),
        };
        let names: Vec<String> = failed.iter().map(|e| e.series().label()).collect();
        anyhow::bail!(
            "{} of {total} backups failed ({}): {left}, and the other {complete} are complete; see each error above",
            failed.len(),
            names.join(", ")
        );
    }
    Ok(())
}

/// The databases an `--all-databases` run backs up: the server's, less the excluded ones. An
/// exclusion naming no database warns (it may be a typo, or a database since dropped); leaving
/// nothing to back up is a usage error.
fn chosen(cluster: &Cluster, excluded: &[String], server: &str) -> Result<Vec<String>> {
    for name in excluded {
        if !cluster.databases.contains(name) {
            output::warn(format_args!(
                "--exclude-database `{name}` names no database of {server} that accepts connections: check the spelling (names are exact and case-sensitive)"
            ));
        }
    }
    let databases: Vec<String> = cluster
        .databases
        .iter()
        .filter(|d| !excluded.contains(d))
        .cloned()
        .collect();
    if databases.is_empty() {
        return Err(crate::error::usage!(
            "--all-databases with every database of {server} excluded ({}): nothing to back up; drop an --exclude-database",
            excluded.join(", ")
        ));
    }
    Ok(databases)
}

/// pg_dumpall beside `--pg-dump-path`, if that directory has one.
fn beside_pg_dump(cfg: &BackupConfig) -> Option<PathBuf> {
    let dir = cfg.pg_dump_path.as_deref()?.parent()?;
    Some(dir.join("pg_dumpall")).filter(|p| p.is_file())
}

/// The job for one series of the server: a database gets its own preflight (its size, and a
/// refused connection failing only this backup).
async fn job_for(
    cfg: &BackupConfig,
    series: &Series,
    (server, dump, dumpall, no_role_passwords): (&ServerInfo, &PgDump, &PgDump, bool),
) -> Result<Job> {
    Ok(match series {
        Series::Globals => Job {
            series: Series::Globals,
            conn: cfg.conn.clone(),
            server: server.clone(),
            tool: dumpall.clone(),
            no_role_passwords,
        },
        Series::Database(name) => {
            let conn = cfg.conn.with_dbname(name);
            let info = or_stop(
                preflight::check(&conn),
                "stopped before anything was written",
            )
            .await?;
            Job {
                series: series.clone(),
                conn,
                server: info,
                tool: dump.clone(),
                no_role_passwords: false,
            }
        }
    })
}

/// The databases managed services keep for themselves on a customer's server and refuse
/// connections to (RDS, Cloud SQL, Azure): a failure to back one up is no failure of the run.
const MANAGED_ADMIN: &[&str] = &["rdsadmin", "cloudsqladmin", "azure_maintenance"];

/// Whether `e`, a failure to back up `series`, is that of a managed service's own database.
fn managed_admin(series: &Series, e: &anyhow::Error) -> bool {
    series
        .database()
        .is_some_and(|db| MANAGED_ADMIN.contains(&db))
        && e.downcast_ref::<Interrupted>().is_none()
        && signals::stop_requested().is_none()
}

/// What became of the database of a backup that failed, by a new listing of the server.
enum Since {
    /// Dropped, or closed to connections: no longer one the run backs up, so no failure. Its
    /// upload was aborted as any failed one is.
    Gone,
    /// Listed under this other name (its oid is the same): its data is still there, and this
    /// run backs it up under neither name.
    Renamed(String),
    /// Still listed, or the listing failed, or the run was stopped: the failure stands.
    Here,
}

/// What became of the database of `series`, whose backup failed with `e`, since the run
/// listed it in `listed`.
async fn since(cfg: &BackupConfig, listed: &Cluster, series: &Series, e: &anyhow::Error) -> Since {
    let Series::Database(name) = series else {
        return Since::Here;
    };
    if e.downcast_ref::<Interrupted>().is_some() || signals::stop_requested().is_some() {
        return Since::Here;
    }
    let Ok(now) = preflight::cluster(&cfg.conn).await else {
        return Since::Here;
    };
    if now.databases.contains(name) {
        return Since::Here;
    }
    let oid = listed
        .oids
        .iter()
        .find(|(_, n)| n == name)
        .map(|(oid, _)| oid);
    match now.oids.iter().find(|(o, _)| Some(o) == oid) {
        Some((_, renamed)) => Since::Renamed(renamed.clone()),
        None => Since::Gone,
    }
}

/// One backup, done: its outcome, the error to return when a signal came after it was
/// complete, and the error of its verification or retention, which failed after it was stored.
struct Done {
    outcome: Outcome,
    stopped: Option<anyhow::Error>,
    failed: Option<anyhow::Error>,
}

/// Claims the key, stores the dump, then verifies and prunes the series.
async fn one(
    client: &aws_sdk_s3::Client,
    cfg: &BackupConfig,
    job: &Job,
    started: Instant,
) -> Result<Done> {
    let format = job.format(cfg);
    let id = BackupId::of(job.series.clone(), Utc::now(), format).with_codec(cfg.codec());
    let claim = claim::claim_key(client, &cfg.s3, &cfg.object, id).await?;
    let mut stored = ops::backup::store(client, cfg, job, &claim).await?;
    let key = claim.key;
    let _complete = signals::context(format!("the backup {} is complete", stored.uri));
    let size = stored.counters.compressed();
    // From here on the backup exists. A signal stops what is left (verification, retention)
    // and the outcome is still reported, with exit 130/143. A failed verification skips
    // retention; either failing fails the backup, which is still named with its key.
    let recorded = stored.unrecorded.is_none();
    let mut failed = stored.unrecorded.take();
    let verified = match cfg.verify && recorded {
        true => verify(client, cfg, &key, &stored.sha256)
            .await
            .unwrap_or_else(|e| {
                failed = Some(e);
                false
            }),
        false => false,
    };
    let retention = match (signals::stop_requested(), &failed) {
        (None, None) => {
            if !cfg.retention.is_empty() {
                output::group("Retention");
            }
            ops::prune::after_backup(client, cfg, &job.series, &key, size)
                .await
                .unwrap_or_else(|e| {
                    failed = Some(e);
                    None
                })
        }
        _ => None,
    };
    let stopped = signals::stop_requested().map(|sig| {
        let undone = undone(cfg, verified, retention.as_ref());
        anyhow::Error::new(Interrupted(sig))
            .context(format!("the backup {} is complete; {undone}", stored.uri))
    });
    let outcome = Outcome {
        uri: stored.uri,
        key,
        bucket: cfg.s3.bucket.clone(),
        series: job.series.clone(),
        format: format.name(),
        compression: cfg.codec().compression.name(),
        encrypted: cfg.codec().encrypted,
        size,
        raw_size: stored.counters.raw(),
        sha256: stored.sha256,
        duration_seconds: started.elapsed().as_secs_f64(),
        parts: stored.counters.parts(),
        part_size: stored.part_size,
        server_version: job.server.version_text.clone(),
        pg_dump_version: job.tool.version_text.clone(),
        recorded,
        metadata_complete: recorded,
        verified,
        pruned_count: retention.as_ref().map_or(0, |r| r.deleted.len()),
        kept_count: retention
            .as_ref()
            .filter(|r| r.skipped.is_none())
            .map(Report::kept),
        pruned: retention
            .as_ref()
            .map(|r| r.deleted.clone())
            .unwrap_or_default(),
        retention,
    };
    Ok(Done {
        outcome,
        stopped,
        failed,
    })
}

/// `--verify`: reads the new object back. `false` when a signal stopped it.
async fn verify(
    client: &aws_sdk_s3::Client,
    cfg: &BackupConfig,
    key: &str,
    sent_sha256: &str,
) -> Result<bool> {
    output::group("Verify");
    match or_stop(
        ops::verify::key(client, &cfg.s3, key, None, Some(sent_sha256), false),
        "verify stopped",
    )
    .await
    {
        Ok(line) => {
            output::note(&line);
            Ok(true)
        }
        Err(e) if e.downcast_ref::<Interrupted>().is_some() => Ok(false),
        Err(e) => Err(e),
    }
}

/// What a signal after the upload left undone, and what to run.
fn undone(cfg: &BackupConfig, verified: bool, retention: Option<&Report>) -> String {
    match retention {
        Some(r) if r.interrupted => format!(
            "retention stopped after deleting {} backups: run prune to finish",
            r.deleted.len()
        ),
        Some(_) => "the signal came as retention finished".to_string(),
        None if cfg.verify && !verified => {
            "it was neither verified nor pruned: run verify, then prune".to_string()
        }
        None if !cfg.retention.is_empty() => "retention was not run: run prune".to_string(),
        None => "the signal came as it finished: nothing was left undone".to_string(),
    }
}
